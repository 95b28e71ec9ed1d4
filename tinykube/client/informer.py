"""client-go style informer: list, then watch from the list's resourceVersion, with a local cache.

A lost watch (server restart, 410 Expired, network error) leads to a fresh list; the cache is
diffed against it so handlers still see exactly the adds, updates and deletes they missed.
"""
from __future__ import annotations

import asyncio
import inspect
import logging
import random
from typing import Any, Callable, Iterable

from tinykube.api.errors import ApiError
from tinykube.api.resources import Resource

from .rest import Client

log = logging.getLogger(__name__)

Key = tuple[str, str]  # (namespace or "", name)


def key_of(obj: dict) -> Key:
    md = obj.get("metadata", {})
    return md.get("namespace", "") or "", md.get("name", "")


class Informer:
    def __init__(self, client: Client, resource: Resource, namespace: str | None = None,
                 label_selector: str | None = None, field_selector: str | None = None):
        self.client = client
        self.resource = resource
        self.namespace = namespace
        self.label_selector = label_selector
        self.field_selector = field_selector
        self._cache: dict[Key, dict] = {}
        # name -> (index function, value -> {key: object}), like client-go's Indexer
        self._indexes: dict[str, tuple[Callable[[dict], Iterable[str]],
                                       dict[str, dict[Key, dict]]]] = {}
        self._handlers: dict[str, list[Callable]] = {"add": [], "update": [], "delete": []}
        self._synced = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._rv = ""

    # ---- registration ----
    def on_add(self, fn: Callable[[dict], Any]) -> None:
        self._handlers["add"].append(fn)

    def on_update(self, fn: Callable[[dict, dict], Any]) -> None:
        self._handlers["update"].append(fn)

    def on_delete(self, fn: Callable[[dict], Any]) -> None:
        self._handlers["delete"].append(fn)

    def add_index(self, name: str, fn: Callable[[dict], Iterable[str]]) -> None:
        """Keep the cached objects findable by the values `fn` gives (by_index); adding an
        index under a name that exists keeps the first."""
        if name in self._indexes:
            return
        self._indexes[name] = (fn, {})
        for k, o in self._cache.items():
            self._index(k, o, name)

    # ---- cache access ----
    def items(self) -> list[dict]:
        return list(self._cache.values())

    def by_index(self, name: str, value: str) -> list[dict]:
        return list(self._indexes[name][1].get(value, {}).values())

    def _index(self, k: Key, obj: dict, only: str | None = None) -> None:
        for name, (fn, idx) in self._indexes.items():
            if only is None or name == only:
                for v in fn(obj):
                    idx.setdefault(v, {})[k] = obj

    def _unindex(self, k: Key, obj: dict) -> None:
        for fn, idx in self._indexes.values():
            for v in fn(obj):
                bucket = idx.get(v)
                if bucket is not None:
                    bucket.pop(k, None)
                    if not bucket:
                        del idx[v]

    def _put(self, k: Key, obj: dict) -> dict | None:
        prev = self._cache.get(k)
        if prev is not None:
            self._unindex(k, prev)
        self._cache[k] = obj
        self._index(k, obj)
        return prev

    def _pop(self, k: Key) -> dict | None:
        prev = self._cache.pop(k, None)
        if prev is not None:
            self._unindex(k, prev)
        return prev

    def get(self, namespace: str | None, name: str) -> dict | None:
        return self._cache.get((namespace or "", name))

    @property
    def synced(self) -> bool:
        return self._synced.is_set()

    async def wait_synced(self) -> None:
        await self._synced.wait()

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"informer-{self.resource.plural}")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
            self._task = None

    # ---- machinery ----
    async def _emit(self, kind: str, *args: dict) -> None:
        for fn in self._handlers[kind]:
            try:
                r = fn(*args)
                if inspect.isawaitable(r):
                    await r
            except Exception:
                log.exception("%s handler for %s failed", kind, self.resource.plural)

    async def _relist(self) -> None:
        items, rv = await self.client.list(self.resource, self.namespace, self.label_selector,
                                           self.field_selector)
        fresh = {key_of(o): o for o in items}
        old = self._cache
        self._cache = fresh
        for _, idx in self._indexes.values():
            idx.clear()
        for k, o in fresh.items():
            self._index(k, o)
        self._rv = rv
        for k, o in fresh.items():
            prev = old.get(k)
            if prev is None:
                await self._emit("add", o)
            elif prev.get("metadata", {}).get("resourceVersion") != o.get("metadata", {}).get("resourceVersion"):
                await self._emit("update", prev, o)
        for k, o in old.items():
            if k not in fresh:
                await self._emit("delete", o)
        self._synced.set()

    async def _watch(self) -> None:
        async for typ, obj in self.client.watch(self.resource, self.namespace, self._rv,
                                                self.label_selector, self.field_selector,
                                                timeout_seconds=random.randint(300, 600)):
            rv = obj.get("metadata", {}).get("resourceVersion")
            if rv:
                self._rv = rv
            if typ == "BOOKMARK":
                continue
            obj.setdefault("kind", self.resource.kind)
            obj.setdefault("apiVersion", self.resource.api_version)
            k = key_of(obj)
            if typ == "DELETED":
                prev = self._pop(k)
                await self._emit("delete", prev or obj)
            else:
                prev = self._put(k, obj)
                if prev is None:
                    await self._emit("add", obj)
                else:
                    await self._emit("update", prev, obj)

    async def _run(self) -> None:
        backoff = 0.2
        need_list = True
        while True:
            try:
                if need_list:
                    await self._relist()
                    need_list = False
                await self._watch()
                backoff = 0.2  # clean end of a watch (timeoutSeconds): just watch again
            except asyncio.CancelledError:
                raise
            except ApiError as e:
                if e.code == 410:
                    need_list = True
                    continue
                log.warning("watch %s: %s", self.resource.plural, e.message)
                need_list = True
            except Exception as e:  # connection refused/reset while the API server restarts
                log.debug("watch %s lost: %r", self.resource.plural, e)
                need_list = True
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)
