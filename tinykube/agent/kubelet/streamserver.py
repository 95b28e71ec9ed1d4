"""The agent's stream server: exec, attach, port-forward and logs for the API server to relay.

Internal protocol (API server -> agent; the API server terminates kubectl's protocols):

  GET /exec/{ns}/{pod}/{container}?command=..&command=..&stdin=1&tty=1     WebSocket
  GET /attach/{ns}/{pod}/{container}?stdin=..&tty=..                      WebSocket
      Binary messages, byte 0 = channel (the v5.channel.k8s.io layout):
        0 stdin (to agent), 1 stdout, 2 stderr, 3 status JSON (from agent, once, last),
        4 resize JSON {"Width":W,"Height":H} (to agent), 255 close-channel [255, ch]
        ([255, 0] from the API server = stdin EOF).
      The session ends with the channel-3 Status and a close 1000. exec reports the exit
      code (NonZeroExitCode Status); attach always reports Success.

  GET /portforward/{ns}/{pod}?port=80                                      WebSocket
      Carries ONE TCP connection to the pod's IP and port. Binary messages are bytes in
      either direction; an EMPTY binary message means "no more bytes from me" (half-close).
      A text message from the agent is an error text (e.g. connection refused); the agent
      closes the WebSocket when the pod closes the connection.

  GET /logs/{ns}/{pod}/{container}?follow=&tailLines=&previous=&timestamps=&sinceSeconds=
        &sinceTime=&limitBytes=                                            chunked text/plain

Log files are read in the CRI logging format (one line per record:
`<RFC3339Nano> <stdout|stderr> <P|F> <text>`, P = partial line to be joined with the next);
lines that do not parse are passed through as they are.
"""
from __future__ import annotations

import asyncio
import inspect
import json
import os
from datetime import datetime, timezone
from typing import Any, Protocol, runtime_checkable

from aiohttp import WSMsgType, web

CH_STDIN, CH_STDOUT, CH_STDERR, CH_STATUS, CH_RESIZE, CH_CLOSE = 0, 1, 2, 3, 4, 255
WS_PROTOCOL = "v5.channel.k8s.io"
READ_CHUNK = 32 * 1024


# --------------------------------------------------------------------------- runtime interface

class StreamWriterLike(Protocol):
    def write(self, data: bytes) -> Any: ...
    async def drain(self) -> None: ...
    def close(self) -> Any: ...


class StreamReaderLike(Protocol):
    async def read(self, n: int = -1) -> bytes: ...


@runtime_checkable
class Process(Protocol):
    """A process started by exec, or the container's main process for attach.

    stdin is None when stdin was not requested; stderr is None with a tty (merged into stdout).
    Closing stdin means EOF for the process (with a tty, the runtime decides what that means).
    """
    stdin: StreamWriterLike | None
    stdout: StreamReaderLike
    stderr: StreamReaderLike | None

    async def wait(self) -> int: ...
    def resize(self, width: int, height: int) -> Any: ...  # may return an awaitable


class ContainerRuntime(Protocol):
    """What the stream server needs from the node's runtime.

    pod_key is "namespace/name". Methods raise LookupError (or any exception whose str()
    is a user-facing message) when the pod or container does not exist or is not running.
    Optional extras, used when present: Process.kill() (exec session aborted by the client)
    and container_running(ns, pod, container) -> bool (ends `logs --follow`).
    """

    async def exec(self, pod_key: str, container: str, argv: list[str], *,
                   stdin: bool, tty: bool) -> Process: ...

    async def attach(self, pod_key: str, container: str, *, stdin: bool, tty: bool) -> Process: ...

    def pod_ip(self, namespace: str, pod: str) -> str | None: ...

    def log_path(self, namespace: str, pod: str, container: str, previous: bool = False) -> str | None: ...


RUNTIME_KEY: web.AppKey["ContainerRuntime"] = web.AppKey("runtime")


# --------------------------------------------------------------------------- status objects

def status_success() -> dict:
    return {"metadata": {}, "status": "Success"}


def status_exit_code(code: int) -> dict:
    return {"metadata": {}, "status": "Failure",
            "message": f"command terminated with non-zero exit code: exit status {code}",
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]}}


def status_failure(message: str, reason: str = "InternalError", code: int = 500) -> dict:
    return {"metadata": {}, "status": "Failure", "message": message, "reason": reason, "code": code}


def _bool(v: str | None) -> bool:
    return (v or "").lower() in ("1", "true", "yes", "y")


async def _maybe_await(x: Any) -> None:
    if inspect.isawaitable(x):
        await x


# --------------------------------------------------------------------------- exec / attach

async def _send(ws: web.WebSocketResponse, channel: int, data: bytes) -> None:
    await ws.send_bytes(bytes((channel,)) + data)


async def _pump(reader: StreamReaderLike, ws: web.WebSocketResponse, channel: int) -> None:
    while True:
        try:
            data = await reader.read(READ_CHUNK)
        except (OSError, asyncio.IncompleteReadError):
            # a pty master reports EIO once the slave side is gone: that is EOF
            return
        if not data:
            return
        if ws.closed:
            continue  # keep draining so the process is never blocked on a full pipe
        try:
            await _send(ws, channel, data)
        except (ConnectionResetError, RuntimeError):
            pass


def _close_stdin(proc: Process) -> None:
    w = proc.stdin
    if w is None:
        return
    try:
        w.close()
    except Exception:
        pass


async def _read_client(ws: web.WebSocketResponse, proc: Process) -> None:
    """Client -> process: stdin bytes, resize, close-channel. Returns when the client is gone."""
    try:
        await _read_client_loop(ws, proc)
    except (ConnectionError, RuntimeError):
        pass


async def _read_client_loop(ws: web.WebSocketResponse, proc: Process) -> None:
    async for msg in ws:
        if msg.type != WSMsgType.BINARY or not msg.data:
            continue
        ch, data = msg.data[0], msg.data[1:]
        if ch == CH_STDIN and proc.stdin is not None and data:
            try:
                proc.stdin.write(data)
                await proc.stdin.drain()
            except (ConnectionResetError, BrokenPipeError, RuntimeError):
                pass
        elif ch == CH_RESIZE:
            try:
                size = json.loads(data)
                w, h = int(size.get("Width", 0)), int(size.get("Height", 0))
            except (ValueError, TypeError, AttributeError):
                continue
            if w and h:
                try:
                    await _maybe_await(proc.resize(w, h))
                except Exception:
                    pass
        elif ch == CH_CLOSE and data[:1] == bytes((CH_STDIN,)):
            _close_stdin(proc)


async def _session(request: web.Request, attach: bool) -> web.WebSocketResponse:
    runtime: ContainerRuntime = request.app[RUNTIME_KEY]
    ns, pod, container = (request.match_info[k] for k in ("namespace", "pod", "container"))
    q = request.query
    tty, want_stdin = _bool(q.get("tty")), _bool(q.get("stdin"))
    ws = web.WebSocketResponse(protocols=(WS_PROTOCOL,), max_msg_size=0)
    await ws.prepare(request)
    key = f"{ns}/{pod}"
    try:
        if attach:
            proc = await runtime.attach(key, container, stdin=want_stdin, tty=tty)
        else:
            argv = q.getall("command", [])
            if not argv:
                raise ValueError("you must specify at least one command for the container")
            proc = await runtime.exec(key, container, argv, stdin=want_stdin, tty=tty)
    except Exception as e:  # the runtime's message is what the user sees
        await _send(ws, CH_STATUS, json.dumps(status_failure(str(e) or type(e).__name__)).encode())
        await ws.close()
        return ws
    if not want_stdin and not attach:
        _close_stdin(proc)
    reader = asyncio.create_task(_read_client(ws, proc))
    pumps = [asyncio.create_task(_pump(proc.stdout, ws, CH_STDOUT))]
    if proc.stderr is not None:
        pumps.append(asyncio.create_task(_pump(proc.stderr, ws, CH_STDERR)))
    try:
        if attach:
            # an attach ends when the container's output ends or the client goes away
            done, _ = await asyncio.wait([reader, *pumps], return_when=asyncio.FIRST_COMPLETED)
            if reader not in done:
                await asyncio.gather(*pumps)
            status = status_success()
        else:
            waiter = asyncio.ensure_future(asyncio.gather(*pumps))
            done, _ = await asyncio.wait([reader, waiter], return_when=asyncio.FIRST_COMPLETED)
            if waiter not in done:  # the client left before the command finished
                kill = getattr(proc, "kill", None)
                if kill is not None:
                    try:
                        await _maybe_await(kill())
                    except ProcessLookupError:
                        pass
            await waiter
            code = await proc.wait()
            status = status_success() if code == 0 else status_exit_code(code)
        if not ws.closed:
            await _send(ws, CH_STATUS, json.dumps(status).encode())
            await ws.close()
    finally:
        reader.cancel()
        for t in pumps:
            t.cancel()
    return ws


async def exec_handler(request: web.Request) -> web.StreamResponse:
    return await _session(request, attach=False)


async def attach_handler(request: web.Request) -> web.StreamResponse:
    return await _session(request, attach=True)


# --------------------------------------------------------------------------- port-forward

async def portforward_handler(request: web.Request) -> web.StreamResponse:
    runtime: ContainerRuntime = request.app[RUNTIME_KEY]
    ns, pod = request.match_info["namespace"], request.match_info["pod"]
    try:
        port = int(request.query.get("port", ""))
        if not 0 < port < 65536:
            raise ValueError
    except ValueError:
        raise web.HTTPBadRequest(text="port must be an integer between 1 and 65535")
    ws = web.WebSocketResponse(max_msg_size=0)
    await ws.prepare(request)
    ip = runtime.pod_ip(ns, pod)
    if not ip:
        await ws.send_str(f"pod {ns}/{pod} has no IP address")
        await ws.close()
        return ws
    try:
        reader, writer = await asyncio.open_connection(ip, port)
    except OSError as e:
        await ws.send_str(f"error forwarding port {port} to pod {ns}/{pod}: failed to connect to "
                          f"{ip}:{port}: {e.strerror or e}")
        await ws.close()
        return ws

    async def up() -> None:  # pod -> client
        try:
            await _up()
        except (ConnectionError, RuntimeError):
            pass

    async def _up() -> None:
        while True:
            try:
                data = await reader.read(READ_CHUNK)
            except OSError:
                data = b""
            if not data:
                return
            await ws.send_bytes(data)

    async def down() -> None:  # client -> pod
        try:
            await _down()
        except (ConnectionError, RuntimeError):
            pass

    async def _down() -> None:
        async for msg in ws:
            if msg.type != WSMsgType.BINARY:
                continue
            if not msg.data:
                if writer.can_write_eof():
                    writer.write_eof()
                continue
            writer.write(msg.data)
            await writer.drain()

    up_t, down_t = asyncio.create_task(up()), asyncio.create_task(down())
    try:
        done, _ = await asyncio.wait([up_t, down_t], return_when=asyncio.FIRST_COMPLETED)
        if up_t in done:
            await ws.close()
    except (ConnectionResetError, RuntimeError):
        pass
    finally:
        up_t.cancel()
        down_t.cancel()
        writer.close()
        if not ws.closed:
            await ws.close()
    return ws


# --------------------------------------------------------------------------- logs

def parse_cri_line(line: bytes) -> tuple[datetime | None, bytes, bool]:
    """-> (timestamp, text without newline, partial?). Non-CRI lines: (None, line, False)."""
    body = line.rstrip(b"\n")
    parts = body.split(b" ", 3)
    if len(parts) >= 3 and parts[1] in (b"stdout", b"stderr") and parts[2] in (b"P", b"F"):
        ts = _parse_ts(parts[0].decode(errors="replace"))
        if ts is not None:
            return ts, parts[3] if len(parts) == 4 else b"", parts[2] == b"P"
    return None, body, False


def _parse_ts(s: str) -> datetime | None:
    s = s.strip()
    if s.endswith("Z"):
        s = s[:-1] + "+00:00"
    if "." in s:  # Python wants at most 6 fractional digits
        head, _, rest = s.partition(".")
        digits = "".join(c for c in rest if c.isdigit())
        tz = rest[len(digits):]
        s = f"{head}.{digits[:6]}{tz}"
    try:
        ts = datetime.fromisoformat(s)
    except ValueError:
        return None
    return ts if ts.tzinfo else ts.replace(tzinfo=timezone.utc)


class _LogFormatter:
    """Turns raw log-file bytes into the lines `kubectl logs` prints."""

    def __init__(self, timestamps: bool, since: datetime | None) -> None:
        self.timestamps, self.since = timestamps, since
        self._partial: bytes = b""
        self._partial_ts: tuple[datetime | None, bytes | None] | None = None
        self._rest = b""

    def feed(self, data: bytes) -> list[bytes]:
        self._rest += data
        *lines, self._rest = self._rest.split(b"\n")
        out = []
        for line in lines:
            ts, text, partial = parse_cri_line(line)
            raw_ts = line.split(b" ", 1)[0] if ts is not None else None  # printed as stored
            if partial:
                if not self._partial:
                    self._partial_ts = (ts, raw_ts)
                self._partial += text
                continue
            if self._partial:
                text = self._partial + text
                if self._partial_ts and self._partial_ts[0] is not None:
                    ts, raw_ts = self._partial_ts
                self._partial, self._partial_ts = b"", None
            if self.since is not None and ts is not None and ts < self.since:
                continue
            prefix = raw_ts + b" " if self.timestamps and raw_ts else b""
            out.append(prefix + text + b"\n")
        return out


async def logs_handler(request: web.Request) -> web.StreamResponse:
    runtime: ContainerRuntime = request.app[RUNTIME_KEY]
    ns, pod, container = (request.match_info[k] for k in ("namespace", "pod", "container"))
    q = request.query
    follow, previous, timestamps = _bool(q.get("follow")), _bool(q.get("previous")), _bool(q.get("timestamps"))
    try:
        tail = int(q["tailLines"]) if q.get("tailLines") not in (None, "") else None
        limit = int(q["limitBytes"]) if q.get("limitBytes") not in (None, "") else None
        since: datetime | None = None
        if q.get("sinceSeconds"):
            since = datetime.fromtimestamp(
                datetime.now(timezone.utc).timestamp() - int(q["sinceSeconds"]), timezone.utc)
        elif q.get("sinceTime"):
            since = _parse_ts(q["sinceTime"])
    except ValueError as e:
        raise web.HTTPBadRequest(text=f"invalid log options: {e}")
    path = runtime.log_path(ns, pod, container, previous)
    if not path or not os.path.exists(path):
        if previous:
            msg = f'previous terminated container "{container}" in pod "{pod}" not found'
        else:
            msg = f'container "{container}" in pod "{pod}" is waiting to start: ContainerCreating'
        return web.json_response({"kind": "Status", "apiVersion": "v1", "metadata": {},
                                  "status": "Failure", "message": msg, "reason": "BadRequest",
                                  "code": 400}, status=400)
    fmt = _LogFormatter(timestamps, since)
    data = await asyncio.to_thread(_read_file, path, 0)
    offset = len(data)
    lines = fmt.feed(data)
    if tail is not None:
        lines = lines[-tail:] if tail > 0 else []
    resp = web.StreamResponse(headers={"Content-Type": "text/plain"})
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    sent = 0

    async def emit(chunks: list[bytes]) -> bool:
        nonlocal sent
        for c in chunks:
            if limit is not None:
                c = c[:max(0, limit - sent)]
            if c:
                await resp.write(c)
                sent += len(c)
            if limit is not None and sent >= limit:
                return False
        return True

    more = await emit(lines)
    running = getattr(runtime, "container_running", None)
    while follow and more:
        alive = running(ns, pod, container) if running else True
        data = await asyncio.to_thread(_read_file, path, offset)
        if data:
            offset += len(data)
            more = await emit(fmt.feed(data))
            continue
        if not alive:
            break
        await asyncio.sleep(0.2)
    await resp.write_eof()
    return resp


def _read_file(path: str, offset: int) -> bytes:
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read()
    except FileNotFoundError:
        return b""


# --------------------------------------------------------------------------- app

def make_stream_app(runtime: ContainerRuntime) -> web.Application:
    app = web.Application()
    app[RUNTIME_KEY] = runtime
    app.router.add_get("/exec/{namespace}/{pod}/{container}", exec_handler)
    app.router.add_get("/attach/{namespace}/{pod}/{container}", attach_handler)
    app.router.add_get("/portforward/{namespace}/{pod}", portforward_handler)
    app.router.add_get("/logs/{namespace}/{pod}/{container}", logs_handler)
    return app
