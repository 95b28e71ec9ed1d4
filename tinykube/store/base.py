"""The Store interface every backend implements (SQLite by default, etcd for many machines).

The store knows nothing about kinds: it keeps JSON objects (dicts) under string keys such as
`/registry/core/services/default/web`, and one global revision counter. Every write gets the
next revision, which the store writes into the object's `metadata.resourceVersion` (as a decimal
string) before it returns it. A write is durable before the call returns. A write that fails
(KeyExists, KeyNotFound, RevisionMismatch) changes nothing and consumes no revision. Objects
returned or yielded are the caller's own: mutating them never changes the store.

Watch: `watch(prefix, since)` yields every change to a key under `prefix` with a revision
greater than `since`, first from history, then live, in revision order. If `since` is older
than what the store still remembers (compacted), it raises Expired.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import AsyncIterator


class StoreError(Exception):
    pass


class KeyExists(StoreError):
    """create() on a key that already holds an object."""


class KeyNotFound(StoreError):
    """get/update/delete of a key that holds no object."""


class RevisionMismatch(StoreError):
    """update/delete with an expected revision that is not the object's current one."""

    def __init__(self, current: dict):
        super().__init__("revision mismatch")
        self.current = current


class Expired(StoreError):
    """watch from a revision the store has compacted away (becomes HTTP 410)."""

    def __init__(self, since: int, oldest: int):
        super().__init__(f"too old resource version: {since} ({oldest})")
        self.since = since
        self.oldest = oldest


@dataclass(frozen=True)
class Event:
    type: str          # "ADDED" | "MODIFIED" | "DELETED"
    key: str
    object: dict       # the new state; for DELETED the last state, with the deletion's revision
    revision: int


class Store(abc.ABC):
    """All methods are coroutines so a backend may do I/O; none may block the event loop."""

    @abc.abstractmethod
    async def create(self, key: str, obj: dict) -> dict:
        """Store a new object; returns it with metadata.resourceVersion set. KeyExists if present."""

    @abc.abstractmethod
    async def update(self, key: str, obj: dict, expected_revision: int | None = None) -> dict:
        """Replace an existing object. If expected_revision is given and differs from the current
        revision, raise RevisionMismatch (carrying the current object). KeyNotFound if absent."""

    @abc.abstractmethod
    async def delete(self, key: str, expected_revision: int | None = None) -> dict:
        """Remove an object; returns its last state stamped with the deletion's revision.
        KeyNotFound if absent; RevisionMismatch as for update."""

    @abc.abstractmethod
    async def get(self, key: str) -> dict:
        """The current object, or KeyNotFound."""

    @abc.abstractmethod
    async def list(self, prefix: str) -> tuple[list[dict], int]:
        """Every object whose key starts with prefix, sorted by key, and the store's current
        revision (taken atomically with the read)."""

    @abc.abstractmethod
    def watch(self, prefix: str, since: int) -> AsyncIterator[Event]:
        """Changes under prefix with revision > since, history first, then live. Raises
        Expired (on first iteration) if since < oldest remembered revision - 1. The iterator
        ends only when the consumer stops iterating (aclose) or the store closes."""

    @abc.abstractmethod
    async def current_revision(self) -> int:
        """The revision of the latest write (0 for an empty store)."""

    @abc.abstractmethod
    async def compact(self, revision: int) -> None:
        """Forget history at or below revision; watches from before it get Expired.
        Compacting at or below an earlier compaction does nothing; a revision above the
        current revision is a ValueError."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Flush and release; live watch iterators end."""


def revision_of(obj: dict) -> int:
    return int(obj.get("metadata", {}).get("resourceVersion") or 0)
