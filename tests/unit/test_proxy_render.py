"""The nftables renderer of the proxy: pure text out of Services and EndpointSlices."""
from tinykube.agent.proxy.nft import _elements
from tinykube.agent.proxy.render import (STANDING_TIERS, Existing, IdAllocator, Present,
                                         ProxyConfig, ServiceRules, endpoints_for_port,
                                         parse_group, port_group, render_all, render_full,
                                         render_incremental, render_service, stale_affinity)

CFG = ProxyConfig(table="tinykube-t-proxy", node_name="n1", node_ips=("192.0.2.10",),
                  cluster_cidrs=("10.244.0.0/16",), service_cidrs=("10.96.0.0/12",))


def svc(name="web", ns="default", ports=None, **spec):
    s = {"kind": "Service", "metadata": {"name": name, "namespace": ns},
         "spec": {"clusterIP": "10.96.0.20", "clusterIPs": ["10.96.0.20"], "type": "ClusterIP",
                  "ports": ports or [{"port": 80, "protocol": "TCP", "targetPort": 8080}]}}
    s["spec"].update(spec)
    return s


def ep(ip, node="n1", ready=True, serving=None, terminating=None):
    cond = {"ready": ready}
    if serving is not None:
        cond["serving"] = serving
    if terminating is not None:
        cond["terminating"] = terminating
    return {"addresses": [ip], "conditions": cond, "nodeName": node}


def slice_(svc_name, eps, ports=None, ns="default", name=None):
    return {"kind": "EndpointSlice", "addressType": "IPv4",
            "metadata": {"name": name or f"{svc_name}-abcde", "namespace": ns,
                         "labels": {"kubernetes.io/service-name": svc_name}},
            "endpoints": eps,
            "ports": ports if ports is not None else [{"name": "", "port": 8080, "protocol": "TCP"}]}


def elements(rules: ServiceRules, mp: str) -> dict[str, str]:
    return {k: v.removeprefix(" : ") for (m, k), v in rules.elements.items() if m == mp}


def render(s, slices, ids=None):
    return render_service(s, slices, CFG, ids or IdAllocator())


def test_clusterip_random_choice_over_ready_endpoints():
    ids = IdAllocator()
    r = render(svc(), [slice_("web", [ep("10.244.0.2"), ep("10.244.0.3"),
                                      ep("10.244.0.4", ready=False)])], ids)
    i = ids.get("default/web/tcp/80")
    assert r.groups == {"default/web/tcp/80": i}
    assert elements(r, "ids") == {str(i): ' comment "default/web/tcp/80"'}
    assert elements(r, "service-ips") == {"10.96.0.20 . tcp . 80": str(i)}
    assert elements(r, "lb-2") == {str(i): ""} and r.tiers == {2}
    # slots in address order; the not-ready endpoint has none
    assert elements(r, "endpoints-tcp") == {f"{i} . 0": "10.244.0.2 . 8080",
                                            f"{i} . 1": "10.244.0.3 . 8080"}
    assert set(elements(r, "endpoint-counters")) == {f"{i} . 10.244.0.2 . 8080",
                                                     f"{i} . 10.244.0.3 . 8080"}
    assert set(elements(r, "hairpin")) == {f"{i} . 10.244.0.2 . 10.244.0.2",
                                           f"{i} . 10.244.0.3 . 10.244.0.3"}
    assert not elements(r, "reject-ids") and not r.affinity and not r.udp_flows


def test_groups_name_service_ports_and_parse_back():
    assert port_group("ns1", "svc1", "UDP", 53) == "ns1/svc1/udp/53"
    assert port_group("ns1", "svc1", "TCP", 80, local=True) == "ns1/svc1/tcp/80 local"
    assert parse_group("ns1/svc1/udp/53") == ("ns1", "svc1", "53/UDP")
    assert parse_group("ns1/svc1/tcp/80 local") == ("ns1", "svc1", "80/TCP")
    assert parse_group("nonsense") is None


def test_ids_are_stable_per_group_never_reused_and_restored_from_the_table():
    ids = IdAllocator()
    a, b = ids.get("x/a/tcp/80"), ids.get("x/b/tcp/80")
    assert ids.get("x/a/tcp/80") == a and a != b and a >= 1
    ids.release("x/a/tcp/80")
    assert ids.get("x/a/tcp/80") not in (a, b)      # a released id is not handed out again
    fresh = IdAllocator()
    fresh.restore({7: "x/a/tcp/80", 3: "x/b/tcp/80"})
    assert fresh.get("x/a/tcp/80") == 7 and fresh.get("x/new/tcp/80") == 8


def test_no_endpoints_rejects_and_nothing_is_dnated():
    r = render(svc(), [slice_("web", [])])
    i = r.groups["default/web/tcp/80"]
    assert elements(r, "reject-ids") == {str(i): ""}
    assert elements(r, "service-ips") == {"10.96.0.20 . tcp . 80": str(i)}
    assert not r.tiers and not elements(r, "endpoints-tcp")


def test_terminating_serving_used_only_when_nothing_is_ready():
    term = ep("10.244.0.2", ready=False, serving=True, terminating=True)
    eps = endpoints_for_port([slice_("web", [term])], "", "TCP")
    assert len(eps) == 1
    r = render(svc(), [slice_("web", [term])])
    assert list(elements(r, "endpoints-tcp").values()) == ["10.244.0.2 . 8080"]
    r2 = render(svc(), [slice_("web", [term, ep("10.244.0.3")])])
    assert list(elements(r2, "endpoints-tcp").values()) == ["10.244.0.3 . 8080"]
    # ready unset means ready
    e = endpoints_for_port([slice_("web", [{"addresses": ["10.244.0.9"]}])], "", "TCP")
    assert e[0].ready


def test_multi_port_and_named_ports_match_slice_ports_by_name_and_protocol():
    s = svc(ports=[{"name": "http", "port": 80, "protocol": "TCP", "targetPort": "web"},
                   {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 5353}])
    sl = slice_("web", [ep("10.244.0.2")], ports=[{"name": "http", "port": 8081, "protocol": "TCP"},
                                                   {"name": "dns", "port": 5353, "protocol": "UDP"}])
    r = render(s, [sl])
    t, u = r.groups["default/web/tcp/80"], r.groups["default/web/udp/53"]
    assert t != u
    assert elements(r, "service-ips") == {"10.96.0.20 . tcp . 80": str(t),
                                          "10.96.0.20 . udp . 53": str(u)}
    assert elements(r, "endpoints-tcp") == {f"{t} . 0": "10.244.0.2 . 8081"}
    assert elements(r, "endpoints-udp") == {f"{u} . 0": "10.244.0.2 . 5353"}
    assert r.udp_flows == {("10.96.0.20", 53, "10.244.0.2")}


def test_session_affinity_marks_the_id_with_its_timeout():
    s = svc(sessionAffinity="ClientIP", sessionAffinityConfig={"clientIP": {"timeoutSeconds": 10}})
    r = render(s, [slice_("web", [ep("10.244.0.2"), ep("10.244.0.3")])])
    i = r.groups["default/web/tcp/80"]
    assert elements(r, "affinity-10-ids") == {str(i): ""}
    assert r.affinity == {i: (10, frozenset({"10.244.0.2 . 8080", "10.244.0.3 . 8080"}))}
    # default timeout 10800
    r2 = render(svc(sessionAffinity="ClientIP"), [slice_("web", [ep("10.244.0.2")])])
    assert set(elements(r2, "affinity-10800-ids")) == {str(r2.groups["default/web/tcp/80"])}


def test_nodeport_externalips_and_loadbalancer_ips_masquerade_through_external_maps():
    s = svc(type="LoadBalancer", externalIPs=["10.240.0.7"],
            ports=[{"port": 80, "protocol": "TCP", "nodePort": 30080, "targetPort": 8080}])
    s["status"] = {"loadBalancer": {"ingress": [{"ip": "10.50.0.1"}]}}
    r = render(s, [slice_("web", [ep("10.244.0.2")])])
    i = str(r.groups["default/web/tcp/80"])
    assert elements(r, "service-ips") == {"10.96.0.20 . tcp . 80": i}
    assert elements(r, "external-ips") == {"10.240.0.7 . tcp . 80": i, "10.50.0.1 . tcp . 80": i}
    assert elements(r, "service-nodeports") == {"tcp . 30080": i}
    assert len(r.groups) == 1        # no local group under the Cluster policy
    # a ClusterIP service ignores a stray nodePort
    r2 = render(svc(ports=[{"port": 80, "nodePort": 30080}]), [])
    assert not elements(r2, "service-nodeports") and not elements(r2, "cluster-nodeports")


def test_traffic_policy_local():
    s = svc(type="NodePort", internalTrafficPolicy="Local", externalTrafficPolicy="Local",
            externalIPs=["10.240.0.7"], ports=[{"port": 80, "protocol": "TCP", "nodePort": 30080}])
    sl = slice_("web", [ep("10.244.0.2", node="n1"), ep("10.244.1.2", node="n2")])
    r = render(s, [sl])
    c, lo = r.groups["default/web/tcp/80"], r.groups["default/web/tcp/80 local"]
    assert elements(r, "service-ips") == {"10.96.0.20 . tcp . 80": str(lo),      # internal: Local
                                          "10.240.0.7 . tcp . 80": str(c)}       # pods, the node
    assert elements(r, "local-external-ips") == {"10.240.0.7 . tcp . 80": str(lo)}
    assert elements(r, "local-nodeports") == {"tcp . 30080": str(lo)}
    assert elements(r, "cluster-nodeports") == {"tcp . 30080": str(c)}
    assert elements(r, "endpoints-tcp") == {f"{c} . 0": "10.244.0.2 . 8080",
                                            f"{c} . 1": "10.244.1.2 . 8080",
                                            f"{lo} . 0": "10.244.0.2 . 8080"}
    assert not elements(r, "external-ips") and not elements(r, "service-nodeports")
    # endpoints exist but none here: the local id drops (not rejects)
    r2 = render(s, [slice_("web", [ep("10.244.1.2", node="n2")])])
    assert elements(r2, "drop-ids") == {str(r2.groups["default/web/tcp/80 local"]): ""}
    assert not elements(r2, "reject-ids")
    # nothing anywhere: both reject
    r3 = render(s, [])
    assert len(elements(r3, "reject-ids")) == 2


def test_headless_and_externalname_render_nothing():
    assert render(svc(clusterIP="None", clusterIPs=["None"]), []) == ServiceRules()
    assert render(svc(type="ExternalName", clusterIP="", clusterIPs=[]), []) == ServiceRules()


def test_full_render_keeps_counters_and_affinity_and_deletes_what_is_stale():
    ids = IdAllocator()
    s = svc(sessionAffinity="ClientIP", sessionAffinityConfig={"clientIP": {"timeoutSeconds": 60}})
    rules = render_all([s], [slice_("web", [ep("10.244.0.2")])], CFG, ids)
    i = ids.get("default/web/tcp/80")
    ex = Existing(chains={"services", "service-OLD-x/y/tcp/1"},
                  sets={"service-ips", "endpoint-counters", "lb-40", "lb-3", "affinity-60",
                        "affinity-5", "affinity-5-ids"},
                  maps={"service-ips", "affinity-60", "affinity-5"},
                  counters={f"{i} . 10.244.0.2 . 8080", "99 . 10.0.0.1 . 1"},
                  affinity={"affinity-60": [(f"10.0.0.9 . {i}", "10.244.0.2 . 8080"),
                                            (f"10.0.0.8 . {i}", "10.244.0.7 . 8080")]})
    text = render_full(rules, CFG, ex)
    t = "ip tinykube-t-proxy"
    lines = text.splitlines()
    assert lines[0] == f"add table {t}"
    assert "flush table" not in text and f"delete table {t}" not in text
    assert f"flush chain {t} services" in lines and f"flush map {t} service-ips" in lines
    assert f"flush set {t} lb-3" in lines
    assert f"delete chain {t} service-OLD-x/y/tcp/1" in lines
    assert f"delete set {t} lb-40" in lines                 # a tier nobody needs any more
    assert f"delete map {t} affinity-5" in lines and f"delete set {t} affinity-5-ids" in lines
    # stateful elements are not flushed: stale ones are deleted, existing ones not re-added
    assert not any(x.startswith(f"flush set {t} endpoint-counters") for x in lines)
    assert not any(x.startswith(f"flush map {t} affinity-60") for x in lines)
    assert f"delete element {t} endpoint-counters {{ 99 . 10.0.0.1 . 1 }}" in lines
    assert f"delete element {t} affinity-60 {{ 10.0.0.8 . {i} }}" in lines
    assert not any(x.startswith(f"add element {t} endpoint-counters") for x in lines)
    assert f"add element {t} nodeport-ips {{ 192.0.2.10 }}" in lines
    assert f"add element {t} ids {{ {i} comment \"default/web/tcp/80\" }}" in lines
    # deletions and flushes come before any rule is added
    first_rule = next(i for i, x in enumerate(lines) if x.startswith("add rule"))
    assert all(n < first_rule for n, x in enumerate(lines)
               if x.startswith(("delete chain", "delete set", "delete map", "flush")))
    # unknown kernel state: table recreated from scratch
    fresh = render_full(rules, CFG, None).splitlines()
    assert fresh[:3] == [f"add table {t}", f"delete table {t}", f"add table {t}"]
    assert any(x.startswith(f"add element {t} endpoint-counters") for x in fresh)


def test_full_render_has_fixed_rules_plus_standing_tiers():
    text = render_full({}, CFG, None)
    for n in STANDING_TIERS:
        for p in ("tcp", "udp", "sctp"):
            assert (f"add rule ip tinykube-t-proxy load-balance-{p} ct mark @lb-{n} meta l4proto "
                    f"{p} dnat ip to ct mark . numgen random mod {n} map @endpoints-{p}") in text
    assert "add map ip tinykube-t-proxy affinity-10800 {" in text
    # pod sources keep their address to a ClusterIP; everyone else is masqueraded
    assert ("ct mark 0 ct mark set ip daddr . meta l4proto . th dport map @service-ips "
            "ip saddr != 10.244.0.0/16 meta mark set meta mark | 0x4000") in text


def test_incremental_is_element_changes_of_the_changed_service_only():
    ids = IdAllocator()
    many = [svc(name=f"s{i}", clusterIP=f"10.96.1.{i}", clusterIPs=[f"10.96.1.{i}"])
            for i in range(50)]
    old = render_all(many, [slice_(f"s{i}", [ep("10.244.0.2")]) for i in range(50)], CFG, ids)
    i7 = ids.get("default/s7/tcp/80")
    new = dict(old)
    new[("default", "s7")] = render_service(
        many[7], [slice_("s7", [ep("10.244.0.2"), ep("10.244.0.3")])], CFG, ids)
    present = Present.of(old)
    text = render_incremental(old, new, [("default", "s7")], CFG, present)
    t = "ip tinykube-t-proxy"
    assert text.splitlines() == [
        f"delete element {t} lb-1 {{ {i7} }}",
        f"add element {t} endpoint-counters {{ {i7} . 10.244.0.3 . 8080 }}",
        f"add element {t} endpoints-tcp {{ {i7} . 1 : 10.244.0.3 . 8080 }}",
        f"add element {t} hairpin {{ {i7} . 10.244.0.3 . 10.244.0.3 }}",
        f"add element {t} lb-2 {{ {i7} }}"]
    # unchanged -> nothing to do
    assert render_incremental(old, dict(old), [("default", "s3")], CFG, present) == ""
    # deleted service: all its elements go, nothing is added
    gone = dict(old)
    del gone[("default", "s3")]
    text = render_incremental(old, gone, [("default", "s3")], CFG, present)
    assert "add " not in text and "10.96.1.3 . tcp . 80" in text
    assert "rule" not in text


def test_incremental_adds_a_tier_or_timeout_the_table_lacks_once():
    ids = IdAllocator()
    s = svc(sessionAffinity="ClientIP", sessionAffinityConfig={"clientIP": {"timeoutSeconds": 5}})
    big = [ep(f"10.244.0.{k}") for k in range(2, 22)]       # 20 endpoints: beyond the standing tiers
    new = {("default", "web"): render_service(s, [slice_("web", big)], CFG, ids)}
    present = Present()
    text = render_incremental({}, new, [("default", "web")], CFG, present)
    assert "add set ip tinykube-t-proxy lb-20 { type mark; }" in text
    assert "numgen random mod 20 map @endpoints-udp" in text
    assert "add map ip tinykube-t-proxy affinity-5 {" in text
    assert text.index("add set ip tinykube-t-proxy lb-20") < text.index("add element ip tinykube-t-proxy lb-20")
    assert 20 in present.tiers and 5 in present.timeouts
    again = render_incremental({}, new, [("default", "web")], CFG, present)
    assert "rule" not in again


def test_stale_affinity_records_point_at_gone_endpoints_or_ids():
    live = {5: (60, frozenset({"10.244.0.2 . 80"}))}
    entries = {"affinity-60": [("10.0.0.1 . 5", "10.244.0.2 . 80"),    # still good
                               ("10.0.0.2 . 5", "10.244.0.3 . 80"),    # endpoint gone
                               ("10.0.0.3 . 6", "10.244.0.2 . 80")],   # id gone
               "affinity-10": [("10.0.0.4 . 5", "10.244.0.2 . 80")]}   # timeout changed
    assert sorted(stale_affinity(entries, live)) == [
        ("affinity-10", "10.0.0.4 . 5"), ("affinity-60", "10.0.0.2 . 5"),
        ("affinity-60", "10.0.0.3 . 6")]
    assert stale_affinity(entries, live, only=[6]) == [("affinity-60", "10.0.0.3 . 6")]


def test_nft_json_elements_parse_to_the_text_nft_reads():
    counters = {"elem": [{"elem": {"val": {"concat": [5, "10.244.0.2", 8080]},
                                   "counter": {"packets": 3, "bytes": 180}}}]}
    assert _elements(counters) == [("5 . 10.244.0.2 . 8080", "",
                                    {"val": {"concat": [5, "10.244.0.2", 8080]},
                                     "counter": {"packets": 3, "bytes": 180}})]
    ids = {"elem": [{"elem": {"val": 5, "comment": "default/web/tcp/80"}}]}
    assert _elements(ids)[0][:2] == ("5", "")
    assert _elements(ids)[0][2]["comment"] == "default/web/tcp/80"
    affinity = {"elem": [[{"elem": {"val": {"concat": ["10.0.0.1", 5]}, "expires": 9}},
                          {"concat": ["10.244.0.2", 80]}]]}
    assert _elements(affinity)[0][:2] == ("10.0.0.1 . 5", "10.244.0.2 . 80")
    plain_map = {"elem": [[{"concat": ["10.96.0.20", "tcp", 80]}, 6]]}
    assert _elements(plain_map)[0][:2] == ("10.96.0.20 . tcp . 80", "6")
