"""Pure parts of the workload controllers: hashes, rollout arithmetic, ranking, ordinals, status,
the scheduler's fit and messages, the LB pool, the work queue and events."""
from __future__ import annotations

import asyncio

import pytest

from tinykube.controllers import deployment as D
from tinykube.controllers import rollout
from tinykube.controllers import statefulset as SS
from tinykube.controllers.base import WorkQueue
from tinykube.controllers.events import build_event, event_name
from tinykube.controllers.hashing import ALPHANUMS, compute_hash, fnv32a, revision_hash, safe_encode_string
from tinykube.controllers.loadbalancer import pick_ip, pool_addresses
from tinykube.controllers.replicaset import calculate_status, pods_to_delete
from tinykube.controllers.scheduler import choose_node, failed_scheduling_message, fit_failure


# ---------------------------------------------------------------- hashing

def test_fnv32a_known_vectors():
    assert fnv32a(b"") == 0x811C9DC5
    assert fnv32a(b"a") == 0xE40C292C
    assert fnv32a(b"foobar") == 0xBF9CF968


def test_safe_encode_maps_digits_like_upstream():
    # SafeEncodeString maps each byte into the alphabet by byte % 27
    assert safe_encode_string("0123456789") == "45678" "9bcdf"
    assert all(c in ALPHANUMS for c in compute_hash({"spec": {}}))


def test_template_hash_stable_and_sensitive():
    t = {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}}
    assert compute_hash(t) == compute_hash({"spec": t["spec"], "metadata": t["metadata"]})   # key order
    t2 = {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "nginx:2"}]}}
    assert compute_hash(t) != compute_hash(t2)
    assert compute_hash(t, 1) != compute_hash(t) != compute_hash(t, 2)
    assert revision_hash({"a": 1}) != compute_hash({"a": 1})


# ---------------------------------------------------------------- rollout arithmetic

def dep(replicas=10, surge="25%", unavailable="25%", strategy="RollingUpdate"):
    s = {"type": strategy}
    if strategy == "RollingUpdate":
        s["rollingUpdate"] = {"maxSurge": surge, "maxUnavailable": unavailable}
    return {"metadata": {"name": "web", "generation": 1}, "spec": {"replicas": replicas, "strategy": s}}


@pytest.mark.parametrize("replicas,surge,unav,exp", [
    (10, "25%", "25%", (3, 2)),      # surge rounds up, unavailable down
    (3, "25%", "25%", (1, 0)),
    (4, "25%", "25%", (1, 1)),
    (1, "25%", "25%", (1, 0)),
    (5, 0, 0, (0, 1)),               # both zero: unavailable forced to 1
    (5, 2, "50%", (2, 2)),
    (3, "0%", "0%", (0, 1)),
])
def test_resolve_fenceposts(replicas, surge, unav, exp):
    assert rollout.resolve_fenceposts(surge, unav, replicas) == exp


def test_max_unavailable_and_surge():
    assert rollout.max_surge(dep(10)) == 3
    assert rollout.max_unavailable(dep(10)) == 2
    assert rollout.max_unavailable(dep(0)) == 0
    assert rollout.max_unavailable(dep(2, 0, 5)) == 2       # capped at replicas
    assert rollout.max_surge(dep(strategy="Recreate")) == 0


def test_new_rs_new_replicas():
    d = dep(10)   # surge 3
    assert rollout.new_rs_new_replicas(d, 10, 0) == 3       # room for 3 extra
    assert rollout.new_rs_new_replicas(d, 13, 3) == 3       # at the ceiling
    assert rollout.new_rs_new_replicas(d, 11, 3) == 5
    assert rollout.new_rs_new_replicas(d, 0, 0) == 10       # first rollout: all at once
    assert rollout.new_rs_new_replicas(d, 10, 10) == 10
    assert rollout.new_rs_new_replicas(dep(3, strategy="Recreate"), 3, 0) == 3


def test_scale_down_budget():
    d = dep(10)   # maxUnavailable 2 → minAvailable 8
    assert rollout.max_scaled_down(d, 13, 3, 0) == 13 - 8 - 3
    assert rollout.old_scale_down_budget(d, 10) == 2
    assert rollout.old_scale_down_budget(d, 7) == 0


# ---------------------------------------------------------------- deployment pieces

def test_new_rs_body():
    d = {"metadata": {"name": "web", "namespace": "default", "uid": "u1",
                      "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}", "team": "a",
                                      "deployment.kubernetes.io/revision": "4"}},
         "spec": {"replicas": 4, "selector": {"matchLabels": {"app": "web"}}, "minReadySeconds": 5,
                  "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c"}]}}}}
    rs = D.new_rs_body(d, "abc", 1, 5)
    assert rs["metadata"]["name"] == "web-abc"
    assert rs["spec"]["selector"]["matchLabels"] == {"app": "web", "pod-template-hash": "abc"}
    assert rs["spec"]["template"]["metadata"]["labels"] == {"app": "web", "pod-template-hash": "abc"}
    assert rs["metadata"]["annotations"] == {"team": "a", "deployment.kubernetes.io/revision": "5",
                                             "deployment.kubernetes.io/desired-replicas": "4",
                                             "deployment.kubernetes.io/max-replicas": "5"}
    ref = rs["metadata"]["ownerReferences"][0]
    assert ref == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "uid": "u1", "controller": True,
                   "blockOwnerDeletion": True}
    assert rs["spec"]["minReadySeconds"] == 5
    # the deployment's own template is not modified
    assert d["spec"]["template"]["metadata"]["labels"] == {"app": "web"}
    assert D.equal_ignore_hash(rs["spec"]["template"], d["spec"]["template"])


def _rs(name, spec_replicas, replicas, ready, available):
    return {"metadata": {"name": name}, "spec": {"replicas": spec_replicas},
            "status": {"replicas": replicas, "readyReplicas": ready, "availableReplicas": available}}


def test_deployment_status_and_conditions():
    d = dep(3, 1, 0)
    d["status"] = {}
    new, old = _rs("web-new", 3, 3, 3, 3), _rs("web-old", 0, 0, 0, 0)
    st = D.calculate_status(d, [new, old], new)
    assert (st["replicas"], st["updatedReplicas"], st["readyReplicas"], st["availableReplicas"],
            st["unavailableReplicas"]) == (3, 3, 3, 3, 0)
    D.sync_rollout_status(d, st, new)
    conds = {c["type"]: c for c in st["conditions"]}
    assert conds["Available"]["reason"] == "MinimumReplicasAvailable"
    assert conds["Progressing"]["reason"] == "NewReplicaSetAvailable"
    assert conds["Progressing"]["message"] == 'ReplicaSet "web-new" has successfully progressed.'
    # mid-rollout
    d2 = dep(3, 1, 0)
    d2["status"] = {"replicas": 3, "updatedReplicas": 0, "availableReplicas": 3}
    new, old = _rs("web-new", 1, 1, 0, 0), _rs("web-old", 3, 3, 3, 3)
    st = D.calculate_status(d2, [new, old], new)
    D.sync_rollout_status(d2, st, new)
    conds = {c["type"]: c for c in st["conditions"]}
    assert st["unavailableReplicas"] == 0 and st["updatedReplicas"] == 1
    assert conds["Progressing"]["reason"] == "ReplicaSetUpdated"
    assert conds["Progressing"]["message"] == 'ReplicaSet "web-new" is progressing.'
    # below minimum availability
    d3 = dep(4, 1, 1)
    d3["status"] = {}
    st = D.calculate_status(d3, [_rs("x", 4, 4, 1, 1)], None)
    assert {c["type"]: c for c in st["conditions"]}["Available"]["reason"] == "MinimumReplicasUnavailable"


def test_set_condition_keeps_transition_time():
    st = {"conditions": [{"type": "Available", "status": "True", "reason": "A", "lastTransitionTime": "t0",
                          "lastUpdateTime": "t0"}]}
    c = D.new_condition("Available", "True", "B", "m")
    D.set_condition(st, c)
    assert st["conditions"][0]["lastTransitionTime"] == "t0" and st["conditions"][0]["reason"] == "B"


def test_cleanup_candidates_respects_history_limit():
    d = {"spec": {"revisionHistoryLimit": 1}}
    olds = [{"metadata": {"name": f"r{i}", "annotations": {"deployment.kubernetes.io/revision": str(i)},
                          "generation": 1},
             "spec": {"replicas": 0}, "status": {"replicas": 0, "observedGeneration": 1}} for i in (3, 1, 2)]
    assert [r["metadata"]["name"] for r in D.cleanup_candidates(d, olds)] == ["r1", "r2"]
    olds[1]["spec"]["replicas"] = 1     # r1 still has pods: kept
    assert [r["metadata"]["name"] for r in D.cleanup_candidates(d, olds)] == ["r2"]


# ---------------------------------------------------------------- replica sets

def _pod(name, node="n1", phase="Running", ready=True, created="2024-01-01T00:00:00Z", restarts=0):
    return {"metadata": {"name": name, "creationTimestamp": created, "labels": {"app": "web"}},
            "spec": {"nodeName": node},
            "status": {"phase": phase, "containerStatuses": [{"restartCount": restarts}],
                       "conditions": [{"type": "Ready", "status": "True" if ready else "False",
                                       "lastTransitionTime": created}]}}


def test_pods_to_delete_ranking():
    pods = [_pod("ready-old"), _pod("unassigned", node="", phase="Pending", ready=False),
            _pod("pending", phase="Pending", ready=False), _pod("notready", ready=False),
            _pod("ready-new", created="2024-06-01T00:00:00Z")]
    order = [p["metadata"]["name"] for p in pods_to_delete(pods, 5)]
    assert order == ["unassigned", "pending", "notready", "ready-new", "ready-old"]
    restarts = [_pod("calm"), _pod("crashy", restarts=5)]
    assert pods_to_delete(restarts, 1)[0]["metadata"]["name"] == "crashy"


def test_replicaset_status():
    rs = {"metadata": {"generation": 3}, "spec": {"minReadySeconds": 0,
                                                   "template": {"metadata": {"labels": {"app": "web", "x": "y"}}}},
          "status": {}}
    pods = [_pod("a"), _pod("b", ready=False)]
    pods[0]["metadata"]["labels"]["x"] = "y"
    st = calculate_status(rs, pods)
    assert st == {"replicas": 2, "fullyLabeledReplicas": 1, "readyReplicas": 1, "availableReplicas": 1,
                  "observedGeneration": 3}
    rs["spec"]["minReadySeconds"] = 10 ** 9    # ready but not yet available
    assert "availableReplicas" not in calculate_status(rs, pods)


# ---------------------------------------------------------------- stateful sets

def test_ordinals_and_pods():
    assert SS.parse_ordinal("web", "web-0") == 0
    assert SS.parse_ordinal("web", "web-12") == 12
    assert SS.parse_ordinal("web", "web-x") is None
    assert SS.parse_ordinal("web", "webby-1") is None
    assert SS.parse_ordinal("web-1", "web-1-2") == 2
    sts = {"metadata": {"name": "web", "namespace": "default", "uid": "u"},
           "spec": {"replicas": 2, "serviceName": "nginx", "ordinals": {"start": 5},
                    "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c"}]}}}}
    assert SS.replica_range(sts) == (5, 7)
    rev = SS.new_revision(sts, 1, None)
    assert rev["metadata"]["name"].startswith("web-")
    assert rev["metadata"]["labels"]["controller-revision-hash"] == rev["metadata"]["name"][4:]
    assert rev["data"]["spec"]["template"]["$patch"] == "replace"
    p = SS.new_pod(sts, 5, rev)
    assert p["metadata"]["name"] == "web-5"
    assert p["spec"]["hostname"] == "web-5" and p["spec"]["subdomain"] == "nginx"
    assert p["metadata"]["labels"] == {"app": "web", "statefulset.kubernetes.io/pod-name": "web-5",
                                       "apps.kubernetes.io/pod-index": "5",
                                       "controller-revision-hash": rev["metadata"]["name"]}
    assert "$patch" not in str(p)


def test_statefulset_status_completes_rolling_update():
    sts = {"metadata": {"generation": 2}, "spec": {"replicas": 2}, "status": {}}
    pods = [_pod("web-0"), _pod("web-1")]
    for p in pods:
        p["metadata"]["labels"]["controller-revision-hash"] = "web-new"
    st = SS.compute_status(sts, pods, "web-old", "web-new")
    assert st["currentRevision"] == "web-new" and st["currentReplicas"] == 2 and st["updatedReplicas"] == 2
    assert st["readyReplicas"] == 2 and st["availableReplicas"] == 2 and st["observedGeneration"] == 2
    pods[1]["metadata"]["labels"]["controller-revision-hash"] = "web-old"
    st = SS.compute_status(sts, pods, "web-old", "web-new")
    assert st["currentRevision"] == "web-old" and st["currentReplicas"] == 1 and st["updatedReplicas"] == 1


# ---------------------------------------------------------------- scheduler

def _node(name, ready=True, labels=None, unschedulable=False, taints=None):
    return {"metadata": {"name": name, "labels": labels or {}},
            "spec": {"unschedulable": unschedulable, "taints": taints or []},
            "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


def test_fit_and_messages():
    pod = {"spec": {"nodeSelector": {"disk": "ssd"}}}
    assert fit_failure(pod, _node("a")) == "node(s) didn't match Pod's node affinity/selector"
    assert fit_failure(pod, _node("a", labels={"disk": "ssd"})) is None
    assert fit_failure({"spec": {}}, _node("a", unschedulable=True)) == "node(s) were unschedulable"
    assert fit_failure({"spec": {}}, _node("a", ready=False)) == \
        "node(s) had untolerated taint {node.kubernetes.io/not-ready: }"
    tolerant = {"spec": {"tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists"}]}}
    assert fit_failure(tolerant, _node("a", ready=False)) is None
    assert failed_scheduling_message(["node(s) didn't match Pod's node affinity/selector"], 1) == (
        "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector. preemption: 0/1 nodes are "
        "available: 1 Preemption is not helpful for scheduling.")
    assert failed_scheduling_message([], 0) == "no nodes available to schedule pods"
    msg = failed_scheduling_message(["node(s) were unschedulable", "node(s) didn't match Pod's node affinity/selector",
                                     "node(s) were unschedulable"], 3)
    assert msg.startswith("0/3 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, "
                          "2 node(s) were unschedulable.")


def test_choose_node_spreads():
    nodes = [_node("a"), _node("b")]
    pods = [{"spec": {"nodeName": "a"}, "status": {"phase": "Running"}}]
    assert choose_node({"spec": {}}, nodes, pods) == ("b", [])
    assert choose_node({"spec": {"nodeSelector": {"x": "y"}}}, nodes, pods)[0] is None


# ---------------------------------------------------------------- load balancer pool

def test_pool_and_pick():
    assert pool_addresses("192.0.2.0/30") == ["192.0.2.1", "192.0.2.2"]
    assert pool_addresses("192.0.2.5-192.0.2.7,192.0.2.9") == ["192.0.2.5", "192.0.2.6", "192.0.2.7", "192.0.2.9"]
    assert pool_addresses("") == []
    pool = pool_addresses("192.0.2.5-192.0.2.7")
    assert pick_ip({"spec": {}}, pool, {"192.0.2.5"}) == "192.0.2.6"
    assert pick_ip({"spec": {}}, pool, set(pool)) is None
    assert pick_ip({"spec": {"loadBalancerIP": "192.0.2.7"}}, pool, set()) == "192.0.2.7"
    assert pick_ip({"spec": {"loadBalancerIP": "10.0.0.1"}}, pool, set()) is None


# ---------------------------------------------------------------- work queue, events

def test_workqueue_coalesces_and_never_runs_a_key_twice_at_once():
    async def go():
        q = WorkQueue()
        q.add("a")
        q.add("a")
        q.add("b")
        assert len(q) == 2
        k = await q.get()
        assert k == "a"
        q.add("a")                      # while processing: re-queued only after done()
        assert len(q) == 1
        q.done("a")
        assert len(q) == 2
        assert q.add_rate_limited("x") < q.add_rate_limited("x")
        q.forget("x")
        assert q.failures("x") == 0
        q.shutdown()
    asyncio.run(go())


def test_event_shape():
    obj = {"apiVersion": "apps/v1", "kind": "Deployment",
           "metadata": {"name": "web", "namespace": "default", "uid": "u", "resourceVersion": "7"}}
    ev = build_event(obj, "Normal", "ScalingReplicaSet", "Scaled up replica set web-x from 0 to 3",
                     "deployment-controller", t_ns=255)
    assert ev["metadata"] == {"name": "web.ff", "namespace": "default"}
    assert ev["involvedObject"] == {"kind": "Deployment", "namespace": "default", "name": "web", "uid": "u",
                                    "apiVersion": "apps/v1", "resourceVersion": "7"}
    assert ev["source"] == {"component": "deployment-controller"} or ev["source"]["component"] == \
        "deployment-controller"
    assert ev["count"] == 1 and ev["firstTimestamp"] == ev["lastTimestamp"]
    assert ev["reportingComponent"] == "deployment-controller"
    assert event_name("p", 4096) == "p.1000"
