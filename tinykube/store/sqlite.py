"""The default Store: one SQLite file, written in WAL mode with synchronous=FULL.

Threads. SQLite never runs on the event loop. One writer thread owns the only writing
connection; one reader thread owns a second connection for get/list/watch history (WAL lets
it read a consistent snapshot while the writer commits). Coroutines hand work to a thread
through a queue and await a future that the thread resolves with `call_soon_threadsafe`.

Group commit. The writer thread takes every request waiting in its queue and runs them all in
one transaction (a request that fails its checks writes nothing, so it does not disturb the
others), then commits once: one fsync for the whole batch. Requests that arrive while that
commit is being synced wait in the queue and form the next batch. Each caller gets its own
result or exception, and only after the commit is on disk.

Tables.
  kv(key, value, revision)             the current objects (value is the JSON text, already
                                       stamped with metadata.resourceVersion)
  changes(revision, type, key, value)  history for watch; one row per write, deletions too
  meta(name, value)                    'revision' (last revision ever written) and
                                       'compacted' (history at or below it is gone)
The revision counter lives in meta and is updated in the same transaction as the writes, so
after a crash the next revision is always greater than any acknowledged one.

Watch. Every watcher has a bounded in-memory queue filled on the event loop right after each
commit. A watcher first registers (noting R, the last revision already handed to watchers),
then reads history (since, R] from the database page by page, then consumes its queue (all
> R). Registration and the hand-off both run on the loop, so nothing falls between history and
the live queue, and revisions already yielded are skipped so nothing is yielded twice. A
watcher whose queue overflows (a slow consumer) is not allowed to hold memory or block
writers: its queue is dropped and it catches up from history again the same way; if the
history it needs has been compacted meanwhile it ends with Expired, and the client relists.
"""
from __future__ import annotations

import asyncio
import collections
import json
import os
import queue
import sqlite3
import threading
from typing import Any, AsyncIterator, Callable

from .base import (Event, Expired, KeyExists, KeyNotFound, RevisionMismatch, Store,
                   StoreError)

__all__ = ["SqliteStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS kv (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    revision INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS changes (
    revision INTEGER PRIMARY KEY,
    type TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
INSERT OR IGNORE INTO meta(name, value) VALUES ('revision', 0), ('compacted', 0);
"""

_STOP = object()
_CHUNK = 250               # rows per multi-row statement
_MAX_BATCH = 2000          # requests per transaction
_HISTORY_PAGE = 1000       # rows per history read for watch


class _Closed(StoreError):
    pass


def _prefix_bounds(prefix: str) -> tuple[str, str | None]:
    """[lo, hi) such that lo <= key < hi exactly when key starts with prefix (BINARY collation
    orders UTF-8 by code point, the same order as Python's str)."""
    if not prefix:
        return "", None
    last = ord(prefix[-1])
    if last >= 0x10FFFF:
        return prefix, None
    nxt = last + 1
    if 0xD800 <= nxt <= 0xDFFF:   # surrogates cannot be stored; skip past them
        nxt = 0xE000
    return prefix, prefix[:-1] + chr(nxt)


def _stamp(obj: dict, revision: int) -> str:
    """JSON text of obj with metadata.resourceVersion = revision (obj is not modified)."""
    if not isinstance(obj, dict):
        raise TypeError(f"store objects must be dicts, not {type(obj).__name__}")
    out = dict(obj)
    meta = out.get("metadata")
    meta = dict(meta) if isinstance(meta, dict) else {}
    meta["resourceVersion"] = str(revision)
    out["metadata"] = meta
    return json.dumps(out, separators=(",", ":"), ensure_ascii=False)


_RV_MARK = "\x00tinykube-rv-" + os.urandom(8).hex()
_RV_MARK_JSON = json.dumps(_RV_MARK)


def _prestamp(obj: Any) -> tuple[str, str] | None:
    """_stamp done ahead of time, on the caller's thread: the JSON text split where the revision
    goes, so the writer thread only joins strings. None when that cannot be done exactly (not a
    dict, not JSON, or the marker occurs in the object itself): the writer then runs _stamp,
    raising whatever it raises at the point the operation would have raised it."""
    if not isinstance(obj, dict):
        return None
    out = dict(obj)
    meta = out.get("metadata")
    meta = dict(meta) if isinstance(meta, dict) else {}
    meta["resourceVersion"] = _RV_MARK
    out["metadata"] = meta
    try:
        text = json.dumps(out, separators=(",", ":"), ensure_ascii=False)
    except Exception:  # noqa: BLE001 - the writer reproduces it in order
        return None
    parts = text.split(_RV_MARK_JSON)
    if len(parts) != 2:
        return None
    return parts[0], parts[1]


def _stamped(obj: dict, pre: tuple[str, str] | None, revision: int) -> str:
    if pre is None:
        return _stamp(obj, revision)
    return f'{pre[0]}"{revision}"{pre[1]}'


def _insert_rows(conn: sqlite3.Connection, head: str, width: int, rows: list[tuple]) -> None:
    """INSERT rows with one multi-row statement per _CHUNK rows (one SQLite step each)."""
    for i in range(0, len(rows), _CHUNK):
        part = rows[i:i + _CHUNK]
        conn.execute(_values_sql(head, width, len(part)), [v for row in part for v in row])


_SQL_CACHE: dict[tuple[str, int, int], str] = {}


def _values_sql(head: str, width: int, n: int) -> str:
    sql = _SQL_CACHE.get((head, width, n))
    if sql is None:
        one = "(" + ",".join("?" * width) + ")"
        sql = _SQL_CACHE[(head, width, n)] = head + ",".join([one] * n)
    return sql


class _Request:
    __slots__ = ("fn", "args", "future")

    def __init__(self, fn: Callable[..., Any], args: tuple, future: asyncio.Future):
        self.fn = fn
        self.args = args
        self.future = future


class _Watcher:
    __slots__ = ("prefix", "queue", "overflowed", "wakeup", "limit")

    def __init__(self, prefix: str, limit: int):
        self.prefix = prefix
        self.queue: collections.deque[tuple[int, str, str, str]] = collections.deque()
        self.overflowed = False
        self.wakeup = asyncio.Event()
        self.limit = limit

    def offer(self, change: tuple[int, str, str, str]) -> None:
        if self.overflowed:
            return
        if len(self.queue) >= self.limit:
            # Too far behind: forget the queue; the consumer catches up from history.
            self.queue.clear()
            self.overflowed = True
        else:
            self.queue.append(change)
        self.wakeup.set()


def _resolve(fut: asyncio.Future, ok: bool, value: Any) -> None:
    if fut.done():
        return
    if ok:
        fut.set_result(value)
    else:
        fut.set_exception(value)


class SqliteStore(Store):
    """A Store in one SQLite file at `path`.

    keep_history: automatic compaction keeps the latest this many revisions of history.
    watch_queue: how many undelivered live events one watcher may hold before it has to catch
    up from history instead.
    """

    def __init__(self, path: str | os.PathLike[str], *, keep_history: int = 100_000,
                 watch_queue: int = 10_000):
        if keep_history < 1:
            raise ValueError("keep_history must be at least 1")
        self.path = os.fspath(path)
        self.keep_history = keep_history
        self.watch_queue = watch_queue
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self._watchers: set[_Watcher] = set()
        self._dispatched = 0            # last revision handed to watchers (loop thread only)
        self._committed = 0             # last committed revision (writer thread writes it)
        # Counters for benchmarks and tests: committed transactions and the write requests
        # they carried (group commit makes the second much larger than the first).
        self.stats = {"transactions": 0, "requests": 0}
        self._ready = threading.Event()
        self._init_error: BaseException | None = None
        self._wq: queue.SimpleQueue = queue.SimpleQueue()
        self._rq: queue.SimpleQueue = queue.SimpleQueue()
        self._writer = threading.Thread(target=self._writer_main, name=f"store-w:{self.path}",
                                        daemon=True)
        self._reader = threading.Thread(target=self._reader_main, name=f"store-r:{self.path}",
                                        daemon=True)
        self._writer.start()
        self._reader.start()

    # ------------------------------------------------------------------ plumbing (loop side)

    def _bind_loop(self) -> asyncio.AbstractEventLoop:
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
        elif self._loop is not loop:
            raise RuntimeError("SqliteStore is used from a different event loop than it is bound to")
        return loop

    async def _call(self, q: queue.SimpleQueue, fn: Callable[..., Any], *args: Any) -> Any:
        if self._closed:
            raise _Closed("store is closed")
        loop = self._bind_loop()
        fut = loop.create_future()
        q.put(_Request(fn, args, fut))
        return await fut

    def _post(self, callback: Callable[..., None], *args: Any) -> None:
        loop = self._loop
        if loop is None:
            return
        try:
            loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:    # the loop is closed; nobody is waiting any more
            pass

    def _after_commit(self, results: list[tuple[asyncio.Future, bool, Any]],
                      changes: list[tuple[int, str, str, str]]) -> None:
        """On the loop: hand the committed changes to watchers, then answer the callers."""
        if changes:
            watchers = list(self._watchers)
            for change in changes:
                key = change[2]
                for w in watchers:
                    if key.startswith(w.prefix):
                        w.offer(change)
            self._dispatched = changes[-1][0]
        for fut, ok, value in results:
            _resolve(fut, ok, value)

    @staticmethod
    def _answer(results: list[tuple[asyncio.Future, bool, Any]]) -> None:
        for fut, ok, value in results:
            _resolve(fut, ok, value)

    # ------------------------------------------------------------------ threads

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA busy_timeout=10000")
        return conn

    def _writer_main(self) -> None:
        try:
            conn = self._connect()
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StoreError(f"{self.path}: cannot use WAL journal mode (got {mode})")
            conn.execute("PRAGMA synchronous=FULL")
            conn.executescript(_SCHEMA)
            self._committed = self._meta(conn, "revision")
            self._dispatched = self._committed
        except BaseException as e:  # noqa: BLE001 - reported to every caller
            self._init_error = e
            self._ready.set()
            self._fail_forever(self._wq, e)
            return
        self._ready.set()
        try:
            while True:
                batch = [self._wq.get()]
                while len(batch) < _MAX_BATCH:
                    try:
                        batch.append(self._wq.get_nowait())
                    except queue.Empty:
                        break
                stop = None
                for i, req in enumerate(batch):
                    if req is _STOP or isinstance(req, tuple):
                        stop = i
                        break
                work = batch if stop is None else batch[:stop]
                if work:
                    self._run_write_batch(conn, work)
                if stop is not None:
                    marker = batch[stop]
                    rest = batch[stop + 1:]
                    self._drain_failing(self._wq, _Closed("store is closed"), rest)
                    conn.close()
                    if isinstance(marker, tuple):
                        self._post(self._answer, [(marker[1], True, None)])
                    return
        except BaseException as e:  # noqa: BLE001 - the thread must not die silently
            self._init_error = e
            self._fail_forever(self._wq, e)

    def _fail_forever(self, q: queue.SimpleQueue, exc: BaseException) -> None:
        """The thread cannot serve: answer every request with exc until told to stop."""
        while True:
            req = q.get()
            if isinstance(req, _Request):
                self._post(self._answer, [(req.future, False, exc)])
            else:
                if isinstance(req, tuple):
                    self._post(self._answer, [(req[1], True, None)])
                return

    def _drain_failing(self, q: queue.SimpleQueue, exc: BaseException,
                       pending: list | None = None) -> None:
        results = []
        items = list(pending or [])
        while True:
            try:
                items.append(q.get_nowait())
            except queue.Empty:
                break
        for req in items:
            if isinstance(req, _Request):
                results.append((req.future, False, exc))
            elif isinstance(req, tuple):
                results.append((req[1], True, None))
        if results:
            self._post(self._answer, results)

    @staticmethod
    def _meta(conn: sqlite3.Connection, name: str) -> int:
        return conn.execute("SELECT value FROM meta WHERE name=?", (name,)).fetchone()[0]

    def _run_write_batch(self, conn: sqlite3.Connection, batch: list[_Request]) -> None:
        # Python releases the GIL around every SQLite step and must take it back afterwards,
        # which waits while the event loop runs; so a batch makes a fixed handful of SQLite
        # calls, whatever its size: the rows it touches are read in one query, the operations
        # run against that snapshot in memory, and the result is written in a few multi-row
        # statements just before COMMIT.
        results: list[tuple[asyncio.Future, bool, Any]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            # Read under the write lock (cheap), so the counter stays right even if another
            # process wrote to the file.
            start, compacted = conn.execute(
                "SELECT (SELECT value FROM meta WHERE name='revision'), "
                "(SELECT value FROM meta WHERE name='compacted')").fetchone()
            ctx = _WriteCtx(conn, start, compacted)
            keyed = (self._w_create, self._w_update, self._w_delete)
            ctx.load([req.args[0] for req in batch if req.fn in keyed])
            for req in batch:
                # Operations check first and write last, so an error they raise (KeyExists,
                # a mismatch, an object that is not JSON) leaves nothing behind; an SQLite
                # error aborts the whole batch below.
                try:
                    value = req.fn(ctx, *req.args)
                except sqlite3.Error:
                    raise
                except BaseException as e:  # noqa: BLE001 - goes to the caller
                    results.append((req.future, False, e))
                else:
                    results.append((req.future, True, value))
            if ctx.revision != start:
                ctx.flush()
                _insert_rows(conn, "INSERT INTO changes(revision, type, key, value) VALUES ",
                             4, ctx.changes)
                conn.execute("UPDATE meta SET value=? WHERE name='revision'", (ctx.revision,))
                horizon = ctx.revision - self.keep_history
                if horizon > ctx.compacted:
                    conn.execute("DELETE FROM changes WHERE revision <= ?", (horizon,))
                    conn.execute("UPDATE meta SET value=? WHERE name='compacted'", (horizon,))
                    ctx.compacted = horizon
            conn.execute("COMMIT")
        except BaseException as e:  # noqa: BLE001 - the whole batch failed to commit
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            err = e if isinstance(e, StoreError) else StoreError(f"commit failed: {e}")
            err.__cause__ = e
            self._post(self._answer, [(req.future, False, err) for req in batch])
            return
        self._committed = ctx.revision
        self.stats["transactions"] += 1
        self.stats["requests"] += len(batch)
        self._post(self._after_commit, results, ctx.changes)

    def _reader_main(self) -> None:
        self._ready.wait()
        if self._init_error is not None:
            self._fail_forever(self._rq, self._init_error)
            return
        try:
            conn = self._connect()
            conn.execute("PRAGMA query_only=1")
        except BaseException as e:  # noqa: BLE001
            self._fail_forever(self._rq, e)
            return
        while True:
            batch = [self._rq.get()]
            while True:
                try:
                    batch.append(self._rq.get_nowait())
                except queue.Empty:
                    break
            results = []
            stop = None
            for i, req in enumerate(batch):
                if req is _STOP:
                    stop = i
                    break
                try:
                    results.append((req.future, True, req.fn(conn, *req.args)))
                except BaseException as e:  # noqa: BLE001
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    results.append((req.future, False, e))
            if results:
                self._post(self._answer, results)
            if stop is not None:
                self._drain_failing(self._rq, _Closed("store is closed"), batch[stop + 1:])
                conn.close()
                return

    # ------------------------------------------------------------------ write operations
    # (run in the writer thread, inside the batch transaction)

    # Each returns the stored JSON text; the caller decodes it on the loop.

    @staticmethod
    def _w_create(ctx: "_WriteCtx", key: str, obj: dict, pre: tuple[str, str] | None) -> str:
        rev = ctx.revision + 1
        text = _stamped(obj, pre, rev)
        if ctx.get(key) is not None:
            raise KeyExists(key)
        ctx.put(key, (text, rev))
        ctx.record(rev, "ADDED", key, text)
        return text

    @staticmethod
    def _w_update(ctx: "_WriteCtx", key: str, obj: dict, pre: tuple[str, str] | None,
                  expected: int | None) -> str:
        row = ctx.get(key)
        if row is None:
            raise KeyNotFound(key)
        if expected is not None and int(expected) != row[1]:
            raise RevisionMismatch(json.loads(row[0]))
        rev = ctx.revision + 1
        text = _stamped(obj, pre, rev)
        ctx.put(key, (text, rev))
        ctx.record(rev, "MODIFIED", key, text)
        return text

    @staticmethod
    def _w_delete(ctx: "_WriteCtx", key: str, expected: int | None) -> str:
        row = ctx.get(key)
        if row is None:
            raise KeyNotFound(key)
        if expected is not None and int(expected) != row[1]:
            raise RevisionMismatch(json.loads(row[0]))
        rev = ctx.revision + 1
        text = _stamp(json.loads(row[0]), rev)
        ctx.put(key, None)
        ctx.record(rev, "DELETED", key, text)
        return text

    def _w_compact(self, ctx: "_WriteCtx", revision: int) -> None:
        if revision > ctx.revision:
            raise ValueError(f"cannot compact at future revision {revision} "
                             f"(current revision {ctx.revision})")
        if revision > ctx.compacted:
            ctx.conn.execute("DELETE FROM changes WHERE revision <= ?", (revision,))
            ctx.conn.execute("UPDATE meta SET value=? WHERE name='compacted'", (revision,))
            ctx.compacted = revision

    # ------------------------------------------------------------------ read operations
    # (run in the reader thread)

    @staticmethod
    def _r_get(conn: sqlite3.Connection, key: str) -> dict:
        row = conn.execute("SELECT value FROM kv WHERE key=?", (key,)).fetchone()
        if row is None:
            raise KeyNotFound(key)
        return json.loads(row[0])

    def _r_list(self, conn: sqlite3.Connection, prefix: str) -> tuple[list[dict], int]:
        lo, hi = _prefix_bounds(prefix)
        conn.execute("BEGIN")
        try:
            revision = self._meta(conn, "revision")
            if hi is None:
                rows = conn.execute("SELECT key, value FROM kv WHERE key >= ? ORDER BY key",
                                    (lo,)).fetchall()
                items = [json.loads(v) for k, v in rows if k.startswith(prefix)]
            else:
                rows = conn.execute("SELECT value FROM kv WHERE key >= ? AND key < ? "
                                    "ORDER BY key", (lo, hi)).fetchall()
                items = [json.loads(v) for (v,) in rows]
        finally:
            conn.execute("COMMIT")
        return items, revision

    def _r_history(self, conn: sqlite3.Connection, prefix: str, after: int, upto: int
                   ) -> tuple[list[tuple[int, str, str, str]], int]:
        """Changes under prefix with after < revision <= upto (one page), and the compaction
        horizon read in the same snapshot."""
        lo, hi = _prefix_bounds(prefix)
        conn.execute("BEGIN")
        try:
            compacted = self._meta(conn, "compacted")
            if hi is None:
                rows = conn.execute(
                    "SELECT revision, type, key, value FROM changes WHERE revision > ? AND "
                    "revision <= ? AND key >= ? ORDER BY revision LIMIT ?",
                    (after, upto, lo, _HISTORY_PAGE)).fetchall()
                rows = [r for r in rows if r[2].startswith(prefix)]
            else:
                rows = conn.execute(
                    "SELECT revision, type, key, value FROM changes WHERE revision > ? AND "
                    "revision <= ? AND key >= ? AND key < ? ORDER BY revision LIMIT ?",
                    (after, upto, lo, hi, _HISTORY_PAGE)).fetchall()
        finally:
            conn.execute("COMMIT")
        return rows, compacted

    @staticmethod
    def _r_revision(conn: sqlite3.Connection) -> int:
        return conn.execute("SELECT value FROM meta WHERE name='revision'").fetchone()[0]

    # ------------------------------------------------------------------ Store API

    async def create(self, key: str, obj: dict) -> dict:
        return json.loads(await self._call(self._wq, self._w_create, key, obj, _prestamp(obj)))

    async def update(self, key: str, obj: dict, expected_revision: int | None = None) -> dict:
        return json.loads(await self._call(self._wq, self._w_update, key, obj, _prestamp(obj),
                                           expected_revision))

    async def delete(self, key: str, expected_revision: int | None = None) -> dict:
        return json.loads(await self._call(self._wq, self._w_delete, key, expected_revision))

    async def get(self, key: str) -> dict:
        return await self._call(self._rq, self._r_get, key)

    async def list(self, prefix: str) -> tuple[list[dict], int]:
        return await self._call(self._rq, self._r_list, prefix)

    async def current_revision(self) -> int:
        return await self._call(self._rq, self._r_revision)

    async def compact(self, revision: int) -> None:
        await self._call(self._wq, self._w_compact, int(revision))

    async def watch(self, prefix: str, since: int) -> AsyncIterator[Event]:  # type: ignore[override]
        """See Store.watch. Event objects are fresh dicts per watcher (safe to modify)."""
        if self._closed:
            return
        self._bind_loop()
        since = int(since)
        try:
            # Waits for the store to be open, so _dispatched holds the stored revision.
            await self._call(self._rq, self._r_revision)
        except _Closed:
            return
        w = _Watcher(prefix, self.watch_queue)
        last = since
        self._watchers.add(w)
        try:
            while True:
                # Catch up from history: every change <= upto is committed; every change
                # > upto reaches w.queue (registration/reset and hand-off run on the loop).
                upto = self._dispatched
                w.overflowed = False
                w.queue.clear()
                after = last
                while after < upto:
                    try:
                        rows, compacted = await self._call(self._rq, self._r_history, prefix,
                                                           after, upto)
                    except _Closed:
                        return
                    if compacted > after:
                        raise Expired(after, compacted + 1)
                    for rev, typ, key, text in rows:
                        last = rev
                        yield Event(typ, key, json.loads(text), rev)
                    if len(rows) < _HISTORY_PAGE:
                        break
                    after = rows[-1][0]
                if last < upto:
                    last = upto
                # Live.
                while True:
                    while not w.queue and not w.overflowed:
                        if self._closed:
                            return
                        w.wakeup.clear()
                        await w.wakeup.wait()
                    if self._closed:
                        return
                    if not w.queue:          # overflowed: catch up from history again
                        break
                    rev, typ, key, text = w.queue.popleft()
                    if rev <= last:
                        continue
                    last = rev
                    yield Event(typ, key, json.loads(text), rev)
        finally:
            self._watchers.discard(w)

    async def close(self) -> None:
        if self._closed:
            return
        loop = self._bind_loop() if self._loop is None else self._loop
        self._closed = True
        for w in list(self._watchers):
            w.wakeup.set()
        self._rq.put(_STOP)
        done = loop.create_future()
        self._wq.put(("stop", done))
        await done
        await asyncio.to_thread(self._reader.join)
        await asyncio.to_thread(self._writer.join)


class _WriteCtx:
    """State of one write batch: the connection, the revision counter, the changes made."""

    __slots__ = ("conn", "revision", "compacted", "changes", "rows", "dirty")

    def __init__(self, conn: sqlite3.Connection, revision: int, compacted: int):
        self.conn = conn
        self.revision = revision
        self.compacted = compacted
        self.changes: list[tuple[int, str, str, str]] = []
        # key -> (value, revision), or None where the key is absent: the rows the batch reads
        # and writes, as they stand after its operations so far
        self.rows: dict[Any, tuple[str, int] | None] = {}
        self.dirty: dict[Any, None] = {}     # keys written (insertion-ordered set)

    def load(self, keys: list) -> None:
        """Read the current rows of keys in one query per chunk."""
        want = list(dict.fromkeys(keys))
        for i in range(0, len(want), _CHUNK):
            part = want[i:i + _CHUNK]
            sql = "SELECT key, value, revision FROM kv WHERE key IN (%s)" % ",".join("?" * len(part))
            for k, v, r in self.conn.execute(sql, part).fetchall():
                self.rows[k] = (v, r)
            for k in part:
                self.rows.setdefault(k, None)

    def get(self, key: Any) -> tuple[str, int] | None:
        if key not in self.rows:     # not loaded (cannot happen for write ops): read it now
            row = self.conn.execute("SELECT value, revision FROM kv WHERE key=?",
                                    (key,)).fetchone()
            self.rows[key] = None if row is None else (row[0], row[1])
        return self.rows[key]

    def put(self, key: Any, row: tuple[str, int] | None) -> None:
        self.rows[key] = row
        self.dirty[key] = None

    def flush(self) -> None:
        """Write the final state of every key the batch touched."""
        upserts = []
        gone = []
        for k in self.dirty:
            row = self.rows[k]
            if row is None:
                gone.append(k)
            else:
                upserts.append((k, row[0], row[1]))
        if gone:
            for i in range(0, len(gone), _CHUNK):
                part = gone[i:i + _CHUNK]
                self.conn.execute("DELETE FROM kv WHERE key IN (%s)" % ",".join("?" * len(part)),
                                  part)
        if upserts:
            _insert_rows(self.conn, "INSERT OR REPLACE INTO kv(key, value, revision) VALUES ",
                         3, upserts)

    def record(self, rev: int, typ: str, key: str, text: str) -> None:
        """Note a change; the batch writes all of them to `changes` before it commits."""
        self.revision = rev
        self.changes.append((rev, typ, key, text))
