"""Proxy programming cost: one Service changing among N, incremental vs full transaction.

    python bench/proxy_sync.py [--services 1000,5000] [--endpoints 3] [--rounds 20]

Everything runs in a network namespace made for the run (deleted at the end); no packet is
sent. For each N the table is first loaded with N ClusterIP services; then, `rounds` times, one
service gains or loses an endpoint and is applied two ways:
  tinykube: the proxier's incremental transaction (only that service's chains and elements);
  anchor:   a full rewrite of the whole table in one transaction, what a proxy without
            incremental sync does on every change (and what tinykube does at start/resync).
The median time of `nft -f -` for each and their ratio are printed (lower is better)."""
from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tinykube.agent.proxy import nft  # noqa: E402
from tinykube.agent.proxy.render import (IdAllocator, Present, ProxyConfig,  # noqa: E402
                                         render_all, render_full, render_incremental,
                                         render_service)


def service(i: int) -> dict:
    ip = f"10.96.{i // 250}.{i % 250 + 1}"
    return {"metadata": {"name": f"svc{i}", "namespace": "bench"},
            "spec": {"type": "ClusterIP", "clusterIP": ip, "clusterIPs": [ip],
                     "ports": [{"port": 80, "protocol": "TCP", "targetPort": 8080}]}}


def slice_(i: int, n: int) -> dict:
    return {"addressType": "IPv4",
            "metadata": {"name": f"svc{i}-x", "namespace": "bench",
                         "labels": {"kubernetes.io/service-name": f"svc{i}"}},
            "endpoints": [{"addresses": [f"10.244.{(i * 8 + k) // 250 % 250}.{(i * 8 + k) % 250 + 1}"],
                           "conditions": {"ready": True}} for k in range(n)],
            "ports": [{"name": "", "port": 8080, "protocol": "TCP"}]}


async def timed(script: str, ns: str) -> float:
    t0 = time.perf_counter()
    await nft.apply(script, ns)
    return time.perf_counter() - t0


async def run(n: int, eps: int, rounds: int, ns: str) -> tuple[float, float]:
    cfg = ProxyConfig(table="tinykube-bench-proxy", node_name="n1", node_ips=("10.77.0.1",),
                      cluster_cidrs=("10.244.0.0/16",), service_cidrs=("10.96.0.0/12",))
    ids = IdAllocator()
    services = [service(i) for i in range(n)]
    slices = {i: slice_(i, eps) for i in range(n)}
    state = render_all(services, slices.values(), cfg, ids)
    await nft.apply(render_full(state, cfg, None), ns)
    present = Present.of(state)
    inc, full = [], []
    for r in range(rounds):
        i = (r * 7919) % n
        slices[i] = slice_(i, eps + 1 if r % 2 == 0 else eps)
        key = ("bench", f"svc{i}")
        new = dict(state)
        new[key] = render_service(services[i], [slices[i]], cfg, ids)
        inc.append(await timed(render_incremental(state, new, [key], cfg, present), ns))
        state = new
        existing = await nft.existing(cfg.table, cfg.family, ns)
        full.append(await timed(render_full(state, cfg, existing), ns))
    await nft.delete_table(cfg.table, cfg.family, ns)
    return statistics.median(inc), statistics.median(full)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--services", default="1000,5000")
    ap.add_argument("--endpoints", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=20)
    a = ap.parse_args()
    ns = f"tkbench-{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        for n in (int(x) for x in a.services.split(",")):
            inc, full = asyncio.run(run(n, a.endpoints, a.rounds, ns))
            print(f"{n} services x {a.endpoints} endpoints, one service changed:")
            print(f"  tinykube incremental: {inc * 1000:8.1f} ms")
            print(f"  anchor full rewrite:  {full * 1000:8.1f} ms")
            print(f"  ratio tinykube/anchor: {inc / full:.3f}")
    finally:
        subprocess.run(["ip", "netns", "del", ns])


if __name__ == "__main__":
    main()
