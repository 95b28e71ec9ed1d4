"""The controller-manager against a real API server (no agent): nodes and pod status are written
by hand, the objects the controllers produce are checked."""
from __future__ import annotations

import asyncio
import subprocess
import sys
import time

import pytest

from tinykube.api.errors import ApiError
from tinykube.api.resources import get as R
from tinykube.client.rest import Client

from tests.conftest import ApiServer

NODES, PODS, SVCS = R("nodes"), R("pods"), R("services")
DEPLOY, RS, STS = R("deployments", "apps"), R("replicasets", "apps"), R("statefulsets", "apps")
DS, CR = R("daemonsets", "apps"), R("controllerrevisions", "apps")
EP, SLICES, EVENTS = R("endpoints"), R("endpointslices", "discovery.k8s.io"), R("events")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    srv = ApiServer(tmp_path_factory.mktemp("ctrl"))
    srv.cluster.lb_pool = "192.0.2.10-192.0.2.11"
    srv.cluster.save()
    srv.start()
    log = open(srv.cluster.data_dir / "cm.log", "ab")
    cm = subprocess.Popen([sys.executable, "-m", "tinykube.cli.main", "controller-manager", "--data-dir",
                           str(srv.cluster.data_dir)], stdout=log, stderr=subprocess.STDOUT)
    ready = srv.cluster.run_dir / "controller-manager.ready"
    deadline = time.monotonic() + 30
    while not ready.exists():
        if cm.poll() is not None or time.monotonic() > deadline:
            cm.kill()
            srv.stop()
            raise RuntimeError((srv.cluster.data_dir / "cm.log").read_text()[-3000:])
        time.sleep(0.05)
    yield srv
    cm.terminate()
    cm.wait(10)
    srv.stop()


def run(coro):
    return asyncio.run(coro)


async def _client(srv) -> Client:
    return Client.from_kubeconfig(str(srv.kubeconfig))


async def wait_for(fn, what: str, timeout: float = 20.0):
    """Poll fn() (async) until it returns a truthy value; fail with `what` otherwise."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = await fn()
        except ApiError as e:
            last = e
        else:
            if last:
                return last
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}: last={last!r}")


def node(name: str, labels: dict | None = None, ready: bool = True) -> dict:
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels or {}},
            "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False",
                                       "reason": "KubeletReady", "message": "ready"}],
                       "addresses": [{"type": "InternalIP", "address": "10.1.0.1"}]}}


async def make_node(c: Client, name: str, labels: dict | None = None) -> None:
    try:
        out = await c.create(NODES, node(name, labels))
    except ApiError as e:
        if e.code != 409:
            raise
        return
    out["status"] = node(name)["status"]
    await c.update_status(NODES, out)


_ip = [10]


async def make_running(c: Client, pod: dict, ready: bool = True) -> dict:
    """Play kubelet: give the pod an IP and Running/Ready status."""
    cur = await c.get(PODS, pod["metadata"]["namespace"], pod["metadata"]["name"])
    _ip[0] += 1
    ts = "2024-01-01T00:00:00Z"
    cur["status"] = dict(cur.get("status") or {}, phase="Running", podIP=f"10.244.0.{_ip[0]}",
                         podIPs=[{"ip": f"10.244.0.{_ip[0]}"}], hostIP="10.1.0.1",
                         conditions=[{"type": "Ready", "status": "True" if ready else "False",
                                      "lastTransitionTime": ts},
                                     {"type": "PodScheduled", "status": "True", "lastTransitionTime": ts}])
    return await c.update_status(PODS, cur)


async def pods_with(c: Client, ns: str, sel: str) -> list[dict]:
    items, _ = await c.list(PODS, ns, label_selector=sel)
    return [p for p in items if not p["metadata"].get("deletionTimestamp")]


def test_scheduler_binds_and_records_events(cluster):
    async def go():
        c = await _client(cluster)
        try:
            await make_node(c, "node1")
            await c.create(PODS, {"metadata": {"name": "p1", "namespace": "default"},
                                  "spec": {"containers": [{"name": "c", "image": "nginx"}]}})
            p = await wait_for(lambda: _bound(c, "p1"), "binding")
            assert p["spec"]["nodeName"] == "node1"
            conds = {x["type"]: x for x in p["status"].get("conditions") or []}
            assert conds["PodScheduled"]["status"] == "True"
            ev = await wait_for(lambda: _events(c, "p1", "Scheduled"), "Scheduled event")
            assert ev[0]["message"] == "Successfully assigned default/p1 to node1"
            assert ev[0]["source"]["component"] == "default-scheduler"
            assert ev[0]["involvedObject"]["kind"] == "Pod"
            # a selector nothing satisfies
            await c.create(PODS, {"metadata": {"name": "p2", "namespace": "default"},
                                  "spec": {"nodeSelector": {"disk": "ssd"},
                                           "containers": [{"name": "c", "image": "nginx"}]}})
            ev = await wait_for(lambda: _events(c, "p2", "FailedScheduling"), "FailedScheduling event")
            assert ev[0]["type"] == "Warning"
            assert ev[0]["message"].startswith("0/1 nodes are available: 1 node(s) didn't match Pod's node "
                                               "affinity/selector.")
        finally:
            await c.close()

    async def _bound(c, name):
        p = await c.get(PODS, "default", name)
        return p if p["spec"].get("nodeName") and p.get("status", {}).get("conditions") else None
    run(go())


async def _events(c, name, reason):
    items, _ = await c.list(EVENTS, "default")
    return [e for e in items if e["involvedObject"]["name"] == name and e["reason"] == reason]


def web_deployment(name: str, image: str = "nginx:1", replicas: int = 3) -> dict:
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "web", "image": image,
                                                           "ports": [{"name": "http", "containerPort": 80}]}]}}}}


async def ready_all(c: Client, sel: str) -> int:
    n = 0
    for p in await pods_with(c, "default", sel):
        if not any(x["type"] == "Ready" and x["status"] == "True" for x in p.get("status", {}).get("conditions") or []):
            await make_running(c, p)
            n += 1
    return n


def test_deployment_rollout(cluster):
    async def go():
        c = await _client(cluster)
        try:
            await make_node(c, "node1")
            await c.create(DEPLOY, web_deployment("web"))

            async def rs_ready():
                items, _ = await c.list(RS, "default", label_selector="app=web")
                return items if items and items[0].get("status", {}).get("replicas") == 3 else None
            rss = await wait_for(rs_ready, "replica set with 3 pods")
            rs = rss[0]
            h = rs["metadata"]["labels"]["pod-template-hash"]
            assert rs["metadata"]["name"] == f"web-{h}"
            assert set(h) <= set("bcdfghjklmnpqrstvwxz2456789")
            assert rs["spec"]["selector"]["matchLabels"] == {"app": "web", "pod-template-hash": h}
            ann = rs["metadata"]["annotations"]
            assert ann["deployment.kubernetes.io/revision"] == "1"
            assert ann["deployment.kubernetes.io/desired-replicas"] == "3"
            assert ann["deployment.kubernetes.io/max-replicas"] == "4"
            pods = await pods_with(c, "default", "app=web")
            assert len(pods) == 3
            for p in pods:
                assert p["metadata"]["name"].startswith(f"web-{h}-")
                ref = p["metadata"]["ownerReferences"][0]
                assert ref["kind"] == "ReplicaSet" and ref["controller"] and ref["blockOwnerDeletion"]
            await ready_all(c, "app=web")

            async def deploy_done():
                d = await c.get(DEPLOY, "default", "web")
                st = d.get("status", {})
                conds = {x["type"]: x for x in st.get("conditions") or []}
                ok = (st.get("availableReplicas") == 3 and st.get("updatedReplicas") == 3
                      and conds.get("Progressing", {}).get("reason") == "NewReplicaSetAvailable")
                return d if ok else None
            d = await wait_for(deploy_done, "deployment available")
            conds = {x["type"]: x for x in d["status"]["conditions"]}
            assert conds["Available"]["reason"] == "MinimumReplicasAvailable"
            assert d["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "1"
            ev = await _events(c, "web", "ScalingReplicaSet")
            assert any(e["message"] == f"Scaled up replica set web-{h} from 0 to 3" for e in ev)
            rsev = await _events(c, rs["metadata"]["name"], "SuccessfulCreate")
            assert rsev and rsev[0]["message"].startswith(f"Created pod: web-{h}-")

            # rollout restart: template annotation change rolls to a new ReplicaSet
            await c.patch(DEPLOY, "default", "web", {"spec": {"template": {"metadata": {"annotations": {
                "kubectl.kubernetes.io/restartedAt": "2024-01-01T00:00:00Z"}}}}})

            async def rolled():
                await ready_all(c, "app=web")
                d = await c.get(DEPLOY, "default", "web")
                st = d.get("status", {})
                conds = {x["type"]: x for x in st.get("conditions") or []}
                items, _ = await c.list(RS, "default", label_selector="app=web")
                new = [r for r in items if r["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "2"]
                ok = (new and st.get("updatedReplicas") == 3 and st.get("replicas") == 3
                      and st.get("availableReplicas") == 3
                      and st.get("observedGeneration") == d["metadata"]["generation"]
                      and conds.get("Progressing", {}).get("reason") == "NewReplicaSetAvailable")
                return (d, items) if ok else None
            d, items = await wait_for(rolled, "rolled out", timeout=40)
            old = [r for r in items if r["metadata"]["name"] == rs["metadata"]["name"]][0]
            assert old["spec"]["replicas"] == 0
            assert d["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "2"
        finally:
            await c.close()
    run(go())


def test_endpoints_and_slices(cluster):
    async def go():
        c = await _client(cluster)
        try:
            await make_node(c, "node1")
            for name, port in (("np-a", 80), ("np-b", 81)):
                p = await c.create(PODS, {"metadata": {"name": name, "namespace": "default", "labels": {"app": "np"}},
                                          "spec": {"nodeName": "node1", "containers": [{"name": "c", "image": "nginx",
                                                   "ports": [{"name": "http", "containerPort": port}]}]}})
                await make_running(c, p, ready=(name == "np-a"))
            svc = await c.create(SVCS, {"metadata": {"name": "np", "namespace": "default", "labels": {"tier": "x"}},
                                        "spec": {"selector": {"app": "np"},
                                                 "ports": [{"name": "web", "port": 80, "targetPort": "http"}]}})

            async def ep_ok():
                ep = await c.get(EP, "default", "np")
                return ep if len(ep.get("subsets") or []) == 2 else None
            ep = await wait_for(ep_ok, "endpoints with two subsets")
            assert ep["metadata"]["labels"]["tier"] == "x"
            by_port = {s["ports"][0]["port"]: s for s in ep["subsets"]}
            assert by_port[80]["addresses"][0]["targetRef"]["name"] == "np-a"
            assert by_port[80]["addresses"][0]["nodeName"] == "node1"
            assert by_port[81]["notReadyAddresses"][0]["targetRef"]["name"] == "np-b"
            assert by_port[80]["ports"][0]["name"] == "web"

            async def slices_ok():
                items, _ = await c.list(SLICES, "default", label_selector="kubernetes.io/service-name=np")
                return items if len(items) == 2 else None
            slices = await wait_for(slices_ok, "two slices")
            for s in slices:
                assert s["metadata"]["name"].startswith("np-")
                assert s["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"] == \
                    "endpointslice-controller.k8s.io"
                assert s["metadata"]["ownerReferences"][0]["uid"] == svc["metadata"]["uid"]
                assert s["addressType"] == "IPv4" and len(s["endpoints"]) == 1
            ready = {s["ports"][0]["port"]: s["endpoints"][0]["conditions"]["ready"] for s in slices}
            assert ready == {80: True, 81: False}

            # a selector that matches nothing: empty Endpoints and one placeholder slice
            await c.create(SVCS, {"metadata": {"name": "none", "namespace": "default"},
                                  "spec": {"selector": {"app": "nothing"}, "ports": [{"port": 80}]}})
            ep = await wait_for(lambda: c.get(EP, "default", "none"), "empty endpoints")
            assert not ep.get("subsets")

            async def placeholder():
                items, _ = await c.list(SLICES, "default", label_selector="kubernetes.io/service-name=none")
                return items if len(items) == 1 else None
            s = (await wait_for(placeholder, "placeholder slice"))[0]
            assert s["endpoints"] in ([], None) and not s.get("ports")

            # selector-less service: hand-made Endpoints are mirrored, never overwritten
            await c.create(SVCS, {"metadata": {"name": "ext", "namespace": "default"},
                                  "spec": {"ports": [{"port": 80}]}})
            await c.create(EP, {"metadata": {"name": "ext", "namespace": "default"},
                                "subsets": [{"addresses": [{"ip": "10.244.9.9"}], "ports": [{"port": 80}]}]})

            async def mirrored():
                items, _ = await c.list(SLICES, "default", label_selector="kubernetes.io/service-name=ext")
                return items if items else None
            s = (await wait_for(mirrored, "mirrored slice"))[0]
            assert s["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"] == \
                "endpointslicemirroring-controller.k8s.io"
            assert s["endpoints"][0]["addresses"] == ["10.244.9.9"]
            ep = await c.get(EP, "default", "ext")
            assert ep["subsets"][0]["addresses"] == [{"ip": "10.244.9.9"}]

            # the kubernetes service
            ep = await wait_for(lambda: c.get(EP, "default", "kubernetes"), "kubernetes endpoints")
            assert ep["subsets"][0]["ports"][0]["port"] == cluster.cluster.api_port
            ks = await wait_for(lambda: c.get(SLICES, "default", "kubernetes"), "kubernetes slice")
            assert ks["endpoints"][0]["addresses"] == [ep["subsets"][0]["addresses"][0]["ip"]]
        finally:
            await c.close()
    run(go())


def test_statefulset_ordered(cluster):
    async def go():
        c = await _client(cluster)
        try:
            await make_node(c, "node1")
            await c.create(STS, {"apiVersion": "apps/v1", "kind": "StatefulSet",
                                 "metadata": {"name": "db", "namespace": "default"},
                                 "spec": {"replicas": 3, "serviceName": "db", "selector": {"matchLabels": {"app": "db"}},
                                          "template": {"metadata": {"labels": {"app": "db"}},
                                                       "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}})
            for i in range(3):
                p = await wait_for(lambda: c.get(PODS, "default", f"db-{i}"), f"db-{i}")
                # the next ordinal does not exist before this one is Running and Ready
                with pytest.raises(ApiError):
                    await c.get(PODS, "default", f"db-{i + 1}")
                assert p["spec"]["hostname"] == f"db-{i}" and p["spec"]["subdomain"] == "db"
                labels = p["metadata"]["labels"]
                assert labels["statefulset.kubernetes.io/pod-name"] == f"db-{i}"
                assert labels["apps.kubernetes.io/pod-index"] == str(i)
                assert labels["controller-revision-hash"].startswith("db-")
                await make_running(c, p)

            async def done():
                s = await c.get(STS, "default", "db")
                st = s.get("status", {})
                return s if st.get("readyReplicas") == 3 and st.get("currentRevision") else None
            s = await wait_for(done, "statefulset ready")
            st = s["status"]
            assert st["currentRevision"] == st["updateRevision"]
            crs, _ = await c.list(CR, "default")
            assert any(r["metadata"]["name"] == st["updateRevision"] for r in crs)
            ev = await _events(c, "db", "SuccessfulCreate")
            assert any(e["message"] == "create Pod db-0 in StatefulSet db successful" for e in ev)
        finally:
            await c.close()
    run(go())


def test_loadbalancer_and_daemonset(cluster):
    async def go():
        c = await _client(cluster)
        try:
            await make_node(c, "node1")
            await c.create(SVCS, {"metadata": {"name": "lb1", "namespace": "default"},
                                  "spec": {"type": "LoadBalancer", "selector": {"a": "b"}, "ports": [{"port": 80}]}})

            async def lb_ip():
                s = await c.get(SVCS, "default", "lb1")
                return (s.get("status", {}).get("loadBalancer") or {}).get("ingress")
            ing = await wait_for(lb_ip, "LB ingress")
            assert ing == [{"ip": "192.0.2.10", "ipMode": "VIP"}]
            await c.create(DS, {"apiVersion": "apps/v1", "kind": "DaemonSet",
                                "metadata": {"name": "agent", "namespace": "default"},
                                "spec": {"selector": {"matchLabels": {"app": "agent"}},
                                         "template": {"metadata": {"labels": {"app": "agent"}},
                                                      "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}})

            async def ds_ok():
                d = await c.get(DS, "default", "agent")
                return d if d.get("status", {}).get("currentNumberScheduled") == 1 else None
            d = await wait_for(ds_ok, "daemonset scheduled")
            assert d["status"]["desiredNumberScheduled"] == 1
            pods = await pods_with(c, "default", "app=agent")
            assert len(pods) == 1 and pods[0]["spec"]["nodeName"] == "node1"
        finally:
            await c.close()
    run(go())


def test_deployment_scale_down(cluster):
    async def go():
        c = await _client(cluster)
        try:
            await make_node(c, "node1")
            await c.create(DEPLOY, web_deployment("small", replicas=3))

            async def three():
                await ready_all(c, "app=small")
                d = await c.get(DEPLOY, "default", "small")
                return d if d.get("status", {}).get("availableReplicas") == 3 else None
            await wait_for(three, "3 available")
            await c.patch(DEPLOY, "default", "small", {"spec": {"replicas": 1}})

            async def one():
                pods = await pods_with(c, "default", "app=small")
                d = await c.get(DEPLOY, "default", "small")
                return d if len(pods) == 1 and d.get("status", {}).get("replicas") == 1 else None
            await wait_for(one, "scaled to 1")
            ev = await _events(c, "small", "ScalingReplicaSet")
            assert any(e["message"].startswith("Scaled down replica set small-") and
                       e["message"].endswith(" from 3 to 1") for e in ev)
        finally:
            await c.close()
    run(go())
