"""Service data plane: throughput through a ClusterIP vs straight to the pods, network
programming latency, and the proxy's full and incremental sync cost vs nft alone.

    python bench/service_proxy.py [--seconds 10] [--connections 48] [--latency-services 20]
                                  [--existing 1000,10000] [--sync-sizes 100,1000,10000]
                                  [--skip-cluster | --skip-offline] [--kubeconfig PATH]

Part 1 (a cluster: its own via `tinykube up` with the bench ranges and `down --purge` at the end,
or --kubeconfig): 3 nginx pods behind a ClusterIP Service. `wrk` (Debian package wrk) runs the
same duration, threads and connections (a) against ClusterIP:80 and (b) against the 3 pod IPs
directly; both as 3 wrk processes run at once (one per pod IP, or 3 on the ClusterIP), the
connections split over them, rates summed. Twice: keep-alive
(requests/s) and `Connection: close` (new connections/s). Ratio ClusterIP / direct, target >= 0.9.
Part 2: network programming latency -- create a Service through the API, then poll TCP connect
to its ClusterIP:80 until it succeeds (an unprogrammed ClusterIP is refused at once); p50/p99 over
`latency-services` Services, first with 0 and then with `existing` other Services (with
endpoints) in the cluster.
Part 3 (offline, in a private network namespace deleted afterwards; no cluster, no packet):
for N services x 10 endpoints (--endpoints), the proxy's full sync (render_all + render_full in Python, then
`nft -f -`) vs `nft -f -` alone loading the same text into an empty table (alternated `full-reps` times,
the fastest of each counts): ratio, target <= 1.5. And the incremental update (one service's endpoints change: render_incremental +
`nft -f -`) at each N, median of `rounds`: it must not grow with N; next to it the kernel's own
commit cost at that N, one rule added through raw nf_tables netlink (no nft process, no cache):
`goto <endpoint chain>` (makes the kernel validate the table's jump graph) and a counter-only
rule (does not)."""
from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import os
import re
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import BenchCluster, pct, verdict  # noqa: E402

THROUGHPUT_TARGET = 0.9
FULL_SYNC_TARGET = 1.5


# ------------------------------------------------------------------ part 1: wrk

def _wrk_rate(out: str) -> tuple[float, int]:
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    errs = sum(int(x) for x in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return (float(m.group(1)) if m else 0.0), errs + (int(non2xx.group(1)) if non2xx else 0)


def netns_of_ip(ip: str) -> str | None:
    """The network namespace that holds a pod IP (tinykube names them tk-<cluster>-<uid>)."""
    for line in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.splitlines():
        name = line.split()[0] if line.strip() else ""
        if name.startswith("tk-") and f"inet {ip}/" in subprocess.run(
                ["ip", "-n", name, "-4", "addr"], capture_output=True, text=True).stdout:
            return name
    return None


def wrk(urls: list[str], seconds: int, connections: int, close: bool,
        netns: str | None = None) -> tuple[float, int]:
    """Sum of Requests/sec of one wrk per URL run at the same time, connections split; inside
    `netns` (a client pod's network namespace) when given."""
    per = max(1, connections // len(urls))
    threads = max(1, min(per, (os.cpu_count() or 1) // len(urls) or 1))
    procs = []
    for u in urls:
        argv = (["ip", "netns", "exec", netns] if netns else []) + \
            ["wrk", "-t", str(threads), "-c", str(per), "-d", f"{seconds}s", "--latency"]
        if close:
            argv += ["-H", "Connection: close"]
        procs.append(subprocess.Popen(argv + [u], stdout=subprocess.PIPE, text=True))
    total, errs = 0.0, 0
    for p in procs:
        out, _ = p.communicate()
        r, e = _wrk_rate(out)
        total += r
        errs += e
    return total, errs


# ------------------------------------------------------------------ cluster objects

def _nginx_pod(i: int) -> dict:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"web-{i}", "labels": {"app": "bench-web"}},
            "spec": {"containers": [{"name": "nginx", "image": "nginx:1.27",
                                     "ports": [{"containerPort": 80}],
                                     "readinessProbe": {"tcpSocket": {"port": 80},
                                                        "periodSeconds": 1}}],
                     "terminationGracePeriodSeconds": 0}}


def _service(name: str, selector: bool = True) -> dict:
    spec: dict = {"type": "ClusterIP", "ports": [{"name": "http", "port": 80, "targetPort": 80}]}
    if selector:
        spec["selector"] = {"app": "bench-web"}
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": spec}


async def _connect_ok(ip: str, port: int) -> bool:
    try:
        _, w = await asyncio.wait_for(asyncio.open_connection(ip, port), 0.5)
    except (OSError, asyncio.TimeoutError):
        return False
    w.close()
    return True


async def _wait_connect(ip: str, port: int, timeout: float, interval: float = 0.002) -> float:
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        if await _connect_ok(ip, port):
            return time.perf_counter()
        await asyncio.sleep(interval)
    raise TimeoutError(f"{ip}:{port} not reachable after {timeout}s")


class Api:
    def __init__(self, kubeconfig: str):
        from tinykube.api import resources
        from tinykube.client import Client
        self.r = resources
        self.cl = Client.from_kubeconfig(kubeconfig, user_agent="bench-proxy")

    async def create_ns(self, ns: str) -> None:
        await self.cl.create(self.r.get("namespaces"),
                             {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
        for _ in range(100):
            try:
                await self.cl.get(self.r.get("serviceaccounts"), ns, "default")
                return
            except Exception:  # noqa: BLE001
                await asyncio.sleep(0.1)

    async def cluster_ip(self, ns: str, name: str, created: dict) -> str:
        ip = created.get("spec", {}).get("clusterIP")
        while not ip or ip == "None":
            await asyncio.sleep(0.01)
            ip = (await self.cl.get(self.r.get("services"), ns, name))["spec"].get("clusterIP")
        return ip

    async def pods_ready(self, ns: str, n: int, timeout: float = 120) -> list[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            items, _ = await self.cl.list(self.r.get("pods"), ns, label_selector="app=bench-web")
            ips = [p["status"]["podIP"] for p in items
                   if any(c.get("type") == "Ready" and c.get("status") == "True"
                          for c in p.get("status", {}).get("conditions") or [])
                   and p["status"].get("podIP")]
            if len(ips) >= n:
                return ips
            await asyncio.sleep(0.3)
        raise TimeoutError("nginx pods did not become Ready")


async def setup_web(api: Api, ns: str) -> tuple[str, list[str]]:
    await api.create_ns(ns)
    for i in range(3):
        await api.cl.create(api.r.get("pods"), _nginx_pod(i), ns)
    # the load generator's pod: wrk runs in its network namespace, as a pod's client would
    await api.cl.create(api.r.get("pods"), {"metadata": {"name": "client", "labels": {"role": "client"}},
                                            "spec": {"containers": [{"name": "c", "image": "busybox",
                                                                     "command": ["sleep", "86400"]}]}}, ns)
    svc = await api.cl.create(api.r.get("services"), _service("web"), ns)
    ip = await api.cluster_ip(ns, "web", svc)
    pod_ips = await api.pods_ready(ns, 3)
    client = ""
    for _ in range(200):
        client = (await api.cl.get(api.r.get("pods"), ns, "client")).get("status", {}).get("podIP", "")
        if client:
            break
        await asyncio.sleep(0.3)
    api.client_netns = netns_of_ip(client) if client else None
    await _wait_connect(ip, 80, 60)
    for pip in pod_ips:
        await _wait_connect(pip, 80, 60)
    return ip, pod_ips


async def programming_latency(api: Api, ns: str, count: int, tag: str) -> list[float]:
    out = []
    for i in range(count):
        name = f"lat-{tag}-{i}"
        t0 = time.perf_counter()
        svc = await api.cl.create(api.r.get("services"), _service(name), ns)
        ip = await api.cluster_ip(ns, name, svc)
        t1 = await _wait_connect(ip, 80, 60)
        out.append(t1 - t0)
    return out


async def create_many(api: Api, ns: str, n: int, parallel: int = 10, first: int = 0) -> float:
    sem = asyncio.Semaphore(parallel)
    done: list[float] = []

    async def one(i: int) -> None:
        async with sem:
            await api.cl.create(api.r.get("services"), _service(f"bulk-{first + i}"), ns)
            done.append(time.perf_counter())

    t0 = time.perf_counter()
    await asyncio.gather(*[one(i) for i in range(n)])
    k = max(1, n // 10)
    if n >= 20:
        first = k / (done[k - 1] - t0)
        last = k / (done[-1] - done[-k - 1])
        print(f"  Service create rate: first {k} {first:.0f}/s, last {k} {last:.0f}/s")
    return time.perf_counter() - t0


async def wait_programmed(api: Api, ns: str, name: str, timeout: float = 600) -> float:
    """Seconds until the proxy serves `name` (the last of a bulk): its ClusterIP connects."""
    svc = await api.cl.get(api.r.get("services"), ns, name)
    t0 = time.perf_counter()
    return await _wait_connect(await api.cluster_ip(ns, name, svc), 80, timeout) - t0


def cluster_part(args, kubeconfig: str) -> None:
    import uvloop
    ns = f"bench-proxy-{uuid.uuid4().hex[:5]}"

    async def run() -> None:
        api = Api(kubeconfig)
        try:
            cip, pod_ips = await setup_web(api, ns)
            print(f"ClusterIP {cip}:80 -> pods {', '.join(pod_ips)} (nginx); wrk {args.seconds}s, "
                  f"{args.connections} connections")
            clients = [("from a pod", api.client_netns)] if api.client_netns else []
            clients.append(("from the host", None))
            for where, netns in clients:
                for close, what in ((False, "requests/s (keep-alive)"),
                                    (True, "new connections/s (Connection: close)")):
                    via, e1 = await asyncio.to_thread(wrk, [f"http://{cip}/"] * 3, args.seconds,
                                                      args.connections, close, netns)
                    direct, e2 = await asyncio.to_thread(wrk, [f"http://{p}/" for p in pod_ips],
                                                         args.seconds, args.connections, close, netns)
                    r = via / direct if direct else float("nan")
                    print(f"  {where}, {what}: ClusterIP {via:9.0f}   pod IPs {direct:9.0f}   ratio {r:.2f}   "
                          f"target >= {THROUGHPUT_TARGET}: {verdict(r >= THROUGHPUT_TARGET)}"
                          + (f"   (errors {e1}/{e2})" if e1 or e2 else ""))
            lat0 = await programming_latency(api, ns, args.latency_services, "a")
            ms = [x * 1000 for x in lat0]
            print(f"network programming latency, {len(ms)} new Services, 1 existing: "
                  f"p50 {pct(ms, 50):7.1f} ms   p99 {pct(ms, 99):7.1f} ms")
            have = 0
            for total in (int(x) for x in str(args.existing).split(",") if int(x) > 0):
                bulk = await create_many(api, ns, total - have, first=have)
                settle = await wait_programmed(api, ns, f"bulk-{total - 1}")
                print(f"  created {total - have} Services in {bulk:.1f} s "
                      f"({(total - have) / bulk:.0f}/s); the last one programmed {settle:.1f} s later")
                have = total
                await asyncio.sleep(2)
                lat1 = await programming_latency(api, ns, args.latency_services, f"b{total}")
                ms = [x * 1000 for x in lat1]
                print(f"network programming latency, {len(ms)} new Services, "
                      f"{total} existing: p50 {pct(ms, 50):7.1f} ms   p99 {pct(ms, 99):7.1f} ms")
        finally:
            try:
                await api.cl.delete(api.r.get("namespaces"), None, ns)
            except Exception:  # noqa: BLE001
                pass
            await api.cl.close()

    uvloop.run(run())


# ------------------------------------------------------------------ part 3: offline sync

# The kernel side alone: one transaction adding a rule, sent as raw nf_tables netlink (no nft,
# so no userspace cache fill). Shows what the kernel's commit costs at each table size.
NLA_F_NESTED = 0x8000


def _nla(kind: int, payload: bytes, nested: bool = False) -> bytes:
    n = 4 + len(payload)
    return struct.pack("=HH", n, kind | (NLA_F_NESTED if nested else 0)) + payload \
        + b"\0" * (-n % 4)


def _nl_msg(kind: int, flags: int, family: int, body: bytes, seq: int, res_id: int = 0) -> bytes:
    b = struct.pack("=BBH", family, 0, socket.htons(res_id)) + body
    return struct.pack("=IHHII", 16 + len(b), kind, flags, seq, 0) + b


def _rule_msg(table: str, chain: str, goto: str | None, seq: int) -> bytes:
    """NFT_MSG_NEWRULE (append) of `goto <chain>` (an immediate verdict) or of `counter`."""
    if goto:
        verdict = _nla(1, struct.pack(">i", -4)) + _nla(2, goto.encode() + b"\0")  # NFT_GOTO
        data = _nla(1, struct.pack(">I", 0)) + _nla(2, _nla(2, verdict, True), True)
        expr = _nla(1, b"immediate\0") + _nla(2, data, True)
    else:
        expr = _nla(1, b"counter\0")
    body = _nla(1, table.encode() + b"\0") + _nla(2, chain.encode() + b"\0") \
        + _nla(4, _nla(1, expr, True), True)
    # NFT_MSG_NEWRULE in subsystem NFTABLES; REQUEST | ACK | CREATE | APPEND; AF_INET
    return _nl_msg((10 << 8) | 6, 0x1 | 0x4 | 0x400 | 0x800, socket.AF_INET, body, seq)


def _enter_netns(netns: str) -> None:
    """Move the calling thread (only it) into network namespace `netns`."""
    import ctypes
    fd = os.open(f"/run/netns/{netns}", os.O_RDONLY)
    try:
        if ctypes.CDLL(None, use_errno=True).setns(fd, 0x40000000) != 0:   # CLONE_NEWNET
            raise OSError(ctypes.get_errno(), "setns")
    finally:
        os.close(fd)


def _netns_netlink(netns: str) -> socket.socket:
    """A NETLINK_NETFILTER socket in `netns` (made by a short-lived thread that enters it)."""
    import threading
    out: list = []

    def enter() -> None:
        _enter_netns(netns)
        out.append(socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 12))
    t = threading.Thread(target=enter)
    t.start()
    t.join()
    if not out:
        raise RuntimeError(f"could not open netlink in {netns}")
    return out[0]


def kernel_rule_add(sk: socket.socket, table: str, chain: str, goto: str | None) -> float:
    """Seconds for one batch (begin, NEWRULE, end) until the kernel acknowledges it."""
    seq = int(time.time()) & 0xffffff
    batch = (_nl_msg(0x10, 1, 0, b"", seq, 10) + _rule_msg(table, chain, goto, seq + 1)
             + _nl_msg(0x11, 1, 0, b"", seq + 2, 10))
    t0 = time.perf_counter()
    sk.send(batch)
    while True:
        data = sk.recv(65536)
        off = 0
        while off < len(data):
            n, kind = struct.unpack_from("=IH", data, off)
            if kind == 2:                                    # NLMSG_ERROR (0 = ack)
                err = struct.unpack_from("=i", data, off + 16)[0]
                if err:
                    raise OSError(-err, os.strerror(-err))
                return time.perf_counter() - t0
            off += (n + 3) & ~3


def offline_part(args) -> None:
    from bench.proxy_sync import service as mk_service
    from bench.proxy_sync import slice_ as mk_slice
    from tinykube.agent.proxy import nft
    from tinykube.agent.proxy.render import (IdAllocator, Present, ProxyConfig, render_all,
                                             render_full, render_incremental, render_service)

    cfg = ProxyConfig(table="tinykube-bench-sync", node_name="n1", node_ips=("10.77.0.1",),
                      cluster_cidrs=("10.244.0.0/16",), service_cidrs=("10.96.0.0/12",))
    netns = f"tkbench-sync-{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", netns], check=True)

    async def one_size(n: int) -> tuple[float, float, float, float, int]:
        services = [mk_service(i) for i in range(n)]
        slices = {i: mk_slice(i, args.endpoints) for i in range(n)}
        # proxy full sync (render in Python + nft -f into an empty table) vs the anchor (nft -f
        # of the same text alone), alternated `full_reps` times; the fastest of each counts
        renders, tk_nfts, alones = [], [], []
        for _ in range(args.full_reps):
            t0 = time.perf_counter()
            ids = IdAllocator()
            state = render_all(services, slices.values(), cfg, ids)
            text = render_full(state, cfg, None)
            renders.append(time.perf_counter() - t0)
            t1 = time.perf_counter()
            await nft.apply(text, netns)
            tk_nfts.append(time.perf_counter() - t1)
            await nft.delete_table(cfg.table, cfg.family, netns)
            t2 = time.perf_counter()
            await nft.apply(text, netns)
            alones.append(time.perf_counter() - t2)
            await nft.delete_table(cfg.table, cfg.family, netns)
        best = min(range(args.full_reps), key=lambda k: renders[k] + tk_nfts[k])
        t_render, t_tk_nft, t_nft = renders[best], tk_nfts[best], min(alones)
        await nft.apply(text, netns)
        present = Present.of(state)
        # incremental: one service's endpoints change at a time
        inc = []
        for r in range(args.rounds):
            i = (r * 7919) % n
            slices[i] = mk_slice(i, args.endpoints + 1 if r % 2 == 0 else args.endpoints)
            key = ("bench", f"svc{i}")
            new = dict(state)
            new[key] = render_service(services[i], [slices[i]], cfg, ids)
            t3 = time.perf_counter()
            await nft.apply(render_incremental(state, new, [key], cfg, present), netns)
            inc.append(time.perf_counter() - t3)
            state = new
        # the same kind of update through libnftables in one process (what the agent does in
        # its own namespace): a worker thread that entered the netns owns the context
        inproc = []
        worker = concurrent.futures.ThreadPoolExecutor(1, initializer=_enter_netns,
                                                       initargs=(netns,))
        try:
            ctx = worker.submit(nft._load_libnftables).result()
            for r in range(args.rounds if ctx is not None else 0):
                i = (r * 7919 + 1) % n
                slices[i] = mk_slice(i, args.endpoints + 1 if r % 2 == 0 else args.endpoints)
                key = ("bench", f"svc{i}")
                new = dict(state)
                new[key] = render_service(services[i], [slices[i]], cfg, ids)
                script = render_incremental(state, new, [key], cfg, present)
                t3 = time.perf_counter()
                rc, _, err = worker.submit(ctx.cmd, script).result()
                inproc.append(time.perf_counter() - t3)
                if rc != 0:
                    raise RuntimeError(err)
                state = new
            del ctx
        finally:
            worker.shutdown(wait=True)
        # the kernel alone: one rule into a scratch chain, `goto masquerading` (the kernel then
        # validates the table's whole jump graph: with per-service chains that grew with N)
        # and `counter` (it does not)
        await nft.apply(f"add chain {cfg.family} {cfg.table} bench-floor\n", netns)
        target = "masquerading"
        sk = _netns_netlink(netns)
        try:
            k_goto = statistics.median(kernel_rule_add(sk, cfg.table, "bench-floor", target)
                                       for _ in range(args.rounds))
            k_ctr = statistics.median(kernel_rule_add(sk, cfg.table, "bench-floor", None)
                                      for _ in range(args.rounds))
        finally:
            sk.close()
        await nft.delete_table(cfg.table, cfg.family, netns)
        return (t_render, t_tk_nft, t_nft, statistics.median(inc), len(text), k_goto, k_ctr,
                statistics.median(inproc) if inproc else float("nan"))

    try:
        print(f"proxy sync offline (private netns, {args.endpoints} endpoints/service):")
        incs, kernel = [], []
        for n in (int(x) for x in args.sync_sizes.split(",")):
            rnd, tknft, alone, inc, size, k_goto, k_ctr, lib = asyncio.run(one_size(n))
            kernel.append((n, inc, lib, k_goto, k_ctr))
            full = rnd + tknft
            r = full / alone
            incs.append(inc)
            print(f"  {n:6d} services ({size / 1e6:5.1f} MB ruleset): full sync {full * 1000:8.0f} ms "
                  f"(render {rnd * 1000:6.0f} + nft {tknft * 1000:6.0f})   nft -f alone "
                  f"{alone * 1000:8.0f} ms   ratio {r:.2f} (target <= {FULL_SYNC_TARGET}: "
                  f"{verdict(r <= FULL_SYNC_TARGET)})   incremental {inc * 1000:6.1f} ms")
        print("  incremental update (median): `nft -f -`; the same through libnftables in "
              "one process; the kernel alone committing one rule sent as raw netlink (no nft)")
        for n, inc, lib, k_goto, k_ctr in kernel:
            print(f"  {n:6d} services: nft -f {inc * 1000:6.1f} ms   libnftables {lib * 1000:6.1f} ms"
                  f"   kernel: rule with a goto {k_goto * 1000:6.2f} ms, counter-only rule "
                  f"{k_ctr * 1000:5.2f} ms")
        if len(incs) > 1:
            growth = incs[-1] / incs[0]
            print(f"  incremental update {incs[0] * 1000:.1f} ms -> {incs[-1] * 1000:.1f} ms "
                  f"({growth:.2f}x over the sizes; must not grow: "
                  f"{verdict(growth <= 1.5)})")
    finally:
        subprocess.run(["ip", "netns", "del", netns])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 2)[2])
    ap.add_argument("--seconds", type=int, default=10, help="wrk duration per run")
    ap.add_argument("--connections", type=int, default=48)
    ap.add_argument("--latency-services", type=int, default=20,
                    help="Services created one by one to time programming latency")
    ap.add_argument("--existing", default="1000,10000",
                    help="totals of other Services for the later latency runs, created in "
                         "turn (0 skips)")
    ap.add_argument("--sync-sizes", default="100,1000,10000")
    ap.add_argument("--endpoints", type=int, default=10,
                    help="endpoints per Service (10: the issue's 10,000 Services / 100,000 endpoints)")
    ap.add_argument("--rounds", type=int, default=20, help="incremental updates per size")
    ap.add_argument("--full-reps", type=int, default=3, help="full syncs per size (fastest counts)")
    ap.add_argument("--skip-cluster", action="store_true")
    ap.add_argument("--skip-offline", action="store_true")
    ap.add_argument("--kubeconfig", default=None, help="use this running cluster")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("needs root")
    if not args.skip_offline:
        offline_part(args)
    if not args.skip_cluster:
        if not shutil.which("wrk"):
            sys.exit("wrk not installed (apt-get install -y wrk)")
        if args.kubeconfig:
            cluster_part(args, args.kubeconfig)
        else:
            with BenchCluster(f"bsvc{os.getpid() % 10000}") as c:
                cluster_part(args, str(c.kubeconfig))


if __name__ == "__main__":
    main()
