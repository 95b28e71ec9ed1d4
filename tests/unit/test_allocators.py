import ipaddress
import random

import pytest

from tinykube.api import allocators as a
from tinykube.api import defaults, validation
from tinykube.api.errors import ApiError
from tinykube.api.resources import get

SVC = get("services")


def _svc(spec, name="s"):
    s = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "default"},
         "spec": spec}
    defaults.apply_defaults(SVC, s)
    return s


def _allocs(used_ips=(), used_ports=(), seed=1):
    return (a.ClusterIPAllocator("10.96.0.0/12", set(used_ips), rng=random.Random(seed)),
            a.NodePortAllocator((30000, 32767), set(used_ports), rng=random.Random(seed)))


# ---- ClusterIPAllocator

def test_requested_ip_out_of_range():
    ca, _ = _allocs()
    with pytest.raises(a.NotInRangeError) as e:
        ca.allocate("10.11.253.81")
    assert str(e.value) == ("the provided IP (10.11.253.81) is not in the valid range. "
                            "The range of valid IPs is 10.96.0.0/12")


@pytest.mark.parametrize("ip", ["10.96.0.0", "10.111.255.255"])
def test_network_and_broadcast_not_in_range(ip):
    ca, _ = _allocs()
    with pytest.raises(a.NotInRangeError):
        ca.allocate(ip)


def test_requested_ip_taken_and_free():
    ca, _ = _allocs(used_ips={"10.96.0.5"})
    with pytest.raises(a.AlreadyAllocatedError) as e:
        ca.allocate("10.96.0.5")
    assert str(e.value) == "provided IP is already allocated"
    assert ca.allocate("10.96.0.1") == "10.96.0.1"
    assert ca.allocate("10.111.255.254") == "10.111.255.254"
    with pytest.raises(a.AlreadyAllocatedError):
        ca.allocate("10.96.0.1")


def test_dynamic_ips_come_from_the_upper_band():
    ca, _ = _allocs()
    net = ipaddress.ip_network("10.96.0.0/12")
    for _ in range(300):
        ip = ipaddress.ip_address(ca.allocate())
        assert ip in net
        # the lowest 256 usable addresses (10.96.0.1 .. 10.96.1.0) stay for static requests
        assert int(ip) > int(ipaddress.ip_address("10.96.1.0"))


def test_small_range_fills_then_full():
    ca = a.ClusterIPAllocator("10.0.0.0/29", set(), rng=random.Random(3))
    got = {ca.allocate() for _ in range(6)}
    assert got == {f"10.0.0.{i}" for i in range(1, 7)}
    with pytest.raises(a.RangeFullError) as e:
        ca.allocate()
    assert str(e.value) == "range is full"


def test_lower_band_used_when_upper_full():
    # /27: 32 addresses -> offset 16 (indices 0..15 are the static band)
    used = {str(ipaddress.ip_address(int(ipaddress.ip_address("10.0.0.1")) + i)) for i in range(16, 30)}
    ca = a.ClusterIPAllocator("10.0.0.0/27", used, rng=random.Random(0))
    ip = ipaddress.ip_address(ca.allocate())
    assert int(ip) - int(ipaddress.ip_address("10.0.0.1")) < 16


# ---- NodePortAllocator

def test_node_port_out_of_range_and_taken():
    _, np = _allocs(used_ports={30080})
    with pytest.raises(a.NotInRangeError) as e:
        np.allocate(8888)
    assert str(e.value) == ("provided port is not in the valid range. "
                            "The range of valid ports is 30000-32767")
    with pytest.raises(a.AlreadyAllocatedError) as e:
        np.allocate(30080)
    assert str(e.value) == "provided port is already allocated"
    assert np.allocate(30081) == 30081


def test_node_port_used_tuples_are_protocol_agnostic():
    np = a.NodePortAllocator((30000, 32767), {(30080, "TCP")})
    with pytest.raises(a.AlreadyAllocatedError):
        np.allocate(30080)


def test_dynamic_node_ports_prefer_upper_band():
    _, np = _allocs()
    for _ in range(200):
        p = np.allocate()
        assert 30086 <= p <= 32767   # offset min(max(16, 2768/32), 128) = 86


def test_node_port_range_full():
    np = a.NodePortAllocator((30000, 30003), set(), rng=random.Random(1))
    assert {np.allocate() for _ in range(4)} == {30000, 30001, 30002, 30003}
    with pytest.raises(a.RangeFullError):
        np.allocate()


# ---- allocate_service (the book's cases)

def test_book_fixed_cluster_ip_outside_range():
    ca, np = _allocs()
    s = _svc({"type": "ClusterIP", "clusterIP": "10.11.253.81", "ports": [{"port": 8080, "targetPort": 80}]})
    errs = a.allocate_service(s, None, ca, np)
    assert [str(e) for e in errs] == [
        'spec.clusterIPs: Invalid value: []string{"10.11.253.81"}: failed to allocate IP 10.11.253.81: '
        'the provided IP (10.11.253.81) is not in the valid range. The range of valid IPs is 10.96.0.0/12']
    assert errs[0].cause()["reason"] == "FieldValueInvalid"


def test_fixed_cluster_ip_taken():
    ca, np = _allocs(used_ips={"10.96.0.5"})
    s = _svc({"clusterIP": "10.96.0.5", "ports": [{"port": 80}]})
    errs = a.allocate_service(s, None, ca, np)
    assert [str(e) for e in errs] == [
        'spec.clusterIPs: Invalid value: []string{"10.96.0.5"}: failed to allocate IP 10.96.0.5: '
        'provided IP is already allocated']


def test_fixed_cluster_ip_honoured():
    ca, np = _allocs()
    s = _svc({"clusterIP": "10.96.100.100", "ports": [{"port": 80}]})
    assert a.allocate_service(s, None, ca, np) == []
    assert s["spec"]["clusterIP"] == "10.96.100.100"
    assert s["spec"]["clusterIPs"] == ["10.96.100.100"]
    assert s["spec"]["ipFamilies"] == ["IPv4"]
    assert s["spec"]["ipFamilyPolicy"] == "SingleStack"


def test_book_node_port_8888():
    ca, np = _allocs()
    s = _svc({"type": "NodePort", "ports": [{"port": 8080, "targetPort": 80, "nodePort": 8888}]})
    assert [str(e) for e in a.allocate_service(s, None, ca, np)] == [
        "spec.ports[0].nodePort: Invalid value: 8888: provided port is not in the valid range. "
        "The range of valid ports is 30000-32767"]


def test_book_duplicate_node_port_30080():
    ca, np = _allocs(used_ports={30080})
    s = _svc({"type": "NodePort", "ports": [{"port": 8080, "targetPort": 80, "nodePort": 30080}]})
    assert [str(e) for e in a.allocate_service(s, None, ca, np)] == [
        "spec.ports[0].nodePort: Invalid value: 30080: provided port is already allocated"]


def test_cluster_ip_service_allocates_ip_only():
    ca, np = _allocs()
    s = _svc({"selector": {"app": "x"}, "ports": [{"port": 80}]})
    assert a.allocate_service(s, None, ca, np) == []
    spec = s["spec"]
    assert ipaddress.ip_address(spec["clusterIP"]) in ipaddress.ip_network("10.96.0.0/12")
    assert spec["clusterIPs"] == [spec["clusterIP"]]
    assert "nodePort" not in spec["ports"][0]
    assert validation.validate(SVC, s) == []


def test_node_port_service_allocates_and_validates():
    ca, np = _allocs()
    s = _svc({"type": "NodePort", "ports": [{"name": "a", "port": 80}, {"name": "b", "port": 81, "nodePort": 30001}]})
    assert a.allocate_service(s, None, ca, np) == []
    ports = s["spec"]["ports"]
    assert 30086 <= ports[0]["nodePort"] <= 32767 and ports[1]["nodePort"] == 30001
    assert s["spec"]["externalTrafficPolicy"] == "Cluster"
    assert validation.validate(SVC, s) == []


def test_same_port_tcp_udp_share_node_port():
    ca, np = _allocs()
    s = _svc({"type": "NodePort", "ports": [{"name": "t", "port": 53, "protocol": "TCP"},
                                            {"name": "u", "port": 53, "protocol": "UDP"}]})
    assert a.allocate_service(s, None, ca, np) == []
    assert s["spec"]["ports"][0]["nodePort"] == s["spec"]["ports"][1]["nodePort"]
    s2 = _svc({"type": "NodePort", "ports": [{"name": "t", "port": 53, "protocol": "TCP", "nodePort": 30053},
                                             {"name": "u", "port": 53, "protocol": "UDP"}]})
    assert a.allocate_service(s2, None, ca, np) == []
    assert [p["nodePort"] for p in s2["spec"]["ports"]] == [30053, 30053]


def test_lb_without_node_port_allocation():
    ca, np = _allocs()
    s = _svc({"type": "LoadBalancer", "allocateLoadBalancerNodePorts": False, "ports": [{"port": 80}]})
    assert a.allocate_service(s, None, ca, np) == []
    assert "nodePort" not in s["spec"]["ports"][0]


def test_lb_local_gets_health_check_node_port():
    ca, np = _allocs()
    s = _svc({"type": "LoadBalancer", "externalTrafficPolicy": "Local", "ports": [{"port": 80}]})
    assert a.allocate_service(s, None, ca, np) == []
    hc = s["spec"]["healthCheckNodePort"]
    assert 30000 <= hc <= 32767 and hc != s["spec"]["ports"][0]["nodePort"]
    assert validation.validate(SVC, s) == []


def test_requested_health_check_port_taken_is_internal_error():
    ca, np = _allocs(used_ports={30500})
    s = _svc({"type": "LoadBalancer", "externalTrafficPolicy": "Local", "healthCheckNodePort": 30500,
              "ports": [{"port": 80}]})
    with pytest.raises(ApiError) as e:
        a.allocate_service(s, None, ca, np)
    assert e.value.code == 500
    assert "failed to allocate requested HealthCheck NodePort 30500: provided port is already allocated" in e.value.message


def test_headless_and_external_name():
    ca, np = _allocs()
    h = _svc({"clusterIP": "None", "selector": {"a": "b"}, "ports": [{"port": 80}]})
    assert a.allocate_service(h, None, ca, np) == []
    assert h["spec"]["clusterIPs"] == ["None"] and h["spec"]["ipFamilyPolicy"] == "SingleStack"
    hs = _svc({"clusterIP": "None"})
    assert a.allocate_service(hs, None, ca, np) == []
    assert hs["spec"]["ipFamilyPolicy"] == "RequireDualStack" and hs["spec"]["ipFamilies"] == ["IPv4"]
    en = _svc({"type": "ExternalName", "externalName": "example.com"})
    assert a.allocate_service(en, None, ca, np) == []
    assert "clusterIP" not in en["spec"] and "ipFamilies" not in en["spec"]
    assert validation.validate(SVC, en) == []


def test_families_not_configured():
    ca, np = _allocs()
    s = _svc({"ipFamilyPolicy": "RequireDualStack", "ipFamilies": ["IPv4", "IPv6"], "ports": [{"port": 80}]})
    assert [str(e) for e in a.allocate_service(s, None, ca, np)] == [
        'spec.ipFamilyPolicy: Invalid value: "RequireDualStack": this cluster is not configured for dual-stack services',
        'spec.ipFamilies[1]: Invalid value: "IPv6": not configured on this cluster']


def test_pool_exhausted_is_internal_error():
    ca = a.ClusterIPAllocator("10.0.0.0/30", {"10.0.0.1", "10.0.0.2"})
    _, np = _allocs()
    s = _svc({"ports": [{"port": 80}]})
    with pytest.raises(ApiError) as e:
        a.allocate_service(s, None, ca, np)
    assert e.value.code == 500 and "failed to allocate a serviceIP: range is full" in e.value.message


# ---- updates

def _created(spec, used_ips=(), used_ports=()):
    ca, np = _allocs(used_ips, used_ports)
    s = _svc(spec)
    assert a.allocate_service(s, None, ca, np) == []
    return s


def _update(old, new_spec):
    import copy
    new = copy.deepcopy(old)
    new["spec"] = new_spec
    defaults.apply_defaults(SVC, new, old)
    used_ips = {ip for ip in old["spec"].get("clusterIPs", []) if ip != "None"}
    used_ports = {p.get("nodePort") for p in old["spec"].get("ports", []) if p.get("nodePort")}
    if old["spec"].get("healthCheckNodePort"):
        used_ports.add(old["spec"]["healthCheckNodePort"])
    ca, np = _allocs(used_ips, used_ports, seed=7)
    errs = validation.validate(SVC, new, old)
    errs += a.allocate_service(new, old, ca, np)
    return new, errs


def test_update_keeps_allocations_when_client_omits_them():
    old = _created({"type": "NodePort", "ports": [{"name": "http", "port": 80}]})
    new, errs = _update(old, {"type": "NodePort", "ports": [{"name": "http", "port": 80}]})
    assert errs == []
    assert new["spec"]["clusterIP"] == old["spec"]["clusterIP"]
    assert new["spec"]["ports"][0]["nodePort"] == old["spec"]["ports"][0]["nodePort"]


def test_update_to_cluster_ip_releases_node_ports():
    old = _created({"type": "NodePort", "ports": [{"port": 80}]})
    new, errs = _update(old, {**old["spec"], "type": "ClusterIP"})
    assert errs == []
    assert "nodePort" not in new["spec"]["ports"][0]
    assert "externalTrafficPolicy" not in new["spec"]
    assert new["spec"]["clusterIP"] == old["spec"]["clusterIP"]


def test_update_to_external_name_releases_cluster_ip():
    old = _created({"type": "NodePort", "ports": [{"port": 80}]})
    spec = {**old["spec"], "type": "ExternalName", "externalName": "foo.example.com"}
    new, errs = _update(old, spec)
    assert errs == []
    for f in ("clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy", "internalTrafficPolicy"):
        if f != "internalTrafficPolicy":
            assert f not in new["spec"], f
    assert all("nodePort" not in p for p in new["spec"]["ports"])


def test_update_external_name_to_cluster_ip_allocates():
    old = _created({"type": "ExternalName", "externalName": "foo.example.com"})
    new, errs = _update(old, {"type": "ClusterIP", "ports": [{"port": 80}]})
    assert errs == []
    assert new["spec"]["clusterIP"] and new["spec"]["ipFamilies"] == ["IPv4"]


def test_update_changing_cluster_ip_is_rejected():
    old = _created({"ports": [{"port": 80}]})
    new, errs = _update(old, {**old["spec"], "clusterIP": "10.96.7.7", "clusterIPs": ["10.96.7.7"]})
    assert [str(e) for e in errs] == [
        'spec.clusterIPs[0]: Invalid value: []string{"10.96.7.7"}: may not change once set']


def test_update_health_check_port_immutable():
    old = _created({"type": "LoadBalancer", "externalTrafficPolicy": "Local", "ports": [{"port": 80}]})
    hc = old["spec"]["healthCheckNodePort"]
    new, errs = _update(old, {**old["spec"], "healthCheckNodePort": 30999 if hc != 30999 else 30998})
    assert [e.field for e in errs] == ["spec.healthCheckNodePort"]
    assert errs[0].message().endswith("field is immutable")


def test_update_to_cluster_policy_drops_health_check_port():
    old = _created({"type": "LoadBalancer", "externalTrafficPolicy": "Local", "ports": [{"port": 80}]})
    new, errs = _update(old, {**old["spec"], "externalTrafficPolicy": "Cluster"})
    assert errs == [] and "healthCheckNodePort" not in new["spec"]


def test_update_adds_new_requested_node_port_taken_elsewhere():
    old = _created({"type": "NodePort", "ports": [{"name": "a", "port": 80}]})
    import copy
    new = copy.deepcopy(old)
    new["spec"]["ports"].append({"name": "b", "port": 81, "nodePort": 30444})
    defaults.apply_defaults(SVC, new, old)
    ca, np = _allocs({old["spec"]["clusterIP"]}, {old["spec"]["ports"][0]["nodePort"], 30444})
    assert [str(e) for e in a.allocate_service(new, old, ca, np)] == [
        "spec.ports[1].nodePort: Invalid value: 30444: provided port is already allocated"]
