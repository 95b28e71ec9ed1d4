"""The informer's cache and its indexes, fed by a scripted list and watch."""
import asyncio

from tinykube.api import resources
from tinykube.client import Informer
from tinykube.controllers.util import BY_SERVICE, slice_service


def es(name: str, svc: str | None, rv: str, ns: str = "default") -> dict:
    labels = {"kubernetes.io/service-name": svc} if svc else {}
    return {"metadata": {"name": name, "namespace": ns, "resourceVersion": rv, "labels": labels}}


class ScriptedClient:
    """list() returns `listed`; watch() yields `events` and then ends like a timed-out watch."""

    def __init__(self, listed: list[dict], events: list[tuple[str, dict]]):
        self.listed, self.events = listed, events
        self.watch_done = asyncio.Event()

    async def list(self, *a, **kw):
        return list(self.listed), "10"

    async def watch(self, *a, **kw):
        for e in self.events:
            yield e
        self.events = []
        self.watch_done.set()
        await asyncio.sleep(3600)
        if False:
            yield


def names(objs: list[dict]) -> list[str]:
    return sorted(o["metadata"]["name"] for o in objs)


def test_index_follows_list_watch_updates_and_deletes():
    async def body():
        client = ScriptedClient(
            [es("a-1", "a", "1"), es("a-2", "a", "2"), es("b-1", "b", "3"), es("x", None, "4"),
             es("a-1", "a", "5", ns="other")],
            [("ADDED", es("b-2", "b", "6")),
             ("MODIFIED", es("a-2", "b", "7")),           # relabelled: moves to b
             ("DELETED", es("b-1", "b", "8"))])
        inf = Informer(client, resources.get("endpointslices", "discovery.k8s.io"))
        inf.add_index(BY_SERVICE, slice_service)
        await inf.start()
        try:
            await inf.wait_synced()
            await asyncio.wait_for(client.watch_done.wait(), 5)
            assert names(inf.by_index(BY_SERVICE, "default/a")) == ["a-1"]
            assert names(inf.by_index(BY_SERVICE, "default/b")) == ["a-2", "b-2"]
            assert names(inf.by_index(BY_SERVICE, "other/a")) == ["a-1"]
            assert inf.by_index(BY_SERVICE, "default/none") == []
            # a second index added later sees what is cached already
            inf.add_index("ns", lambda o: [o["metadata"]["namespace"]])
            assert names(inf.by_index("ns", "other")) == ["a-1"]
        finally:
            await inf.stop()
    asyncio.run(body())


def test_relist_rebuilds_the_index():
    async def body():
        client = ScriptedClient([es("a-1", "a", "1"), es("a-2", "a", "2")], [])
        inf = Informer(client, resources.get("endpointslices", "discovery.k8s.io"))
        inf.add_index(BY_SERVICE, slice_service)
        await inf._relist()
        assert names(inf.by_index(BY_SERVICE, "default/a")) == ["a-1", "a-2"]
        client.listed = [es("a-2", "c", "3")]              # what a lost watch missed
        await inf._relist()
        assert inf.by_index(BY_SERVICE, "default/a") == []
        assert names(inf.by_index(BY_SERVICE, "default/c")) == ["a-2"]
    asyncio.run(body())
