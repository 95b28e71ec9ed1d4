"""The nftables renderer of the proxy: pure text out of Services and EndpointSlices."""
from tinykube.agent.proxy.render import (Existing, ProxyConfig, ServiceRules, chain_name,
                                         endpoint_chain_name, endpoints_for_port,
                                         parse_counter_name, port_base, render_all,
                                         render_full, render_incremental, render_service)

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
    return {k: v for m, k, v in rules.elements if m == mp}


def test_clusterip_random_choice_over_ready_endpoints():
    r = render_service(svc(), [slice_("web", [ep("10.244.0.2"), ep("10.244.0.3"),
                                              ep("10.244.0.4", ready=False)])], CFG)
    base = port_base("default", "web", "TCP", 80)
    sc = chain_name("service", base)
    assert elements(r, "service-ips") == {"10.96.0.20 . tcp . 80": f"goto {sc}"}
    rules = r.chains[sc]
    assert rules[0] == ("ip daddr 10.96.0.20 tcp dport 80 ip saddr != 10.244.0.0/16 "
                        "jump mark-for-masquerade")
    e2 = endpoint_chain_name(base, "10.244.0.2", 8080)
    e3 = endpoint_chain_name(base, "10.244.0.3", 8080)
    assert rules[-1] == f"numgen random mod 2 vmap {{ 0 : goto {e2}, 1 : goto {e3} }}"
    assert r.chains[e2] == ["ip saddr 10.244.0.2 jump mark-for-masquerade",
                            f"counter name {e2}", "meta l4proto tcp dnat to 10.244.0.2:8080"]
    assert endpoint_chain_name(base, "10.244.0.4", 8080) not in r.chains
    assert r.counters[e2] == ("default", "web", "80/TCP", "10.244.0.2:8080")


def test_chain_names_follow_kube_proxy_shape_and_counters_parse_back():
    base = port_base("ns1", "svc1", "UDP", 53)
    assert base == "ns1/svc1/udp/53"
    c = chain_name("service", base)
    assert c.startswith("service-") and c.endswith("-ns1/svc1/udp/53") and len(c.split("-")[1]) == 8
    e = endpoint_chain_name(base, "10.244.1.5", 5353)
    assert e.endswith("-ns1/svc1/udp/53__10.244.1.5/5353")
    assert parse_counter_name(e) == ("ns1", "svc1", "53/UDP", "10.244.1.5:5353")
    assert parse_counter_name("service-X-a/b/tcp/1") is None


def test_no_endpoints_rejects_and_nothing_is_dnated():
    r = render_service(svc(), [slice_("web", [])], CFG)
    assert elements(r, "no-endpoint-services") == {"10.96.0.20 . tcp . 80": "goto reject-chain"}
    assert elements(r, "service-ips") == {}
    assert r.chains == {}


def test_single_endpoint_goes_straight_without_numgen():
    r = render_service(svc(), [slice_("web", [ep("10.244.0.2")])], CFG)
    sc = chain_name("service", port_base("default", "web", "TCP", 80))
    assert r.chains[sc][-1].startswith("goto endpoint-")
    assert not any("numgen" in x for x in r.chains[sc])


def test_terminating_serving_used_only_when_nothing_is_ready():
    eps = endpoints_for_port([slice_("web", [ep("10.244.0.2", ready=False, serving=True,
                                                terminating=True)])], "", "TCP")
    r = render_service(svc(), [slice_("web", [ep("10.244.0.2", ready=False, serving=True,
                                                 terminating=True)])], CFG)
    assert len(eps) == 1 and elements(r, "service-ips")
    r2 = render_service(svc(), [slice_("web", [ep("10.244.0.2", ready=False, serving=True,
                                                  terminating=True), ep("10.244.0.3")])], CFG)
    assert not any("10.244.0.2" in c for c in r2.chains)
    # ready unset means ready
    e = endpoints_for_port([slice_("web", [{"addresses": ["10.244.0.9"]}])], "", "TCP")
    assert e[0].ready


def test_multi_port_and_named_ports_match_slice_ports_by_name_and_protocol():
    s = svc(ports=[{"name": "http", "port": 80, "protocol": "TCP", "targetPort": "web"},
                   {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 5353}])
    sl = slice_("web", [ep("10.244.0.2")], ports=[{"name": "http", "port": 8081, "protocol": "TCP"},
                                                   {"name": "dns", "port": 5353, "protocol": "UDP"}])
    r = render_service(s, [sl], CFG)
    assert set(elements(r, "service-ips")) == {"10.96.0.20 . tcp . 80", "10.96.0.20 . udp . 53"}
    dnats = sorted(x[-1] for x in r.chains.values() if x[-1].startswith("meta l4proto"))
    assert dnats == ["meta l4proto tcp dnat to 10.244.0.2:8081",
                     "meta l4proto udp dnat to 10.244.0.2:5353"]
    assert r.udp_flows == {("10.96.0.20", 53, "10.244.0.2")}


def test_session_affinity_sets_and_checks():
    s = svc(sessionAffinity="ClientIP", sessionAffinityConfig={"clientIP": {"timeoutSeconds": 10}})
    r = render_service(s, [slice_("web", [ep("10.244.0.2"), ep("10.244.0.3")])], CFG)
    assert len(r.sets) == 2
    assert all(b == "type ipv4_addr; flags dynamic,timeout; timeout 10s;" for b in r.sets.values())
    sc = chain_name("service", port_base("default", "web", "TCP", 80))
    for name in r.sets:
        assert any(x.startswith(f"ip saddr @{name} goto endpoint-") for x in r.chains[sc])
        assert any(f"update @{name} {{ ip saddr }}" in x
                   for c, rs in r.chains.items() if c.startswith("endpoint-") for x in rs)
    # default timeout 10800
    r2 = render_service(svc(sessionAffinity="ClientIP"), [slice_("web", [ep("10.244.0.2")])], CFG)
    assert list(r2.sets.values()) == ["type ipv4_addr; flags dynamic,timeout; timeout 10800s;"]


def test_nodeport_externalips_and_loadbalancer_ips():
    s = svc(type="LoadBalancer", externalIPs=["10.240.0.7"],
            ports=[{"port": 80, "protocol": "TCP", "nodePort": 30080, "targetPort": 8080}])
    s["status"] = {"loadBalancer": {"ingress": [{"ip": "10.50.0.1"}]}}
    r = render_service(s, [slice_("web", [ep("10.244.0.2")])], CFG)
    xc = chain_name("external", port_base("default", "web", "TCP", 80))
    sc = chain_name("service", port_base("default", "web", "TCP", 80))
    assert elements(r, "service-ips") == {"10.96.0.20 . tcp . 80": f"goto {sc}",
                                          "10.240.0.7 . tcp . 80": f"goto {xc}",
                                          "10.50.0.1 . tcp . 80": f"goto {xc}"}
    assert elements(r, "service-nodeports") == {"tcp . 30080": f"goto {xc}"}
    assert r.chains[xc] == ["jump mark-for-masquerade", f"goto {sc}"]
    # a ClusterIP service ignores a stray nodePort
    r2 = render_service(svc(ports=[{"port": 80, "nodePort": 30080}]), [], CFG)
    assert elements(r2, "no-endpoint-nodeports") == {}


def test_traffic_policy_local():
    s = svc(type="NodePort", internalTrafficPolicy="Local", externalTrafficPolicy="Local",
            ports=[{"port": 80, "protocol": "TCP", "nodePort": 30080}])
    sl = slice_("web", [ep("10.244.0.2", node="n1"), ep("10.244.1.2", node="n2")])
    r = render_service(s, [sl], CFG)
    base = port_base("default", "web", "TCP", 80)
    lc, sc, xc = (chain_name(k, base) for k in ("local", "service", "external"))
    assert elements(r, "service-ips") == {"10.96.0.20 . tcp . 80": f"goto {lc}"}
    assert r.chains[lc][-1] == f"goto {endpoint_chain_name(base, '10.244.0.2', 8080)}"
    assert r.chains[xc] == [f"ip saddr 10.244.0.0/16 goto {sc}",
                            "fib saddr type local jump mark-for-masquerade",
                            f"fib saddr type local goto {sc}", f"goto {lc}"]
    # endpoints exist but none here: drop (not reject)
    r2 = render_service(s, [slice_("web", [ep("10.244.1.2", node="n2")])], CFG)
    assert elements(r2, "no-endpoint-services") == {"10.96.0.20 . tcp . 80": "drop"}
    assert elements(r2, "no-endpoint-nodeports") == {"tcp . 30080": "drop"}


def test_headless_and_externalname_render_nothing():
    assert render_service(svc(clusterIP="None", clusterIPs=["None"]), [], CFG) == ServiceRules()
    assert render_service(svc(type="ExternalName", clusterIP="", clusterIPs=[]), [], CFG) == ServiceRules()


def test_full_render_flushes_existing_and_deletes_stale_but_keeps_wanted_objects():
    rules = render_all([svc()], [slice_("web", [ep("10.244.0.2")])], CFG)
    e2 = endpoint_chain_name(port_base("default", "web", "TCP", 80), "10.244.0.2", 8080)
    ex = Existing(chains={"services", "endpoint-OLD-x/y/tcp/1__10.0.0.1/1", e2},
                  sets={"service-ips", "affinity-OLD-x"}, counters={e2, "endpoint-OLD-x"})
    text = render_full(rules, CFG, ex)
    t = "ip tinykube-t-proxy"
    lines = text.splitlines()
    assert lines[0] == f"add table {t}"
    assert "flush table" not in text and f"delete table {t}" not in text
    assert f"flush chain {t} {e2}" in lines and f"flush map {t} service-ips" in lines
    assert f"delete chain {t} endpoint-OLD-x/y/tcp/1__10.0.0.1/1" in lines
    assert f"delete set {t} affinity-OLD-x" in lines
    assert f"delete counter {t} endpoint-OLD-x" in lines
    assert f"delete counter {t} {e2}" not in lines
    assert f"add element {t} nodeport-ips {{ 192.0.2.10 }}" in lines
    # deletions come before any rule is added
    first_rule = next(i for i, x in enumerate(lines) if x.startswith("add rule"))
    assert all(i < first_rule for i, x in enumerate(lines) if x.startswith(("delete", "flush")))
    # unknown kernel state: table recreated from scratch
    fresh = render_full(rules, CFG, None).splitlines()
    assert fresh[:3] == [f"add table {t}", f"delete table {t}", f"add table {t}"]


def test_incremental_touches_only_changed_services():
    many = [svc(name=f"s{i}") for i in range(50)]
    old = render_all(many, [slice_(f"s{i}", [ep("10.244.0.2")]) for i in range(50)], CFG)
    new = dict(old)
    new[("default", "s7")] = render_service(
        svc(name="s7"), [slice_("s7", [ep("10.244.0.2"), ep("10.244.0.3")])], CFG)
    text = render_incremental(old, new, [("default", "s7")], CFG)
    assert "default/s7/" in text
    assert not any(f"default/s{i}/" in text for i in range(50) if i != 7)
    lines = text.splitlines()
    assert lines[0].startswith("delete element ip tinykube-t-proxy service-ips { 10.96.0.20 . tcp . 80")
    assert any(x.startswith("add counter") and "10.244.0.3" in x for x in lines)
    assert not any(x.startswith("add counter") and "10.244.0.2/" in x for x in lines)
    # unchanged -> nothing to do
    assert render_incremental(old, dict(old), [("default", "s3")], CFG) == ""
    # deleted service: its chains and counters go
    gone = dict(old)
    del gone[("default", "s3")]
    text = render_incremental(old, gone, [("default", "s3")], CFG)
    assert "add " not in text and "delete counter" in text and "delete chain" in text


def test_rules_lb_mode_is_a_uniform_cascade_without_anonymous_maps():
    from dataclasses import replace
    cfg = replace(CFG, lb_mode="rules")
    r = render_service(svc(), [slice_("web", [ep("10.244.0.2"), ep("10.244.0.3"), ep("10.244.0.4")])], cfg)
    base = port_base("default", "web", "TCP", 80)
    e = [endpoint_chain_name(base, f"10.244.0.{i}", 8080) for i in (2, 3, 4)]
    assert r.chains[chain_name("service", base)][1:] == [
        f"numgen random mod 3 0 goto {e[0]}", f"numgen random mod 2 0 goto {e[1]}", f"goto {e[2]}"]
