"""core/v1 Events the way client-go's recorder writes them, with repeat aggregation (count++)."""
from __future__ import annotations

import asyncio
import logging
import socket
import time
from typing import Any

from tinykube.api.errors import ApiError
from tinykube.api.resources import get as get_resource

from .util import now_rfc3339

log = logging.getLogger("tinykube.controllers.events")

EVENTS = get_resource("events")


def involved_object(obj: dict) -> dict:
    md = obj.get("metadata") or {}
    ref = {"kind": obj.get("kind", ""), "namespace": md.get("namespace", ""), "name": md.get("name", ""),
           "uid": md.get("uid", ""), "apiVersion": obj.get("apiVersion", ""),
           "resourceVersion": md.get("resourceVersion", "")}
    if not ref["namespace"]:
        del ref["namespace"]
    return ref


def event_name(obj_name: str, t_ns: int | None = None) -> str:
    """`<involved object name>.<UnixNano in hex>` like client-go's makeEvent."""
    return f"{obj_name}.{(t_ns if t_ns is not None else time.time_ns()):x}"


def build_event(obj: dict, type_: str, reason: str, message: str, component: str,
                host: str | None = None, t_ns: int | None = None) -> dict:
    ref = involved_object(obj)
    ts = now_rfc3339()
    source: dict[str, str] = {"component": component}
    if host:
        source["host"] = host
    return {
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": event_name(ref["name"], t_ns), "namespace": ref.get("namespace") or "default"},
        "involvedObject": ref,
        "reason": reason, "message": message, "type": type_,
        "source": source,
        "firstTimestamp": ts, "lastTimestamp": ts, "count": 1,
        "eventTime": None,
        "reportingComponent": component,
        "reportingInstance": host or "",
    }


class Recorder:
    """Creates Events; a repeat of the same (object, type, reason, message, source) within the
    cache lifetime bumps count and lastTimestamp on the existing Event instead."""

    MAX_CACHE = 4096

    def __init__(self, client: Any, host: str | None = None):
        self.client = client
        self.host = host if host is not None else socket.gethostname()
        self._seen: dict[tuple, dict] = {}
        self._lock = asyncio.Lock()

    async def record(self, obj: dict, type_: str, reason: str, message: str, component: str) -> dict | None:
        ref = involved_object(obj)
        key = (ref.get("kind"), ref.get("namespace"), ref.get("name"), ref.get("uid"), type_, reason, message,
               component)
        async with self._lock:
            prev = self._seen.get(key)
            try:
                if prev is not None:
                    ev = dict(prev)
                    ev["count"] = int(prev.get("count") or 1) + 1
                    ev["lastTimestamp"] = now_rfc3339()
                    try:
                        out = await self.client.patch(EVENTS, ev["metadata"]["namespace"], ev["metadata"]["name"],
                                                      {"count": ev["count"], "lastTimestamp": ev["lastTimestamp"]})
                    except ApiError as e:
                        if e.code != 404:
                            raise
                        out = None
                    if out is not None:
                        self._remember(key, out)
                        return out
                ev = build_event(obj, type_, reason, message, component, self.host)
                out = await self.client.create(EVENTS, ev, ev["metadata"]["namespace"])
                self._remember(key, out)
                return out
            except ApiError as e:
                log.debug("event %s %s: %s", reason, ref.get("name"), e.message)
            except Exception as e:  # an event is never worth failing a reconcile
                log.debug("event %s %s: %r", reason, ref.get("name"), e)
            return None

    def _remember(self, key: tuple, ev: dict) -> None:
        if len(self._seen) >= self.MAX_CACHE:
            self._seen.pop(next(iter(self._seen)))
        self._seen[key] = ev


_recorders: dict[int, Recorder] = {}


async def record(client: Any, obj: dict, type_: str, reason: str, message: str, component: str) -> dict | None:
    """Record an Event through a per-client Recorder (so repeats aggregate)."""
    r = _recorders.get(id(client))
    if r is None or r.client is not client:
        r = _recorders[id(client)] = Recorder(client)
    return await r.record(obj, type_, reason, message, component)
