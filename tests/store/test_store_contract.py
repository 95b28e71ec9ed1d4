"""The Store contract: every backend in conftest.BACKENDS must pass all of this."""
from __future__ import annotations

import asyncio
import copy

import pytest

from tinykube.store.base import (Event, Expired, KeyExists, KeyNotFound, RevisionMismatch,
                                 StoreError, revision_of)

PODS = "/registry/core/pods/default/"
PODS2 = "/registry/core/pods/default2/"


def pod(name: str, **extra) -> dict:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default"}, **extra}


async def take(watch, n: int) -> list[Event]:
    out = []
    async for ev in watch:
        out.append(ev)
        if len(out) == n:
            break
    return out


async def take_until(watch, revision: int) -> list[Event]:
    """Events until one with revision >= revision (which is included)."""
    out = []
    async for ev in watch:
        out.append(ev)
        if ev.revision >= revision:
            break
    return out


# ---------------------------------------------------------------- CRUD and errors

async def test_crud_round_trip(store_factory):
    s = store_factory()
    try:
        assert await s.current_revision() == 0
        obj = pod("a", spec={"x": 1})
        original = copy.deepcopy(obj)
        created = await s.create(PODS + "a", obj)
        assert obj == original, "create must not modify the caller's object"
        assert created["metadata"]["resourceVersion"] == "1"
        assert created["spec"] == {"x": 1}
        assert await s.get(PODS + "a") == created

        created["spec"]["x"] = 2
        updated = await s.update(PODS + "a", created)
        assert revision_of(updated) == 2
        assert updated["spec"] == {"x": 2}
        assert await s.get(PODS + "a") == updated

        deleted = await s.delete(PODS + "a")
        assert revision_of(deleted) == 3, "the deletion consumes a revision"
        assert deleted["spec"] == {"x": 2}
        with pytest.raises(KeyNotFound):
            await s.get(PODS + "a")
        assert await s.current_revision() == 3
        # the key can be created again
        again = await s.create(PODS + "a", pod("a"))
        assert revision_of(again) == 4
    finally:
        await s.close()


async def test_errors(store_factory):
    s = store_factory()
    try:
        first = await s.create(PODS + "a", pod("a"))
        with pytest.raises(KeyExists):
            await s.create(PODS + "a", pod("a"))
        with pytest.raises(KeyNotFound):
            await s.get(PODS + "missing")
        with pytest.raises(KeyNotFound):
            await s.update(PODS + "missing", pod("missing"))
        with pytest.raises(KeyNotFound):
            await s.delete(PODS + "missing")
        with pytest.raises(KeyNotFound):
            await s.update(PODS + "missing", pod("missing"), expected_revision=1)

        with pytest.raises(RevisionMismatch) as mismatch:
            await s.update(PODS + "a", pod("a", spec={"v": 2}), expected_revision=99)
        assert mismatch.value.current == first
        with pytest.raises(RevisionMismatch) as mismatch:
            await s.delete(PODS + "a", expected_revision=99)
        assert mismatch.value.current == first
        for exc in (KeyExists, KeyNotFound, RevisionMismatch, Expired):
            assert issubclass(exc, StoreError)

        assert await s.current_revision() == 1, "failed writes consume no revision"
        assert await s.get(PODS + "a") == first

        updated = await s.update(PODS + "a", pod("a", spec={"v": 2}),
                                 expected_revision=revision_of(first))
        assert revision_of(updated) == 2
        with pytest.raises(RevisionMismatch) as mismatch:
            await s.update(PODS + "a", pod("a", spec={"v": 3}), expected_revision=1)
        assert mismatch.value.current == updated
        deleted = await s.delete(PODS + "a", expected_revision=2)
        assert revision_of(deleted) == 3
    finally:
        await s.close()


async def test_failures_in_a_concurrent_burst_do_not_disturb_the_others(store_factory):
    s = store_factory()
    try:
        await s.create(PODS + "taken", pod("taken"))
        ops = []
        for i in range(50):
            ops.append(s.create(PODS + f"p{i}", pod(f"p{i}")))
            if i % 5 == 0:
                ops.append(s.create(PODS + "taken", pod("taken")))
                ops.append(s.delete(PODS + f"nope{i}"))
        results = await asyncio.gather(*ops, return_exceptions=True)
        good = [r for r in results if isinstance(r, dict)]
        bad = [r for r in results if isinstance(r, BaseException)]
        assert len(good) == 50
        assert len(bad) == 20
        assert all(isinstance(e, (KeyExists, KeyNotFound)) for e in bad)
        assert sorted(revision_of(r) for r in good) == list(range(2, 52))
        assert await s.current_revision() == 51
    finally:
        await s.close()


# ---------------------------------------------------------------- revisions and list

async def test_revisions_are_global_and_strictly_increasing(store_factory):
    s = store_factory()
    try:
        revs = []
        for i in range(5):
            revs.append(revision_of(await s.create(PODS + f"p{i}", pod(f"p{i}"))))
            revs.append(revision_of(await s.create(PODS2 + f"p{i}", pod(f"p{i}"))))
        revs.append(revision_of(await s.update(PODS + "p1", pod("p1", spec={}))))
        revs.append(revision_of(await s.delete(PODS2 + "p3")))
        assert revs == list(range(1, len(revs) + 1))
        assert await s.current_revision() == revs[-1]
        # the stored object carries its own revision
        assert revision_of(await s.get(PODS + "p1")) == revs[-2]
        assert revision_of(await s.get(PODS + "p0")) == 1
    finally:
        await s.close()


async def test_list_sorted_with_revision_and_prefix_isolation(store_factory):
    s = store_factory()
    try:
        for name in ["c", "a", "b"]:
            await s.create(PODS + name, pod(name))
        await s.create(PODS2 + "a", pod("a"))
        await s.create("/registry/core/pods/defaul", pod("x"))
        items, rev = await s.list(PODS)
        assert [i["metadata"]["name"] for i in items] == ["a", "b", "c"]
        assert rev == 5 == await s.current_revision()
        items2, _ = await s.list(PODS2)
        assert len(items2) == 1 and revision_of(items2[0]) == 4
        everything, _ = await s.list("/registry/core/pods/")
        assert len(everything) == 5
        keys_sorted = sorted([PODS + "a", PODS + "b", PODS + "c", PODS2 + "a",
                              "/registry/core/pods/defaul"])
        by_rev = {1: PODS + "c", 2: PODS + "a", 3: PODS + "b", 4: PODS2 + "a",
                  5: "/registry/core/pods/defaul"}
        assert [by_rev[revision_of(o)] for o in everything] == keys_sorted
        assert await s.list("/registry/core/services/") == ([], 5)
    finally:
        await s.close()


async def test_list_is_atomic_with_its_revision(store_factory):
    """Under concurrent writes, each list holds exactly the objects written at or below the
    revision it reports."""
    s = store_factory()
    try:
        created: dict[str, int] = {}
        snapshots = []

        async def writer(w: int):
            for i in range(40):
                name = f"w{w}-{i:03d}"
                created[PODS + name] = revision_of(await s.create(PODS + name, pod(name)))

        writing = True

        async def writers():
            nonlocal writing
            await asyncio.gather(*[writer(w) for w in range(5)])
            writing = False

        async def lister():
            while writing:
                snapshots.append(await s.list(PODS))
                await asyncio.sleep(0)

        await asyncio.gather(writers(), lister(), lister())
        assert len(created) == 200
        assert any(0 < len(items) < 200 for items, _ in snapshots), "lists ran during writes"
        for items, rev in snapshots:
            got = [PODS + o["metadata"]["name"] for o in items]
            assert got == sorted({k for k, r in created.items() if r <= rev})
            assert all(revision_of(o) <= rev for o in items)
    finally:
        await s.close()


async def test_many_concurrent_writers(store_factory):
    s = store_factory()
    try:
        results = await asyncio.gather(*[s.create(PODS + f"p{i:04d}", pod(f"p{i}"))
                                         for i in range(500)])
        revs = [revision_of(r) for r in results]
        assert len(set(revs)) == 500
        assert sorted(revs) == list(range(1, 501))
        items, rev = await s.list(PODS)
        assert rev == 500
        assert [o["metadata"]["name"] for o in items] == [f"p{i}" for i in range(500)]
        for r in results[::50]:
            assert await s.get(PODS + f"p{int(r['metadata']['name'][1:]):04d}") == r
    finally:
        await s.close()


# ---------------------------------------------------------------- watch

async def _populate(s) -> list[tuple[str, str, int]]:
    """A small history; returns (type, key, revision) in order."""
    log = []
    for i in range(3):
        o = await s.create(PODS + f"p{i}", pod(f"p{i}"))
        log.append(("ADDED", PODS + f"p{i}", revision_of(o)))
    o = await s.create(PODS2 + "p0", pod("p0"))
    log.append(("ADDED", PODS2 + "p0", revision_of(o)))
    o = await s.update(PODS + "p1", pod("p1", spec={"v": 1}))
    log.append(("MODIFIED", PODS + "p1", revision_of(o)))
    o = await s.delete(PODS + "p0")
    log.append(("DELETED", PODS + "p0", revision_of(o)))
    return log


async def test_watch_from_zero_replays_history(store_factory):
    s = store_factory()
    try:
        log = await _populate(s)
        w = s.watch(PODS, 0)
        events = await take(w, 5)
        await w.aclose()
        mine = [e for e in log if e[1].startswith(PODS)]
        assert [(e.type, e.key, e.revision) for e in events] == mine
        for e in events:
            assert revision_of(e.object) == e.revision
        deleted = events[-1]
        assert deleted.type == "DELETED" and deleted.object["metadata"]["name"] == "p0"
        assert deleted.revision == await s.current_revision()
        assert events[3].object["spec"] == {"v": 1}
    finally:
        await s.close()


async def test_watch_from_a_middle_revision_then_live(store_factory):
    s = store_factory()
    try:
        log = await _populate(s)
        middle = log[2][2]   # after the third create
        w = s.watch(PODS, middle)
        first = await take(w, 2)
        assert [(e.type, e.key, e.revision) for e in first] == \
            [e for e in log if e[2] > middle and e[1].startswith(PODS)]
        # now live
        o = await s.create(PODS + "live", pod("live"))
        await s.create(PODS2 + "live", pod("live"))
        o2 = await s.update(PODS + "live", pod("live", spec={"z": 1}))
        live = await take(w, 2)
        assert [(e.type, e.key, e.revision) for e in live] == [
            ("ADDED", PODS + "live", revision_of(o)),
            ("MODIFIED", PODS + "live", revision_of(o2))]
        assert live[1].object["spec"] == {"z": 1}
        await w.aclose()
    finally:
        await s.close()


async def test_watch_live_only_and_prefix_isolation(store_factory):
    s = store_factory()
    try:
        await _populate(s)
        now = await s.current_revision()
        w1 = s.watch(PODS, now)
        w2 = s.watch(PODS2, now)
        # Start both watches (they register on first iteration).
        t1 = asyncio.ensure_future(take(w1, 2))
        t2 = asyncio.ensure_future(take(w2, 1))
        a = await s.create(PODS2 + "x", pod("x"))
        b = await s.create(PODS + "x", pod("x"))
        c = await s.delete(PODS + "x")
        e1, e2 = await t1, await t2
        assert [(e.type, e.revision) for e in e1] == [("ADDED", revision_of(b)),
                                                      ("DELETED", revision_of(c))]
        assert [(e.type, e.key, e.revision) for e in e2] == [("ADDED", PODS2 + "x",
                                                              revision_of(a))]
        await w1.aclose()
        await w2.aclose()
    finally:
        await s.close()


async def test_watch_started_during_writes_has_no_gap_and_no_duplicate(store_factory):
    s = store_factory()
    try:
        written: list[int] = []
        total = 300

        async def writer(w: int):
            for i in range(total // 6):
                o = await s.create(PODS + f"w{w}-{i}", pod(f"w{w}-{i}"))
                written.append(revision_of(o))

        writers = asyncio.gather(*[writer(w) for w in range(6)])
        watches = []
        for _ in range(5):
            while len(written) < len(watches) * 40:
                await asyncio.sleep(0)
            since = await s.current_revision()
            watches.append((since, asyncio.ensure_future(take_until(s.watch(PODS, since),
                                                                    total))))
            await asyncio.sleep(0)
        await writers
        assert sorted(written) == list(range(1, total + 1))
        for since, task in watches:
            events = await task
            assert [e.revision for e in events] == list(range(since + 1, total + 1))
    finally:
        await s.close()


async def test_watch_objects_match_the_writes(store_factory):
    s = store_factory()
    try:
        w = s.watch("/registry/", 0)
        t = asyncio.ensure_future(take(w, 3))
        a = await s.create(PODS + "a", pod("a", spec={"k": "v"}))
        b = await s.update(PODS + "a", dict(a, spec={"k": "w"}))
        c = await s.delete(PODS + "a")
        events = await t
        assert [e.object for e in events] == [a, b, c]
        assert c["spec"] == {"k": "w"} and revision_of(c) == 3
    finally:
        await s.close()


async def test_compaction_expires_old_watches(store_factory):
    s = store_factory()
    try:
        log = await _populate(s)
        await s.compact(4)
        with pytest.raises(Expired) as exp:
            await take(s.watch(PODS, 2), 1)
        assert exp.value.since == 2
        with pytest.raises(Expired):
            await take(s.watch(PODS, 0), 1)
        # at the horizon itself: everything after it is still known
        events = await take(s.watch(PODS, 4), 2)
        assert [(e.type, e.key, e.revision) for e in events] == [l for l in log if l[2] > 4]
        # objects are untouched by compaction
        items, rev = await s.list(PODS)
        assert len(items) == 2 and rev == 6
    finally:
        await s.close()


async def test_close_ends_live_watchers(store_factory):
    s = store_factory()
    await s.create(PODS + "a", pod("a"))
    seen = []

    async def consume(watch):
        async for ev in watch:
            seen.append(ev)
        return "ended"

    tasks = [asyncio.ensure_future(consume(s.watch(PODS, 0))),
             asyncio.ensure_future(consume(s.watch(PODS2, 1)))]
    while len(seen) < 1:
        await asyncio.sleep(0)
    await s.close()
    assert await asyncio.gather(*tasks) == ["ended", "ended"]
    with pytest.raises(StoreError):
        await s.get(PODS + "a")
    with pytest.raises(StoreError):
        await s.create(PODS + "b", pod("b"))


async def test_persistence_across_reopen(store_factory):
    s = store_factory()
    log = await _populate(s)
    before, rev = await s.list("/registry/")
    await s.close()

    s = store_factory()
    try:
        assert await s.current_revision() == rev == log[-1][2]
        assert await s.list("/registry/") == (before, rev)
        # watch resumes from history after the restart
        events = await take(s.watch(PODS, 2), 3)
        assert [(e.type, e.key, e.revision) for e in events] == \
            [l for l in log if l[2] > 2 and l[1].startswith(PODS)]
        nxt = await s.create(PODS + "after", pod("after"))
        assert revision_of(nxt) == rev + 1
    finally:
        await s.close()
    s = store_factory()
    try:
        assert await s.current_revision() == rev + 1
    finally:
        await s.close()


async def test_separate_storages_are_independent(store_factory):
    a = store_factory("one")
    b = store_factory("two")
    try:
        await a.create(PODS + "x", pod("x"))
        assert await b.list(PODS) == ([], 0)
    finally:
        await a.close()
        await b.close()


async def test_returned_objects_are_the_callers_own(store_factory):
    s = store_factory()
    try:
        obj = pod("a", spec={"list": [1]})
        created = await s.create(PODS + "a", obj)
        obj["spec"]["list"].append(2)
        created["spec"]["list"].append(3)
        got = await s.get(PODS + "a")
        assert got["spec"] == {"list": [1]}
        got["metadata"]["name"] = "changed"
        items, _ = await s.list(PODS)
        assert items[0]["metadata"]["name"] == "a"
        items[0]["spec"]["list"].clear()
        ev = await s.watch(PODS, 0).__anext__()
        assert ev.object["spec"] == {"list": [1]}
        ev.object["spec"]["list"].clear()
        assert (await s.get(PODS + "a"))["spec"] == {"list": [1]}
    finally:
        await s.close()


async def test_compact_bounds(store_factory):
    s = store_factory()
    try:
        await s.create(PODS + "a", pod("a"))
        await s.create(PODS + "b", pod("b"))
        with pytest.raises(ValueError):
            await s.compact(5)
        await s.compact(1)
        await s.compact(1)      # again, and below the horizon: nothing to do
        await s.compact(0)
        with pytest.raises(Expired):
            await s.watch("/", 0).__anext__()
        ev = await s.watch("/", 1).__anext__()
        assert ev.revision == 2
    finally:
        await s.close()
