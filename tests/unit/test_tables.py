"""Server-side Table output: columns and cells as upstream Kubernetes' printers produce them."""
from __future__ import annotations

import copy
import json
from datetime import datetime, timedelta, timezone

import pytest

from tinykube.api import resources
from tinykube.api.resources import Resource
from tinykube.api.tables import (column_definitions, format_label_selector, format_labels,
                                 human_duration, row_cells, to_table)

NOW = datetime(2024, 6, 1, 12, 0, 0, tzinfo=timezone.utc)


def ts(**ago) -> str:
    """An RFC 3339 timestamp `ago` before NOW."""
    return (NOW - timedelta(**ago)).strftime("%Y-%m-%dT%H:%M:%SZ")


def res(plural: str, group: str = "") -> Resource:
    return resources.get(plural, group)


def cols(plural: str, group: str = "") -> list[str]:
    return [c["name"] for c in column_definitions(res(plural, group))]


def wide(plural: str, group: str = "") -> list[str]:
    return [c["name"] for c in column_definitions(res(plural, group)) if c["priority"] > 0]


def cells(plural: str, obj: dict, group: str = "") -> dict:
    """Cells keyed by column name."""
    r = res(plural, group)
    values = row_cells(r, obj, NOW)
    names = [c["name"] for c in column_definitions(r)]
    assert len(values) == len(names)
    return dict(zip(names, values))


def meta(name: str = "x", **kw) -> dict:
    m = {"name": name, "namespace": "default", "creationTimestamp": ts(seconds=5)}
    m.update(kw)
    return m


# ------------------------------------------------------------------------------ human durations

@pytest.mark.parametrize("d,want", [
    (timedelta(seconds=1), "1s"),
    (timedelta(seconds=70), "70s"),
    (timedelta(seconds=190), "3m10s"),
    (timedelta(minutes=70), "70m"),
    (timedelta(hours=47), "47h"),
    (timedelta(hours=49), "2d1h"),
    (timedelta(hours=8 * 24 + 2), "8d"),
    (timedelta(hours=367 * 24), "367d"),
    (timedelta(hours=365 * 2 * 24 + 25), "2y1d"),
    (timedelta(hours=365 * 8 * 24 + 2), "8y"),
    # boundaries
    (timedelta(seconds=-2), "<invalid>"),
    (timedelta(seconds=-2) + timedelta(microseconds=1), "0s"),
    (timedelta(0), "0s"),
    (timedelta(seconds=1) - timedelta(milliseconds=1), "0s"),
    (timedelta(minutes=2) - timedelta(milliseconds=1), "119s"),
    (timedelta(minutes=2), "2m"),
    (timedelta(minutes=2, seconds=1), "2m1s"),
    (timedelta(minutes=10) - timedelta(milliseconds=1), "9m59s"),
    (timedelta(minutes=10), "10m"),
    (timedelta(minutes=10, seconds=1), "10m"),
    (timedelta(hours=3) - timedelta(milliseconds=1), "179m"),
    (timedelta(hours=3), "3h"),
    (timedelta(hours=3, minutes=1), "3h1m"),
    (timedelta(hours=8) - timedelta(milliseconds=1), "7h59m"),
    (timedelta(hours=8), "8h"),
    (timedelta(hours=8, minutes=59), "8h"),
    (timedelta(days=2) - timedelta(milliseconds=1), "47h"),
    (timedelta(days=2), "2d"),
    (timedelta(days=2, hours=1), "2d1h"),
    (timedelta(days=8) - timedelta(milliseconds=1), "7d23h"),
    (timedelta(days=8), "8d"),
    (timedelta(days=8, hours=23), "8d"),
    (timedelta(days=730) - timedelta(milliseconds=1), "729d"),
    (timedelta(days=730), "2y"),
    (timedelta(days=731) - timedelta(milliseconds=1), "2y"),
    (timedelta(days=731), "2y1d"),
    (timedelta(days=3 * 365), "3y"),
    (timedelta(days=8 * 365) - timedelta(milliseconds=1), "7y364d"),
    (timedelta(days=8 * 365), "8y"),
    (timedelta(days=9 * 365), "9y"),
])
def test_human_duration(d, want):
    assert human_duration(d) == want
    assert human_duration(d.total_seconds()) == want


def test_human_duration_float_seconds():
    assert human_duration(5) == "5s"
    assert human_duration(180) == "3m"
    assert human_duration(200) == "3m20s"
    assert human_duration(62 * 60) == "62m"
    assert human_duration(2 * 86400) == "2d"
    assert human_duration(-1.5) == "0s"
    assert human_duration(-2.5) == "<invalid>"


# ------------------------------------------------------------------------------ label helpers

def test_format_labels_and_selectors():
    assert format_labels({"b": "2", "a": "1"}) == "a=1,b=2"
    assert format_labels({}) == "<none>"
    assert format_labels(None) == "<none>"
    assert format_label_selector(None) == "<none>"
    assert format_label_selector({}) == "<none>"
    assert format_label_selector({"matchLabels": {"z": "1", "app": "web"}}) == "app=web,z=1"
    sel = {"matchLabels": {"app": "web"},
           "matchExpressions": [{"key": "tier", "operator": "In", "values": ["fe", "be"]},
                                {"key": "env", "operator": "NotIn", "values": ["prod"]},
                                {"key": "canary", "operator": "DoesNotExist"},
                                {"key": "zone", "operator": "Exists"}]}
    assert format_label_selector(sel) == "app=web,!canary,env notin (prod),tier in (be,fe),zone"


# ------------------------------------------------------------------------------ column sets

def test_column_sets_match_upstream():
    assert cols("services") == ["Name", "Type", "Cluster-IP", "External-IP", "Port(s)", "Age",
                                "Selector"]
    assert wide("services") == ["Selector"]
    assert cols("pods") == ["Name", "Ready", "Status", "Restarts", "Age", "IP", "Node",
                            "Nominated Node", "Readiness Gates"]
    assert wide("pods") == ["IP", "Node", "Nominated Node", "Readiness Gates"]
    assert cols("deployments", "apps") == ["Name", "Ready", "Up-to-date", "Available", "Age",
                                           "Containers", "Images", "Selector"]
    assert wide("deployments", "apps") == ["Containers", "Images", "Selector"]
    assert cols("replicasets", "apps") == ["Name", "Desired", "Current", "Ready", "Age",
                                           "Containers", "Images", "Selector"]
    assert cols("statefulsets", "apps") == ["Name", "Ready", "Age", "Containers", "Images"]
    assert cols("daemonsets", "apps") == ["Name", "Desired", "Current", "Ready", "Up-to-date",
                                          "Available", "Node Selector", "Age", "Containers",
                                          "Images", "Selector"]
    assert wide("daemonsets", "apps") == ["Containers", "Images", "Selector"]
    assert cols("endpoints") == ["Name", "Endpoints", "Age"]
    assert cols("endpointslices", "discovery.k8s.io") == ["Name", "AddressType", "Ports",
                                                          "Endpoints", "Age"]
    assert cols("ingresses", "networking.k8s.io") == ["Name", "Class", "Hosts", "Address",
                                                      "Ports", "Age"]
    assert cols("ingressclasses", "networking.k8s.io") == ["Name", "Controller", "Parameters",
                                                           "Age"]
    assert cols("nodes") == ["Name", "Status", "Roles", "Age", "Version", "Internal-IP",
                             "External-IP", "OS-Image", "Kernel-Version", "Container-Runtime"]
    assert wide("nodes") == ["Internal-IP", "External-IP", "OS-Image", "Kernel-Version",
                             "Container-Runtime"]
    assert cols("namespaces") == ["Name", "Status", "Age"]
    event_cols = ["Last Seen", "Type", "Reason", "Object", "Subobject", "Source", "Message",
                  "First Seen", "Count", "Name"]
    assert cols("events") == event_cols
    assert cols("events", "events.k8s.io") == event_cols
    assert wide("events") == ["Subobject", "Source", "First Seen", "Count", "Name"]
    assert cols("configmaps") == ["Name", "Data", "Age"]
    assert cols("secrets") == ["Name", "Type", "Data", "Age"]
    assert cols("serviceaccounts") == ["Name", "Secrets", "Age"]
    assert cols("leases", "coordination.k8s.io") == ["Name", "Holder", "Age"]
    assert cols("controllerrevisions", "apps") == ["Name", "Controller", "Revision", "Age"]


def test_column_definition_shape():
    for r in resources.RESOURCES:
        defs = column_definitions(r)
        assert defs, r.kind
        for d in defs:
            assert set(d) == {"name", "type", "format", "description", "priority"}
            assert d["type"] in ("string", "integer", "date", "number", "boolean")
            assert d["priority"] in (0, 1)
        names = [d for d in defs if d["name"] == "Name"]
        assert len(names) == 1 and names[0]["format"] == "name"
    rs = {c["name"]: c for c in column_definitions(res("replicasets", "apps"))}
    assert rs["Desired"]["type"] == "integer"
    assert rs["Name"]["description"].startswith("Name must be unique within a namespace")
    assert rs["Age"]["description"].startswith("CreationTimestamp is a timestamp")


def test_column_definitions_are_copies():
    r = res("services")
    column_definitions(r)[0]["name"] = "mutated"
    assert column_definitions(r)[0]["name"] == "Name"


def test_unknown_kind_gets_default_table():
    widget = Resource("example.com", "v1", "widgets", "Widget")
    defs = column_definitions(widget)
    assert [(d["name"], d["type"], d["format"]) for d in defs] == [
        ("Name", "string", "name"), ("Created At", "date", "")]
    obj = {"metadata": {"name": "w1", "creationTimestamp": "2024-05-01T10:00:00+02:00"}}
    assert row_cells(widget, obj, NOW) == ["w1", "2024-05-01T08:00:00Z"]
    assert row_cells(widget, {"metadata": {"name": "w2"}}, NOW) == ["w2", "0001-01-01T00:00:00Z"]


# ------------------------------------------------------------------------------ Age

def test_age_cells():
    c = cells("configmaps", {"metadata": {"name": "a", "creationTimestamp": ts(minutes=3)}})
    assert c["Age"] == "3m"
    c = cells("configmaps", {"metadata": {"name": "a", "creationTimestamp": ts(days=2)}})
    assert c["Age"] == "2d"
    c = cells("configmaps", {"metadata": {"name": "a"}})
    assert c["Age"] == "<unknown>"
    c = cells("configmaps", {"metadata": {"name": "a",
                                          "creationTimestamp": "2024-06-01T11:59:54.500000Z"}})
    assert c["Age"] == "5s"


# ------------------------------------------------------------------------------ Service

def svc(spec: dict, status: dict | None = None) -> dict:
    return {"kind": "Service", "apiVersion": "v1", "metadata": meta("web"), "spec": spec,
            "status": status or {}}


def test_service_cluster_ip():
    c = cells("services", svc({"type": "ClusterIP", "clusterIP": "10.96.0.13",
                               "clusterIPs": ["10.96.0.13"],
                               "ports": [{"port": 80, "protocol": "TCP", "targetPort": 8080}],
                               "selector": {"tier": "fe", "app": "web"}}))
    assert c == {"Name": "web", "Type": "ClusterIP", "Cluster-IP": "10.96.0.13",
                 "External-IP": "<none>", "Port(s)": "80/TCP", "Age": "5s",
                 "Selector": "app=web,tier=fe"}


def test_service_headless_and_without_ports_or_selector():
    c = cells("services", svc({"type": "ClusterIP", "clusterIP": "None", "clusterIPs": ["None"]}))
    assert c["Cluster-IP"] == "None"
    assert c["Port(s)"] == "<none>"
    assert c["Selector"] == "<none>"


def test_service_cluster_ip_falls_back_to_clusterIP_field():
    c = cells("services", svc({"type": "ClusterIP", "clusterIP": "10.96.0.9"}))
    assert c["Cluster-IP"] == "10.96.0.9"


def test_service_node_port_and_multiple_ports():
    c = cells("services", svc({
        "type": "NodePort", "clusterIP": "10.96.0.2", "externalIPs": ["1.2.3.4", "5.6.7.8"],
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP", "nodePort": 30080},
                  {"name": "dns", "port": 53, "protocol": "UDP", "nodePort": 30053},
                  {"name": "x", "port": 9000, "protocol": "SCTP"}]}))
    assert c["Type"] == "NodePort"
    assert c["External-IP"] == "1.2.3.4,5.6.7.8"
    assert c["Port(s)"] == "8080:30080/TCP,53:30053/UDP,9000/SCTP"


def test_service_load_balancer_external_ip():
    spec = {"type": "LoadBalancer", "clusterIP": "10.96.0.3",
            "ports": [{"port": 80, "protocol": "TCP", "nodePort": 31000}]}
    assert cells("services", svc(spec))["External-IP"] == "<pending>"
    status = {"loadBalancer": {"ingress": [{"ip": "192.0.2.20"}, {"hostname": "lb.example.com"},
                                           {"ip": "192.0.2.10"}, {"ip": "192.0.2.10"}]}}
    # a sorted set of IPs / hostnames, never clipped (the server prints the wide form)
    assert cells("services", svc(spec, status))["External-IP"] == \
        "192.0.2.10,192.0.2.20,lb.example.com"
    spec2 = dict(spec, externalIPs=["203.0.113.1"])
    assert cells("services", svc(spec2, status))["External-IP"] == \
        "192.0.2.10,192.0.2.20,lb.example.com,203.0.113.1"
    assert cells("services", svc(spec2))["External-IP"] == "203.0.113.1"
    assert cells("services", svc(spec, status))["Port(s)"] == "80:31000/TCP"


def test_service_external_name():
    c = cells("services", svc({"type": "ExternalName", "externalName": "db.example.com"}))
    assert c["Cluster-IP"] == "<none>"
    assert c["External-IP"] == "db.example.com"
    assert c["Port(s)"] == "<none>"


# ------------------------------------------------------------------------------ Pod

def pod(status: dict, spec: dict | None = None, **meta_kw) -> dict:
    return {"kind": "Pod", "apiVersion": "v1", "metadata": meta("p", **meta_kw),
            "spec": spec or {"containers": [{"name": "c", "image": "nginx"}]},
            "status": status}


def running(name="c", ready=True, restarts=0, last=None) -> dict:
    cs = {"name": name, "ready": ready, "restartCount": restarts,
          "state": {"running": {"startedAt": ts(minutes=1)}}}
    if last:
        cs["lastState"] = {"terminated": {"exitCode": 1, "reason": "Error", "finishedAt": last}}
    return cs


def waiting(reason: str, name="c", restarts=0, last=None) -> dict:
    cs = {"name": name, "ready": False, "restartCount": restarts,
          "state": {"waiting": {"reason": reason}}}
    if last:
        cs["lastState"] = {"terminated": {"exitCode": 1, "reason": "Error", "finishedAt": last}}
    return cs


def terminated(name="c", exit_code=0, reason=None, signal=None) -> dict:
    t = {"exitCode": exit_code, "finishedAt": ts(seconds=30)}
    if reason:
        t["reason"] = reason
    if signal:
        t["signal"] = signal
    return {"name": name, "ready": False, "restartCount": 0, "state": {"terminated": t}}


def test_pod_running():
    p = pod({"phase": "Running", "podIP": "10.244.0.7", "podIPs": [{"ip": "10.244.0.7"}],
             "containerStatuses": [running()]},
            spec={"nodeName": "n1", "containers": [{"name": "c", "image": "nginx"}]})
    assert cells("pods", p) == {"Name": "p", "Ready": "1/1", "Status": "Running",
                                "Restarts": "0", "Age": "5s", "IP": "10.244.0.7", "Node": "n1",
                                "Nominated Node": "<none>", "Readiness Gates": "<none>"}


def test_pod_wide_cells_defaults_and_ip_fallback():
    c = cells("pods", pod({"phase": "Pending"}))
    assert (c["IP"], c["Node"], c["Nominated Node"]) == ("<none>", "<none>", "<none>")
    c = cells("pods", pod({"phase": "Pending", "podIP": "10.0.0.5", "nominatedNodeName": "n2"}))
    assert (c["IP"], c["Nominated Node"]) == ("10.0.0.5", "n2")


@pytest.mark.parametrize("reason", ["ContainerCreating", "CrashLoopBackOff", "ErrImagePull",
                                    "ImagePullBackOff", "CreateContainerConfigError"])
def test_pod_waiting_reasons(reason):
    c = cells("pods", pod({"phase": "Pending", "containerStatuses": [waiting(reason)]}))
    assert c["Status"] == reason
    assert c["Ready"] == "0/1"


def test_pod_pending_without_statuses_shows_phase():
    assert cells("pods", pod({"phase": "Pending"}))["Status"] == "Pending"
    assert cells("pods", pod({}))["Status"] == ""


def test_pod_restarts_with_last_restart_age():
    p = pod({"phase": "Running",
             "containerStatuses": [waiting("CrashLoopBackOff", restarts=3, last=ts(minutes=2))]})
    c = cells("pods", p)
    assert c["Status"] == "CrashLoopBackOff"
    assert c["Restarts"] == "3 (2m ago)"
    # restarts without a known last termination: the bare count
    p = pod({"phase": "Running", "containerStatuses": [running(restarts=4)]})
    assert cells("pods", p)["Restarts"] == "4"


def test_pod_restarts_sum_and_latest_restart_across_containers():
    spec = {"containers": [{"name": "a"}, {"name": "b"}]}
    p = pod({"phase": "Running", "containerStatuses": [
        running("a", restarts=2, last=ts(hours=5)),
        running("b", restarts=1, last=ts(seconds=40))]}, spec=spec)
    c = cells("pods", p)
    assert c["Restarts"] == "3 (40s ago)"
    assert c["Ready"] == "2/2"


def test_pod_terminated_reasons():
    assert cells("pods", pod({"phase": "Succeeded",
                              "containerStatuses": [terminated(reason="Completed")]}))["Status"] \
        == "Completed"
    assert cells("pods", pod({"phase": "Failed", "containerStatuses": [
        terminated(exit_code=1, reason="Error")]}))["Status"] == "Error"
    assert cells("pods", pod({"phase": "Failed", "containerStatuses": [
        terminated(exit_code=137)]}))["Status"] == "ExitCode:137"
    assert cells("pods", pod({"phase": "Failed", "containerStatuses": [
        terminated(exit_code=137, signal=9)]}))["Status"] == "Signal:9"
    assert cells("pods", pod({"phase": "Failed", "reason": "Evicted"}))["Status"] == "Evicted"


def test_pod_first_container_reason_wins():
    spec = {"containers": [{"name": "a"}, {"name": "b"}]}
    p = pod({"phase": "Running", "containerStatuses": [waiting("ImagePullBackOff", "a"),
                                                        waiting("CrashLoopBackOff", "b")]},
            spec=spec)
    assert cells("pods", p)["Status"] == "ImagePullBackOff"


def test_pod_completed_with_running_container():
    spec = {"containers": [{"name": "a"}, {"name": "b"}]}
    st = {"phase": "Running",
          "containerStatuses": [terminated("a", reason="Completed"), running("b")]}
    c = cells("pods", pod(dict(st, conditions=[{"type": "Ready", "status": "True"}]), spec=spec))
    assert (c["Status"], c["Ready"]) == ("Running", "1/2")
    c = cells("pods", pod(dict(st, conditions=[{"type": "Ready", "status": "False"}]), spec=spec))
    assert c["Status"] == "NotReady"


def test_pod_init_containers():
    spec = {"initContainers": [{"name": "i1"}, {"name": "i2"}], "containers": [{"name": "c"}]}
    pending_main = [waiting("PodInitializing")]
    # first init container running: Init:0/2
    st = {"phase": "Pending",
          "initContainerStatuses": [running("i1", ready=False), waiting("PodInitializing", "i2")],
          "containerStatuses": pending_main}
    assert cells("pods", pod(st, spec=spec))["Status"] == "Init:0/2"
    # first done, second running: Init:1/2
    st["initContainerStatuses"] = [terminated("i1", reason="Completed"), running("i2", False)]
    assert cells("pods", pod(st, spec=spec))["Status"] == "Init:1/2"
    # waiting with a reason
    st["initContainerStatuses"] = [waiting("CrashLoopBackOff", "i1", restarts=2,
                                           last=ts(minutes=1))]
    c = cells("pods", pod(st, spec=spec))
    assert c["Status"] == "Init:CrashLoopBackOff"
    assert c["Restarts"] == "2 (60s ago)"
    # failed init
    st["initContainerStatuses"] = [terminated("i1", exit_code=1, reason="Error")]
    assert cells("pods", pod(st, spec=spec))["Status"] == "Init:Error"
    st["initContainerStatuses"] = [terminated("i1", exit_code=2)]
    assert cells("pods", pod(st, spec=spec))["Status"] == "Init:ExitCode:2"
    st["initContainerStatuses"] = [terminated("i1", exit_code=2, signal=15)]
    assert cells("pods", pod(st, spec=spec))["Status"] == "Init:Signal:15"
    # all init done: the main containers decide
    st = {"phase": "Running",
          "initContainerStatuses": [terminated("i1", reason="Completed"),
                                    terminated("i2", reason="Completed")],
          "containerStatuses": [running("c")]}
    c = cells("pods", pod(st, spec=spec))
    assert (c["Status"], c["Ready"]) == ("Running", "1/1")


def test_pod_sidecar_init_container_counts_in_ready():
    spec = {"initContainers": [{"name": "side", "restartPolicy": "Always"}],
            "containers": [{"name": "c"}]}
    side = running("side", restarts=1, last=ts(minutes=5))
    side["started"] = True
    st = {"phase": "Running", "conditions": [{"type": "Initialized", "status": "True"}],
          "initContainerStatuses": [side], "containerStatuses": [running("c")]}
    c = cells("pods", pod(st, spec=spec))
    assert c["Ready"] == "2/2"
    assert c["Status"] == "Running"
    assert c["Restarts"] == "1 (5m ago)"


def test_pod_terminating_unknown_and_scheduling_gated():
    deleting = {"deletionTimestamp": ts(seconds=1)}
    c = cells("pods", pod({"phase": "Running", "containerStatuses": [running()]}, **deleting))
    assert c["Status"] == "Terminating"
    # a terminal pod being deleted keeps its terminal status
    c = cells("pods", pod({"phase": "Succeeded",
                           "containerStatuses": [terminated(reason="Completed")]}, **deleting))
    assert c["Status"] == "Completed"
    c = cells("pods", pod({"phase": "Running", "reason": "NodeLost"}, **deleting))
    assert c["Status"] == "Unknown"
    c = cells("pods", pod({"phase": "Running", "reason": "NodeLost"}))
    assert c["Status"] == "NodeLost"
    c = cells("pods", pod({"phase": "Pending", "conditions": [
        {"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}]}))
    assert c["Status"] == "SchedulingGated"


def test_pod_readiness_gates():
    spec = {"containers": [{"name": "c"}],
            "readinessGates": [{"conditionType": "example.com/a"},
                               {"conditionType": "example.com/b"},
                               {"conditionType": "example.com/c"}]}
    st = {"phase": "Running", "containerStatuses": [running()],
          "conditions": [{"type": "example.com/a", "status": "True"},
                         {"type": "example.com/b", "status": "False"}]}
    assert cells("pods", pod(st, spec=spec))["Readiness Gates"] == "1/3"


def test_pod_row_conditions_for_finished_pods():
    r = res("pods")
    t = to_table(r, [pod({"phase": "Succeeded"}), pod({"phase": "Failed"}),
                     pod({"phase": "Running"})], now=NOW)
    assert t["rows"][0]["conditions"] == [{"type": "Completed", "status": "True",
                                           "reason": "Succeeded",
                                           "message": "The pod has completed successfully."}]
    assert t["rows"][1]["conditions"][0]["reason"] == "Failed"
    assert "conditions" not in t["rows"][2]


# ------------------------------------------------------------------------------ Endpoints

def test_endpoints_none_and_simple():
    assert cells("endpoints", {"metadata": meta("web")})["Endpoints"] == "<none>"
    assert cells("endpoints", {"metadata": meta("web"), "subsets": []})["Endpoints"] == "<none>"
    ep = {"metadata": meta("web"), "subsets": [
        {"addresses": [{"ip": "10.244.0.7"}, {"ip": "10.244.1.8"}],
         "ports": [{"port": 8080, "protocol": "TCP"}]}]}
    assert cells("endpoints", ep) == {"Name": "web", "Endpoints": "10.244.0.7:8080,10.244.1.8:8080",
                                      "Age": "5s"}


def test_endpoints_ports_times_addresses_truncated():
    ep = {"metadata": meta("web"), "subsets": [
        {"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}],
         "ports": [{"name": "http", "port": 80}, {"name": "https", "port": 443}]},
        {"addresses": [{"ip": "10.0.0.3"}], "ports": [{"name": "http", "port": 8080}]}]}
    # 2 ports x 2 addresses + 1 = 5 endpoints; the first 3 then "+ 2 more..."
    assert cells("endpoints", ep)["Endpoints"] == "10.0.0.1:80,10.0.0.2:80,10.0.0.1:443 + 2 more..."


def test_endpoints_exactly_three_no_suffix():
    ep = {"metadata": meta("web"), "subsets": [
        {"addresses": [{"ip": f"10.0.0.{i}"} for i in (1, 2, 3)], "ports": [{"port": 80}]}]}
    assert cells("endpoints", ep)["Endpoints"] == "10.0.0.1:80,10.0.0.2:80,10.0.0.3:80"


def test_endpoints_headless_without_ports_and_ipv6():
    ep = {"metadata": meta("h"), "subsets": [
        {"addresses": [{"ip": f"10.0.0.{i}"} for i in range(1, 6)]}]}
    assert cells("endpoints", ep)["Endpoints"] == "10.0.0.1,10.0.0.2,10.0.0.3 + 2 more..."
    ep = {"metadata": meta("v6"), "subsets": [
        {"addresses": [{"ip": "fd00::1"}], "ports": [{"port": 80}]}]}
    assert cells("endpoints", ep)["Endpoints"] == "[fd00::1]:80"


def test_endpoints_subset_without_addresses_is_empty_string():
    ep = {"metadata": meta("web"), "subsets": [
        {"notReadyAddresses": [{"ip": "10.0.0.1"}], "ports": [{"port": 80}]}]}
    assert cells("endpoints", ep)["Endpoints"] == ""


# ------------------------------------------------------------------------------ EndpointSlice

def eps(ports, endpoints, address_type="IPv4") -> dict:
    return {"metadata": meta("web-abc12"), "addressType": address_type, "ports": ports,
            "endpoints": endpoints}


def test_endpointslice_cells():
    c = cells("endpointslices", eps([{"name": "http", "port": 80}, {"name": "https", "port": 443}],
                                    [{"addresses": ["10.0.0.1"]}, {"addresses": ["10.0.0.2"]}]),
              "discovery.k8s.io")
    assert c == {"Name": "web-abc12", "AddressType": "IPv4", "Ports": "80,443",
                 "Endpoints": "10.0.0.1,10.0.0.2", "Age": "5s"}


def test_endpointslice_unset_and_truncation():
    c = cells("endpointslices", eps(None, None), "discovery.k8s.io")
    assert (c["Ports"], c["Endpoints"]) == ("<unset>", "<unset>")
    c = cells("endpointslices", eps([{"name": "a", "port": 1}, {"name": "b"}, {},
                                     {"name": "d", "port": 4}, {"port": 5}],
                                    [{"addresses": [f"10.0.0.{i}"]} for i in range(1, 6)]),
              "discovery.k8s.io")
    assert c["Ports"] == "1,b,* + 2 more..."
    assert c["Endpoints"] == "10.0.0.1,10.0.0.2,10.0.0.3 + 2 more..."


# ------------------------------------------------------------------------------ Ingress

def ing(spec: dict, status: dict | None = None) -> dict:
    return {"metadata": meta("ing"), "spec": spec, "status": status or {}}


def test_ingress_cells():
    c = cells("ingresses", ing({"rules": [{"http": {}}]}), "networking.k8s.io")
    assert c == {"Name": "ing", "Class": "<none>", "Hosts": "*", "Address": "", "Ports": "80",
                 "Age": "5s"}
    c = cells("ingresses", ing(
        {"ingressClassName": "nginx", "tls": [{"hosts": ["a.example.com"]}],
         "rules": [{"host": "a.example.com"}, {"host": "b.example.com"}]},
        {"loadBalancer": {"ingress": [{"ip": "192.0.2.9"}, {"hostname": "lb.example"},
                                      {"ip": "192.0.2.1"}]}}), "networking.k8s.io")
    assert c["Class"] == "nginx"
    assert c["Hosts"] == "a.example.com,b.example.com"
    assert c["Address"] == "192.0.2.1,192.0.2.9,lb.example"
    assert c["Ports"] == "80, 443"


def test_ingress_hosts_truncation():
    rules = [{"host": f"h{i}.example"} for i in range(1, 6)]
    c = cells("ingresses", ing({"rules": rules}), "networking.k8s.io")
    assert c["Hosts"] == "h1.example,h2.example,h3.example + 2 more..."
    assert cells("ingresses", ing({}), "networking.k8s.io")["Hosts"] == "*"


def test_ingressclass_cells():
    obj = {"metadata": meta("nginx"), "spec": {"controller": "k8s.io/ingress-nginx"}}
    c = cells("ingressclasses", obj, "networking.k8s.io")
    assert c == {"Name": "nginx", "Controller": "k8s.io/ingress-nginx", "Parameters": "<none>",
                 "Age": "5s"}
    obj["spec"]["parameters"] = {"apiGroup": "k8s.example.com", "kind": "IngressParameters",
                                 "name": "external-lb"}
    assert cells("ingressclasses", obj, "networking.k8s.io")["Parameters"] == \
        "IngressParameters.k8s.example.com/external-lb"
    obj["spec"]["parameters"] = {"kind": "ConfigMap", "name": "cfg"}
    assert cells("ingressclasses", obj, "networking.k8s.io")["Parameters"] == "ConfigMap/cfg"


# ------------------------------------------------------------------------------ Node

def node(conditions, labels=None, unschedulable=False, **status) -> dict:
    return {"metadata": meta("n1", labels=labels or {}),
            "spec": {"unschedulable": unschedulable} if unschedulable else {},
            "status": dict(conditions=conditions, **status)}


def test_node_status_and_roles():
    ready = [{"type": "MemoryPressure", "status": "False"}, {"type": "Ready", "status": "True"}]
    c = cells("nodes", node(ready, nodeInfo={"kubeletVersion": "v1.33.1"}))
    assert (c["Status"], c["Roles"], c["Version"]) == ("Ready", "<none>", "v1.33.1")
    c = cells("nodes", node([{"type": "Ready", "status": "False"}]))
    assert c["Status"] == "NotReady"
    c = cells("nodes", node([{"type": "Ready", "status": "Unknown"}], unschedulable=True))
    assert c["Status"] == "NotReady,SchedulingDisabled"
    c = cells("nodes", node([], unschedulable=True))
    assert c["Status"] == "Unknown,SchedulingDisabled"
    labels = {"node-role.kubernetes.io/control-plane": "", "node-role.kubernetes.io/": "",
              "kubernetes.io/role": "edge", "node-role.kubernetes.io/worker": ""}
    assert cells("nodes", node(ready, labels=labels))["Roles"] == "control-plane,edge,worker"


def test_node_wide_cells():
    n = node([{"type": "Ready", "status": "True"}],
             addresses=[{"type": "Hostname", "address": "n1"},
                        {"type": "InternalIP", "address": "172.18.0.2"}],
             nodeInfo={"kubeletVersion": "v1.33.1", "osImage": "Debian GNU/Linux 12 (bookworm)",
                       "kernelVersion": "6.1.0", "containerRuntimeVersion": "tinykube://0.1.0"})
    c = cells("nodes", n)
    assert c["Internal-IP"] == "172.18.0.2"
    assert c["External-IP"] == "<none>"
    assert c["OS-Image"] == "Debian GNU/Linux 12 (bookworm)"
    assert c["Kernel-Version"] == "6.1.0"
    assert c["Container-Runtime"] == "tinykube://0.1.0"
    c = cells("nodes", node([]))
    assert (c["OS-Image"], c["Kernel-Version"], c["Container-Runtime"]) == \
        ("<unknown>",) * 3
    assert c["Version"] == ""


# ------------------------------------------------------------------------------ Events

def test_core_event_cells():
    ev = {"kind": "Event", "apiVersion": "v1", "metadata": meta("web-1.17a"),
          "involvedObject": {"kind": "Pod", "name": "web-1", "namespace": "default",
                             "fieldPath": "spec.containers{web}"},
          "reason": "Pulled", "message": "  Successfully pulled image\n", "type": "Normal",
          "source": {"component": "kubelet", "host": "n1"},
          "firstTimestamp": ts(minutes=10), "lastTimestamp": ts(minutes=2), "count": 3}
    assert cells("events", ev) == {
        "Last Seen": "2m", "Type": "Normal", "Reason": "Pulled", "Object": "pod/web-1",
        "Subobject": "spec.containers{web}", "Source": "kubelet, n1",
        "Message": "Successfully pulled image", "First Seen": "10m", "Count": 3,
        "Name": "web-1.17a"}


def test_core_event_defaults():
    ev = {"metadata": meta("e"), "involvedObject": {"kind": "Node"},
          "reason": "Starting", "type": "Normal", "message": "m",
          "eventTime": "2024-06-01T11:59:30.123456Z", "reportingComponent": "kube-proxy",
          "reportingInstance": "kube-proxy-n1"}
    c = cells("events", ev)
    assert c["Object"] == "node"
    assert c["First Seen"] == "29s"
    assert c["Last Seen"] == "29s"       # no lastTimestamp: same as first
    assert c["Count"] == 1               # singleton event
    assert c["Source"] == "kube-proxy, kube-proxy-n1"
    c = cells("events", {"metadata": meta("e"), "involvedObject": {"kind": "Pod", "name": "p"},
                         "source": {"component": "default-scheduler"}})
    assert c["Source"] == "default-scheduler"
    assert c["Last Seen"] == "<unknown>" and c["First Seen"] == "<unknown>"


def test_events_k8s_io_event_cells():
    ev = {"kind": "Event", "apiVersion": "events.k8s.io/v1", "metadata": meta("web.1"),
          "regarding": {"kind": "Deployment", "name": "web", "fieldPath": ""},
          "note": "Scaled up replica set web-abc to 2", "reason": "ScalingReplicaSet",
          "type": "Normal", "eventTime": ts(minutes=20),
          "reportingController": "deployment-controller", "reportingInstance": "",
          "series": {"count": 4, "lastObservedTime": ts(minutes=3)}}
    c = cells("events", ev, "events.k8s.io")
    assert c["Object"] == "deployment/web"
    assert c["Message"] == "Scaled up replica set web-abc to 2"
    assert c["Source"] == "deployment-controller"
    assert (c["First Seen"], c["Last Seen"], c["Count"]) == ("20m", "3m", 4)
    ev2 = {"metadata": meta("e"), "regarding": {"kind": "Pod", "name": "p"}, "note": "x",
           "deprecatedFirstTimestamp": ts(hours=1), "deprecatedLastTimestamp": ts(minutes=30),
           "deprecatedCount": 7, "deprecatedSource": {"component": "kubelet", "host": "n2"}}
    c = cells("events", ev2, "events.k8s.io")
    assert (c["First Seen"], c["Last Seen"], c["Count"], c["Source"]) == \
        ("60m", "30m", 7, "kubelet, n2")


# ------------------------------------------------------------------------------ workloads

TEMPLATE = {"metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "web", "image": "nginx:1.27"},
                                    {"name": "side", "image": "busybox"}],
                     "nodeSelector": {"kubernetes.io/os": "linux", "disk": "ssd"}}}


def test_deployment_cells():
    d = {"metadata": meta("web"),
         "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"},
                                              "matchExpressions": [{"key": "tier",
                                                                    "operator": "Exists"}]},
                  "template": TEMPLATE},
         "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}}
    assert cells("deployments", d, "apps") == {
        "Name": "web", "Ready": "2/3", "Up-to-date": 3, "Available": 2, "Age": "5s",
        "Containers": "web,side", "Images": "nginx:1.27,busybox", "Selector": "app=web,tier"}
    c = cells("deployments", {"metadata": meta("d"), "spec": {}}, "apps")
    assert (c["Ready"], c["Up-to-date"], c["Available"], c["Selector"]) == ("0/1", 0, 0, "")
    assert (c["Containers"], c["Images"]) == ("", "")


def test_replicaset_cells():
    rs = {"metadata": meta("web-abc"),
          "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web",
                                                               "pod-template-hash": "abc"}},
                   "template": TEMPLATE},
          "status": {"replicas": 2, "readyReplicas": 1}}
    assert cells("replicasets", rs, "apps") == {
        "Name": "web-abc", "Desired": 2, "Current": 2, "Ready": 1, "Age": "5s",
        "Containers": "web,side", "Images": "nginx:1.27,busybox",
        "Selector": "app=web,pod-template-hash=abc"}
    c = cells("replicasets", {"metadata": meta("r"), "spec": {"replicas": 0}}, "apps")
    assert (c["Desired"], c["Current"], c["Ready"], c["Selector"]) == (0, 0, 0, "<none>")


def test_statefulset_cells():
    s = {"metadata": meta("db"), "spec": {"replicas": 3, "template": TEMPLATE},
         "status": {"readyReplicas": 1}}
    assert cells("statefulsets", s, "apps") == {"Name": "db", "Ready": "1/3", "Age": "5s",
                                                 "Containers": "web,side",
                                                 "Images": "nginx:1.27,busybox"}


def test_daemonset_cells():
    ds = {"metadata": meta("agent"),
          "spec": {"selector": {"matchLabels": {"app": "agent"}}, "template": TEMPLATE},
          "status": {"desiredNumberScheduled": 3, "currentNumberScheduled": 3, "numberReady": 2,
                     "updatedNumberScheduled": 3, "numberAvailable": 2}}
    assert cells("daemonsets", ds, "apps") == {
        "Name": "agent", "Desired": 3, "Current": 3, "Ready": 2, "Up-to-date": 3,
        "Available": 2, "Node Selector": "disk=ssd,kubernetes.io/os=linux", "Age": "5s",
        "Containers": "web,side", "Images": "nginx:1.27,busybox", "Selector": "app=agent"}
    c = cells("daemonsets", {"metadata": meta("d"), "spec": {"template": {"spec": {}}}}, "apps")
    assert c["Node Selector"] == "<none>"
    assert c["Desired"] == 0


def test_controllerrevision_cells():
    cr = {"metadata": meta("web-6d4cf56db6", ownerReferences=[
        {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "web", "uid": "u",
         "controller": True}]), "revision": 2, "data": {}}
    assert cells("controllerrevisions", cr, "apps") == {
        "Name": "web-6d4cf56db6", "Controller": "statefulset.apps/web", "Revision": 2,
        "Age": "5s"}
    cr = {"metadata": meta("x", ownerReferences=[
        {"apiVersion": "v1", "kind": "Pod", "name": "p", "controller": True}]), "revision": 1}
    assert cells("controllerrevisions", cr, "apps")["Controller"] == "pod/p"
    cr = {"metadata": meta("y", ownerReferences=[
        {"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "d"}]), "revision": 1}
    assert cells("controllerrevisions", cr, "apps")["Controller"] == "<none>"


# ------------------------------------------------------------------------------ small kinds

def test_namespace_configmap_secret_serviceaccount_lease():
    assert cells("namespaces", {"metadata": meta("kube-system"),
                                "status": {"phase": "Active"}}) == \
        {"Name": "kube-system", "Status": "Active", "Age": "5s"}
    assert cells("namespaces", {"metadata": meta("gone", deletionTimestamp=ts(seconds=1)),
                                "status": {"phase": "Terminating"}})["Status"] == "Terminating"
    assert cells("configmaps", {"metadata": meta("cfg"), "data": {"a": "1", "b": "2"},
                                "binaryData": {"c": "AA=="}}) == \
        {"Name": "cfg", "Data": 3, "Age": "5s"}
    assert cells("configmaps", {"metadata": meta("empty")})["Data"] == 0
    assert cells("secrets", {"metadata": meta("tls"), "type": "kubernetes.io/tls",
                             "data": {"tls.crt": "", "tls.key": ""}}) == \
        {"Name": "tls", "Type": "kubernetes.io/tls", "Data": 2, "Age": "5s"}
    assert cells("serviceaccounts", {"metadata": meta("default")}) == \
        {"Name": "default", "Secrets": 0, "Age": "5s"}
    assert cells("serviceaccounts", {"metadata": meta("sa"),
                                     "secrets": [{"name": "tok"}]})["Secrets"] == 1
    assert cells("leases", {"metadata": meta("kube-scheduler"),
                            "spec": {"holderIdentity": "tk-cp_1234"}},
                 "coordination.k8s.io") == \
        {"Name": "kube-scheduler", "Holder": "tk-cp_1234", "Age": "5s"}
    assert cells("leases", {"metadata": meta("l"), "spec": {}},
                 "coordination.k8s.io")["Holder"] == ""


# ------------------------------------------------------------------------------ whole Table

def test_to_table_shape_with_partial_object_metadata():
    s = svc({"type": "ClusterIP", "clusterIP": "10.96.0.13", "clusterIPs": ["10.96.0.13"],
             "ports": [{"port": 80, "protocol": "TCP"}], "selector": {"app": "web"}})
    s["metadata"]["labels"] = {"app": "web"}
    t = to_table(res("services"), [s], resource_version="107", now=NOW)
    assert t["kind"] == "Table"
    assert t["apiVersion"] == "meta.k8s.io/v1"
    assert t["metadata"] == {"resourceVersion": "107"}
    assert [c["name"] for c in t["columnDefinitions"]] == cols("services")
    assert t["rows"] == [{
        "cells": ["web", "ClusterIP", "10.96.0.13", "<none>", "80/TCP", "5s", "app=web"],
        "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                   "metadata": s["metadata"]}}]
    json.dumps(t)  # serialisable as is


def test_to_table_include_object_variants_and_continue():
    cm = {"kind": "ConfigMap", "apiVersion": "v1", "metadata": meta("cfg"), "data": {"k": "v"}}
    r = res("configmaps")
    t = to_table(r, [cm], include_object="Object", continue_token="abc", now=NOW)
    assert t["rows"][0]["object"] == cm
    assert t["metadata"] == {"continue": "abc"}
    t = to_table(r, [cm], include_object="None", now=NOW)
    assert "object" not in t["rows"][0]
    assert t["rows"][0]["cells"] == ["cfg", 1, "5s"]
    with pytest.raises(ValueError):
        to_table(r, [cm], include_object="Everything")


def test_to_table_watch_event_without_columns_and_empty_list():
    cm = {"metadata": meta("cfg")}
    t = to_table(res("configmaps"), [cm], with_columns=False, now=NOW)
    assert t["columnDefinitions"] == []
    assert len(t["rows"]) == 1
    t = to_table(res("configmaps"), [], resource_version="5", now=NOW)
    assert t["rows"] == []
    assert len(t["columnDefinitions"]) == 3


def test_to_table_does_not_mutate_objects():
    p = pod({"phase": "Running", "containerStatuses": [running(restarts=1, last=ts(minutes=1))]})
    before = copy.deepcopy(p)
    to_table(res("pods"), [p], include_object="Object", now=NOW)
    assert p == before


def test_to_table_default_now_is_current_time():
    fresh = {"metadata": {"name": "n",
                          "creationTimestamp": datetime.now(timezone.utc).strftime(
                              "%Y-%m-%dT%H:%M:%SZ")}}
    t = to_table(res("configmaps"), [fresh])
    assert t["rows"][0]["cells"][2] in ("0s", "1s", "2s")


@pytest.mark.parametrize("r", resources.RESOURCES, ids=lambda r: f"{r.group or 'core'}/{r.kind}")
def test_every_served_kind_has_one_cell_per_column(r):
    """Minimal and empty objects of every kind print without errors, one cell per column."""
    defs = column_definitions(r)
    for obj in ({"metadata": {"name": "x"}}, {}, {"metadata": meta("y"), "spec": {}, "status": {}}):
        row = row_cells(r, obj, NOW)
        assert len(row) == len(defs)
        for cell in row:
            assert isinstance(cell, (str, int))
