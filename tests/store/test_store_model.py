"""Random operation sequences against every backend, compared with a plain dict model."""
from __future__ import annotations

import asyncio
import itertools

import uvloop
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tinykube.store.base import (Expired, KeyExists, KeyNotFound, RevisionMismatch,
                                 revision_of)

KEYS = ["/p/a", "/p/ab", "/p/b", "/q/a", "/p", "/p/a/x"]
PREFIXES = ["/p/", "/p/a", "/q/", "/", "/p", "/r/"]
EXPECT = st.sampled_from([None, "current", "wrong"])

OPS = st.one_of(
    st.tuples(st.just("create"), st.sampled_from(KEYS)),
    st.tuples(st.just("update"), st.sampled_from(KEYS), EXPECT),
    st.tuples(st.just("delete"), st.sampled_from(KEYS), EXPECT),
    st.tuples(st.just("get"), st.sampled_from(KEYS)),
    st.tuples(st.just("list"), st.sampled_from(PREFIXES)),
    st.tuples(st.just("compact"), st.integers(0, 4)),
)

_names = itertools.count()


class Model:
    def __init__(self) -> None:
        self.objs: dict[str, dict] = {}
        self.revision = 0
        self.horizon = 0
        self.log: list[tuple[str, str, dict, int]] = []

    def stamp(self, obj: dict) -> dict:
        self.revision += 1
        out = dict(obj, metadata=dict(obj["metadata"], resourceVersion=str(self.revision)))
        return out


async def run_sequence(store, ops) -> None:
    m = Model()
    for i, op in enumerate(ops):
        kind, arg = op[0], op[1]
        if kind == "create":
            body = {"metadata": {"name": arg}, "v": i}
            if arg in m.objs:
                try:
                    await store.create(arg, body)
                    raise AssertionError("create over an existing key succeeded")
                except KeyExists:
                    pass
            else:
                want = m.stamp(body)
                assert await store.create(arg, body) == want
                m.objs[arg] = want
                m.log.append(("ADDED", arg, want, m.revision))
        elif kind in ("update", "delete"):
            body = {"metadata": {"name": arg}, "v": i}
            current = m.objs.get(arg)
            exp = op[2]
            expected = None
            if exp == "current":
                expected = revision_of(current) if current else 1
            elif exp == "wrong":
                expected = (revision_of(current) if current else 0) + 1000
            call = (store.update(arg, body, expected) if kind == "update"
                    else store.delete(arg, expected))
            if current is None:
                try:
                    await call
                    raise AssertionError(f"{kind} of a missing key succeeded")
                except KeyNotFound:
                    pass
            elif exp == "wrong":
                try:
                    await call
                    raise AssertionError(f"{kind} with a wrong revision succeeded")
                except RevisionMismatch as e:
                    assert e.current == current
            elif kind == "update":
                want = m.stamp(body)
                assert await call == want
                m.objs[arg] = want
                m.log.append(("MODIFIED", arg, want, m.revision))
            else:
                want = m.stamp(current)
                assert await call == want
                del m.objs[arg]
                m.log.append(("DELETED", arg, want, m.revision))
        elif kind == "get":
            if arg in m.objs:
                assert await store.get(arg) == m.objs[arg]
            else:
                try:
                    await store.get(arg)
                    raise AssertionError("get of a missing key succeeded")
                except KeyNotFound:
                    pass
        elif kind == "list":
            want = [m.objs[k] for k in sorted(m.objs) if k.startswith(arg)]
            assert await store.list(arg) == (want, m.revision)
        elif kind == "compact":
            target = m.revision * arg // 4
            if target > m.horizon:
                await store.compact(target)
                m.horizon = target
        assert await store.current_revision() == m.revision

    # the whole history after the horizon, per prefix, in order
    for prefix in PREFIXES:
        want = [e for e in m.log if e[3] > m.horizon and e[1].startswith(prefix)]
        got = []
        if want:
            async for ev in store.watch(prefix, m.horizon):
                got.append((ev.type, ev.key, ev.object, ev.revision))
                if len(got) == len(want):
                    break
        assert got == want
        if m.horizon > 0:
            try:
                async for _ in store.watch(prefix, m.horizon - 1):
                    break
                raise AssertionError("watch from before the horizon did not expire")
            except Expired:
                pass


@settings(max_examples=100, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(OPS, max_size=40))
def test_random_operations_match_a_dict_model(store_factory, ops):
    name = f"model{next(_names)}"

    async def body():
        s = store_factory(name)
        try:
            await asyncio.wait_for(run_sequence(s, ops), 30)
        finally:
            await s.close()
    uvloop.run(body())
