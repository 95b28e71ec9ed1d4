"""Behaviour specific to SqliteStore and open_store (the contract is in test_store_contract)."""
from __future__ import annotations

import asyncio
import sqlite3
import threading

import pytest

from tinykube.store import open_store
from tinykube.store.base import Expired, KeyExists, revision_of
from tinykube.store.sqlite import SqliteStore

PODS = "/registry/core/pods/default/"


def pod(name: str, **extra) -> dict:
    return {"kind": "Pod", "metadata": {"name": name, "namespace": "default"}, **extra}


async def take(watch, n: int) -> list:
    out = []
    async for ev in watch:
        out.append(ev)
        if len(out) == n:
            break
    return out


# ---------------------------------------------------------------- open_store

def test_open_store_urls(tmp_path):
    s = open_store(f"sqlite://{tmp_path}/a.db")
    assert isinstance(s, SqliteStore) and s.path == f"{tmp_path}/a.db"
    b = open_store(str(tmp_path / "b.db"))
    assert isinstance(b, SqliteStore) and b.path == str(tmp_path / "b.db")

    async def use_and_close():
        await s.create("/k", {"a": 1})
        await b.create("/k", {"b": 1})
        await s.close()
        await b.close()
    asyncio.run(use_and_close())
    assert (tmp_path / "a.db").exists() and (tmp_path / "b.db").exists()


def test_open_store_rejects_unknown_schemes():
    with pytest.raises(ValueError, match="sqlite:///"):
        open_store("postgres://db/tinykube")
    with pytest.raises(ValueError, match="absolute path"):
        open_store("sqlite://relative.db")
    with pytest.raises(ValueError):
        open_store("")


# ---------------------------------------------------------------- durability settings

async def test_database_uses_wal_and_full_sync(tmp_path):
    s = SqliteStore(tmp_path / "s.db")
    await s.create("/k", {})
    conn = sqlite3.connect(tmp_path / "s.db")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()
    sync = await s._call(s._wq, lambda ctx: ctx.conn.execute("PRAGMA synchronous").fetchone()[0])
    assert sync == 2, "synchronous=FULL"
    await s.close()


async def test_sqlite_runs_off_the_event_loop_thread(tmp_path):
    s = SqliteStore(tmp_path / "s.db")
    loop_thread = threading.get_ident()
    w = await s._call(s._wq, lambda ctx: threading.get_ident())
    r = await s._call(s._rq, lambda conn: threading.get_ident())
    assert loop_thread not in (w, r)
    await s.close()


async def test_concurrent_writes_share_transactions(tmp_path):
    """Group commit: a burst of concurrent writes needs far fewer commits than writes."""
    s = SqliteStore(tmp_path / "s.db")
    await s.create("/warm", {})
    before = dict(s.stats)
    await asyncio.gather(*[s.create(PODS + f"p{i}", pod(f"p{i}")) for i in range(400)])
    requests = s.stats["requests"] - before["requests"]
    transactions = s.stats["transactions"] - before["transactions"]
    assert requests == 400
    assert transactions < requests / 4
    await s.close()


async def test_bad_object_fails_alone(tmp_path):
    s = SqliteStore(tmp_path / "s.db")
    results = await asyncio.gather(
        s.create(PODS + "a", pod("a")),
        s.create(PODS + "bad", {"metadata": {}, "x": object()}),
        s.create(PODS + "b", pod("b")),
        return_exceptions=True)
    assert revision_of(results[0]) == 1 and revision_of(results[2]) == 2
    assert isinstance(results[1], TypeError)
    assert [o["metadata"]["name"] for o in (await s.list(PODS))[0]] == ["a", "b"]
    await s.close()


async def test_unopenable_path_reports_errors_instead_of_hanging(tmp_path):
    s = SqliteStore(tmp_path / "no-such-dir" / "s.db")
    with pytest.raises(sqlite3.OperationalError):
        await s.create("/k", {})
    with pytest.raises(sqlite3.OperationalError):
        await s.get("/k")
    await s.close()


# ---------------------------------------------------------------- history and watchers

async def test_automatic_compaction_keeps_the_latest_changes(tmp_path):
    s = SqliteStore(tmp_path / "s.db", keep_history=10)
    for i in range(30):
        await s.create(PODS + f"p{i}", pod(f"p{i}"))
    with pytest.raises(Expired) as exp:
        await take(s.watch(PODS, 5), 1)
    assert exp.value.oldest == 21
    events = await take(s.watch(PODS, 20), 10)
    assert [e.revision for e in events] == list(range(21, 31))
    assert len((await s.list(PODS))[0]) == 30
    await s.close()
    # the horizon survives a restart
    s = SqliteStore(tmp_path / "s.db", keep_history=10)
    with pytest.raises(Expired):
        await take(s.watch(PODS, 5), 1)
    await s.close()


async def test_slow_watcher_blocks_nobody_and_catches_up(tmp_path):
    s = SqliteStore(tmp_path / "s.db", watch_queue=5)
    slow = s.watch(PODS, 0)
    fast = s.watch(PODS, 0)
    await s.create(PODS + "p000", pod("p000"))
    first = [await slow.__anext__()]       # registered from here on, then not read
    fast_seen = []

    async def fast_consumer():
        async for ev in fast:
            fast_seen.append(ev.revision)
            if ev.revision == 100:
                return

    fast_task = asyncio.ensure_future(fast_consumer())
    # 99 more writes while the slow watcher does not read: its queue overflows.
    for i in range(1, 100):
        await s.create(PODS + f"p{i:03d}", pod(f"p{i:03d}"))
    await fast_task
    assert fast_seen == list(range(1, 101))
    rest = await take(slow, 99)
    assert [e.revision for e in first + rest] == list(range(1, 101))
    assert [e.object["metadata"]["name"] for e in rest] == [f"p{i:03d}" for i in range(1, 100)]
    # and it is live again afterwards
    o = await s.create(PODS + "late", pod("late"))
    assert (await slow.__anext__()).revision == revision_of(o)
    await slow.aclose()
    await fast.aclose()
    await s.close()


async def test_watcher_too_far_behind_ends_with_expired(tmp_path):
    s = SqliteStore(tmp_path / "s.db", watch_queue=5, keep_history=20)
    w = s.watch(PODS, 0)
    await s.create(PODS + "p0", pod("p0"))
    assert (await w.__anext__()).revision == 1
    for i in range(1, 60):
        await s.create(PODS + f"p{i}", pod(f"p{i}"))
    with pytest.raises(Expired):
        await take(w, 60)
    await s.close()


async def test_watchers_get_their_own_objects(tmp_path):
    s = SqliteStore(tmp_path / "s.db")
    w1, w2 = s.watch(PODS, 0), s.watch(PODS, 0)
    t1, t2 = asyncio.ensure_future(take(w1, 1)), asyncio.ensure_future(take(w2, 1))
    await asyncio.sleep(0)
    await s.create(PODS + "a", pod("a", spec={"n": 1}))
    (e1,), (e2,) = await t1, await t2
    e1.object["spec"]["n"] = 99
    assert e2.object["spec"] == {"n": 1}
    assert (await s.get(PODS + "a"))["spec"] == {"n": 1}
    await s.close()


async def test_closed_watch_is_unregistered(tmp_path):
    s = SqliteStore(tmp_path / "s.db")
    w = s.watch(PODS, 0)
    await s.create(PODS + "a", pod("a"))
    await w.__anext__()
    assert len(s._watchers) == 1
    await w.aclose()
    assert len(s._watchers) == 0
    with pytest.raises(KeyExists):
        await s.create(PODS + "a", pod("a"))
    await s.close()


async def test_prefix_with_characters_that_sort_oddly(tmp_path):
    s = SqliteStore(tmp_path / "s.db")
    keys = ["/a/", "/a/x", "/a/\U0010ffff", "/a0", "/a/é", "/a\U0010ffff/z", "/a\U0010ffff"]
    for k in keys:
        await s.create(k, {"k": k})
    for prefix in ["/a/", "/a", "/a\U0010ffff", "/a/\U0010ffff", "", "/a/é"]:
        items, _ = await s.list(prefix)
        assert [o["k"] for o in items] == sorted(k for k in keys if k.startswith(prefix))
        events = await take(s.watch(prefix, 0), len(items))
        assert sorted(e.key for e in events) == sorted(o["k"] for o in items)
    await s.close()
