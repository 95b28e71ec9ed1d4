"""The work-queue controller pattern: informer events enqueue keys, workers reconcile them.

A key is queued at most once at a time (repeated events coalesce); a key being reconciled is
never reconciled concurrently by another worker; a failure re-queues the key with exponential
back-off (conflicts retry quickly), a success forgets the back-off.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any, Hashable

from tinykube.api.errors import ApiError
from tinykube.api.resources import Resource, get as get_resource
from tinykube.client.informer import Informer
from tinykube.client.rest import Client

log = logging.getLogger("tinykube.controllers")


class SharedInformers:
    """One informer per resource, shared by every controller of the process."""

    def __init__(self, client: Client):
        self.client = client
        self._informers: dict[Resource, Informer] = {}

    def get(self, plural: str, group: str = "") -> Informer:
        res = get_resource(plural, group)
        inf = self._informers.get(res)
        if inf is None:
            inf = self._informers[res] = Informer(self.client, res)
        return inf

    async def start(self) -> None:
        for inf in list(self._informers.values()):
            await inf.start()

    async def wait_synced(self) -> None:
        await asyncio.gather(*(inf.wait_synced() for inf in self._informers.values()))

    async def stop(self) -> None:
        for inf in self._informers.values():
            await inf.stop()


class WorkQueue:
    """A de-duplicating queue with a processing set and per-key back-off."""

    def __init__(self, base_delay: float = 0.05, max_delay: float = 30.0):
        self._queue: asyncio.Queue[Hashable] = asyncio.Queue()
        self._dirty: set[Hashable] = set()
        self._processing: set[Hashable] = set()
        self._failures: dict[Hashable, int] = {}
        self._timers: dict[Hashable, asyncio.TimerHandle] = {}
        self.base_delay = base_delay
        self.max_delay = max_delay

    def add(self, key: Hashable) -> None:
        if key in self._dirty:
            return
        self._dirty.add(key)
        if key not in self._processing:
            self._queue.put_nowait(key)

    def add_after(self, key: Hashable, delay: float) -> None:
        if delay <= 0:
            self.add(key)
            return
        loop = asyncio.get_running_loop()
        old = self._timers.get(key)
        when = loop.time() + delay
        if old is not None and old.when() <= when:
            return
        if old is not None:
            old.cancel()
        self._timers[key] = loop.call_at(when, self._fire, key)

    def _fire(self, key: Hashable) -> None:
        self._timers.pop(key, None)
        self.add(key)

    def add_rate_limited(self, key: Hashable, fast: bool = False) -> float:
        n = self._failures.get(key, 0)
        self._failures[key] = n + 1
        delay = min(self.base_delay * (2 ** n), self.max_delay)
        if fast:
            delay = min(delay, 0.2)
        self.add_after(key, delay)
        return delay

    def forget(self, key: Hashable) -> None:
        self._failures.pop(key, None)

    def failures(self, key: Hashable) -> int:
        return self._failures.get(key, 0)

    async def get(self) -> Hashable:
        key = await self._queue.get()
        self._dirty.discard(key)
        self._processing.add(key)
        return key

    def done(self, key: Hashable) -> None:
        self._processing.discard(key)
        if key in self._dirty:
            self._queue.put_nowait(key)

    def __len__(self) -> int:
        return self._queue.qsize()

    def shutdown(self) -> None:
        for t in self._timers.values():
            t.cancel()
        self._timers.clear()


class Controller:
    """Subclasses set `name`, register informer handlers in __init__ and implement reconcile()."""

    name = "controller"
    workers = 2

    def __init__(self, client: Client, informers: SharedInformers):
        self.client = client
        self.informers = informers
        self.queue = WorkQueue()
        self._tasks: list[asyncio.Task] = []

    def enqueue(self, key: Any) -> None:
        self.queue.add(key)

    def enqueue_after(self, key: Any, delay: float) -> None:
        self.queue.add_after(key, delay)

    async def reconcile(self, key: Any) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    async def write_status(self, res: Any, obj: dict, status: dict) -> None:
        """PUT /status when it changed; a 404 means the object is already gone."""
        if status == (obj.get("status") or {}):
            return
        try:
            await self.client.update_status(res, dict(obj, status=status))
        except ApiError as e:
            if e.code != 404:
                raise

    def requeue_when_available(self, obj: dict, pods: list[dict], min_ready: int, now: float) -> None:
        """Pods that are Ready but not yet minReadySeconds old become available later: look again then."""
        from .util import available_in, ns_name
        waits = [w for w in (available_in(p, min_ready, now) for p in pods) if w is not None]
        if waits:
            self.enqueue_after(ns_name(obj), min(waits) + 0.05)

    async def on_synced(self) -> None:
        """Called once every informer has synced: enqueue everything that exists."""

    async def start(self) -> None:
        await self.on_synced()
        for i in range(self.workers):
            self._tasks.append(asyncio.create_task(self._worker(), name=f"{self.name}-{i}"))

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            try:
                await t
            except (asyncio.CancelledError, Exception):
                pass
        self._tasks.clear()
        self.queue.shutdown()

    async def process_one(self, key: Any) -> bool:
        """Reconcile one key; True on success. Failures are re-queued with back-off."""
        try:
            await self.reconcile(key)
        except asyncio.CancelledError:
            raise
        except ApiError as e:
            fast = e.code in (409, 404)
            delay = self.queue.add_rate_limited(key, fast=fast)
            lvl = logging.DEBUG if fast else logging.WARNING
            log.log(lvl, "%s: %s: %s (retry in %.2fs)", self.name, key, e.message, delay)
            return False
        except Exception:
            delay = self.queue.add_rate_limited(key)
            log.exception("%s: reconcile %s failed (retry in %.2fs)", self.name, key, delay)
            return False
        self.queue.forget(key)
        return True

    async def _worker(self) -> None:
        while True:
            key = await self.queue.get()
            try:
                await self.process_one(key)
            finally:
                self.queue.done(key)
