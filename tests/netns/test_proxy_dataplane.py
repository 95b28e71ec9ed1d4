"""The proxy's nftables rules carrying real traffic, entirely inside network namespaces.

Topology (all namespaces and links are made here and deleted at the end, even on failure):

    node netns  ── bridge tk<id>br 10.244.0.1/24 ── veth ── pod netns p1 10.244.0.11
                │                                 ├─ veth ── pod netns p2 10.244.0.12
                │                                 └─ veth ── pod netns p3 10.244.0.13
                └─ veth tk<id>x 10.77.0.1/24 ─────────────── ext netns 10.77.0.2 (outside client)

The node namespace holds the guard, the `local` route for 10.96.0.0/12 and the proxy table; the
host's own namespace is never touched. Each pod runs TCP servers on 8080/8081 and UDP on 5353
that answer "<pod> <port> <client ip>".
"""
from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid

import pytest

from tinykube.agent.proxy import Proxier, read_counters
from tinykube.net import guard, routes

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces")

POD_CIDR = "10.244.0.0/16"
SVC_CIDR = "10.96.0.0/12"
NODE_IP = "10.77.0.1"
EXT_IP = "10.77.0.2"
PODS = {"p1": "10.244.0.11", "p2": "10.244.0.12", "p3": "10.244.0.13"}
PY = sys.executable

SERVER = r'''
import socket, sys, threading
name = sys.argv[1]
def serve(c, a, port):
    msg = f"{name} {port} {a[0]}\n".encode()
    try:
        c.sendall(msg)
        for _ in c.makefile("rb"):
            c.sendall(msg)
    except OSError:
        pass
    finally:
        c.close()
def tcp(s, port):
    while True:
        c, a = s.accept()
        threading.Thread(target=serve, args=(c, a, port), daemon=True).start()
def udp(s, port):
    while True:
        d, a = s.recvfrom(512)
        s.sendto(f"{name} {port} {a[0]}".encode(), a)
ts = []
for port in (8080, 8081):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port)); s.listen(256); ts.append(threading.Thread(target=tcp, args=(s, port)))
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("0.0.0.0", 5353))
ts.append(threading.Thread(target=udp, args=(u, 5353)))
for t in ts: t.daemon = True; t.start()
print("ready", flush=True)
sys.stdin.read()
'''

CLIENT = r'''
import json, socket, sys
mode, host, port, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
out = []
for i in range(n):
    try:
        if mode == "tcp":
            with socket.create_connection((host, port), timeout=10) as s:
                out.append(s.makefile().readline().strip())
        else:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                if mode.startswith("udp:"):        # udp:<source port>: one flow throughout
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    s.bind(("0.0.0.0", int(mode[4:])))
                elif mode.startswith("udpseq:"):   # udpseq:<first port>: a new flow each time
                    s.bind(("0.0.0.0", int(mode[7:]) + i))
                s.settimeout(5); s.connect((host, port)); s.send(b"x")
                out.append(s.recv(512).decode())
    except ConnectionRefusedError:
        out.append("ERR:refused")
    except socket.timeout:
        out.append("ERR:timeout")
    except OSError as e:
        out.append(f"ERR:{e.errno}")
print(json.dumps(out))
'''

PERSIST = r'''
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
f = s.makefile()
print(f.readline().strip(), flush=True)
for _ in sys.stdin:
    try:
        s.sendall(b"ping\n"); print(f.readline().strip() or "ERR:closed", flush=True)
    except OSError as e:
        print(f"ERR:{e}", flush=True)
'''


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    r = subprocess.run(list(args), capture_output=True, text=True)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {r.stderr.strip()}")
    return r


class Topo:
    def __init__(self) -> None:
        self.id = uuid.uuid4().hex[:4]
        self.cluster = f"px{self.id}"
        self.node = f"tkpx{self.id}-node"
        self.ext = f"tkpx{self.id}-ext"
        self.pod_ns = {p: f"tkpx{self.id}-{p}" for p in PODS}
        self.bridge = f"tk{self.id}br"
        self.procs: list[subprocess.Popen] = []
        self.namespaces: list[str] = []
        self.tables = 0

    def netns(self, name: str) -> str:
        sh("ip", "netns", "add", name)
        self.namespaces.append(name)
        sh("ip", "-n", name, "link", "set", "lo", "up")
        return name

    def build(self) -> None:
        n = self.netns(self.node)
        sh("ip", "netns", "exec", n, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        # the guard before anything routes a cluster range
        guard.install_guard(self.cluster, [POD_CIDR, SVC_CIDR, "10.240.0.0/16"], netns=n)
        sh("ip", "-n", n, "link", "add", self.bridge, "type", "bridge")
        sh("ip", "-n", n, "addr", "add", "10.244.0.1/24", "dev", self.bridge)
        sh("ip", "-n", n, "link", "set", self.bridge, "up")
        for i, (pod, ip) in enumerate(PODS.items()):
            pns = self.netns(self.pod_ns[pod])
            host_if = f"tk{self.id}v{i}"
            sh("ip", "-n", n, "link", "add", host_if, "type", "veth", "peer", "name", "eth0",
               "netns", pns)
            sh("ip", "-n", n, "link", "set", host_if, "master", self.bridge, "up")
            sh("ip", "netns", "exec", n, "bridge", "link", "set", "dev", host_if, "hairpin", "on")
            sh("ip", "-n", pns, "addr", "add", f"{ip}/24", "dev", "eth0")
            sh("ip", "-n", pns, "link", "set", "eth0", "up")
            sh("ip", "-n", pns, "route", "add", "default", "via", "10.244.0.1")
            p = subprocess.Popen(["ip", "netns", "exec", pns, PY, "-c", SERVER, pod],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            self.procs.append(p)
            assert p.stdout.readline().strip() == "ready"
        e = self.netns(self.ext)
        sh("ip", "-n", n, "link", "add", f"tk{self.id}x", "type", "veth", "peer", "name", "eth0",
           "netns", e)
        sh("ip", "-n", n, "addr", "add", f"{NODE_IP}/24", "dev", f"tk{self.id}x")
        sh("ip", "-n", n, "link", "set", f"tk{self.id}x", "up")
        sh("ip", "-n", e, "addr", "add", f"{EXT_IP}/24", "dev", "eth0")
        sh("ip", "-n", e, "link", "set", "eth0", "up")
        sh("ip", "-n", e, "route", "add", "default", "via", NODE_IP)

    def destroy(self) -> None:
        for p in self.procs:
            p.kill()
            p.wait()
        for ns in reversed(self.namespaces):
            sh("ip", "netns", "del", ns, check=False)

    def new_table(self) -> str:
        self.tables += 1
        return f"tinykube-{self.cluster}-proxy{self.tables}"

    def proxier(self, **kw) -> Proxier:
        return Proxier(None, "node1", [NODE_IP], [POD_CIDR], self.new_table(),
                       service_cidrs=[SVC_CIDR], netns=self.node, guard_cluster=self.cluster,
                       min_sync_period=0.01, **kw)

    def where(self, name: str) -> str:
        return {"node": self.node, "ext": self.ext}.get(name) or self.pod_ns[name]

    def clients(self, src: str, mode: str, host: str, port: int, n: int) -> list[str]:
        r = sh("ip", "netns", "exec", self.where(src), PY, "-c", CLIENT, mode, host, str(port), str(n))
        return json.loads(r.stdout)

    async def aclients(self, *a) -> list[str]:
        return await asyncio.to_thread(self.clients, *a)


@pytest.fixture(scope="module")
def topo():
    t = Topo()
    try:
        t.build()
        yield t
    finally:
        t.destroy()


# ------------------------------------------------------------------------- object builders

def service(name, cip, ports=None, ns="default", **spec) -> dict:
    s = {"kind": "Service", "metadata": {"name": name, "namespace": ns, "resourceVersion": "1"},
         "spec": {"type": "ClusterIP", "clusterIP": cip, "clusterIPs": [cip],
                  "ports": ports or [{"port": 80, "protocol": "TCP", "targetPort": 8080}]}}
    s["spec"].update(spec)
    return s


def eps_slice(svc, pods, ports=None, ns="default", node="node1", sname=None) -> dict:
    return {"kind": "EndpointSlice", "addressType": "IPv4",
            "metadata": {"name": sname or f"{svc}-x1", "namespace": ns,
                         "labels": {"kubernetes.io/service-name": svc}},
            "endpoints": [{"addresses": [PODS[p]], "conditions": {"ready": True},
                           "nodeName": node} for p in pods],
            "ports": ports if ports is not None else [{"name": "", "port": 8080, "protocol": "TCP"}]}


def names(replies: list[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in replies:
        k = r.split()[0] if not r.startswith("ERR") else r
        out[k] = out.get(k, 0) + 1
    return out


async def started(t: Topo, services, slices, **kw) -> Proxier:
    p = t.proxier(**kw)
    p.replace_all(services, slices)
    await p.start()
    return p


# ------------------------------------------------------------------------------- tests

def test_clusterip_tcp_udp_distribution_from_node_and_pod(topo):
    cip = "10.96.0.20"

    async def body():
        svc = service("web", cip, ports=[
            {"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080},
            {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 5353}])
        sl = eps_slice("web", ["p1", "p2", "p3"], ports=[
            {"name": "http", "port": 8080, "protocol": "TCP"},
            {"name": "dns", "port": 5353, "protocol": "UDP"}])
        p = await started(topo, [svc], [sl])
        try:
            for src in ("node", "p1"):
                got = await topo.aclients(src, "tcp", cip, 80, 90)
                n = names(got)
                assert set(n) == {"p1", "p2", "p3"}, got[:5]
                assert min(n.values()) >= 10, n   # fair share: expected 30 each
                for r in got:
                    pod, port, client = r.split()
                    assert port == "8080"
                    if src == "node":
                        assert client == "10.244.0.1"      # masqueraded: not a pod source
                    elif pod != "p1":
                        assert client == PODS["p1"]        # pod -> service keeps its IP
                    else:
                        assert client == "10.244.0.1"      # hairpin is masqueraded
            # distinct source ports: every datagram is a new flow, so a new choice
            got = await topo.aclients("p2", "udpseq:41000", cip, 53, 60)
            n = names(got)
            assert set(n) == {"p1", "p2", "p3"} and min(n.values()) >= 5, n
            assert all(r.split()[1] == "5353" for r in got)
            counts = await p.counters()
            tcp = {k[3]: v for k, v in counts.items() if k[:3] == ("default", "web", "80/TCP")}
            assert sum(tcp.values()) == 180 and min(tcp.values()) >= 20, tcp
            udp = {k[3]: v for k, v in counts.items() if k[:3] == ("default", "web", "53/UDP")}
            assert sum(udp.values()) == 60, udp
            assert set(tcp) == {f"{ip}:8080" for ip in PODS.values()}
        finally:
            await p.stop(delete_rules=True)
    asyncio.run(body())


def test_named_target_port_multi_port_and_no_endpoints_refuse(topo):
    async def body():
        svc = service("named", "10.96.0.21", ports=[
            {"name": "web", "port": 80, "protocol": "TCP", "targetPort": "alt"},
            {"name": "other", "port": 81, "protocol": "TCP", "targetPort": 8080}])
        # the slice carries the resolved port of the named targetPort
        sl = eps_slice("named", ["p2"], ports=[{"name": "web", "port": 8081, "protocol": "TCP"},
                                               {"name": "other", "port": 8080, "protocol": "TCP"}])
        empty = service("empty", "10.96.0.22", ports=[
            {"port": 80, "protocol": "TCP", "targetPort": 8080},
            {"port": 53, "protocol": "UDP", "targetPort": 5353, "name": "u"}])
        p = await started(topo, [svc, empty], [sl, eps_slice("empty", [])])
        try:
            assert {r.split()[1] for r in await topo.aclients("p1", "tcp", "10.96.0.21", 80, 5)} == {"8081"}
            assert {r.split()[1] for r in await topo.aclients("p1", "tcp", "10.96.0.21", 81, 5)} == {"8080"}
            for src in ("node", "p1"):
                assert await topo.aclients(src, "tcp", "10.96.0.22", 80, 3) == ["ERR:refused"] * 3
                # a datagram rejected in the host's own output hook fails the send (EPERM);
                # from a pod the ICMP port-unreachable comes back as "connection refused"
                udp_err = "ERR:1" if src == "node" else "ERR:refused"
                assert await topo.aclients(src, "udp", "10.96.0.22", 53, 2) == [udp_err] * 2
                # a ClusterIP port nobody serves, and an unallocated ClusterIP, refuse too
                assert await topo.aclients(src, "tcp", "10.96.0.21", 82, 1) == ["ERR:refused"]
                assert await topo.aclients(src, "tcp", "10.96.0.99", 80, 1) == ["ERR:refused"]
        finally:
            await p.stop(delete_rules=True)
    asyncio.run(body())


def test_hairpin_pod_reaches_itself_through_its_service(topo):
    async def body():
        p = await started(topo, [service("self", "10.96.0.23")], [eps_slice("self", ["p3"])])
        try:
            got = await topo.aclients("p3", "tcp", "10.96.0.23", 80, 5)
            assert got == ["p3 8080 10.244.0.1"] * 5
        finally:
            await p.stop(delete_rules=True)
    asyncio.run(body())


def test_session_affinity_client_ip(topo):
    async def body():
        svc = service("sticky", "10.96.0.24", sessionAffinity="ClientIP",
                      sessionAffinityConfig={"clientIP": {"timeoutSeconds": 600}})
        p = await started(topo, [svc], [eps_slice("sticky", ["p1", "p2", "p3"])])
        try:
            for src in ("p1", "p2", "node"):
                got = names(await topo.aclients(src, "tcp", "10.96.0.24", 80, 20))
                assert len(got) == 1 and sum(got.values()) == 20, got
        finally:
            await p.stop(delete_rules=True)
    asyncio.run(body())


def test_session_affinity_forgets_an_endpoint_that_goes(topo):
    async def body():
        svc = service("sticky2", "10.96.0.36", sessionAffinity="ClientIP",
                      sessionAffinityConfig={"clientIP": {"timeoutSeconds": 600}})
        sl = eps_slice("sticky2", ["p1", "p2", "p3"])
        p = await started(topo, [svc], [sl])
        try:
            first = names(await topo.aclients("node", "tcp", "10.96.0.36", 80, 5))
            assert len(first) == 1, first
            chosen = next(iter(first))
            rest = [x for x in PODS if x != chosen]
            p.on_slice_update(sl, eps_slice("sticky2", rest))
            await p.wait_applied()
            # the record pointing at the removed endpoint is gone: a new sticky choice
            again = names(await topo.aclients("node", "tcp", "10.96.0.36", 80, 10))
            assert len(again) == 1 and next(iter(again)) in rest, again
        finally:
            await p.stop(delete_rules=True)
    asyncio.run(body())


def test_table_explains_itself_and_grows_tiers_without_a_full_sync(topo):
    async def body():
        svc = service("wide", "10.96.0.37")
        p = await started(topo, [svc], [eps_slice("wide", ["p1"])])
        try:
            ids = sh("ip", "netns", "exec", topo.node, "nft", "list", "set", "ip", p.cfg.table,
                     "ids").stdout
            assert 'comment "default/wide/tcp/80"' in ids
            # 20 endpoints: more than the standing lb-N tiers; no packet is sent to them
            many = eps_slice("wide", ["p1"])
            many["endpoints"] = [{"addresses": [f"10.244.0.{100 + k}"], "conditions": {"ready": True},
                                  "nodeName": "node1"} for k in range(20)]
            full = p.syncs["full"]
            p.on_slice_update(eps_slice("wide", ["p1"]), many)
            await p.wait_applied()
            assert p.syncs["full"] == full and p.syncs["failed"] == 0
            table = sh("ip", "netns", "exec", topo.node, "nft", "list", "table", "ip",
                       p.cfg.table).stdout
            assert "numgen random mod 20 map @endpoints-tcp" in table
            # and back to one real endpoint, which answers
            p.on_slice_update(many, eps_slice("wide", ["p2"]))
            await p.wait_applied()
            assert names(await topo.aclients("p1", "tcp", "10.96.0.37", 80, 3)) == {"p2": 3}
        finally:
            await p.stop(delete_rules=True)
    asyncio.run(body())


def test_nodeport_and_external_ips(topo):
    async def body():
        np = service("np", "10.96.0.25", type="NodePort",
                     ports=[{"port": 80, "protocol": "TCP", "targetPort": 8080, "nodePort": 30080}])
        ex = service("ex", "10.96.0.26", externalIPs=["10.240.0.7"])
        lb = service("lb", "10.96.0.31", type="LoadBalancer",
                     ports=[{"port": 80, "protocol": "TCP", "targetPort": 8080, "nodePort": 30082}])
        lb["status"] = {"loadBalancer": {"ingress": [{"ip": "10.240.1.1"}]}}
        p = await started(topo, [np, ex, lb], [eps_slice("np", ["p1", "p2"]), eps_slice("ex", ["p3"]),
                                               eps_slice("lb", ["p2"])])
        try:
            for src in ("ext", "node", "p3"):
                got = await topo.aclients(src, "tcp", NODE_IP, 30080, 20)
                assert set(names(got)) <= {"p1", "p2"} and sum(names(got).values()) == 20, got
            # external traffic under policy Cluster is masqueraded
            assert {r.split()[2] for r in await topo.aclients("ext", "tcp", NODE_IP, 30080, 5)} == {"10.244.0.1"}
            # not a node port: nothing answers
            assert await topo.aclients("ext", "tcp", NODE_IP, 30081, 1) == ["ERR:refused"]
            assert await topo.aclients("ext", "tcp", "10.240.0.7", 80, 3) == ["p3 8080 10.244.0.1"] * 3
            assert names(await topo.aclients("p1", "tcp", "10.240.0.7", 80, 3)) == {"p3": 3}
            # only the listed address answers
            other = await topo.aclients("ext", "tcp", "10.240.0.8", 80, 1)
            assert other[0].startswith("ERR"), other
            # a LoadBalancer ingress IP answers like an externalIP, and its node port too
            assert names(await topo.aclients("ext", "tcp", "10.240.1.1", 80, 3)) == {"p2": 3}
            assert names(await topo.aclients("ext", "tcp", NODE_IP, 30082, 3)) == {"p2": 3}
        finally:
            await p.stop(delete_rules=True)
    asyncio.run(body())


def test_external_traffic_policy_local_and_internal_local(topo):
    async def body():
        np = service("loc", "10.96.0.27", type="NodePort", externalTrafficPolicy="Local",
                     internalTrafficPolicy="Local",
                     ports=[{"port": 80, "protocol": "TCP", "targetPort": 8080, "nodePort": 30081}])
        sl = eps_slice("loc", ["p1"])
        other = eps_slice("loc", ["p2"], node="node2", sname="loc-x2")
        p = await started(topo, [np], [sl, other])
        try:
            # only this node's endpoint, and the client's IP is kept for external traffic
            assert await topo.aclients("ext", "tcp", NODE_IP, 30081, 5) == [f"p1 8080 {EXT_IP}"] * 5
            assert names(await topo.aclients("p3", "tcp", "10.96.0.27", 80, 10)) == {"p1": 10}
        finally:
            await p.stop(delete_rules=True)
    asyncio.run(body())


def test_incremental_update_new_endpoint_receives_traffic(topo):
    async def body():
        svc = service("grow", "10.96.0.28")
        p = await started(topo, [svc], [eps_slice("grow", ["p1"])])
        try:
            assert names(await topo.aclients("p2", "tcp", "10.96.0.28", 80, 5)) == {"p1": 5}
            full_before = p.syncs["full"]
            old = eps_slice("grow", ["p1"])
            p.on_slice_update(old, eps_slice("grow", ["p1", "p2", "p3"]))
            await p.wait_applied()
            assert p.syncs["incremental"] >= 1 and p.syncs["full"] == full_before
            n = names(await topo.aclients("p2", "tcp", "10.96.0.28", 80, 60))
            assert set(n) == {"p1", "p2", "p3"}, n
            # service deleted: its address refuses at once
            p.on_service_delete(svc)
            await p.wait_applied()
            assert await topo.aclients("p2", "tcp", "10.96.0.28", 80, 1) == ["ERR:refused"]
        finally:
            await p.stop(delete_rules=True)
    asyncio.run(body())


def test_restart_keeps_connections_and_resyncs(topo):
    async def body():
        svc = service("keep", "10.96.0.29")
        sl = eps_slice("keep", ["p1", "p2"])
        a = await started(topo, [svc], [sl])
        table = a.cfg.table
        conn = subprocess.Popen(["ip", "netns", "exec", topo.pod_ns["p3"], PY, "-c", PERSIST,
                                 "10.96.0.29", "80"], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True)

        def ping() -> str:
            conn.stdin.write("\n")
            conn.stdin.flush()
            return conn.stdout.readline().strip()
        try:
            first = await asyncio.to_thread(conn.stdout.readline)
            backend = first.split()[0]
            assert backend in ("p1", "p2")
            before = sum((await read_counters(table, topo.node)).values())
            await a.stop()                         # the agent goes away; rules stay
            assert (await asyncio.to_thread(ping)).split()[0] == backend
            assert len(await topo.aclients("p3", "tcp", "10.96.0.29", 80, 5)) == 5
            b = topo.proxier()
            b.cfg = a.cfg                          # same table, as a restarted agent has
            b.replace_all([svc], [eps_slice("keep", ["p1", "p2", "p3"])])
            await b.start()
            try:
                assert (await asyncio.to_thread(ping)).split()[0] == backend
                n = names(await topo.aclients("p2", "tcp", "10.96.0.29", 80, 60))
                assert set(n) == {"p1", "p2", "p3"}, n
                after = sum((await read_counters(table, topo.node)).values())
                assert after == before + 5 + 60      # counters survived the resync
            finally:
                await b.stop(delete_rules=True)
        finally:
            conn.kill()
            conn.wait()
    asyncio.run(body())


def test_guard_counts_leaks_and_stays_zero_for_cluster_traffic(topo):
    async def body():
        svc = service("g", "10.96.0.30")
        p = await started(topo, [svc], [eps_slice("g", ["p1"])])
        sink = topo.netns(f"tkpx{topo.id}-sink")
        try:
            assert routes.has_local_route(SVC_CIDR, topo.node)
            assert len(await topo.aclients("node", "tcp", "10.96.0.30", 80, 3)) == 3
            assert len(await topo.aclients("ext", "tcp", NODE_IP, 30080, 1)) == 1
            assert guard.guard_leak_count(topo.cluster, topo.node) == 0
            # a link tinykube did not make, with a pod-range route through it
            sh("ip", "-n", topo.node, "link", "add", f"leak{topo.id}", "type", "veth", "peer",
               "name", "eth0", "netns", sink)
            # no IPv6 chatter (router/neighbour solicitations) on that link, so its packet
            # count shows exactly what leaked
            sh("ip", "netns", "exec", topo.node, "sysctl", "-qw",
               f"net.ipv6.conf.leak{topo.id}.disable_ipv6=1")
            sh("ip", "netns", "exec", sink, "sysctl", "-qw", "net.ipv6.conf.eth0.disable_ipv6=1")
            sh("ip", "-n", topo.node, "link", "set", f"leak{topo.id}", "up")
            sh("ip", "-n", sink, "link", "set", "eth0", "up")
            sh("ip", "-n", topo.node, "route", "add", "10.244.9.0/24", "dev", f"leak{topo.id}")
            got = await topo.aclients("node", "tcp", "10.244.9.9", 80, 1)
            assert got[0].startswith("ERR"), got
            assert guard.guard_leak_count(topo.cluster, topo.node) >= 1
            # a service whose endpoint lies behind that link: DNATed packets are caught too
            mid = guard.guard_leak_count(topo.cluster, topo.node)
            leaky = dict(eps_slice("g", ["p1"]))
            leaky["endpoints"] = [{"addresses": ["10.244.9.9"], "conditions": {"ready": True}}]
            p.on_slice_update(eps_slice("g", ["p1"]), leaky)
            await p.wait_applied()
            assert (await topo.aclients("p2", "tcp", "10.96.0.30", 80, 1))[0].startswith("ERR")
            assert guard.guard_leak_count(topo.cluster, topo.node) > mid
            n = guard.guard_leak_count(topo.cluster, topo.node)
            assert (await topo.aclients("node", "tcp", "10.96.0.30", 80, 1))[0].startswith("ERR")
            assert guard.guard_leak_count(topo.cluster, topo.node) > n
            rx = sh("ip", "-n", sink, "-j", "-s", "link", "show", "eth0").stdout
            assert json.loads(rx)[0]["stats64"]["rx"]["packets"] == 0, "nothing reached the sink"
        finally:
            await p.stop(delete_rules=True)
            sh("ip", "-n", topo.node, "link", "del", f"leak{topo.id}", check=False)
    asyncio.run(body())


def test_teardown_removes_table_route_and_guard_last():
    t = Topo()
    try:
        n = t.netns(t.node)
        guard.install_guard(t.cluster, [POD_CIDR, SVC_CIDR], netns=n)

        async def body():
            p = t.proxier()
            p.replace_all([service("a", "10.96.0.40")], [])
            await p.start()
            assert routes.has_local_route(SVC_CIDR, n)
            assert sh("ip", "netns", "exec", n, "nft", "list", "table", "ip", p.cfg.table,
                      check=False).returncode == 0
            await p.stop(delete_rules=True)
            assert sh("ip", "netns", "exec", n, "nft", "list", "table", "ip", p.cfg.table,
                      check=False).returncode != 0
        asyncio.run(body())
        routes.remove_local_route(SVC_CIDR, n)
        assert not routes.has_local_route(SVC_CIDR, n)
        guard.remove_guard(t.cluster, n)
        assert not guard.guard_installed(t.cluster, n)
        assert sh("ip", "netns", "exec", n, "nft", "list", "ruleset").stdout.strip() == ""
    finally:
        t.destroy()


def test_udp_flow_moves_when_its_endpoint_goes(topo):
    async def body():
        svc = service("u", "10.96.0.32", ports=[{"port": 53, "protocol": "UDP", "targetPort": 5353}])
        ports = [{"name": "", "port": 5353, "protocol": "UDP"}]
        p = await started(topo, [svc], [eps_slice("u", ["p1"], ports=ports)])
        try:
            assert names(await topo.aclients("p3", "udp:40123", "10.96.0.32", 53, 3)) == {"p1": 3}
            p.on_slice_update(eps_slice("u", ["p1"], ports=ports), eps_slice("u", ["p2"], ports=ports))
            await p.wait_applied()
            # same 5-tuple: without the conntrack flush it would still go to p1 (still up)
            assert names(await topo.aclients("p3", "udp:40123", "10.96.0.32", 53, 3)) == {"p2": 3}
        finally:
            await p.stop(delete_rules=True)
    asyncio.run(body())


def test_periodic_full_resync_repairs_the_table(topo):
    async def body():
        p = await started(topo, [service("rep", "10.96.0.33")], [eps_slice("rep", ["p2"])],
                          full_sync_period=0.2)
        try:
            assert names(await topo.aclients("p1", "tcp", "10.96.0.33", 80, 2)) == {"p2": 2}
            # someone empties the dispatch map behind the proxy's back
            sh("ip", "netns", "exec", topo.node, "nft", "flush", "map", "ip", p.cfg.table,
               "service-ips")
            assert await topo.aclients("p1", "tcp", "10.96.0.33", 80, 1) == ["ERR:refused"]
            n = p.syncs["full"]
            while p.syncs["full"] < n + 2:
                await asyncio.sleep(0.05)
            assert names(await topo.aclients("p1", "tcp", "10.96.0.33", 80, 2)) == {"p2": 2}
        finally:
            await p.stop(delete_rules=True)
    asyncio.run(body())


def test_host_network_endpoint(topo):
    """An endpoint on the node's own address (like the apiserver behind `kubernetes`)."""
    async def body():
        srv = subprocess.Popen(["ip", "netns", "exec", topo.node, PY, "-c", SERVER, "node"],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            assert (await asyncio.to_thread(srv.stdout.readline)).strip() == "ready"
            sl = eps_slice("api", [])
            sl["endpoints"] = [{"addresses": [NODE_IP], "conditions": {"ready": True},
                                "nodeName": "node1"}]
            p = await started(topo, [service("api", "10.96.0.34",
                                             ports=[{"port": 443, "protocol": "TCP"}])], [sl])
            try:
                for src in ("node", "p1", "ext"):
                    got = await topo.aclients(src, "tcp", "10.96.0.34", 443, 2)
                    assert names(got) == {"node": 2}, (src, got)
            finally:
                await p.stop(delete_rules=True)
        finally:
            srv.kill()
            srv.wait()
    asyncio.run(body())
