"""API server write throughput and watch delivery latency vs raw SQLite on the same disk.

    python bench/api_creates.py [--seconds 10] [--clients 10] [--raw-n 2000] [--profile]

Starts `tinykube apiserver` alone (own data dir, loopback, client-cert auth from a kubeconfig
written for the run). `clients` concurrent clients, each with its own HTTPS connection, create
ConfigMaps (one after another per client) for `seconds`; a watcher on the namespace stamps each
ADDED event against the time its create was sent (p50/p99 watch delivery latency).
Anchor: bench.store_raw.raw_insert_rate -- plain sqlite3, one durable INSERT+COMMIT per row --
on a file in the same data directory, in the same run (once before and once after the load;
the higher rate is the anchor). Target: creates/s >= 30 % of raw.
--profile records the API server with py-spy during the create phase and prints the top costs
(pip install py-spy into the venv)."""
from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import ApiServerProc, pct, start_profile, summarize_profile, verdict  # noqa: E402
from bench.store_raw import raw_insert_rate  # noqa: E402

TARGET = 0.30
NS = "bench-api"


async def load(kubeconfig: str, seconds: float, clients: int, payload: int) -> dict:
    import aiohttp

    from tinykube.api import resources
    from tinykube.api.errors import ApiError
    from tinykube.client import Client

    cms = resources.get("configmaps")
    nss = resources.get("namespaces")
    admin = Client.from_kubeconfig(kubeconfig, user_agent="bench-api")
    try:
        await admin.create(nss, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
    except ApiError as e:
        if e.code != 409:
            raise
    _, rv = await admin.list(cms, NS)

    sent: dict[str, float] = {}
    lat: list[float] = []
    seen_all = asyncio.Event()
    expected = [None]  # set when creates end: the number of names to wait for

    async def watcher() -> None:
        async for typ, obj in admin.watch(cms, NS, resource_version=rv):
            if typ != "ADDED":
                continue
            name = obj["metadata"]["name"]
            t = sent.get(name)
            if t is not None:
                lat.append(time.perf_counter() - t)
            if expected[0] is not None and len(lat) >= expected[0]:
                seen_all.set()
                return

    wtask = asyncio.create_task(watcher())
    await asyncio.sleep(0.3)            # the watch is established before the first create

    data = {"k": "x" * payload}
    stop = time.perf_counter() + seconds
    done = [0] * clients
    errors = [0]
    create_lat: list[float] = []

    async def client(c: int) -> None:
        cl = Client.from_kubeconfig(kubeconfig, user_agent=f"bench-api-{c}")
        try:
            i = 0
            while time.perf_counter() < stop:
                name = f"cm-{c}-{i}"
                i += 1
                t0 = time.perf_counter()
                sent[name] = t0
                try:
                    await cl.create(cms, {"apiVersion": "v1", "kind": "ConfigMap",
                                          "metadata": {"name": name, "namespace": NS,
                                                       "labels": {"bench": "api"}},
                                          "data": data})
                except (ApiError, aiohttp.ClientError):
                    errors[0] += 1
                    sent.pop(name, None)
                    continue
                create_lat.append(time.perf_counter() - t0)
                done[c] += 1
        finally:
            await cl.close()

    t0 = time.perf_counter()
    await asyncio.gather(*[client(c) for c in range(clients)])
    elapsed = time.perf_counter() - t0
    total = sum(done)
    expected[0] = total
    if len(lat) >= total:
        seen_all.set()
    try:
        await asyncio.wait_for(seen_all.wait(), 30)
    except asyncio.TimeoutError:
        pass
    wtask.cancel()
    await admin.close()
    return {"creates": total, "elapsed": elapsed, "errors": errors[0], "watch": lat,
            "create_lat": create_lat}


def proc_cpu(pid: int) -> float:
    """CPU seconds (user + system, all threads) used so far by process pid."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 2)[2])
    ap.add_argument("--seconds", type=float, default=10, help="length of the create phase")
    ap.add_argument("--clients", type=int, default=10, help="concurrent creating clients")
    ap.add_argument("--raw-n", type=int, default=2000, help="rows for the raw SQLite anchor")
    ap.add_argument("--payload", type=int, default=256, help="bytes of data per ConfigMap")
    ap.add_argument("--dir", default=None, help="parent of the data dir (the disk under test; "
                    "default: beside the repository)")
    ap.add_argument("--profile", action="store_true", help="py-spy the API server during the run")
    ap.add_argument("--profile-out", default=None, help="keep the raw py-spy profile here")
    args = ap.parse_args()

    import uvloop

    parent = args.dir or str(Path(__file__).resolve().parents[1])
    root = Path(tempfile.mkdtemp(prefix="tk-bench-api-", dir=parent))
    srv = ApiServerProc(root)
    prof = None
    prof_out = args.profile_out or str(root / "profile.txt")
    try:
        raw1 = raw_insert_rate(root / "raw-anchor-1.db", args.raw_n)
        srv.start()
        if args.profile:
            prof = start_profile(srv.proc.pid, args.seconds, prof_out)
        cpu0, own0 = proc_cpu(srv.proc.pid), time.process_time()
        res = uvloop.run(load(str(srv.kubeconfig), args.seconds, args.clients, args.payload))
        srv_cpu = proc_cpu(srv.proc.pid) - cpu0
        own_cpu = time.process_time() - own0
        if prof:
            try:
                prof.wait(args.seconds + 30)
            except Exception:
                prof.kill()
        raw2 = raw_insert_rate(root / "raw-anchor-2.db", args.raw_n)   # disk speed drifts:
        raw = max(raw1, raw2)                                           # the faster is the anchor
        rate = res["creates"] / res["elapsed"]
        w = [x * 1000 for x in res["watch"]]
        c = [x * 1000 for x in res["create_lat"]]
        print(f"data dir disk: {parent}")
        print(f"tinykube apiserver: {args.clients} clients x {args.seconds:.0f}s, "
              f"ConfigMaps with {args.payload} B data")
        print(f"  creates:            {res['creates']} ok, {res['errors']} errors")
        print(f"  create rate:        {rate:10.0f} creates/s")
        print(f"  create latency:     p50 {pct(c, 50):7.1f} ms   p99 {pct(c, 99):7.1f} ms")
        print(f"  watch delivery:     p50 {pct(w, 50):7.1f} ms   p99 {pct(w, 99):7.1f} ms   "
              f"({len(w)}/{res['creates']} ADDED events seen)")
        print(f"  CPU during the run: apiserver {100 * srv_cpu / res['elapsed']:.0f}% of a core, "
              f"load generator {100 * own_cpu / res['elapsed']:.0f}% ({os.cpu_count()} CPUs)")
        print(f"anchor sqlite3 raw (INSERT+COMMIT per row, WAL, synchronous=FULL, n={args.raw_n}): "
              f"{raw:10.0f} writes/s (before {raw1:.0f}, after {raw2:.0f}; the higher counts)")
        ratio = rate / raw
        print(f"ratio tinykube/raw: {ratio:.2f}   target >= {TARGET:.2f}: {verdict(ratio >= TARGET)}")
        if prof and os.path.exists(prof_out) and os.path.getsize(prof_out):
            print("API server profile (py-spy):")
            print(summarize_profile(prof_out))
            if args.profile_out:
                print(f"  raw profile kept at {prof_out}")
    finally:
        srv.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
