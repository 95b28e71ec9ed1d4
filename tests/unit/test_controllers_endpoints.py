"""Pure parts of the Endpoints, EndpointSlice and mirroring controllers."""
from __future__ import annotations

from tinykube.controllers import endpoints as E
from tinykube.controllers import endpointslice as S
from tinykube.controllers import mirroring as M
from tinykube.controllers.podports import find_port


def svc(name="web", selector=None, ports=None, **spec):
    s = {"metadata": {"name": name, "namespace": "default", "uid": "svc-uid", "labels": {"app": name}},
         "spec": {"selector": selector if selector is not None else {"app": name}, "clusterIP": "10.96.0.5",
                  "ports": ports if ports is not None else [{"name": "http", "port": 80, "targetPort": 8080,
                                                             "protocol": "TCP"}]}}
    s["spec"].update(spec)
    return s


def pod(name, ip, ready=True, ports=None, node="node1", deleting=False, phase="Running", **spec):
    p = {"metadata": {"name": name, "namespace": "default", "uid": f"uid-{name}", "labels": {"app": "web"}},
         "spec": {"nodeName": node, "containers": [{"name": "c", "ports": ports or []}]},
         "status": {"phase": phase, "podIP": ip, "podIPs": [{"ip": ip}] if ip else [],
                    "conditions": [{"type": "Ready", "status": "True" if ready else "False",
                                    "lastTransitionTime": "2024-01-01T00:00:00Z"}]}}
    if deleting:
        p["metadata"]["deletionTimestamp"] = "2024-01-01T00:00:00Z"
    p["spec"].update(spec)
    return p


# ---------------------------------------------------------------- find_port

def test_find_port_numeric_and_named():
    p = pod("a", "10.0.0.1", ports=[{"name": "http", "containerPort": 81, "protocol": "TCP"},
                                     {"name": "dns", "containerPort": 53, "protocol": "UDP"}])
    assert find_port(p, {"port": 80, "targetPort": 9999}) == 9999          # need not be declared
    assert find_port(p, {"port": 80, "targetPort": "http", "protocol": "TCP"}) == 81
    assert find_port(p, {"port": 80, "targetPort": "dns", "protocol": "TCP"}) is None   # protocol must match
    assert find_port(p, {"port": 53, "targetPort": "dns", "protocol": "UDP"}) == 53
    assert find_port(p, {"port": 80, "targetPort": "nope"}) is None
    assert find_port(p, {"port": 80}) == 80


def test_find_port_sidecar_init_container():
    p = pod("a", "10.0.0.1")
    p["spec"]["initContainers"] = [{"name": "side", "restartPolicy": "Always",
                                    "ports": [{"name": "metrics", "containerPort": 9000}]},
                                   {"name": "init", "ports": [{"name": "other", "containerPort": 9001}]}]
    assert find_port(p, {"port": 1, "targetPort": "metrics"}) == 9000
    assert find_port(p, {"port": 1, "targetPort": "other"}) is None


# ---------------------------------------------------------------- Endpoints

def test_named_ports_split_subsets_and_readiness():
    s = svc(ports=[{"name": "web", "port": 80, "targetPort": "http", "protocol": "TCP"}])
    pods = [pod("a", "10.0.0.1", ports=[{"name": "http", "containerPort": 80}]),
            pod("b", "10.0.0.2", ports=[{"name": "http", "containerPort": 81}]),
            pod("c", "10.0.0.3", ready=False, ports=[{"name": "http", "containerPort": 80}]),
            pod("d", "10.0.0.4", ports=[{"name": "other", "containerPort": 80}])]   # no such port: skipped
    subsets = E.compute_subsets(s, pods)
    by_port = {ss["ports"][0]["port"]: ss for ss in subsets}
    assert set(by_port) == {80, 81}
    assert [a["ip"] for a in by_port[80]["addresses"]] == ["10.0.0.1"]
    assert [a["ip"] for a in by_port[80]["notReadyAddresses"]] == ["10.0.0.3"]
    assert [a["ip"] for a in by_port[81]["addresses"]] == ["10.0.0.2"]
    assert by_port[80]["ports"] == [{"name": "web", "port": 80, "protocol": "TCP"}]
    a = by_port[80]["addresses"][0]
    assert a["nodeName"] == "node1"
    assert a["targetRef"] == {"kind": "Pod", "namespace": "default", "name": "a", "uid": "uid-a"}
    assert "hostname" not in a


def test_multiple_ports_share_a_subset_and_sorting_is_bytewise():
    s = svc(ports=[{"name": "a", "port": 80, "targetPort": 80, "protocol": "TCP"},
                   {"name": "b", "port": 443, "targetPort": 443, "protocol": "TCP"}])
    subsets = E.compute_subsets(s, [pod("x", "10.0.0.9"), pod("y", "10.0.0.10")])
    assert len(subsets) == 1
    assert [a["ip"] for a in subsets[0]["addresses"]] == ["10.0.0.10", "10.0.0.9"]
    assert [p["name"] for p in subsets[0]["ports"]] == ["a", "b"]


def test_eligibility_terminal_no_ip_terminating():
    s = svc()
    pods = [pod("ok", "10.0.0.1"), pod("noip", ""), pod("done", "10.0.0.2", phase="Succeeded"),
            pod("failed", "10.0.0.3", phase="Failed"), pod("bye", "10.0.0.4", deleting=True)]
    subsets = E.compute_subsets(s, pods)
    assert [a["ip"] for ss in subsets for a in ss.get("addresses", []) + ss.get("notReadyAddresses", [])] == \
        ["10.0.0.1"]
    # publishNotReadyAddresses: terminating and unready pods are listed as ready
    s2 = svc(publishNotReadyAddresses=True)
    subsets = E.compute_subsets(s2, [pod("bye", "10.0.0.4", deleting=True), pod("nr", "10.0.0.5", ready=False)])
    assert [a["ip"] for a in subsets[0]["addresses"]] == ["10.0.0.4", "10.0.0.5"]
    assert "notReadyAddresses" not in subsets[0]


def test_hostname_only_with_matching_subdomain():
    s = svc(name="web")
    p1 = pod("a", "10.0.0.1", hostname="a", subdomain="web")
    p2 = pod("b", "10.0.0.2", hostname="b", subdomain="other")
    p3 = pod("c", "10.0.0.3", subdomain="web")
    addrs = {a["ip"]: a for a in E.compute_subsets(s, [p1, p2, p3])[0]["addresses"]}
    assert addrs["10.0.0.1"]["hostname"] == "a"
    assert "hostname" not in addrs["10.0.0.2"] and "hostname" not in addrs["10.0.0.3"]


def test_headless_without_ports():
    s = svc(ports=[], clusterIP="None")
    subsets = E.compute_subsets(s, [pod("a", "10.0.0.1")])
    assert subsets == [{"addresses": [subsets[0]["addresses"][0]]}]
    assert "ports" not in subsets[0]
    # a non-headless service without ports gets nothing
    assert E.compute_subsets(svc(ports=[]), [pod("a", "10.0.0.1")]) == []
    ep = E.desired_endpoints(s, [])
    assert ep["metadata"]["labels"]["service.kubernetes.io/headless"] == ""


def test_desired_endpoints_labels_and_empty():
    ep = E.desired_endpoints(svc(), [], "2024-01-01T00:00:00Z")
    assert ep["metadata"]["name"] == "web" and "subsets" not in ep
    assert ep["metadata"]["labels"] == {"app": "web", "endpoints.kubernetes.io/managed-by": "endpoint-controller"}
    assert ep["metadata"]["annotations"] == {"endpoints.kubernetes.io/last-change-trigger-time": "2024-01-01T00:00:00Z"}


def test_truncation_at_1000_keeps_ready_first():
    pods = [pod(f"r{i}", f"10.1.{i // 250}.{i % 250}") for i in range(900)] + \
           [pod(f"n{i}", f"10.2.{i // 250}.{i % 250}", ready=False) for i in range(300)]
    ep = E.desired_endpoints(svc(), pods)
    ss = ep["subsets"]
    assert sum(len(s.get("addresses", [])) for s in ss) == 900
    assert sum(len(s.get("notReadyAddresses", [])) for s in ss) == 100
    assert ep["metadata"]["annotations"][E.OVER_CAPACITY] == "truncated"
    # too many ready: not-ready dropped entirely
    pods = [pod(f"r{i}", f"10.1.{i // 250}.{i % 250}") for i in range(1100)] + [pod("n", "10.9.0.1", ready=False)]
    ep = E.desired_endpoints(svc(), pods)
    assert sum(len(s.get("addresses", [])) for s in ep["subsets"]) == 1000
    assert not any(s.get("notReadyAddresses") for s in ep["subsets"])
    assert E.OVER_CAPACITY not in (E.desired_endpoints(svc(), pods[:10])["metadata"].get("annotations") or {})


def test_truncate_proportional_per_subset():
    subsets = [{"addresses": [{"ip": f"a{i}"} for i in range(600)]},
               {"addresses": [{"ip": f"b{i}"} for i in range(900)]}]
    assert E.truncate_subsets(subsets, 1000)
    assert [len(s["addresses"]) for s in subsets] == [400, 600]


def test_endpoints_equal_ignores_trigger_time():
    a = E.desired_endpoints(svc(), [pod("a", "10.0.0.1")], "2024-01-01T00:00:00Z")
    b = E.desired_endpoints(svc(), [pod("a", "10.0.0.1")], "2025-01-01T00:00:00Z")
    assert E.endpoints_equal(a, b)
    c = E.desired_endpoints(svc(), [pod("a", "10.0.0.2")])
    assert not E.endpoints_equal(a, c)


# ---------------------------------------------------------------- EndpointSlices

def test_slice_endpoint_shape_and_conditions():
    s = svc()
    node = {"metadata": {"name": "node1", "labels": {"topology.kubernetes.io/zone": "z1"}}}
    ep = S.pod_to_endpoint(s, pod("a", "10.0.0.1", hostname="a", subdomain="web"), "IPv4", node)
    assert ep == {"addresses": ["10.0.0.1"], "conditions": {"ready": True, "serving": True, "terminating": False},
                  "hostname": "a", "nodeName": "node1", "zone": "z1",
                  "targetRef": {"kind": "Pod", "namespace": "default", "name": "a", "uid": "uid-a"}}
    t = S.pod_to_endpoint(s, pod("b", "10.0.0.2", deleting=True), "IPv4")
    assert t["conditions"] == {"ready": False, "serving": True, "terminating": True}
    nr = S.pod_to_endpoint(svc(publishNotReadyAddresses=True), pod("c", "10.0.0.3", ready=False), "IPv4")
    assert nr["conditions"] == {"ready": True, "serving": False, "terminating": False}
    assert S.pod_to_endpoint(s, pod("d", "10.0.0.4"), "IPv6") is None


def test_slice_ports_unnamed_is_empty_string():
    s = svc(ports=[{"port": 80, "targetPort": 8080, "protocol": "TCP", "appProtocol": "http"}])
    assert S.endpoint_ports(s, pod("a", "1.1.1.1")) == [{"name": "", "port": 8080, "protocol": "TCP",
                                                          "appProtocol": "http"}]


def test_one_slice_per_port_set_and_labels():
    s = svc(ports=[{"name": "web", "port": 80, "targetPort": "http", "protocol": "TCP"}])
    pods = [pod("a", "10.0.0.1", ports=[{"name": "http", "containerPort": 80}]),
            pod("b", "10.0.0.2", ports=[{"name": "http", "containerPort": 81}])]
    desired = S.desired_endpoints_by_ports(s, pods, "IPv4")
    plan = S.reconcile_slices(s, "IPv4", [], desired)
    assert len(plan.create) == 2 and not plan.update and not plan.delete
    for sl in plan.create:
        md = sl["metadata"]
        assert md["generateName"] == "web-"
        assert md["labels"] == {"app": "web", "kubernetes.io/service-name": "web",
                                "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"}
        assert md["ownerReferences"][0]["kind"] == "Service" and md["ownerReferences"][0]["controller"]
        assert sl["addressType"] == "IPv4" and len(sl["endpoints"]) == 1
    assert sorted(sl["ports"][0]["port"] for sl in plan.create) == [80, 81]


def _named(slices):
    out = []
    for i, s in enumerate(slices):
        s = dict(s, metadata=dict(s["metadata"], name=f"web-{i:05d}"))
        out.append(s)
    return out


def test_max_100_per_slice_and_minimal_churn():
    s = svc()
    pods = [pod(f"p{i}", f"10.0.{i // 200}.{i % 200}") for i in range(250)]
    plan = S.reconcile_slices(s, "IPv4", [], S.desired_endpoints_by_ports(s, pods, "IPv4"))
    assert sorted(len(x["endpoints"]) for x in plan.create) == [50, 100, 100]
    existing = _named(plan.create)
    # nothing changed: nothing to do
    plan2 = S.reconcile_slices(s, "IPv4", existing, S.desired_endpoints_by_ports(s, pods, "IPv4"))
    assert not plan2.create and not plan2.update and not plan2.delete
    # one pod goes away, one new arrives: one or two slices updated, none created
    pods2 = pods[1:] + [pod("new", "10.9.9.9")]
    plan3 = S.reconcile_slices(s, "IPv4", existing, S.desired_endpoints_by_ports(s, pods2, "IPv4"))
    assert not plan3.create and not plan3.delete and 1 <= len(plan3.update) <= 2
    all_ips = sorted(e["addresses"][0] for x in plan3.update for e in x["endpoints"])
    assert "10.9.9.9" in all_ips and "10.0.0.0" not in all_ips


def test_placeholder_slice():
    s = svc()
    plan = S.reconcile_slices(s, "IPv4", [], {})
    assert len(plan.create) == 1
    ph = plan.create[0]
    assert ph["endpoints"] == [] and "ports" not in ph
    existing = _named([ph])
    plan2 = S.reconcile_slices(s, "IPv4", existing, {})
    assert not plan2.create and not plan2.update and not plan2.delete
    # endpoints arrive: the placeholder goes, a real slice comes
    plan3 = S.reconcile_slices(s, "IPv4", existing, S.desired_endpoints_by_ports(s, [pod("a", "1.2.3.4")], "IPv4"))
    assert len(plan3.create) == 1 and [x["metadata"]["name"] for x in plan3.delete] == ["web-00000"]
    # and all endpoints leave again: the real slice is deleted and a placeholder created
    real = _named(plan3.create)
    plan4 = S.reconcile_slices(s, "IPv4", real, {})
    assert len(plan4.delete) == 1 and len(plan4.create) == 1 and plan4.create[0]["endpoints"] == []


def test_headless_slice_label():
    s = svc(clusterIP="None")
    assert S.slice_labels(s)["service.kubernetes.io/headless"] == ""


# ---------------------------------------------------------------- mirroring

def test_mirroring():
    s = svc(name="ext", selector=None)
    s["spec"].pop("selector")
    ep = {"metadata": {"name": "ext", "namespace": "default", "labels": {"x": "y"},
                       "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}", "a": "b"}},
          "subsets": [{"addresses": [{"ip": "192.168.1.1"}], "notReadyAddresses": [{"ip": "192.168.1.2"}],
                       "ports": [{"port": 80}]},
                      {"addresses": [{"ip": "fd00::1"}], "ports": [{"port": 80}]}]}
    assert M.should_mirror(s, ep)
    out = M.desired_mirror_slices(s, ep)
    bodies = [b for v in out.values() for b in v]
    fams = {b["addressType"]: b for b in bodies}
    assert set(fams) == {"IPv4", "IPv6"}
    v4 = fams["IPv4"]
    assert v4["metadata"]["labels"] == {"x": "y", "kubernetes.io/service-name": "ext",
                                        "endpointslice.kubernetes.io/managed-by": "endpointslicemirroring-controller.k8s.io"}
    assert v4["metadata"]["annotations"] == {"a": "b"}
    assert [e["conditions"]["ready"] for e in v4["endpoints"]] == [True, False]
    assert v4["ports"] == [{"name": "", "port": 80, "protocol": "TCP"}]
    # skip-mirror and selector services are not mirrored
    ep2 = dict(ep, metadata=dict(ep["metadata"], labels={"endpointslice.kubernetes.io/skip-mirror": "true"}))
    assert not M.should_mirror(s, ep2)
    assert not M.should_mirror(svc(), ep)
    assert not M.should_mirror(None, ep)


def test_kubernetes_service_objects():
    ep = M.kubernetes_endpoints("192.168.0.5", 6443)
    assert ep["metadata"]["labels"] == {"endpointslice.kubernetes.io/skip-mirror": "true"}
    assert ep["subsets"] == [{"addresses": [{"ip": "192.168.0.5"}],
                              "ports": [{"name": "https", "port": 6443, "protocol": "TCP"}]}]
    sl = M.kubernetes_slice("192.168.0.5", 6443)
    assert sl["metadata"]["name"] == "kubernetes"
    assert sl["metadata"]["labels"] == {"kubernetes.io/service-name": "kubernetes"}
    assert sl["endpoints"][0]["addresses"] == ["192.168.0.5"]
