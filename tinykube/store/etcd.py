"""A Store on etcd v3, spoken through etcd's HTTP/JSON gateway (/v3/...) with aiohttp.

Keys. Every store key is stored under an optional namespace (`prefix`), so several clusters
can share one etcd: store key `/registry/x` lives at etcd key `<prefix>/registry/x`. With a
prefix, store keys must start with "/" (so `/tinykube-a` never sees `/tinykube-ab/...`).
Keys and values travel base64-encoded in the gateway's JSON, as the gateway requires.

Revisions. etcd has one revision counter per cluster, and a fresh etcd is already at revision
1 with no keys. The Store contract says an empty store is revision 0 and its first write is 1,
so the store's revision is etcd's revision minus one (OFFSET), everywhere: in
metadata.resourceVersion, list and current_revision, watch events, compaction. Any other
cluster sharing the etcd advances the same counter (revisions are global, as in Kubernetes).

Objects. etcd assigns a write's revision at commit, so (as Kubernetes does) the value is stored
without metadata.resourceVersion, and the revision is written in on every read from the key's
mod_revision, and on a write's result from the txn response's header.revision.

Writes are single transactions: create = (create_revision == 0 -> put); update = (key exists
[and mod_revision == expected] -> put, else range to tell KeyNotFound from RevisionMismatch);
delete = the same with delete_range prev_kv. A failed compare writes nothing, so it consumes
no revision.

Watch. One /v3/watch stream per watcher (newline-delimited JSON). It starts at etcd revision
since+OFFSET, one revision *before* the first one wanted, so that etcd's own compaction check
(start_revision < compact_revision) is exactly the contract's (since < compacted); events at
that first revision are skipped. If the stream breaks (etcd restarted, an endpoint died), the
watcher reconnects to the next endpoint from the last revision it yielded, for up to
`reconnect_timeout` seconds, then raises StoreError.
"""
from __future__ import annotations

import asyncio
import base64
import json
import ssl as _ssl
from typing import Any, AsyncIterator, Sequence

import aiohttp

from .base import (Event, Expired, KeyExists, KeyNotFound, RevisionMismatch, Store,
                   StoreError)

__all__ = ["EtcdStore", "OFFSET"]

OFFSET = 1            # store revision = etcd revision - OFFSET (a fresh etcd is at revision 1)
_PAGE = 1000          # keys per range request in list()


class _Closed(StoreError):
    pass


class _Unavailable(StoreError):
    """No endpoint accepted a connection."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str | None) -> bytes:
    return base64.b64decode(text or "")


def _range_end(key: bytes) -> bytes:
    """The smallest key greater than every key starting with `key` (etcd's prefix range end);
    b"\\0" means "to the end of the key space"."""
    k = bytearray(key)
    while k:
        if k[-1] < 0xFF:
            k[-1] += 1
            return bytes(k)
        k.pop()
    return b"\0"


def _encode(obj: dict) -> bytes:
    """The stored form: obj as JSON without metadata.resourceVersion (obj is not modified)."""
    if not isinstance(obj, dict):
        raise TypeError(f"store objects must be dicts, not {type(obj).__name__}")
    out = dict(obj)
    meta = out.get("metadata")
    if isinstance(meta, dict) and "resourceVersion" in meta:
        meta = dict(meta)
        del meta["resourceVersion"]
        out["metadata"] = meta
    return json.dumps(out, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _decode(value: bytes, etcd_revision: int) -> dict:
    """A fresh object from a stored value, stamped with the store revision."""
    obj = json.loads(value)
    meta = obj.get("metadata")
    meta = meta if isinstance(meta, dict) else {}
    meta["resourceVersion"] = str(int(etcd_revision) - OFFSET)
    obj["metadata"] = meta
    return obj


def _compare(key: str, target: str, result: str, field: str, value: int) -> dict:
    return {"key": key, "target": target, "result": result, field: str(value)}


class EtcdStore(Store):
    """A Store in etcd, reached at `endpoints` (base URLs like http://127.0.0.1:2379, tried in
    order, moving on when one refuses connections), under the key namespace `prefix`."""

    def __init__(self, endpoints: Sequence[str] | str, prefix: str = "", *,
                 timeout: float = 30.0, reconnect_timeout: float = 10.0,
                 ssl_context: _ssl.SSLContext | None = None):
        if isinstance(endpoints, str):
            endpoints = [endpoints]
        self.endpoints = [e.rstrip("/") for e in endpoints]
        if not self.endpoints:
            raise ValueError("etcd store needs at least one endpoint")
        prefix = prefix.rstrip("/")
        if prefix and not prefix.startswith("/"):
            raise ValueError(f"etcd key prefix must start with '/': {prefix!r}")
        self.prefix = prefix
        self._ns = prefix.encode("utf-8")
        self.timeout = timeout
        self.reconnect_timeout = reconnect_timeout
        self._ssl = ssl_context
        self._current = 0                      # index of the endpoint in use
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self._streams: set[aiohttp.ClientResponse] = set()

    def __repr__(self) -> str:
        return f"EtcdStore({','.join(self.endpoints)}, prefix={self.prefix!r})"

    # ------------------------------------------------------------------ keys

    def _key(self, key: str) -> bytes:
        if self._ns and not key.startswith("/"):
            raise ValueError(f"keys must start with '/' in a prefixed etcd store: {key!r}")
        return self._ns + key.encode("utf-8")

    def _range(self, prefix: str) -> tuple[str, str]:
        """[key, range_end) in base64 covering every store key that starts with prefix."""
        if self._ns and prefix == "":
            prefix = "/"
        start = self._key(prefix)
        if not start:
            return _b64(b"\0"), _b64(b"\0")       # the whole key space
        return _b64(start), _b64(_range_end(start))

    def _store_key(self, etcd_key_b64: str) -> str:
        return _unb64(etcd_key_b64)[len(self._ns):].decode("utf-8")

    # ------------------------------------------------------------------ HTTP

    def _get_session(self) -> aiohttp.ClientSession:
        if self._closed:
            raise _Closed("store is closed")
        loop = asyncio.get_running_loop()
        if self._session is None:
            self._loop = loop
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=64, ssl=self._ssl if self._ssl else None),
                json_serialize=lambda o: json.dumps(o, separators=(",", ":")))
        elif self._loop is not loop:
            raise RuntimeError("EtcdStore is used from a different event loop than it is bound to")
        return self._session

    async def _post(self, path: str, body: dict, *, stream: bool = False
                    ) -> Any:
        """POST to the first endpoint that accepts a connection. Only connection failures
        move on to the next endpoint (the request surely never reached etcd, so a retry
        cannot apply a write twice). For stream=True, returns the open response."""
        session = self._get_session()
        n = len(self.endpoints)
        last_err: BaseException | None = None
        for i in range(n):
            idx = (self._current + i) % n
            url = self.endpoints[idx] + path
            timeout = (aiohttp.ClientTimeout(total=None, sock_connect=self.timeout)
                       if stream else aiohttp.ClientTimeout(total=self.timeout))
            try:
                resp = await session.post(url, json=body, timeout=timeout)
            except aiohttp.ClientConnectorError as e:
                last_err = e
                continue
            except (aiohttp.ClientError, asyncio.TimeoutError) as e:
                if self._closed:
                    raise _Closed("store is closed") from None
                raise StoreError(f"etcd {url}: {e!r}") from e
            self._current = idx
            if stream and resp.status == 200:
                return resp
            try:
                data = await resp.read()
            except (aiohttp.ClientError, asyncio.TimeoutError) as e:
                raise StoreError(f"etcd {url}: {e!r}") from e
            finally:
                resp.release()
            try:
                payload = json.loads(data) if data else {}
            except ValueError:
                payload = {"message": data[:200].decode("utf-8", "replace")}
            if resp.status != 200:
                raise _GatewayError(resp.status, payload)
            return payload
        if self._closed:
            raise _Closed("store is closed")
        raise _Unavailable(f"no etcd endpoint reachable ({', '.join(self.endpoints)}): "
                           f"{last_err}")

    async def _txn(self, compare: list[dict], success: list[dict],
                   failure: list[dict]) -> dict:
        return await self._post("/v3/kv/txn", {"compare": compare, "success": success,
                                               "failure": failure})

    # ------------------------------------------------------------------ writes

    async def create(self, key: str, obj: dict) -> dict:
        k = _b64(self._key(key))
        value = _encode(obj)
        r = await self._txn([_compare(k, "CREATE", "EQUAL", "create_revision", 0)],
                            [{"request_put": {"key": k, "value": _b64(value)}}], [])
        if not r.get("succeeded"):
            raise KeyExists(key)
        return _decode(value, int(r["header"]["revision"]))

    def _guards(self, k: str, expected_revision: int | None) -> list[dict]:
        guards = [_compare(k, "CREATE", "GREATER", "create_revision", 0)]
        if expected_revision is not None:
            guards.append(_compare(k, "MOD", "EQUAL", "mod_revision",
                                   int(expected_revision) + OFFSET))
        return guards

    def _failed(self, key: str, r: dict) -> StoreError:
        """KeyNotFound or RevisionMismatch from a failed guarded txn's range response."""
        kvs = (r.get("responses") or [{}])[0].get("response_range", {}).get("kvs") or []
        if not kvs:
            return KeyNotFound(key)
        return RevisionMismatch(_decode(_unb64(kvs[0].get("value")), kvs[0]["mod_revision"]))

    async def update(self, key: str, obj: dict, expected_revision: int | None = None) -> dict:
        k = _b64(self._key(key))
        value = _encode(obj)
        r = await self._txn(self._guards(k, expected_revision),
                            [{"request_put": {"key": k, "value": _b64(value)}}],
                            [{"request_range": {"key": k}}])
        if not r.get("succeeded"):
            raise self._failed(key, r)
        return _decode(value, int(r["header"]["revision"]))

    async def delete(self, key: str, expected_revision: int | None = None) -> dict:
        k = _b64(self._key(key))
        r = await self._txn(self._guards(k, expected_revision),
                            [{"request_delete_range": {"key": k, "prev_kv": True}}],
                            [{"request_range": {"key": k}}])
        if not r.get("succeeded"):
            raise self._failed(key, r)
        resp = (r.get("responses") or [{}])[0].get("response_delete_range", {})
        prev = resp.get("prev_kvs") or []
        if not prev:     # cannot happen: the compare said the key existed in this txn
            raise StoreError(f"etcd delete of {key!r} returned no previous value")
        return _decode(_unb64(prev[0].get("value")), int(r["header"]["revision"]))

    # ------------------------------------------------------------------ reads

    async def get(self, key: str) -> dict:
        r = await self._post("/v3/kv/range", {"key": _b64(self._key(key))})
        kvs = r.get("kvs") or []
        if not kvs:
            raise KeyNotFound(key)
        return _decode(_unb64(kvs[0].get("value")), kvs[0]["mod_revision"])

    async def list(self, prefix: str) -> tuple[list[dict], int]:
        start, end = self._range(prefix)
        while True:
            items: list[dict] = []
            revision = 0            # etcd revision all pages are read at (the first page's)
            key = start
            try:
                while True:
                    body = {"key": key, "range_end": end, "limit": str(_PAGE)}
                    if revision:
                        body["revision"] = str(revision)
                    r = await self._post("/v3/kv/range", body)
                    if not revision:
                        revision = int(r["header"]["revision"])
                    kvs = r.get("kvs") or []
                    items.extend(_decode(_unb64(kv.get("value")), kv["mod_revision"])
                                 for kv in kvs)
                    if not r.get("more") or not kvs:
                        return items, revision - OFFSET
                    key = _b64(_unb64(kvs[-1]["key"]) + b"\0")
            except _GatewayError as e:
                if e.compacted:      # compacted between two pages: read it all again
                    continue
                raise

    async def current_revision(self) -> int:
        r = await self._post("/v3/kv/range", {"key": _b64(self._ns or b"/"), "count_only": True})
        return int(r["header"]["revision"]) - OFFSET

    async def compact(self, revision: int) -> None:
        revision = int(revision)
        current = await self.current_revision()
        if revision > current:
            raise ValueError(f"cannot compact at future revision {revision} "
                             f"(current revision {current})")
        if revision <= 0:
            return
        try:
            await self._post("/v3/kv/compaction",
                             {"revision": str(revision + OFFSET), "physical": True})
        except _GatewayError as e:
            if e.compacted:          # at or below an earlier compaction: nothing to do
                return
            if e.future:
                raise ValueError(str(e)) from None
            raise

    # ------------------------------------------------------------------ watch

    async def watch(self, prefix: str, since: int) -> AsyncIterator[Event]:  # type: ignore[override]
        """See Store.watch. Event objects are fresh dicts per watcher (safe to modify)."""
        if self._closed:
            return
        start, end = self._range(prefix)
        last = int(since) + OFFSET      # etcd revision of the last event already delivered
        first = True
        deadline: float | None = None
        loop = asyncio.get_running_loop()
        while True:
            try:
                resp = await self._post("/v3/watch", {"create_request": {
                    "key": start, "range_end": end, "start_revision": str(last),
                    "prev_kv": True}}, stream=True)
            except _Closed:
                return
            except _Unavailable:
                if first:
                    raise
                if deadline is None:
                    deadline = loop.time() + self.reconnect_timeout
                if loop.time() > deadline:
                    raise
                await asyncio.sleep(0.1)
                continue
            self._streams.add(resp)
            try:
                async for result in self._results(resp):
                    if "compact_revision" in result and int(result["compact_revision"]) > 0:
                        compacted = int(result["compact_revision"])
                        raise Expired(last - OFFSET, compacted)
                    if result.get("canceled"):
                        raise StoreError("etcd canceled the watch: "
                                         f"{result.get('cancel_reason', '')}")
                    if result.get("created"):
                        first = False
                        deadline = None
                    for ev in result.get("events") or []:
                        kv = ev.get("kv") or {}
                        rev = int(kv.get("mod_revision", 0))
                        if rev <= last:
                            continue
                        key = self._store_key(kv["key"])
                        if ev.get("type", "PUT") == "DELETE":
                            prev = ev.get("prev_kv")
                            if not prev:
                                raise StoreError(f"etcd sent a delete of {key!r} without its "
                                                 f"previous value")
                            obj = _decode(_unb64(prev.get("value")), rev)
                            typ = "DELETED"
                        else:
                            obj = _decode(_unb64(kv.get("value")), rev)
                            typ = "ADDED" if kv.get("create_revision") == kv.get(
                                "mod_revision") else "MODIFIED"
                        last = rev
                        yield Event(typ, key, obj, rev - OFFSET)
            except (aiohttp.ClientError, asyncio.TimeoutError, ConnectionError):
                pass               # the stream broke: reconnect below, unless closing
            finally:
                self._streams.discard(resp)
                resp.close()
            if self._closed:
                return
            if deadline is None:
                deadline = loop.time() + self.reconnect_timeout
            elif loop.time() > deadline:
                raise StoreError(f"etcd watch on {prefix!r} lost its stream and could not "
                                 f"reconnect within {self.reconnect_timeout}s")
            self._current = (self._current + 1) % len(self.endpoints)
            await asyncio.sleep(0.05)

    @staticmethod
    async def _results(resp: aiohttp.ClientResponse) -> AsyncIterator[dict]:
        """The `result` objects of a gateway watch stream (one JSON document per line)."""
        buf = b""
        while True:
            chunk = await resp.content.readany()
            if not chunk:
                return
            buf += chunk
            while True:
                nl = buf.find(b"\n")
                if nl < 0:
                    break
                line, buf = buf[:nl], buf[nl + 1:]
                if not line.strip():
                    continue
                doc = json.loads(line)
                if "error" in doc:
                    err = doc["error"]
                    msg = err.get("message", err) if isinstance(err, dict) else err
                    raise StoreError(f"etcd watch error: {msg}")
                yield doc.get("result") or {}

    # ------------------------------------------------------------------ close

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for resp in list(self._streams):
            resp.close()
        # Let watchers observe the closed streams before the session goes away.
        await asyncio.sleep(0)
        if self._session is not None:
            await self._session.close()


class _GatewayError(StoreError):
    """A non-200 answer from etcd's gateway (its JSON carries a gRPC code and message)."""

    def __init__(self, status: int, payload: dict):
        self.status = status
        self.message = str(payload.get("message") or payload.get("error") or payload)
        self.code = payload.get("code")
        super().__init__(f"etcd: HTTP {status}: {self.message}")

    @property
    def compacted(self) -> bool:
        return "required revision has been compacted" in self.message

    @property
    def future(self) -> bool:
        return "required revision is a future revision" in self.message
