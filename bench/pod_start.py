"""Pod start latency and memory per idle pod, vs the bare cost of a network namespace + veth.

    python bench/pod_start.py [--pods 50] [--parallel 10] [--image agnhost|busybox]
                              [--kubeconfig PATH]

Starts a cluster of its own (`tinykube up` with the bench ranges, `down --purge` at the end),
or uses a running one with --kubeconfig. Creates `pods` pods (`parallel` creates in flight) in
a namespace of its own and measures, per pod, the time from sending its create to the watch
event that shows its Ready condition True: p50/p99 and the total until all are Ready.
Anchor, in the same run: this machine creating and tearing down a bare network namespace with a
veth into it (`ip netns add`, `ip link add ... type veth peer ... netns`, both ends up, `ip netns
del`), `--anchor-rounds` times, median. Ratio: pod p50 / anchor median.
Memory per idle pod: after all are Ready and a few seconds idle, the RSS and PSS (from /proc)
summed over each pod's processes (holder, shims and their container process trees), found
through the kubelet's state files; median over pods. Needs root (only with a cluster of its own,
found under its data dir)."""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import BenchCluster, pct  # noqa: E402

IMAGES = {
    "agnhost": ("registry.k8s.io/e2e-test-images/agnhost:2.39", None, ["pause"]),
    "busybox": ("busybox", ["sleep", "3600"], None),
}


def netns_veth_round(tag: str) -> float:
    ns = f"tkb-{tag}"
    a, b = f"tkb{tag}a"[:15], f"tkb{tag}b"[:15]
    t0 = time.perf_counter()
    try:
        subprocess.run(["ip", "netns", "add", ns], check=True)
        subprocess.run(["ip", "link", "add", a, "type", "veth", "peer", "name", b, "netns", ns],
                       check=True)
        subprocess.run(["ip", "link", "set", a, "up"], check=True)
        subprocess.run(["ip", "-n", ns, "link", "set", b, "up"], check=True)
        subprocess.run(["ip", "netns", "del", ns], check=True)   # takes both veth ends with it
        return time.perf_counter() - t0
    finally:
        subprocess.run(["ip", "netns", "del", ns], stderr=subprocess.DEVNULL)
        subprocess.run(["ip", "link", "del", a], stderr=subprocess.DEVNULL)


def anchor(rounds: int) -> float:
    tag = uuid.uuid4().hex[:6]
    return statistics.median(netns_veth_round(f"{tag}{i % 10}") for i in range(rounds))


def pod(name: str, image: str) -> dict:
    img, cmd, args = IMAGES[image]
    c: dict = {"name": "c", "image": img}
    if cmd:
        c["command"] = cmd
    if args:
        c["args"] = args
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"bench": "pod"}},
            "spec": {"containers": [c], "terminationGracePeriodSeconds": 0}}


def is_ready(obj: dict) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (obj.get("status") or {}).get("conditions") or [])


async def start_pods(kubeconfig: str, n: int, parallel: int, image: str, ns: str,
                     timeout: float) -> tuple[dict[str, float], float, list[dict]]:
    from tinykube.api import resources
    from tinykube.client import Client

    pods = resources.get("pods")
    cl = Client.from_kubeconfig(kubeconfig, user_agent="bench-pods")
    await cl.create(resources.get("namespaces"),
                    {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    # the ServiceAccount controller may add "default" a moment later; wait so creates don't fail
    for _ in range(100):
        try:
            await cl.get(resources.get("serviceaccounts"), ns, "default")
            break
        except Exception:  # noqa: BLE001
            await asyncio.sleep(0.1)
    _, rv = await cl.list(pods, ns)
    sent: dict[str, float] = {}
    ready: dict[str, float] = {}
    all_ready = asyncio.Event()

    async def watcher() -> None:
        async for typ, obj in cl.watch(pods, ns, resource_version=rv):
            name = obj["metadata"]["name"]
            if typ in ("ADDED", "MODIFIED") and name in sent and name not in ready and is_ready(obj):
                ready[name] = time.perf_counter() - sent[name]
                if len(ready) == n:
                    all_ready.set()
                    return

    wt = asyncio.create_task(watcher())
    await asyncio.sleep(0.3)
    sem = asyncio.Semaphore(parallel)

    async def create(i: int) -> None:
        name = f"p{i:04d}"
        async with sem:
            sent[name] = time.perf_counter()
            await cl.create(pods, pod(name, image), ns)

    t0 = time.perf_counter()
    await asyncio.gather(*[create(i) for i in range(n)])
    try:
        await asyncio.wait_for(all_ready.wait(), timeout)
    except asyncio.TimeoutError:
        print(f"  only {len(ready)}/{n} pods Ready after {timeout:.0f}s")
    total = time.perf_counter() - t0
    wt.cancel()
    items, _ = await cl.list(pods, ns)
    await cl.close()
    return ready, total, items


async def delete_ns(kubeconfig: str, ns: str) -> None:
    from tinykube.api import resources
    from tinykube.client import Client
    cl = Client.from_kubeconfig(kubeconfig, user_agent="bench-pods")
    try:
        await cl.delete(resources.get("namespaces"), None, ns)
    except Exception:  # noqa: BLE001
        pass
    await cl.close()


# ---------------------------------------------------------------- memory from /proc

def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            ppid = int(Path(f"/proc/{d}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        kids.setdefault(ppid, []).append(int(d))
    return kids


def _tree(pid: int, kids: dict[int, list[int]]) -> set[int]:
    out, todo = set(), [pid]
    while todo:
        p = todo.pop()
        if p in out:
            continue
        out.add(p)
        todo.extend(kids.get(p, []))
    return out


def _mem_kb(pid: int) -> tuple[int, int]:
    rss = pss = 0
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Rss:"):
                rss = int(line.split()[1])
            elif line.startswith("Pss:"):
                pss = int(line.split()[1])
    except OSError:
        pass
    return rss, pss


def pod_memory(kubelet_dir: Path, uids: list[str]) -> list[tuple[int, int, int]]:
    """(processes, RSS kB, PSS kB) per pod: holder + every shim with its descendants."""
    kids = _children()
    out = []
    for uid in uids:
        d = kubelet_dir / "pods" / uid
        try:
            sb = json.loads((d / "sandbox.json").read_text())
        except OSError:
            continue
        pids = _tree(int(sb["holderPid"]), kids)
        for shim in d.glob("containers/*/attempts/*/shim.json"):
            st = json.loads(shim.read_text())
            for key in ("shimPid", "pid"):
                if st.get(key):
                    pids |= _tree(int(st[key]), kids)
        mem = [_mem_kb(p) for p in pids]
        out.append((len(pids), sum(m[0] for m in mem), sum(m[1] for m in mem)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 2)[2])
    ap.add_argument("--pods", type=int, default=50)
    ap.add_argument("--parallel", type=int, default=10, help="creates in flight")
    ap.add_argument("--image", choices=sorted(IMAGES), default="agnhost",
                    help="agnhost: agnhost:2.39 pause; busybox: busybox sleep 3600")
    ap.add_argument("--anchor-rounds", type=int, default=30)
    ap.add_argument("--idle", type=float, default=5, help="seconds idle before measuring memory")
    ap.add_argument("--timeout", type=float, default=300, help="seconds to wait for all Ready")
    ap.add_argument("--kubeconfig", default=None, help="use this running cluster (memory needs "
                    "--kubelet-dir too)")
    ap.add_argument("--kubelet-dir", default=None, help="the cluster's <data-dir>/kubelet")
    args = ap.parse_args()

    import uvloop

    if os.geteuid() != 0:
        sys.exit("needs root (network namespaces)")
    ns = f"bench-pods-{uuid.uuid4().hex[:5]}"
    cluster = None
    try:
        if args.kubeconfig:
            kubeconfig, kubelet_dir = args.kubeconfig, (Path(args.kubelet_dir) if args.kubelet_dir else None)
        else:
            cluster = BenchCluster(f"bpod{os.getpid() % 10000}").__enter__()
            kubeconfig, kubelet_dir = str(cluster.kubeconfig), cluster.data_dir / "kubelet"
        anch_before = anchor(args.anchor_rounds)
        ready, total, items = uvloop.run(start_pods(kubeconfig, args.pods, args.parallel,
                                                    args.image, ns, args.timeout))
        lat = [v * 1000 for v in ready.values()]
        time.sleep(args.idle)
        mem = pod_memory(kubelet_dir, [p["metadata"]["uid"] for p in items]) if kubelet_dir else []
        anch_after = anchor(args.anchor_rounds)
        anch = min(anch_before, anch_after) * 1000
        img = IMAGES[args.image]
        print(f"tinykube: {args.pods} pods ({img[0]} {' '.join(img[1] or img[2])}), "
              f"{args.parallel} creates in flight")
        print(f"  create -> Ready:   p50 {pct(lat, 50):7.0f} ms   p99 {pct(lat, 99):7.0f} ms   "
              f"({len(lat)}/{args.pods} Ready; all Ready after {total:.1f} s, "
              f"{len(lat) / total:.1f} pods/s)")
        print(f"anchor: netns + veth create/up/delete, median of {args.anchor_rounds}: "
              f"{anch:6.1f} ms (before {anch_before * 1000:.1f}, after {anch_after * 1000:.1f}; "
              f"the lower counts)")
        print(f"ratio pod p50 / anchor: {pct(lat, 50) / anch:.1f}x")
        if mem:
            procs = statistics.median(m[0] for m in mem)
            rss = statistics.median(m[1] for m in mem) / 1024
            pss = statistics.median(m[2] for m in mem) / 1024
            print(f"memory per idle pod (median of {len(mem)}; {procs:.0f} processes: holder, shim, "
                  f"container tree): RSS {rss:.1f} MiB, PSS {pss:.1f} MiB")
    finally:
        if cluster is not None:
            cluster.__exit__()
        elif args.kubeconfig:
            uvloop.run(delete_ns(args.kubeconfig, ns))


if __name__ == "__main__":
    main()
