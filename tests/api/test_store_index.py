"""The registry's store-watch index: what GC, allocation and namespace checks read instead of
scanning the store."""
from __future__ import annotations

import asyncio

from tinykube.api.resources import get
from tinykube.apiserver.registry import Registry, WriteOptions
from tinykube.store.sqlite import SqliteStore


def test_index_follows_the_store(tmp_path):
    async def main():
        store = SqliteStore(str(tmp_path / "s.db"))
        reg = Registry(store)
        await reg.ensure_system_objects()
        svc = get("services")
        a = await reg.create(svc, "default", {"metadata": {"name": "a"},
                                              "spec": {"type": "NodePort", "ports": [{"port": 80}]}}, WriteOptions())
        b = await reg.create(svc, "default", {"metadata": {"name": "b"}, "spec": {"ports": [{"port": 80}]}},
                             WriteOptions())
        # the Service writes wait for the index, so allocations are exact right away
        ips, ports = reg.index.used_by_others(svc.key("default", "b"))
        assert ips == {a["spec"]["clusterIP"]} and ports == {a["spec"]["ports"][0]["nodePort"]}
        # dependents through ownerReferences
        cm = get("configmaps")
        owner = {"apiVersion": "v1", "kind": "Service", "name": "b", "uid": b["metadata"]["uid"]}
        await reg.create(cm, "default", {"metadata": {"name": "dep", "ownerReferences": [owner]}}, WriteOptions())
        await reg.index.caught_up(await store.current_revision())
        assert reg.index.dependents(b["metadata"]["uid"]) == [cm.key("default", "dep")]
        # deleting the owner collects the dependent
        await reg.delete(svc, "default", "b", {}, WriteOptions())
        for _ in range(100):
            if not (await store.list(cm.key("default")))[0]:
                break
            await asyncio.sleep(0.02)
        assert (await store.list(cm.key("default")))[0] == []
        assert reg.index.dependents(b["metadata"]["uid"]) == []
        # namespaces and their termination
        ns = get("namespaces")
        await reg.create(ns, None, {"metadata": {"name": "gone"}}, WriteOptions())
        await reg.index.caught_up(await store.current_revision())
        assert reg.index.namespaces["gone"] is False
        await reg.delete(ns, None, "gone", {}, WriteOptions())
        await reg.index.caught_up(await store.current_revision())
        assert reg.index.namespaces.get("gone") in (True, None)
        await store.close()
    asyncio.run(main())
