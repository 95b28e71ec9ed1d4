"""The cluster zone answered through the real Handler (no sockets): every record form and the
NXDOMAIN/NODATA matrix of the Kubernetes DNS specification as CoreDNS implements it."""
from __future__ import annotations

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.reversename
import pytest

from tinykube.dns.server import Handler
from tinykube.dns.testing import (ask, endpoint, endpointslice, headless, namespace, service)
from tinykube.dns.zone import Zone

Z = "cluster.local."
NOERROR, NXDOMAIN, SERVFAIL = dns.rcode.NOERROR, dns.rcode.NXDOMAIN, dns.rcode.SERVFAIL


def build_zone() -> Zone:
    z = Zone(clock=lambda: 1_700_000_000)
    z.set_namespace(namespace("testns"))
    z.set_namespace(namespace("podns"))
    z.set_namespace(namespace("kube-system"))
    z.set_service(service("testns", "svc1", ["10.0.0.1"], [("http", 80, "TCP")]))
    z.set_endpointslice(endpointslice("testns", "svc1-a", "svc1", [
        endpoint("172.0.0.10"), endpoint("172.0.0.11", ready=False)]))
    z.set_service(service("testns", "svcempty", ["10.0.0.2"], [("http", 80, "TCP")]))
    z.set_service(service("testns", "dual", ["10.0.0.3", "10::3"], [("http", 80, "TCP")]))
    z.set_service(headless("testns", "hdls1"))
    z.set_endpointslice(endpointslice("testns", "hdls1-v4", "hdls1", [
        endpoint("172.0.0.2"), endpoint("172.0.0.3"),
        endpoint("172.0.0.4", "dup-name"), endpoint("172.0.0.5", "dup-name"),
        endpoint("172.0.0.6", ready=False)]))
    z.set_endpointslice(endpointslice("testns", "hdls1-v6", "hdls1", [
        endpoint("5678:abcd::1"), endpoint("5678:abcd::2")], address_type="IPv6"))
    z.set_service(headless("testns", "hdlsprtls", ports=()))
    z.set_endpointslice(endpointslice("testns", "hdlsprtls-a", "hdlsprtls",
                                      [endpoint("172.0.0.20")], ports=()))
    z.set_service(headless("testns", "hdlsempty"))
    z.set_service(service("testns", "external", type_="ExternalName",
                          external_name="ext.interwebs.test"))
    z.set_service(service("testns", "external-to-service", type_="ExternalName",
                          external_name="svc1.testns.svc.cluster.local"))
    z.set_service(service("testns", "ext-loop", type_="ExternalName",
                          external_name="ext-loop.testns.svc.cluster.local"))
    # the double endpoint: one pod behind two services
    z.set_service(headless("testns", "hdls2"))
    z.set_endpointslice(endpointslice("testns", "hdls2-a", "hdls2",
                                      [endpoint("172.0.0.2", "double-ep")]))
    z.set_service(service("kube-system", "kube-dns", ["10.96.0.10"],
                          [("dns", 53, "UDP"), ("dns-tcp", 53, "TCP"),
                           ("metrics", 9153, "TCP")]))
    z.synced = True
    return z


@pytest.fixture
def h() -> Handler:
    return Handler(build_zone())


def rrs(r, section="answer"):
    return sorted((rr.name.to_text(), dns.rdatatype.to_text(rr.rdtype), rd.to_text())
                  for rr in getattr(r, section) for rd in rr)


def check_negative(r, rcode, soa_owner=Z):
    assert r.rcode() == rcode
    assert r.flags & dns.flags.AA
    assert not r.answer
    assert len(r.authority) == 1 and len(r.authority[0]) == 1
    soa = r.authority[0]
    assert soa.rdtype == dns.rdatatype.SOA and soa.name.to_text() == soa_owner
    assert soa.ttl == 30


# ---------------------------------------------------------------------------- positive forms

def test_clusterip_a_and_aa_bit(h):
    r = ask(h, "svc1.testns.svc.cluster.local.", "A")
    assert r.rcode() == NOERROR and r.flags & dns.flags.AA
    assert rrs(r) == [("svc1.testns.svc.cluster.local.", "A", "10.0.0.1")]
    assert r.answer[0].ttl == 30


def test_service_without_endpoints_still_answers(h):
    assert rrs(ask(h, "svcempty.testns.svc.cluster.local.")) == [
        ("svcempty.testns.svc.cluster.local.", "A", "10.0.0.2")]


def test_dual_stack_a_and_aaaa(h):
    assert rrs(ask(h, "dual.testns.svc.cluster.local.", "A"))[0][2] == "10.0.0.3"
    assert rrs(ask(h, "dual.testns.svc.cluster.local.", "AAAA"))[0][2] == "10::3"


def test_headless_ready_endpoints_only(h):
    r = ask(h, "hdls1.testns.svc.cluster.local.", "A")
    assert {x[2] for x in rrs(r)} == {"172.0.0.2", "172.0.0.3", "172.0.0.4", "172.0.0.5"}
    r = ask(h, "hdls1.testns.svc.cluster.local.", "AAAA")
    assert {x[2] for x in rrs(r)} == {"5678:abcd::1", "5678:abcd::2"}


def test_endpoint_names(h):
    assert {x[2] for x in rrs(ask(h, "dup-name.hdls1.testns.svc.cluster.local."))} == {
        "172.0.0.4", "172.0.0.5"}
    assert rrs(ask(h, "172-0-0-2.hdls1.testns.svc.cluster.local."))[0][2] == "172.0.0.2"
    assert rrs(ask(h, "5678-abcd--1.hdls1.testns.svc.cluster.local.", "AAAA"))[0][2] == \
        "5678:abcd::1"
    # CoreDNS answers endpoint names of ClusterIP services too, ready ones only
    assert rrs(ask(h, "172-0-0-10.svc1.testns.svc.cluster.local."))[0][2] == "172.0.0.10"
    assert ask(h, "172-0-0-11.svc1.testns.svc.cluster.local.").rcode() == NXDOMAIN


def test_headless_without_ports_answers_a_but_no_srv(h):
    assert rrs(ask(h, "hdlsprtls.testns.svc.cluster.local."))[0][2] == "172.0.0.20"
    check_negative(ask(h, "hdlsprtls.testns.svc.cluster.local.", "SRV"), NOERROR)


def test_srv_clusterip_with_glue(h):
    r = ask(h, "_http._tcp.svc1.testns.svc.cluster.local.", "SRV")
    assert rrs(r) == [("_http._tcp.svc1.testns.svc.cluster.local.", "SRV",
                       "0 100 80 svc1.testns.svc.cluster.local.")]
    assert rrs(r, "additional") == [("svc1.testns.svc.cluster.local.", "A", "10.0.0.1")]
    # the protocol label is case-insensitive and underscores are optional
    r = ask(h, "_HTTP._TCP.svc1.testns.svc.cluster.local.", "SRV")
    assert len(r.answer[0]) == 1
    r = ask(h, "http.tcp.svc1.testns.svc.cluster.local.", "SRV")
    assert [x[2] for x in rrs(r)] == ["0 100 80 svc1.testns.svc.cluster.local."]
    assert rrs(r, "additional") == [("svc1.testns.svc.cluster.local.", "A", "10.0.0.1")]


def test_srv_unknown_port_or_proto_is_nxdomain(h):
    check_negative(ask(h, "_https._tcp.svc1.testns.svc.cluster.local.", "SRV"), NXDOMAIN)
    check_negative(ask(h, "_http._udp.svc1.testns.svc.cluster.local.", "SRV"), NXDOMAIN)


def test_srv_headless_weights_before_dedup(h):
    r = ask(h, "_http._tcp.hdls1.testns.svc.cluster.local.", "SRV")
    got = [x[2] for x in rrs(r)]
    # 6 ready addresses -> weight 100*100/600 = 16; dup-name appears once
    assert got == sorted([
        "0 16 80 172-0-0-2.hdls1.testns.svc.cluster.local.",
        "0 16 80 172-0-0-3.hdls1.testns.svc.cluster.local.",
        "0 16 80 dup-name.hdls1.testns.svc.cluster.local.",
        "0 16 80 5678-abcd--1.hdls1.testns.svc.cluster.local.",
        "0 16 80 5678-abcd--2.hdls1.testns.svc.cluster.local."])
    glue = rrs(r, "additional")
    assert ("dup-name.hdls1.testns.svc.cluster.local.", "A", "172.0.0.4") in glue
    assert ("dup-name.hdls1.testns.svc.cluster.local.", "A", "172.0.0.5") in glue
    assert ("5678-abcd--2.hdls1.testns.svc.cluster.local.", "AAAA", "5678:abcd::2") in glue
    assert len(glue) == 6


def test_srv_dual_stack_weight_50_one_record(h):
    r = ask(h, "dual.testns.svc.cluster.local.", "SRV")
    assert [x[2] for x in rrs(r)] == ["0 50 80 dual.testns.svc.cluster.local."]
    assert {x[1] for x in rrs(r, "additional")} == {"A", "AAAA"}


def test_srv_without_port_lists_every_port(h):
    r = ask(h, "kube-dns.kube-system.svc.cluster.local.", "SRV")
    assert [x[2] for x in rrs(r)] == sorted(
        f"0 33 {p} kube-dns.kube-system.svc.cluster.local." for p in (53, 53, 9153))[0:1] + \
        ["0 33 9153 kube-dns.kube-system.svc.cluster.local."]


def test_ptr_clusterip_and_endpoints(h):
    r = ask(h, "1.0.0.10.in-addr.arpa.", "PTR")
    assert rrs(r) == [("1.0.0.10.in-addr.arpa.", "PTR", "svc1.testns.svc.cluster.local.")]
    assert r.flags & dns.flags.AA
    r = ask(h, "3.0.0.172.in-addr.arpa.", "PTR")
    assert [x[2] for x in rrs(r)] == ["172-0-0-3.hdls1.testns.svc.cluster.local."]
    # one pod behind two services: one PTR per service
    r = ask(h, "2.0.0.172.in-addr.arpa.", "PTR")
    assert [x[2] for x in rrs(r)] == ["172-0-0-2.hdls1.testns.svc.cluster.local.",
                                      "double-ep.hdls2.testns.svc.cluster.local."]
    r = ask(h, "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.c.b.a.8.7.6.5.ip6.arpa.",
            "PTR")
    assert [x[2] for x in rrs(r)] == ["5678-abcd--1.hdls1.testns.svc.cluster.local."]
    # the clusterIP of a dual-stack service, IPv6 side
    r = ask(h, dns.reversename.from_address("10::3").to_text(), "PTR")
    assert [x[2] for x in rrs(r)] == ["dual.testns.svc.cluster.local."]


def test_ptr_of_unready_endpoint_falls_through(h):
    # no forwarder configured: the fall-through upstream is unavailable -> SERVFAIL
    import asyncio
    q = dns.message.make_query("6.0.0.172.in-addr.arpa.", "PTR")
    r = h.answer(q.to_wire(), False)
    assert not isinstance(r, bytes)
    out = dns.message.from_wire(asyncio.run(r))
    assert out.rcode() == SERVFAIL


def test_externalname(h):
    r = ask(h, "external.testns.svc.cluster.local.", "CNAME")
    assert rrs(r) == [("external.testns.svc.cluster.local.", "CNAME", "ext.interwebs.test.")]
    r = ask(h, "external-to-service.testns.svc.cluster.local.", "A")
    assert rrs(r) == [
        ("external-to-service.testns.svc.cluster.local.", "CNAME",
         "svc1.testns.svc.cluster.local."),
        ("svc1.testns.svc.cluster.local.", "A", "10.0.0.1")]
    assert r.answer[0].rdtype == dns.rdatatype.CNAME      # CNAME first
    check_negative(ask(h, "external.testns.svc.cluster.local.", "SRV"), NOERROR)
    check_negative(ask(h, "endpoint.external.testns.svc.cluster.local.", "CNAME"), NXDOMAIN)
    # a self-loop is answered with its CNAME only, never chased forever
    r = ask(h, "ext-loop.testns.svc.cluster.local.", "A")
    assert [x[1] for x in rrs(r)] == ["CNAME"]


def test_pod_insecure(h):
    r = ask(h, "10-240-0-1.podns.pod.cluster.local.", "A")
    assert rrs(r) == [("10-240-0-1.podns.pod.cluster.local.", "A", "10.240.0.1")]
    r = ask(h, "1234-5678--1.podns.pod.cluster.local.", "AAAA")
    assert rrs(r)[0][2] == "1234:5678::1"
    check_negative(ask(h, "blah.podns.pod.cluster.local.", "A"), NXDOMAIN)
    check_negative(ask(h, "blah.podns.pod.cluster.local.", "AAAA"), NXDOMAIN)
    check_negative(ask(h, "blah.podns.pod.cluster.local.", "HINFO"), NXDOMAIN)
    check_negative(ask(h, "10-240-0-1.pod-nons.pod.cluster.local.", "A"), NXDOMAIN)
    check_negative(ask(h, "podns.pod.cluster.local.", "A"), NOERROR)


def test_pod_disabled_and_verified():
    z = Zone(pods="disabled")
    z.set_namespace(namespace("podns"))
    z.synced = True
    check_negative(ask(Handler(z), "10-240-0-1.podns.pod.cluster.local."), NXDOMAIN)
    z = Zone(pods="verified")
    z.set_namespace(namespace("podns"))
    z.synced = True
    h = Handler(z)
    check_negative(ask(h, "10-240-0-1.podns.pod.cluster.local."), NXDOMAIN)
    z.set_pod({"metadata": {"namespace": "podns", "name": "p"},
               "status": {"podIP": "10.240.0.1", "podIPs": [{"ip": "10.240.0.1"}]}})
    assert rrs(ask(h, "10-240-0-1.podns.pod.cluster.local."))[0][2] == "10.240.0.1"
    z.delete_pod("podns", "p")
    check_negative(ask(h, "10-240-0-1.podns.pod.cluster.local."), NXDOMAIN)


def test_dns_version_soa_ns(h):
    r = ask(h, "dns-version.cluster.local.", "TXT")
    assert rrs(r) == [("dns-version.cluster.local.", "TXT", '"1.1.0"')]
    assert r.answer[0].ttl == 28800
    r = ask(h, "cluster.local.", "SOA")
    assert rrs(r) == [("cluster.local.", "SOA", "ns.dns.cluster.local. hostmaster.cluster.local. "
                       "1700000000 7200 1800 86400 30")]
    assert r.flags & dns.flags.AA and not r.authority
    r = ask(h, "cluster.local.", "NS")
    assert rrs(r) == [("cluster.local.", "NS", "kube-dns.kube-system.svc.cluster.local.")]
    assert rrs(r, "additional") == [("kube-dns.kube-system.svc.cluster.local.", "A",
                                     "10.96.0.10")]


def test_ns_without_dns_service():
    z = Zone()
    z.synced = True
    r = ask(Handler(z), "cluster.local.", "NS")
    assert rrs(r) == [("cluster.local.", "NS", "ns.dns.cluster.local.")]
    assert rrs(r, "additional") == [("ns.dns.cluster.local.", "A", "10.96.0.10")]


# ---------------------------------------------------------------------------- negative matrix

MATRIX = [
    # (name, type, rcode)
    ("svc0.testns.svc.cluster.local.", "A", NXDOMAIN),
    ("svc0.testns.svc.cluster.local.", "AAAA", NXDOMAIN),
    ("svc0.svc-nons.svc.cluster.local.", "A", NXDOMAIN),
    ("svc0.svc-nons.svc.cluster.local.", "TXT", NXDOMAIN),
    ("svc1.testns.svc.cluster.local.", "AAAA", NOERROR),
    ("svc1.testns.svc.cluster.local.", "TXT", NOERROR),
    ("svc1.testns.svc.cluster.local.", "MX", NOERROR),
    ("svc1.testns.svc.cluster.local.", "HINFO", NOERROR),
    ("svc1.testns.svc.cluster.local.", "SOA", NOERROR),
    ("svc1.testns.svc.cluster.local.", "PTR", NOERROR),
    ("svc.cluster.local.", "A", NOERROR),
    ("pod.cluster.local.", "A", NOERROR),
    ("testns.svc.cluster.local.", "A", NOERROR),
    ("svc.cluster.local.", "NS", NOERROR),
    ("testns.svc.cluster.local.", "NS", NOERROR),
    ("foo.cluster.local.", "NS", NXDOMAIN),
    ("foo.svc.cluster.local.", "NS", NXDOMAIN),
    ("foo.cluster.local.", "A", NXDOMAIN),
    ("cluster.local.", "A", NOERROR),
    ("cluster.local.", "AAAA", NOERROR),
    ("cluster.local.", "SRV", NOERROR),
    ("cluster.local.", "HINFO", NOERROR),
    ("bogusendpoint.hdls1.testns.svc.cluster.local.", "A", NXDOMAIN),
    ("bogusendpoint.svc0.testns.svc.cluster.local.", "A", NXDOMAIN),
    ("example.org.cluster.local.", "PTR", NXDOMAIN),
    ("100.0.0.10.cluster.local.", "PTR", NXDOMAIN),
    ("a.b.c.svc1.testns.svc.cluster.local.", "A", NXDOMAIN),
    ("hdlsempty.testns.svc.cluster.local.", "A", NXDOMAIN),
    ("hdlsempty.testns.svc.cluster.local.", "SRV", NXDOMAIN),
    ("hdls1.testns.svc.cluster.local.", "TXT", NOERROR),
    ("*.hdls1.testns.svc.cluster.local.", "A", NXDOMAIN),
    ("any.testns.svc.cluster.local.", "A", NXDOMAIN),
    ("nonexistent.svc-nons.svc.cluster.local.", "SRV", NXDOMAIN),
    ("testns.pod.cluster.local.", "A", NOERROR),
    ("pod-nons.pod.cluster.local.", "A", NXDOMAIN),
    ("svc-nons.svc.cluster.local.", "A", NXDOMAIN),
    ("dns-version.cluster.local.", "A", NXDOMAIN),
]


@pytest.mark.parametrize("name,rdtype,rcode", MATRIX)
def test_negative_matrix(h, name, rdtype, rcode):
    check_negative(ask(h, name, rdtype), rcode)


def test_not_synced_gives_servfail_for_would_be_nxdomain():
    z = build_zone()
    z.synced = False
    h = Handler(z)
    assert ask(h, "svc0.testns.svc.cluster.local.").rcode() == SERVFAIL
    assert ask(h, "svc1.testns.svc.cluster.local.").rcode() == NOERROR


def test_case_is_echoed(h):
    r = ask(h, "SvC1.TeStNs.SvC.cLuStEr.LoCaL.", "A")
    assert r.answer[0].name.to_text() == "SvC1.TeStNs.SvC.cLuStEr.LoCaL."
    assert r.question[0].name.to_text() == "SvC1.TeStNs.SvC.cLuStEr.LoCaL."
    r = ask(h, "SvC0.TeStNs.SvC.cLuStEr.LoCaL.", "A")
    assert r.rcode() == NXDOMAIN
    assert r.authority[0].name.to_text() == "cLuStEr.LoCaL."
    r = ask(h, "_HtTp._TcP.HdLs1.TeStNs.SvC.cLuStEr.LoCaL.", "SRV")
    assert r.answer[0].name.to_text() == "_HtTp._TcP.HdLs1.TeStNs.SvC.cLuStEr.LoCaL."


# ---------------------------------------------------------------------------- changes

def test_updates_and_deletes_change_answers(h):
    z = h.zone
    z.set_service(service("testns", "svc1", ["10.0.0.99"], [("web", 8080, "TCP")]))
    assert rrs(ask(h, "svc1.testns.svc.cluster.local."))[0][2] == "10.0.0.99"
    check_negative(ask(h, "_http._tcp.svc1.testns.svc.cluster.local.", "SRV"), NXDOMAIN)
    assert rrs(ask(h, "_web._tcp.svc1.testns.svc.cluster.local.", "SRV"))[0][2] == \
        "0 100 8080 svc1.testns.svc.cluster.local."
    # old ClusterIP PTR gone (falls through upstream), new one present
    pending = h.answer(dns.message.make_query("1.0.0.10.in-addr.arpa.", "PTR").to_wire(), False)
    assert not isinstance(pending, bytes)      # not ours any more: goes upstream
    pending.close()
    assert rrs(ask(h, "99.0.0.10.in-addr.arpa.", "PTR"))[0][2] == \
        "svc1.testns.svc.cluster.local."
    # endpoints become unready: headless answer shrinks, then the name disappears
    z.set_endpointslice(endpointslice("testns", "hdls1-v4", "hdls1", [
        endpoint("172.0.0.2", ready=False)]))
    z.delete_endpointslice("testns", "hdls1-v6")
    check_negative(ask(h, "hdls1.testns.svc.cluster.local."), NXDOMAIN)
    z.set_endpointslice(endpointslice("testns", "hdls1-v4", "hdls1", [endpoint("172.0.0.7")]))
    assert rrs(ask(h, "hdls1.testns.svc.cluster.local."))[0][2] == "172.0.0.7"
    z.delete_service("testns", "svc1")
    check_negative(ask(h, "svc1.testns.svc.cluster.local."), NXDOMAIN)
    check_negative(ask(h, "172-0-0-10.svc1.testns.svc.cluster.local."), NXDOMAIN)
    # namespace deletion hides everything in it; re-adding restores it
    z.delete_namespace("testns")
    check_negative(ask(h, "hdls1.testns.svc.cluster.local."), NXDOMAIN)
    check_negative(ask(h, "testns.svc.cluster.local."), NXDOMAIN)
    z.set_namespace(namespace("testns"))
    assert rrs(ask(h, "hdls1.testns.svc.cluster.local."))[0][2] == "172.0.0.7"


def test_externalname_switch_to_clusterip(h):
    z = h.zone
    z.set_service(service("testns", "ext", type_="ExternalName",
                          external_name="foo.example.com"))
    assert rrs(ask(h, "ext.testns.svc.cluster.local.", "CNAME"))[0][2] == "foo.example.com."
    z.set_service(service("testns", "ext", type_="ExternalName",
                          external_name="bar.example.com"))
    assert rrs(ask(h, "ext.testns.svc.cluster.local.", "CNAME"))[0][2] == "bar.example.com."
    z.set_service(service("testns", "ext", ["10.0.0.50"]))
    assert rrs(ask(h, "ext.testns.svc.cluster.local.", "A")) == [
        ("ext.testns.svc.cluster.local.", "A", "10.0.0.50")]
    check_negative(ask(h, "ext.testns.svc.cluster.local.", "CNAME"), NOERROR)


def test_soa_serial_follows_changes():
    now = [1000]
    z = Zone(clock=lambda: now[0])
    z.synced = True
    h = Handler(z)
    assert ask(h, "cluster.local.", "SOA").answer[0][0].serial == 1000
    now[0] = 2000
    z.set_namespace(namespace("x"))
    assert ask(h, "cluster.local.", "SOA").answer[0][0].serial == 2000


def test_slice_relabel_moves_endpoints():
    z = Zone()
    z.synced = True
    z.set_namespace(namespace("n"))
    z.set_service(headless("n", "a"))
    z.set_service(headless("n", "b"))
    z.set_endpointslice(endpointslice("n", "s", "a", [endpoint("10.1.0.1")]))
    h = Handler(z)
    assert ask(h, "a.n.svc.cluster.local.").rcode() == NOERROR
    z.set_endpointslice(endpointslice("n", "s", "b", [endpoint("10.1.0.1")]))
    assert ask(h, "a.n.svc.cluster.local.").rcode() == NXDOMAIN
    assert ask(h, "b.n.svc.cluster.local.").rcode() == NOERROR


def test_truncation_and_edns_buffer():
    z = Zone()
    z.synced = True
    z.set_namespace(namespace("n"))
    z.set_service(headless("n", "big"))
    z.set_endpointslice(endpointslice("n", "big-a", "big", [
        endpoint(f"10.2.{i // 250}.{i % 250 + 1}") for i in range(100)]))
    h = Handler(z)
    r = ask(h, "big.n.svc.cluster.local.")
    assert r.flags & dns.flags.TC and not r.answer
    r = ask(h, "big.n.svc.cluster.local.", payload=4096)
    assert not r.flags & dns.flags.TC and len(r.answer[0]) == 100
    assert r.edns == 0
    r = ask(h, "big.n.svc.cluster.local.", tcp=True)
    assert len(r.answer[0]) == 100
    r = ask(h, "_http._tcp.big.n.svc.cluster.local.", "SRV", payload=1232)
    assert r.flags & dns.flags.TC
    r = ask(h, "_http._tcp.big.n.svc.cluster.local.", "SRV", tcp=True)
    assert len(r.answer[0]) == 100 and len(r.additional) == 100
