"""Durable write rate: SQLite itself vs SqliteStore.

The anchor is plain sqlite3 doing what a naive durable store would do: WAL journal,
synchronous=FULL, one INSERT and one COMMIT (one fsync) per row. tinykube's SqliteStore does
the same durable writes from 10 concurrent writers, which group commit turns into a few large
transactions. Both run on temporary files in the same directory (the same disk), on the same
objects, and the ratio is printed.

    python bench/store_raw.py [--n 2000] [--writers 10] [--dir DIR]

raw_insert_rate(path, n) is the anchor on its own; other benchmarks import it
(`from bench.store_raw import raw_insert_rate`, run from the repository root).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def sample_object(i: int) -> dict:
    """A pod-sized object (about 1 KB of JSON)."""
    name = f"bench-{i:07d}"
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "uid": f"{i:08x}-0000-4000-8000-0",
                     "labels": {"app": "bench", "index": str(i)},
                     "creationTimestamp": "2024-01-01T00:00:00Z"},
        "spec": {"containers": [{"name": "c", "image": "nginx",
                                 "ports": [{"containerPort": 80, "protocol": "TCP"}],
                                 "resources": {}, "imagePullPolicy": "IfNotPresent",
                                 "terminationMessagePath": "/dev/termination-log"}],
                 "restartPolicy": "Always", "dnsPolicy": "ClusterFirst",
                 "schedulerName": "default-scheduler", "nodeName": "node-1",
                 "terminationGracePeriodSeconds": 30},
        "status": {"phase": "Running", "podIP": f"10.244.{i // 250 % 250}.{i % 250 + 2}",
                   "conditions": [{"type": t, "status": "True"}
                                  for t in ("Initialized", "Ready", "ContainersReady",
                                            "PodScheduled")]},
    }


def raw_insert_rate(path: str | os.PathLike[str], n: int) -> float:
    """Durable inserts per second of plain SQLite at `path` (a new file): WAL,
    synchronous=FULL, one INSERT + COMMIT per row, n rows of about 1 KB."""
    rows = [(f"/registry/core/pods/default/bench-{i:07d}", json.dumps(sample_object(i)))
            for i in range(n)]
    conn = sqlite3.connect(os.fspath(path), isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT)")
        start = time.perf_counter()
        for row in rows:
            conn.execute("BEGIN")
            conn.execute("INSERT INTO kv(key, value) VALUES (?, ?)", row)
            conn.execute("COMMIT")
        elapsed = time.perf_counter() - start
    finally:
        conn.close()
    return n / elapsed


def store_insert_rate(path: str | os.PathLike[str], n: int, writers: int = 10
                      ) -> tuple[float, dict]:
    """Creates per second through SqliteStore with `writers` concurrent writers (each awaits
    its own create before the next), and the store's commit counters."""
    sys.path.insert(0, str(REPO))
    import uvloop
    from tinykube.store.sqlite import SqliteStore

    objs = [sample_object(i) for i in range(n)]

    async def run() -> tuple[float, dict]:
        store = SqliteStore(path)
        await store.current_revision()          # opened before the clock starts

        async def writer(w: int) -> None:
            for i in range(w, n, writers):
                await store.create(f"/registry/core/pods/default/bench-{i:07d}", objs[i])

        start = time.perf_counter()
        await asyncio.gather(*[writer(w) for w in range(writers)])
        elapsed = time.perf_counter() - start
        stats = dict(store.stats)
        await store.close()
        return n / elapsed, stats

    return uvloop.run(run())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=2000, help="rows per run")
    ap.add_argument("--writers", type=int, default=10, help="concurrent SqliteStore writers")
    ap.add_argument("--dir", default=str(REPO), help="where the temporary files go (the disk "
                    "under test; default: beside the repository)")
    args = ap.parse_args()

    tmp = tempfile.mkdtemp(prefix="tinykube-bench-store-", dir=args.dir)
    try:
        raw = raw_insert_rate(os.path.join(tmp, "raw.db"), args.n)
        store, stats = store_insert_rate(os.path.join(tmp, "store.db"), args.n, args.writers)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    per_tx = stats["requests"] / max(1, stats["transactions"])
    print(f"disk: {args.dir}   rows: {args.n}   object: ~{len(json.dumps(sample_object(0)))} B")
    print(f"sqlite3 raw (INSERT+COMMIT per row, WAL, synchronous=FULL): {raw:10.0f} writes/s")
    print(f"SqliteStore ({args.writers} concurrent writers, durable):       {store:10.0f} "
          f"writes/s   ({stats['transactions']} commits, {per_tx:.1f} writes per commit)")
    print(f"ratio SqliteStore / raw: {store / raw:.2f}")


if __name__ == "__main__":
    main()
