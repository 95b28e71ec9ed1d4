"""Behaviour specific to EtcdStore (the contract is in test_store_contract): URLs, a real etcd
restart under an open store and a live watch, several clusters' prefixes in one etcd, the
stored form, endpoint failover."""
from __future__ import annotations

import asyncio
import base64
import json
import shutil
import socket
import urllib.request

import pytest

from tinykube.store import open_store
from tinykube.store.base import KeyNotFound, StoreError, revision_of
from tinykube.store.etcd import EtcdStore

PODS = "/registry/core/pods/default/"

needs_etcd = pytest.mark.skipif(shutil.which("etcd") is None, reason="etcd is not installed")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def pod(name: str, **extra) -> dict:
    return {"kind": "Pod", "metadata": {"name": name, "namespace": "default"}, **extra}


async def take(watch, n: int) -> list:
    out = []
    async for ev in watch:
        out.append(ev)
        if len(out) == n:
            break
    return out


def raw_range(url: str, key: bytes, prefix: bool = False) -> list[tuple[bytes, bytes, int]]:
    """(key, value, mod_revision) straight from etcd's gateway, bypassing the store."""
    body = {"key": base64.b64encode(key).decode()}
    if prefix:
        end = bytearray(key)
        end[-1] += 1
        body["range_end"] = base64.b64encode(bytes(end)).decode()
    req = urllib.request.Request(url + "/v3/kv/range", data=json.dumps(body).encode(),
                                 method="POST")
    with urllib.request.urlopen(req, timeout=5) as r:
        kvs = json.load(r).get("kvs") or []
    return [(base64.b64decode(kv["key"]), base64.b64decode(kv.get("value", "")),
             int(kv["mod_revision"])) for kv in kvs]


@pytest.fixture
def etcd(etcd_servers, tmp_path):
    server = etcd_servers.new(tmp_path / "etcd")
    try:
        yield server
    finally:
        server.stop(kill=True)


# ---------------------------------------------------------------- open_store

def test_open_store_etcd_urls():
    s = open_store("etcd://127.0.0.1:2379")
    assert isinstance(s, EtcdStore)
    assert s.endpoints == ["http://127.0.0.1:2379"] and s.prefix == ""
    s = open_store("etcd://127.0.0.1:2379,10.0.0.2:12379,etcd3?prefix=/tinykube-dev")
    assert s.endpoints == ["http://127.0.0.1:2379", "http://10.0.0.2:12379",
                           "http://etcd3:2379"]
    assert s.prefix == "/tinykube-dev"
    assert open_store("etcds://[::1]:2379?prefix=/a/").endpoints == ["https://[::1]:2379"]
    assert open_store("etcds://[::1]?prefix=/a/").prefix == "/a"
    for bad in ("etcd://", "etcd://h:1?bogus=1", "etcd://h:1?prefix=relative",
                "etcd://user@h:1", "etcd://h:1/path"):
        with pytest.raises(ValueError):
            open_store(bad)


# ---------------------------------------------------------------- real etcd

@needs_etcd
async def test_persistence_across_an_etcd_restart(etcd):
    url = f"etcd://127.0.0.1:{etcd.client_port}?prefix=/tinykube-a"
    s = open_store(url, reconnect_timeout=30)
    try:
        a = await s.create(PODS + "a", pod("a", spec={"v": 1}))
        b = await s.create(PODS + "b", pod("b"))
        b2 = await s.update(PODS + "b", pod("b", spec={"v": 2}), revision_of(b))
        await s.delete(PODS + "a")
        before = await s.list(PODS)
        rev = await s.current_revision()
        assert rev == 4 and before == ([b2], 4)

        watch = s.watch(PODS, rev)
        live = asyncio.ensure_future(take(watch, 2))
        await asyncio.sleep(0.2)            # let the watch stream open (no timing asserted)

        etcd.stop(kill=True)                # SIGKILL: only what etcd synced survives
        with pytest.raises(StoreError):
            await s.get(PODS + "b")
        etcd.start()

        # the same open store carries on: data, revision, history all there
        assert await s.list(PODS) == before
        assert await s.current_revision() == rev
        with pytest.raises(KeyNotFound):
            await s.get(PODS + "a")
        history = await take(s.watch(PODS, 0), 4)
        assert [(e.type, e.key, e.revision) for e in history] == [
            ("ADDED", PODS + "a", 1), ("ADDED", PODS + "b", 2),
            ("MODIFIED", PODS + "b", 3), ("DELETED", PODS + "a", 4)]
        assert history[3].object == dict(a, metadata=dict(a["metadata"], resourceVersion="4"))

        # the watch opened before the restart reconnects and sees new writes, from where it was
        c = await s.create(PODS + "c", pod("c"))
        d = await s.delete(PODS + "b")
        events = await live
        assert [(e.type, e.key, e.object) for e in events] == [
            ("ADDED", PODS + "c", c), ("DELETED", PODS + "b", d)]
        await watch.aclose()
    finally:
        await s.close()

    # and a new store (a restarted API server) sees the same
    s = open_store(url)
    try:
        assert await s.current_revision() == 6
        assert [o["metadata"]["name"] for o in (await s.list(PODS))[0]] == ["c"]
    finally:
        await s.close()


@needs_etcd
async def test_two_prefixes_in_one_etcd_are_isolated(etcd):
    # "/tinykube-a" is a string prefix of "/tinykube-ab": neither may see the other
    a = open_store(f"etcd://127.0.0.1:{etcd.client_port}?prefix=/tinykube-a")
    b = open_store(f"etcd://127.0.0.1:{etcd.client_port}?prefix=/tinykube-ab")
    try:
        wa = a.watch("", 0)
        wb = b.watch("/", 0)
        got_a = asyncio.ensure_future(take(wa, 3))
        got_b = asyncio.ensure_future(take(wb, 2))

        a1 = await a.create(PODS + "x", pod("x", spec={"who": "a"}))
        b1 = await b.create(PODS + "x", pod("x", spec={"who": "b"}))
        a2 = await a.update(PODS + "x", pod("x", spec={"who": "a2"}))
        b2 = await b.create(PODS + "y", pod("y"))
        a3 = await a.delete(PODS + "x")

        # revisions are etcd's: one counter shared by every prefix
        assert [revision_of(o) for o in (a1, b1, a2, b2, a3)] == [1, 2, 3, 4, 5]
        assert await a.current_revision() == await b.current_revision() == 5

        assert await a.list("") == ([], 5)
        assert await b.list("") == ([b1, b2], 5)
        assert await b.get(PODS + "x") == b1
        with pytest.raises(KeyNotFound):
            await a.get(PODS + "y")

        ev_a, ev_b = await got_a, await got_b
        assert [(e.type, e.object) for e in ev_a] == [("ADDED", a1), ("MODIFIED", a2),
                                                      ("DELETED", a3)]
        assert [(e.type, e.object) for e in ev_b] == [("ADDED", b1), ("ADDED", b2)]
        await wa.aclose()
        await wb.aclose()

        # what etcd holds: the keys under each prefix, values without resourceVersion
        stored = raw_range(etcd.url, b"/tinykube-ab/", prefix=True)
        assert [k for k, _, _ in stored] == [b"/tinykube-ab" + (PODS + n).encode()
                                             for n in ("x", "y")]
        value = json.loads(stored[0][1])
        assert value == {"kind": "Pod", "metadata": {"name": "x", "namespace": "default"},
                         "spec": {"who": "b"}}
        assert stored[0][2] == revision_of(b1) + 1, "store revision = etcd revision - 1"
        with pytest.raises(ValueError):
            await a.create("no-leading-slash", pod("z"))
    finally:
        await a.close()
        await b.close()


@needs_etcd
async def test_endpoints_are_tried_in_order(etcd):
    dead = _free_port()
    s = open_store(f"etcd://127.0.0.1:{dead},127.0.0.1:{etcd.client_port}")
    try:
        created = await s.create("/k", {"metadata": {}, "v": 1})
        assert await s.get("/k") == created
        events = await take(s.watch("/", 0), 1)
        assert events[0].object == created
    finally:
        await s.close()
    s = open_store(f"etcd://127.0.0.1:{dead}")
    try:
        with pytest.raises(StoreError):
            await s.get("/k")
        with pytest.raises(StoreError):
            await take(s.watch("/", 0), 1)
    finally:
        await s.close()
