"""The DNS server on real sockets (127.0.0.x only): UDP and TCP, EDNS0, truncation with the
real `dig` retrying over TCP, malformed input, fuzzing, forwarding to a local stub resolver,
SO_REUSEPORT across processes, metrics, and changes seen by the next query."""
from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.request

import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tinykube.dns.server import serve_static
from tinykube.dns.testing import endpoint, endpointslice, headless, namespace, service
from tinykube.dns.zone import Zone

HOST = "127.0.0.1"
STUB = "127.0.0.2"


def make_zone() -> Zone:
    z = Zone()
    z.set_namespace(namespace("testns"))
    z.set_service(service("testns", "svc1", ["10.0.0.1"], [("http", 80, "TCP")]))
    z.set_service(headless("testns", "big"))
    z.set_endpointslice(endpointslice("testns", "big-a", "big", [
        endpoint(f"10.2.0.{i}") for i in range(1, 101)]))
    z.set_service(service("testns", "ext", type_="ExternalName",
                          external_name="www.example.test"))
    return z


class ServerThread:
    """A real server on its own uvloop event loop in a thread."""

    def __init__(self, zone: Zone, resolv_conf: str | None = None,
                 metrics_port: int | None = None, host: str = HOST) -> None:
        import uvloop
        self.zone = zone
        self.loop = uvloop.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server = self.call(serve_static(zone, host, 0, resolv_conf, metrics_port))
        self.host, self.port = host, self.server.port

    def call(self, coro_or_fn):
        if asyncio.iscoroutine(coro_or_fn):
            return asyncio.run_coroutine_threadsafe(coro_or_fn, self.loop).result(10)

        async def run():
            return coro_or_fn()
        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(10)

    def stop(self) -> None:
        self.call(self.server.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture
def srv():
    s = ServerThread(make_zone())
    yield s
    s.stop()


def udp(s, name, rdtype="A", **kw):
    return dns.query.udp(dns.message.make_query(name, rdtype, **kw), s.host, port=s.port,
                         timeout=5)


def tcp(s, name, rdtype="A", **kw):
    return dns.query.tcp(dns.message.make_query(name, rdtype, **kw), s.host, port=s.port,
                         timeout=5)


def raw_udp(s, data: bytes, wait: float = 0.5) -> bytes | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(wait)
        sock.sendto(data, (s.host, s.port))
        try:
            return sock.recv(65535)
        except socket.timeout:
            return None


def healthy(s) -> None:
    r = udp(s, "svc1.testns.svc.cluster.local.")
    assert r.answer[0][0].address == "10.0.0.1"


def dig(*args: str) -> str:
    out = subprocess.run(["dig", *args], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return out.stdout


# ---------------------------------------------------------------------------- basics

def test_udp_and_tcp(srv):
    for ask in (udp, tcp):
        r = ask(srv, "SVC1.testns.svc.cluster.local.")
        assert r.answer[0].name.to_text() == "SVC1.testns.svc.cluster.local."
        assert r.answer[0][0].address == "10.0.0.1" and r.flags & dns.flags.AA


@pytest.mark.skipif(shutil.which("dig") is None, reason="dig not installed")
def test_real_dig_and_tcp_retry(srv):
    out = dig(f"@{srv.host}", "-p", str(srv.port), "+short", "svc1.testns.svc.cluster.local")
    assert out.split() == ["10.0.0.1"]
    out = dig(f"@{srv.host}", "-p", str(srv.port), "+short", "+tcp",
              "_http._tcp.svc1.testns.svc.cluster.local", "SRV")
    assert out.split() == ["0", "100", "80", "svc1.testns.svc.cluster.local."]
    # 100 addresses do not fit 512 bytes: TC, and dig retries over TCP by itself
    out = dig(f"@{srv.host}", "-p", str(srv.port), "+noedns", "big.testns.svc.cluster.local")
    assert "Truncated, retrying in TCP mode" in out
    rows = [ln.split() for ln in out.splitlines() if ln.startswith("big.")]
    assert len(rows) == 100 and all(r[3] == "A" and r[4].startswith("10.2.0.") for r in rows)
    out = dig(f"@{srv.host}", "-p", str(srv.port), "+short", "ext.testns.svc.cluster.local",
              "CNAME")
    assert out.strip() == "www.example.test."
    out = dig(f"@{srv.host}", "-p", str(srv.port), "-x", "10.0.0.1", "+short")
    assert out.strip() == "svc1.testns.svc.cluster.local."


def test_edns_buffer_size_and_truncation(srv):
    r = udp(srv, "big.testns.svc.cluster.local.")
    assert r.flags & dns.flags.TC and not r.answer
    r = udp(srv, "big.testns.svc.cluster.local.", use_edns=0, payload=4096)
    assert not r.flags & dns.flags.TC and len(r.answer[0]) == 100 and r.edns == 0
    r = udp(srv, "big.testns.svc.cluster.local.", use_edns=0, payload=1232)
    assert r.flags & dns.flags.TC and r.edns == 0
    r = tcp(srv, "big.testns.svc.cluster.local.")
    assert len(r.answer[0]) == 100


def test_edns_version_unknown_is_badvers(srv):
    r = udp(srv, "svc1.testns.svc.cluster.local.", use_edns=1)
    assert r.rcode() == dns.rcode.BADVERS


def test_several_queries_on_one_tcp_connection(srv):
    names = ["svc1.testns.svc.cluster.local.", "nope.testns.svc.cluster.local.",
             "big.testns.svc.cluster.local."] * 5
    msgs = [dns.message.make_query(n, "A") for n in names]
    with socket.create_connection((srv.host, srv.port), timeout=5) as sock:
        sock.sendall(b"".join(struct.pack(">H", len(w)) + w
                              for w in (m.to_wire() for m in msgs)))
        got = {}
        f = sock.makefile("rb")
        for _ in msgs:
            n = struct.unpack(">H", f.read(2))[0]
            r = dns.message.from_wire(f.read(n))
            got[r.id] = r
    for m in msgs:
        r = got[m.id]
        assert r.question[0].name == m.question[0].name
    assert sum(1 for r in got.values() if r.rcode() == dns.rcode.NXDOMAIN) == 5


def test_changes_answer_on_next_query(srv):
    healthy(srv)
    srv.call(lambda: srv.zone.set_service(service("testns", "svc1", ["10.0.0.7"])))
    assert udp(srv, "svc1.testns.svc.cluster.local.").answer[0][0].address == "10.0.0.7"
    srv.call(lambda: srv.zone.delete_service("testns", "svc1"))
    assert udp(srv, "svc1.testns.svc.cluster.local.").rcode() == dns.rcode.NXDOMAIN
    srv.call(lambda: srv.zone.set_endpointslice(
        endpointslice("testns", "big-a", "big", [endpoint("10.3.0.1")])))
    r = tcp(srv, "big.testns.svc.cluster.local.")
    assert [rd.address for rd in r.answer[0]] == ["10.3.0.1"]


# ---------------------------------------------------------------------------- malformed input

def query_bytes(name="svc1.testns.svc.cluster.local.", rdtype="A") -> bytes:
    return dns.message.make_query(name, rdtype).to_wire()


def test_malformed_packets(srv):
    good = query_bytes()
    qid = good[:2]
    cases = {
        "empty": b"",
        "short header": good[:7],
        "truncated question": good[:20],
        "no type/class": good[:-4],
        "label runs past end": good[:12] + b"\x3fabc",
        "reserved label type": good[:12] + b"\x41abc\x00\x00\x01\x00\x01",
        "compression loop": good[:12] + b"\xc0\x0c\x00\x01\x00\x01",
        "forward pointer": good[:12] + b"\xc0\x20\x00\x01\x00\x01" + b"\x00" * 30,
        "zero questions": qid + b"\x01\x00\x00\x00\x00\x00\x00\x00",
        "two questions": qid + b"\x01\x00\x00\x02\x00\x00\x00\x00" + good[12:] + good[12:],
        "name too long": good[:12] + (b"\x3f" + b"a" * 63) * 5 + b"\x00\x00\x01\x00\x01",
        "bad additional": good[:10] + b"\x00\x01" + good[12:] + b"\x00\x00",
        "counts lie": good[:6] + b"\x00\x05" + good[8:],
    }
    for label, pkt in cases.items():
        r = raw_udp(srv, pkt)
        if r is not None:
            m = dns.message.from_wire(r, ignore_trailing=True) if len(r) >= 12 else None
            assert m is not None, label
            assert m.rcode() in (dns.rcode.FORMERR, dns.rcode.NOTIMP), label
        healthy(srv)
    # unknown opcode and class
    r = raw_udp(srv, good[:2] + bytes((good[2] | (3 << 3),)) + good[3:])
    assert dns.message.from_wire(r).rcode() == dns.rcode.NOTIMP
    r = raw_udp(srv, good[:-2] + b"\x00\x03")       # class CH
    assert dns.message.from_wire(r).rcode() == dns.rcode.NOTIMP
    r = raw_udp(srv, good[:2] + b"\x81\x00" + good[4:])  # a response: silence
    assert r is None
    healthy(srv)


def test_axfr_refused(srv):
    m = dns.message.make_query("cluster.local.", "AXFR")
    r = dns.query.tcp(m, srv.host, port=srv.port, timeout=5)
    assert r.rcode() == dns.rcode.REFUSED


def test_huge_and_broken_tcp_messages(srv):
    # a 65535-byte message (one valid question plus garbage) is read, answered or rejected
    q = query_bytes()
    big = q + b"\x00" * (65535 - len(q))
    with socket.create_connection((srv.host, srv.port), timeout=5) as sock:
        sock.sendall(struct.pack(">H", 65535) + big)
        f = sock.makefile("rb")
        n = struct.unpack(">H", f.read(2))[0]
        r = dns.message.from_wire(f.read(n))
        assert r.rcode() in (dns.rcode.NOERROR, dns.rcode.FORMERR)
    # a length prefix that promises more than is sent, then the client goes away
    with socket.create_connection((srv.host, srv.port), timeout=5) as sock:
        sock.sendall(struct.pack(">H", 5000) + q)
    # a length too small to hold a header closes the connection
    with socket.create_connection((srv.host, srv.port), timeout=5) as sock:
        sock.sendall(b"\x00\x03abc")
        assert sock.recv(10) == b""
    healthy(srv)
    tcp(srv, "svc1.testns.svc.cluster.local.")


@settings(max_examples=3000, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.one_of(
    st.binary(max_size=600),
    st.tuples(st.integers(0, 200), st.binary(min_size=1, max_size=8)),
))
def test_fuzz_handler_never_raises(data):
    """Thousands of random and mutated messages straight into the handler."""
    from tinykube.dns.server import Handler
    h = _fuzz_handler()
    if isinstance(data, tuple):
        pos, junk = data
        base = bytearray(query_bytes("_http._tcp.svc1.testns.svc.cluster.local.", "SRV"))
        pos = min(pos, len(base))
        base[pos:pos + len(junk)] = junk
        data = bytes(base)
    r = h.answer(data, False)
    if asyncio.iscoroutine(r):
        r.close()                   # would need the network: not run here
        return
    if r is not None:
        assert len(r) >= 12 and r[:2] == data[:2] and r[2] & 0x80
        if (r[2] >> 3) & 0xF != 5:          # dnspython reads opcode UPDATE differently
            dns.message.from_wire(r, ignore_trailing=True)
    assert isinstance(h, Handler)


_H = []


def _fuzz_handler():
    if not _H:
        from tinykube.dns.server import Handler
        z = make_zone()
        z.synced = True
        _H.append(Handler(z))
    return _H[0]


def test_fuzz_over_the_wire(srv):
    """Hypothesis-generated garbage over UDP and TCP; the server keeps answering correctly."""
    udp_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tcp_sock = socket.create_connection((srv.host, srv.port), timeout=5)
    try:
        @settings(max_examples=1500, deadline=None, suppress_health_check=list(HealthCheck),
                  database=None)
        @given(st.binary(min_size=12, max_size=300), st.integers(0, 255))
        def send(blob, flipper):
            base = bytearray(query_bytes())
            if flipper < 128:
                blob = bytes(base[:2]) + bytes((base[2] & 0x7F,)) + blob[3:]
            udp_sock.sendto(blob, (srv.host, srv.port))

        send()
        # garbage framed over TCP is answered FORMERR/NOTIMP or ignored, connection survives
        for i in range(200):
            blob = os.urandom(12 + i)
            blob = blob[:2] + bytes((blob[2] & 0x7F,)) + blob[3:]
            tcp_sock.sendall(struct.pack(">H", len(blob)) + blob)
        m = dns.message.make_query("svc1.testns.svc.cluster.local.", "A")
        tcp_sock.sendall(struct.pack(">H", len(m.to_wire())) + m.to_wire())
        f = tcp_sock.makefile("rb")
        while True:
            n = struct.unpack(">H", f.read(2))[0]
            data = f.read(n)
            if data[:2] == m.to_wire()[:2] and dns.message.from_wire(
                    data, ignore_trailing=True).question == m.question:
                r = dns.message.from_wire(data)
                assert r.answer[0][0].address == "10.0.0.1"
                break
    finally:
        udp_sock.close()
        tcp_sock.close()
    healthy(srv)


# ---------------------------------------------------------------------------- forwarding

class StubResolver:
    """A tiny upstream on 127.0.0.2 answering example.test names, counting queries."""

    def __init__(self, answer_ttl: int = 300, mute: bool = False) -> None:
        self.count = 0
        self.mute = mute
        self.ttl = answer_ttl
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind((STUB, 0))
        self.port = self.udp.getsockname()[1]
        self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.tcp.bind((STUB, self.port))
        self.tcp.listen(8)
        self.udp.settimeout(0.2)
        self.tcp.settimeout(0.2)
        self.stopped = False
        self.threads = [threading.Thread(target=self._udp, daemon=True),
                        threading.Thread(target=self._tcp, daemon=True)]
        for t in self.threads:
            t.start()

    def reply(self, data: bytes, over_tcp: bool) -> bytes:
        q = dns.message.from_wire(data)
        self.count += 1
        r = dns.message.make_response(q)
        name = q.question[0].name.to_text().lower()
        rdtype = q.question[0].rdtype
        if name == "www.example.test." and rdtype == dns.rdatatype.A:
            r.answer.append(dns.rrset.from_text(q.question[0].name, self.ttl, "IN", "A",
                                                "192.0.2.10"))
        elif name == "many.example.test." and rdtype == dns.rdatatype.A:
            if not over_tcp:
                r.flags |= dns.flags.TC
            else:
                r.answer.append(dns.rrset.from_text(
                    q.question[0].name, self.ttl, "IN", "A",
                    *[f"192.0.2.{i}" for i in range(1, 121)]))
        elif name == "4.3.2.1.in-addr.arpa." and rdtype == dns.rdatatype.PTR:
            r.answer.append(dns.rrset.from_text(q.question[0].name, self.ttl, "IN", "PTR",
                                                "host.example.test."))
        else:
            r.set_rcode(dns.rcode.NXDOMAIN)
            r.authority.append(dns.rrset.from_text(
                "example.test.", 60, "IN", "SOA", "ns.example.test. h.example.test. 1 2 3 4 60"))
        return r.to_wire()

    def _udp(self) -> None:
        while not self.stopped:
            try:
                data, addr = self.udp.recvfrom(65535)
            except (socket.timeout, OSError):
                continue
            if not self.mute:
                self.udp.sendto(self.reply(data, False), addr)

    def _tcp(self) -> None:
        while not self.stopped:
            try:
                conn, _ = self.tcp.accept()
            except (socket.timeout, OSError):
                continue
            with conn:
                conn.settimeout(2)
                try:
                    f = conn.makefile("rb")
                    n = struct.unpack(">H", f.read(2))[0]
                    out = self.reply(f.read(n), True)
                    conn.sendall(struct.pack(">H", len(out)) + out)
                except (OSError, struct.error):
                    pass

    def close(self) -> None:
        self.stopped = True
        for t in self.threads:
            t.join(2)
        self.udp.close()
        self.tcp.close()


@pytest.fixture
def forwarding(tmp_path):
    stub = StubResolver()
    conf = tmp_path / "resolv.conf"
    conf.write_text(f"# test resolver\nsearch example.test\nnameserver {STUB}:{stub.port}\n")
    s = ServerThread(make_zone(), resolv_conf=str(conf))
    yield s, stub
    s.stop()
    stub.close()


def test_forward_and_cache(forwarding):
    s, stub = forwarding
    r = udp(s, "WWW.Example.TEST.")
    assert r.rcode() == dns.rcode.NOERROR
    assert r.answer[0].name.to_text() == "WWW.Example.TEST."
    assert r.answer[0][0].address == "192.0.2.10"
    assert r.answer[0].ttl <= 30             # upstream said 300; cache 30 caps it
    n = stub.count
    r = tcp(s, "www.example.test.")
    assert r.answer[0][0].address == "192.0.2.10"
    assert stub.count == n                  # served from the cache
    r = udp(s, "nothing.example.test.")
    assert r.rcode() == dns.rcode.NXDOMAIN and r.authority[0].rdtype == dns.rdatatype.SOA
    n = stub.count
    assert udp(s, "nothing.example.test.").rcode() == dns.rcode.NXDOMAIN
    assert stub.count == n                  # negative answers cached too


def test_forward_truncated_upstream_retried_over_tcp(forwarding):
    s, stub = forwarding
    r = tcp(s, "many.example.test.")
    assert len(r.answer[0]) == 120
    r = udp(s, "many.example.test.")        # too big for 512 bytes: TC to the client
    assert r.flags & dns.flags.TC


def test_reverse_fallthrough_and_externalname_chase(forwarding):
    s, stub = forwarding
    r = udp(s, "4.3.2.1.in-addr.arpa.", "PTR")
    assert r.answer[0][0].target.to_text() == "host.example.test."
    r = udp(s, "1.0.0.10.in-addr.arpa.", "PTR")
    assert r.answer[0][0].target.to_text() == "svc1.testns.svc.cluster.local."
    r = udp(s, "ext.testns.svc.cluster.local.", "A")
    types = [(rr.name.to_text(), dns.rdatatype.to_text(rr.rdtype)) for rr in r.answer]
    assert types == [("ext.testns.svc.cluster.local.", "CNAME"), ("www.example.test.", "A")]
    assert r.answer[1][0].address == "192.0.2.10"


def test_unreachable_upstream_servfail(tmp_path):
    stub = StubResolver(mute=True)          # receives, never answers
    conf = tmp_path / "resolv.conf"
    conf.write_text(f"nameserver {STUB}:{stub.port}\n")
    s = ServerThread(make_zone(), resolv_conf=str(conf))
    try:
        # dnspython's own timeout is the bound: the answer must come before it
        r = dns.query.udp(dns.message.make_query("www.example.test.", "A"), s.host,
                          port=s.port, timeout=4)
        assert r.rcode() == dns.rcode.SERVFAIL
        healthy(s)
    finally:
        s.stop()
        stub.close()
    # a closed port (ICMP unreachable) fails at once as well
    conf.write_text(f"nameserver {STUB}:{stub.port}\n")
    s = ServerThread(make_zone(), resolv_conf=str(conf))
    try:
        r = dns.query.udp(dns.message.make_query("www.example.test.", "A"), s.host,
                          port=s.port, timeout=4)
        assert r.rcode() == dns.rcode.SERVFAIL
    finally:
        s.stop()


def test_no_upstream_means_servfail(srv):
    assert udp(srv, "www.example.test.").rcode() == dns.rcode.SERVFAIL


# ---------------------------------------------------------------------------- metrics

def free_port(host: str = HOST) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def test_metrics(tmp_path):
    mport = free_port()
    s = ServerThread(make_zone(), metrics_port=mport)
    try:
        udp(s, "svc1.testns.svc.cluster.local.")
        udp(s, "nope.testns.svc.cluster.local.")
        tcp(s, "svc1.testns.svc.cluster.local.", "AAAA")
        text = urllib.request.urlopen(f"http://{HOST}:{mport}/metrics", timeout=5).read().decode()
    finally:
        s.stop()
    assert "# TYPE coredns_dns_requests_total counter" in text
    assert 'proto="udp",family="1",type="A"} 2' in text
    assert 'proto="tcp",family="1",type="AAAA"} 1' in text
    assert 'rcode="NXDOMAIN"} 1' in text and 'rcode="NOERROR"} 2' in text
    assert 'coredns_dns_request_duration_seconds_count{' in text
    assert '_bucket{' in text and 'le="+Inf"} 2' in text


# ---------------------------------------------------------------------------- SO_REUSEPORT

def test_two_processes_share_one_address(tmp_path):
    host = "127.0.0.3"
    objs = [namespace("testns"), service("testns", "svc1", ["10.0.0.1"]),
            headless("testns", "h"),
            endpointslice("testns", "h-a", "h", [endpoint("10.2.0.1", "web-0")])]
    (tmp_path / "objs.json").write_text(json.dumps(objs))
    port = free_port(host)
    procs = []
    try:
        for i in range(2):
            ready = tmp_path / f"ready{i}"
            procs.append((subprocess.Popen(
                [sys.executable, "-m", "tinykube.dns", "--static", str(tmp_path / "objs.json"),
                 "--listen", host, "--port", str(port), "--no-metrics",
                 "--ready-file", str(ready)], cwd=os.path.dirname(os.path.dirname(
                     os.path.dirname(os.path.abspath(__file__))))), ready))
        for p, ready in procs:
            for _ in range(200):
                if ready.exists() or p.poll() is not None:
                    break
                time.sleep(0.05)
            assert p.poll() is None and ready.exists(), "both processes serve"
        seen = set()
        for i in range(60):
            m = dns.message.make_query("web-0.h.testns.svc.cluster.local.", "A")
            if i % 2:
                r = dns.query.tcp(m, host, port=port, timeout=5)
            else:
                r = dns.query.udp(m, host, port=port, timeout=5)
            seen.add(r.answer[0][0].address)
            assert udp_like(host, port).rcode() == dns.rcode.NXDOMAIN
        assert seen == {"10.2.0.1"}
    finally:
        for p, _ in procs:
            p.terminate()
            p.wait(10)


def udp_like(host, port):
    return dns.query.udp(dns.message.make_query("x.testns.svc.cluster.local.", "A"), host,
                         port=port, timeout=5)
