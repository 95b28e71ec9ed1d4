"""exec / attach / port-forward / logs: terminate the client's protocol, relay to the agent.

Front (kubectl, Python client) -> this module -> back (the agent's stream server, see
tinykube.agent.kubelet.streamserver for the internal protocol: one aiohttp WebSocket per
exec/attach session and one per forwarded TCP connection; logs are plain chunked text).

Front protocols:
  exec/attach   WebSocket v5.channel.k8s.io (kubectl 1.30+, Python client) or v4 (older
                Python clients); SPDY/3.1 upgrade (kubectl 1.27-1.29, fallback for all) with
                X-Stream-Protocol-Version v4/v3/v2.channel.k8s.io or channel.k8s.io.
  port-forward  SPDY/3.1 (portforward.k8s.io), SPDY/3.1 tunnelled in WebSocket binary messages
                (subprotocol SPDY/3.1+portforward.k8s.io, kubectl 1.31+), and the Python
                client's channel protocol (?ports=80: channel 2i data, 2i+1 error, the first
                frame on each channel is the port as 2 bytes little-endian).

Public API:
  handle_exec(request, agent_url, session, *, namespace=None, pod=None, container=None)
  handle_attach(request, agent_url, session, *, namespace=None, pod=None, container=None)
  handle_portforward(request, agent_url, session, *, namespace=None, pod=None)
  proxy_logs(request, agent_url, session, *, namespace=None, pod=None, container=None)
namespace/pod default to request.match_info["namespace"/"name"], container to ?container=.
`session` is the aiohttp ClientSession (with the TLS settings) used to reach `agent_url`.
"""
from __future__ import annotations

import asyncio
import json
import logging
import struct
from typing import Awaitable, Callable
from urllib.parse import quote

import aiohttp
from aiohttp import WSMsgType, web
from yarl import URL

from tinykube.api.errors import ApiError
from tinykube.apiserver import spdy

log = logging.getLogger(__name__)

CH_STDIN, CH_STDOUT, CH_STDERR, CH_STATUS, CH_RESIZE, CH_CLOSE = 0, 1, 2, 3, 4, 255
WS_V5 = "v5.channel.k8s.io"
WS_V4 = "v4.channel.k8s.io"
WS_SPDY_TUNNEL = "SPDY/3.1+portforward.k8s.io"
SPDY_EXEC_PROTOCOLS = ("v4.channel.k8s.io", "v3.channel.k8s.io", "v2.channel.k8s.io", "channel.k8s.io")
SPDY_PORTFORWARD_PROTOCOL = "portforward.k8s.io"
STREAM_CREATION_TIMEOUT = 30.0   # how long we wait for the client's SPDY streams
CLIENT_LINGER = 10.0             # after the end of a SPDY session, how long the client may take to hang up
WRITE_HIGH_WATER = 1 << 20

_AGENT_WS_TIMEOUT = aiohttp.ClientWSTimeout(ws_receive=None, ws_close=10.0)


def _status_response(err: ApiError) -> web.Response:
    return web.json_response(err.status(), status=err.code)


def _bool(v: str | None) -> bool:
    return (v or "").lower() in ("1", "true", "yes", "y")


def _upgrade(request: web.Request) -> str:
    return request.headers.get("Upgrade", "").strip().lower()


def _offered(request: web.Request, header: str) -> list[str]:
    out: list[str] = []
    for v in request.headers.getall(header, []):
        out += [p.strip() for p in v.split(",") if p.strip()]
    return out


def _target(request: web.Request, namespace: str | None, pod: str | None,
            container: str | None = None, need_container: bool = True) -> tuple[str, str, str]:
    ns = namespace or request.match_info.get("namespace", "default")
    name = pod or request.match_info.get("name") or request.match_info.get("pod", "")
    c = container or request.query.get("container", "")
    if need_container and not c:
        raise ApiError(400, "BadRequest", f"a container name must be specified for pod {name}")
    return ns, name, c


async def _connect_agent(session: aiohttp.ClientSession, url: str,
                         protocols: tuple[str, ...] = ()) -> aiohttp.ClientWebSocketResponse:
    try:
        return await session.ws_connect(url, protocols=protocols, max_msg_size=0, autoping=True,
                                        timeout=_AGENT_WS_TIMEOUT)
    except aiohttp.WSServerHandshakeError as e:
        raise ApiError(e.status if e.status >= 400 else 500, "InternalError",
                       f"error dialing backend: {e.message}") from None
    except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as e:
        raise ApiError(500, "InternalError", f"error dialing backend: {e}") from None


# =========================================================================== SPDY session

class SpdyStream:
    """One client-initiated SPDY stream, as seen by the server."""

    def __init__(self, session: "SpdySession", stream_id: int, headers: spdy.Headers) -> None:
        self.session, self.id = session, stream_id
        self.headers = {k: v[0] if v else "" for k, v in headers.items()}
        self._q: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.remote_fin = False   # the client sent FIN (or reset): read() will end
        self.local_fin = False    # we sent FIN
        self.reset = False

    @property
    def type(self) -> str:
        return self.headers.get("streamtype", "")

    def _feed(self, data: bytes, fin: bool) -> None:
        if self.remote_fin:
            return
        if data:
            self._q.put_nowait(data)
        if fin:
            self.remote_fin = True
            self._q.put_nowait(None)

    def _reset(self) -> None:
        self.reset = self.local_fin = True
        self._feed(b"", True)

    async def read(self) -> bytes:
        """Next chunk from the client; b"" at FIN/reset/connection end."""
        if self._q.empty() and self.remote_fin:
            return b""
        data = await self._q.get()
        if data is None:
            self._q.put_nowait(None)  # stay at EOF for later readers
            return b""
        return data

    async def write(self, data: bytes) -> None:
        if self.local_fin or not data:
            return
        for i in range(0, len(data), spdy.MAX_DATA_CHUNK):
            await self.session.send(spdy.encode_data(self.id, data[i:i + spdy.MAX_DATA_CHUNK]))

    async def close(self) -> None:
        """Half-close: an empty DATA frame with FIN."""
        if not self.local_fin:
            self.local_fin = True
            await self.session.send(spdy.encode_data(self.id, b"", fin=True))


class SpdySession:
    """Server side of a SPDY/3.1 connection over any byte pipe.

    feed()/feed_eof() take the client's bytes; every outgoing frame goes through `sink` in
    order (one writer task). Every SYN_STREAM gets a SYN_REPLY at once, PINGs are echoed,
    SETTINGS and WINDOW_UPDATE are ignored (the Go client does no flow control).
    """

    def __init__(self, sink: Callable[[bytes], Awaitable[None]]) -> None:
        self._sink = sink
        self._parser = spdy.FrameParser()
        self._comp = spdy.HeaderCompressor()
        self.streams: dict[int, SpdyStream] = {}
        self._accept: asyncio.Queue[SpdyStream | None] = asyncio.Queue()
        self._out: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._pending = 0
        self._drained = asyncio.Event()
        self._drained.set()
        self.closed = asyncio.Event()     # the client's side is gone (EOF, GOAWAY or error)
        self.goaway = False
        self._writer = asyncio.create_task(self._write_loop())

    # ---- inbound
    def feed(self, data: bytes) -> None:
        if self.closed.is_set():
            return
        try:
            frames = self._parser.feed(data)
        except spdy.ProtocolError as e:
            log.info("spdy: protocol error from client: %s", e)
            self.feed_eof()
            return
        for f in frames:
            self._dispatch(f)

    def feed_eof(self) -> None:
        if self.closed.is_set():
            return
        self.closed.set()
        for s in self.streams.values():
            s._feed(b"", True)
        self._accept.put_nowait(None)

    def _dispatch(self, f: spdy.Frame) -> None:
        if isinstance(f, spdy.DataFrame):
            s = self.streams.get(f.stream_id)
            if s is not None:
                s._feed(f.data, f.fin)
        elif isinstance(f, spdy.SynStream):
            if f.stream_id in self.streams:
                self._queue(spdy.encode_rst_stream(f.stream_id, spdy.RST_PROTOCOL_ERROR))
                return
            s = SpdyStream(self, f.stream_id, f.headers)
            self.streams[f.stream_id] = s
            self._queue(spdy.encode_syn_reply(self._comp, f.stream_id, {}))
            if f.fin:
                s._feed(b"", True)
            self._accept.put_nowait(s)
        elif isinstance(f, spdy.RstStream):
            s = self.streams.get(f.stream_id)
            if s is not None:
                s._reset()
        elif isinstance(f, spdy.Ping):
            self._queue(spdy.encode_ping(f.ping_id))
        elif isinstance(f, spdy.GoAway):
            self.goaway = True
            self.feed_eof()
        # SETTINGS, WINDOW_UPDATE, HEADERS, SYN_REPLY, unknown: nothing to do

    async def accept(self) -> SpdyStream | None:
        """The next stream the client opens; None once the connection is finished."""
        s = await self._accept.get()
        if s is None:
            self._accept.put_nowait(None)
        return s

    # ---- outbound
    def _queue(self, frame: bytes) -> None:
        self._pending += len(frame)
        if self._pending > WRITE_HIGH_WATER:
            self._drained.clear()
        self._out.put_nowait(frame)

    async def send(self, frame: bytes) -> None:
        self._queue(frame)
        await self._drained.wait()

    async def _write_loop(self) -> None:
        broken = False
        while True:
            frame = await self._out.get()
            if frame is None:
                return
            self._pending -= len(frame)
            if self._pending <= WRITE_HIGH_WATER:
                self._drained.set()
            if broken:
                continue
            try:
                await self._sink(frame)
            except (ConnectionError, RuntimeError, OSError):
                broken = True
                self.feed_eof()

    async def flush_and_stop(self) -> None:
        """Write everything queued so far, then stop the writer."""
        self._out.put_nowait(None)
        try:
            await self._writer
        except asyncio.CancelledError:
            pass


class _RawSpdyParser:
    """Installed with `request.protocol.set_parser()` to receive the upgraded byte stream.

    aiohttp only treats `Upgrade: websocket`/`tcp` as protocol switches in its HTTP parser, so a
    SPDY upgrade needs the same hook WebSocketResponse uses: aiohttp's RequestHandler hands
    every received byte to the object given to `set_parser()` (`feed_data(data) ->
    (eof, tail)` and `feed_eof()`) instead of its HTTP parser. We install it before sending the
    101 (the client sends nothing until it sees the 101, so no byte can reach the HTTP parser),
    and write with the prepared 101 StreamResponse: with status 101 aiohttp uses neither
    chunking nor a length, so `resp.write()` puts raw bytes on the transport (with drain).
    """

    def __init__(self, session: SpdySession) -> None:
        self._session = session

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        self._session.feed(bytes(data))
        return False, b""

    def feed_eof(self) -> None:
        self._session.feed_eof()


async def _spdy_upgrade(request: web.Request, protocol: str) -> tuple[web.StreamResponse, SpdySession]:
    resp = web.StreamResponse(status=101, reason="Switching Protocols", headers={
        "Connection": "Upgrade", "Upgrade": "SPDY/3.1", "X-Stream-Protocol-Version": protocol})
    resp.force_close()
    session = SpdySession(resp.write)
    request.protocol.set_parser(_RawSpdyParser(session))  # type: ignore[arg-type]
    request.protocol.keep_alive(False)
    await resp.prepare(request)
    return resp, session


async def _spdy_linger(session: SpdySession) -> None:
    """Let the client read our final frames and hang up first (it RSTs and GOAWAYs)."""
    try:
        await asyncio.wait_for(session.closed.wait(), CLIENT_LINGER)
    except asyncio.TimeoutError:
        pass
    await session.flush_and_stop()


def _negotiate_spdy(request: web.Request, supported: tuple[str, ...]) -> str:
    offered = _offered(request, "X-Stream-Protocol-Version")
    if not offered:
        raise ApiError(400, "BadRequest", "unable to upgrade: no X-Stream-Protocol-Version offered")
    for p in supported:
        if p in offered:
            return p
    raise ApiError(403, "Forbidden", f"unable to upgrade: unable to negotiate protocol: client supports "
                                     f"{offered}, server supports {list(supported)}")


# =========================================================================== exec / attach

def _agent_session_url(agent_url: str, kind: str, ns: str, pod: str, container: str,
                       request: web.Request) -> str:
    q = request.query
    tty = _bool(q.get("tty"))
    params: list[tuple[str, str]] = []
    if kind == "exec":
        params += [("command", c) for c in q.getall("command", [])]
    params += [("stdin", "1" if _bool(q.get("stdin")) else "0"), ("tty", "1" if tty else "0")]
    base = f"{agent_url.rstrip('/')}/{kind}/{quote(ns, safe='')}/{quote(pod, safe='')}/{quote(container, safe='')}"
    return str(URL(base, encoded=True).with_query(params))


def _success() -> dict:
    return {"metadata": {}, "status": "Success"}


def _final_status(raw: bytes | None, attach: bool) -> dict:
    if raw is None:
        return {"metadata": {}, "status": "Failure", "reason": "InternalError",
                "message": "error reading from the node: the stream ended without a status"}
    try:
        st = json.loads(raw)
    except ValueError:
        st = {"metadata": {}, "status": "Failure", "message": raw.decode(errors="replace")}
    if attach and st.get("reason") == "NonZeroExitCode":
        st = _success()
    return st


async def handle_exec(request: web.Request, agent_url: str, session: aiohttp.ClientSession, *,
                      namespace: str | None = None, pod: str | None = None,
                      container: str | None = None, attach: bool = False) -> web.StreamResponse:
    kind = "attach" if attach else "exec"
    try:
        ns, name, c = _target(request, namespace, pod, container)
        if not attach and not request.query.getall("command", []):
            raise ApiError(400, "BadRequest", "you must specify at least one command for the container")
        up = _upgrade(request)
        if up == "websocket":
            return await _exec_websocket(request, agent_url, session, kind, ns, name, c)
        if up.startswith("spdy/3.1"):
            proto = _negotiate_spdy(request, SPDY_EXEC_PROTOCOLS)
            return await _exec_spdy(request, agent_url, session, kind, ns, name, c, proto)
        raise ApiError(400, "BadRequest", "Upgrade request required")
    except ApiError as e:
        return _status_response(e)


async def handle_attach(request: web.Request, agent_url: str, session: aiohttp.ClientSession, *,
                        namespace: str | None = None, pod: str | None = None,
                        container: str | None = None) -> web.StreamResponse:
    return await handle_exec(request, agent_url, session, namespace=namespace, pod=pod,
                             container=container, attach=True)


async def _exec_websocket(request: web.Request, agent_url: str, session: aiohttp.ClientSession,
                          kind: str, ns: str, pod: str, container: str) -> web.StreamResponse:
    agent = await _connect_agent(session, _agent_session_url(agent_url, kind, ns, pod, container, request),
                                 (WS_V5,))
    ws = web.WebSocketResponse(protocols=(WS_V5, WS_V4), max_msg_size=0, autoping=True)
    try:
        await ws.prepare(request)
    except Exception:
        await agent.close()
        raise
    v5 = ws.ws_protocol == WS_V5
    attach = kind == "attach"

    async def client_to_agent() -> None:
        try:
            await _client_to_agent()
        except (ConnectionError, RuntimeError):
            pass

    async def _client_to_agent() -> None:
        async for msg in ws:
            if msg.type == WSMsgType.BINARY:
                data = msg.data
            elif msg.type == WSMsgType.TEXT:  # the Python client may send str frames
                data = msg.data.encode()
            else:
                continue
            if data and data[0] in (CH_STDIN, CH_RESIZE, CH_CLOSE) and not agent.closed:
                await agent.send_bytes(data)

    status: bytes | None = None
    c2a = asyncio.create_task(client_to_agent())
    try:
        while True:
            get = asyncio.ensure_future(agent.receive())
            done, _ = await asyncio.wait([get, c2a], return_when=asyncio.FIRST_COMPLETED)
            if get not in done:  # the client went away
                get.cancel()
                break
            msg = get.result()
            if msg.type != WSMsgType.BINARY:
                if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
                    break
                continue
            if not msg.data:
                continue
            ch = msg.data[0]
            if ch == CH_STATUS:
                status = msg.data[1:]
                continue
            if ch == CH_CLOSE and not v5:
                continue
            await ws.send_bytes(msg.data)
        if not ws.closed:
            st = _final_status(status, attach)
            await ws.send_bytes(bytes((CH_STATUS,)) + json.dumps(st).encode())
            await ws.close(code=aiohttp.WSCloseCode.OK)
    except (ConnectionResetError, RuntimeError):
        pass
    finally:
        c2a.cancel()
        await agent.close()
    return ws


async def _exec_spdy(request: web.Request, agent_url: str, session: aiohttp.ClientSession,
                     kind: str, ns: str, pod: str, container: str, proto: str) -> web.StreamResponse:
    q = request.query
    tty = _bool(q.get("tty"))
    need = {"error"}
    if _bool(q.get("stdin")):
        need.add("stdin")
    if _bool(q.get("stdout")):
        need.add("stdout")
    if _bool(q.get("stderr")) and not tty:
        need.add("stderr")
    agent = await _connect_agent(session, _agent_session_url(agent_url, kind, ns, pod, container, request),
                                 (WS_V5,))
    resp, conn = await _spdy_upgrade(request, proto)
    streams: dict[str, SpdyStream] = {}
    tasks: list[asyncio.Task] = []
    try:
        got_all = asyncio.Event()

        async def acceptor() -> None:
            while True:
                s = await conn.accept()
                if s is None:
                    got_all.set()
                    return
                streams.setdefault(s.type, s)
                if s.type == "resize":
                    tasks.append(asyncio.create_task(resize_pump(s)))
                if need <= streams.keys():
                    got_all.set()

        async def resize_pump(s: SpdyStream) -> None:
            try:
                await _resize_pump(s)
            except (ConnectionError, RuntimeError):
                pass

        async def _resize_pump(s: SpdyStream) -> None:
            buf, dec = "", json.JSONDecoder()
            while True:
                data = await s.read()
                if not data:
                    return
                buf += data.decode(errors="replace")
                while True:
                    buf = buf.lstrip()
                    try:
                        obj, end = dec.raw_decode(buf)
                    except ValueError:
                        break
                    buf = buf[end:]
                    if not agent.closed:
                        await agent.send_bytes(bytes((CH_RESIZE,)) + json.dumps(obj).encode())

        async def stdin_pump(s: SpdyStream) -> None:
            try:
                await _stdin_pump(s)
            except (ConnectionError, RuntimeError):
                pass

        async def _stdin_pump(s: SpdyStream) -> None:
            while True:
                data = await s.read()
                if agent.closed:
                    return
                if not data:
                    await agent.send_bytes(bytes((CH_CLOSE, CH_STDIN)))
                    return
                await agent.send_bytes(bytes((CH_STDIN,)) + data)

        tasks.append(asyncio.create_task(acceptor()))
        try:
            await asyncio.wait_for(got_all.wait(), STREAM_CREATION_TIMEOUT)
        except asyncio.TimeoutError:
            log.info("spdy exec: timed out waiting for streams %s", need - streams.keys())
        if conn.closed.is_set() or "error" not in streams:
            return resp
        if "stdin" in streams:
            tasks.append(asyncio.create_task(stdin_pump(streams["stdin"])))
        async def hangup_watch() -> None:  # the client gave up: end the session on the node too
            await conn.closed.wait()
            await agent.close()
        tasks.append(asyncio.create_task(hangup_watch()))
        by_channel = {CH_STDOUT: streams.get("stdout"), CH_STDERR: streams.get("stderr")}
        status: bytes | None = None
        async for msg in agent:
            if msg.type != WSMsgType.BINARY or not msg.data:
                continue
            ch, data = msg.data[0], msg.data[1:]
            if ch in by_channel and by_channel[ch] is not None:
                await by_channel[ch].write(data)
            elif ch == CH_STATUS:
                status = data
            elif ch == CH_CLOSE and data[:1] and data[0] in by_channel and by_channel[data[0]]:
                await by_channel[data[0]].close()
        for s in by_channel.values():
            if s is not None:
                await s.close()
        st = _final_status(status, kind == "attach")
        err = streams["error"]
        if st.get("status") != "Success":
            if proto == "v4.channel.k8s.io":
                await err.write(json.dumps(st).encode())
            else:
                await err.write(st.get("message", "").encode())
        await err.close()
        await _spdy_linger(conn)
    finally:
        for t in tasks:
            t.cancel()
        await agent.close()
        await conn.flush_and_stop()
    return resp


# =========================================================================== port-forward

async def handle_portforward(request: web.Request, agent_url: str, session: aiohttp.ClientSession, *,
                             namespace: str | None = None, pod: str | None = None) -> web.StreamResponse:
    try:
        ns, name, _ = _target(request, namespace, pod, need_container=False)
        base = f"{agent_url.rstrip('/')}/portforward/{quote(ns, safe='')}/{quote(name, safe='')}"
        up = _upgrade(request)
        if up == "websocket":
            if WS_SPDY_TUNNEL in _offered(request, "Sec-WebSocket-Protocol"):
                return await _portforward_tunnel(request, base, session)
            return await _portforward_channels(request, base, session)
        if up.startswith("spdy/3.1"):
            proto = _negotiate_spdy(request, (SPDY_PORTFORWARD_PROTOCOL,))
            resp, conn = await _spdy_upgrade(request, proto)
            try:
                await _serve_portforward_spdy(conn, base, session)
            finally:
                await conn.flush_and_stop()
            return resp
        raise ApiError(400, "BadRequest", "Upgrade request required")
    except ApiError as e:
        return _status_response(e)


async def _portforward_tunnel(request: web.Request, base: str,
                              session: aiohttp.ClientSession) -> web.StreamResponse:
    """kubectl 1.31+: the SPDY byte stream inside binary WebSocket messages, no channel byte."""
    ws = web.WebSocketResponse(protocols=(WS_SPDY_TUNNEL,), max_msg_size=0, autoping=True)
    await ws.prepare(request)
    conn = SpdySession(ws.send_bytes)

    async def reader() -> None:
        async for msg in ws:
            if msg.type == WSMsgType.BINARY:
                conn.feed(msg.data)
        conn.feed_eof()

    rt = asyncio.create_task(reader())
    try:
        await _serve_portforward_spdy(conn, base, session)
    finally:
        rt.cancel()
        await conn.flush_and_stop()
        if not ws.closed:
            await ws.close()
    return ws


async def _serve_portforward_spdy(conn: SpdySession, base: str, session: aiohttp.ClientSession) -> None:
    """Pair the client's error/data streams by requestid; one agent WebSocket per data stream."""
    errors: dict[str, asyncio.Future[SpdyStream]] = {}
    tasks: set[asyncio.Task] = set()
    loop = asyncio.get_running_loop()
    try:
        while True:
            s = await conn.accept()
            if s is None:
                return
            rid = s.headers.get("requestid", str(s.id if s.type == "error" else s.id - 2))
            fut = errors.setdefault(rid, loop.create_future())
            if s.type == "error":
                if not fut.done():
                    fut.set_result(s)
            elif s.type == "data":
                t = asyncio.create_task(_forward_spdy_data(s, fut, base, session, rid, errors))
                tasks.add(t)
                t.add_done_callback(tasks.discard)
            else:
                await conn.send(spdy.encode_rst_stream(s.id, spdy.RST_PROTOCOL_ERROR))
    finally:
        for t in list(tasks):
            t.cancel()


async def _forward_spdy_data(data: SpdyStream, err_fut: asyncio.Future, base: str,
                             session: aiohttp.ClientSession, rid: str,
                             errors: dict[str, asyncio.Future]) -> None:
    port = data.headers.get("port", "")
    err: SpdyStream | None = None
    try:
        try:
            err = await asyncio.wait_for(asyncio.shield(err_fut), STREAM_CREATION_TIMEOUT)
        except asyncio.TimeoutError:
            err = None
        if not port.isdigit():
            if err is not None:
                await err.write(f"invalid port {port!r}".encode())
            return
        try:
            agent = await _connect_agent(session, f"{base}?port={port}")
        except ApiError as e:
            if err is not None:
                await err.write(e.message.encode())
            return
        try:
            await _relay_agent(agent, data.read, data.write, err.write if err is not None else None,
                               reset=lambda: data.reset)
        finally:
            await agent.close()
    finally:
        await data.close()
        if err is not None:
            await err.close()
        errors.pop(rid, None)


async def _relay_agent(agent: aiohttp.ClientWebSocketResponse,
                       read: Callable[[], Awaitable[bytes]],
                       write: Callable[[bytes], Awaitable[None]],
                       write_error: Callable[[bytes], Awaitable[None]] | None,
                       reset: Callable[[], bool] = lambda: False) -> None:
    """Relay one forwarded TCP connection until the agent side ends it."""

    async def to_agent() -> None:
        try:
            await _to_agent()
        except (ConnectionError, RuntimeError):
            pass

    async def _to_agent() -> None:
        while True:
            chunk = await read()
            if agent.closed:
                return
            if not chunk:
                if reset():
                    await agent.close()
                else:
                    await agent.send_bytes(b"")  # half-close towards the pod
                return
            await agent.send_bytes(chunk)

    t = asyncio.create_task(to_agent())
    try:
        async for msg in agent:
            if msg.type == WSMsgType.BINARY:
                if msg.data:
                    await write(msg.data)
            elif msg.type == WSMsgType.TEXT and write_error is not None:
                await write_error(msg.data.encode())
    except (ConnectionResetError, RuntimeError):
        pass
    finally:
        t.cancel()


async def _portforward_channels(request: web.Request, base: str,
                                session: aiohttp.ClientSession) -> web.StreamResponse:
    """The Python client's WebSocket port-forward: ?ports=80,81; channel 2i data, 2i+1 error."""
    ports: list[int] = []
    for v in request.query.getall("ports", []):
        for p in v.split(","):
            p = p.strip()
            if not p.isdigit() or not 0 < int(p) < 65536:
                return _status_response(ApiError(400, "BadRequest", f"invalid port {p!r}"))
            ports.append(int(p))
    if not ports:
        return _status_response(ApiError(400, "BadRequest", "query parameter \"ports\" is required"))
    ws = web.WebSocketResponse(protocols=(WS_V4, WS_V5), max_msg_size=0, autoping=True)
    await ws.prepare(request)
    queues: list[asyncio.Queue[bytes]] = [asyncio.Queue() for _ in ports]
    send_lock = asyncio.Lock()

    async def send(ch: int, data: bytes) -> None:
        async with send_lock:
            if not ws.closed:
                await ws.send_bytes(bytes((ch,)) + data)

    for i, port in enumerate(ports):
        await send(2 * i, struct.pack("<H", port))
        await send(2 * i + 1, struct.pack("<H", port))

    async def one_port(i: int, port: int) -> None:
        try:
            agent = await _connect_agent(session, f"{base}?port={port}")
        except ApiError as e:
            await send(2 * i + 1, e.message.encode())
            return
        try:
            await _relay_agent(agent, queues[i].get, lambda d: send(2 * i, d),
                               lambda d: send(2 * i + 1, d))
        finally:
            await agent.close()

    async def client_reader() -> None:
        async for msg in ws:
            if msg.type == WSMsgType.BINARY:
                data = msg.data
            elif msg.type == WSMsgType.TEXT:
                data = msg.data.encode()
            else:
                continue
            if len(data) > 1 and data[0] % 2 == 0 and data[0] // 2 < len(ports):
                queues[data[0] // 2].put_nowait(data[1:])

    reader = asyncio.create_task(client_reader())
    workers = asyncio.ensure_future(asyncio.gather(*(one_port(i, p) for i, p in enumerate(ports))))
    try:
        await asyncio.wait([reader, workers], return_when=asyncio.FIRST_COMPLETED)
        if not ws.closed:
            await ws.close(code=aiohttp.WSCloseCode.OK)
    finally:
        reader.cancel()
        workers.cancel()
    return ws


# =========================================================================== logs

_LOG_PARAMS = ("follow", "tailLines", "previous", "timestamps", "sinceSeconds", "sinceTime", "limitBytes")


async def proxy_logs(request: web.Request, agent_url: str, session: aiohttp.ClientSession, *,
                     namespace: str | None = None, pod: str | None = None,
                     container: str | None = None) -> web.StreamResponse:
    """Pass the agent's (chunked) log text through to the client."""
    try:
        ns, name, c = _target(request, namespace, pod, container)
    except ApiError as e:
        return _status_response(e)
    url = f"{agent_url.rstrip('/')}/logs/{quote(ns, safe='')}/{quote(name, safe='')}/{quote(c, safe='')}"
    params = [(k, request.query[k]) for k in _LOG_PARAMS if k in request.query]
    try:
        async with session.get(url, params=params,
                               timeout=aiohttp.ClientTimeout(total=None, sock_read=None)) as r:
            if r.status != 200:
                return web.Response(status=r.status, body=await r.read(),
                                    content_type=r.content_type or "application/json")
            resp = web.StreamResponse(status=200, headers={"Content-Type": "text/plain"})
            resp.enable_chunked_encoding()
            await resp.prepare(request)
            async for chunk in r.content.iter_any():
                await resp.write(chunk)
            await resp.write_eof()
            return resp
    except (aiohttp.ClientError, OSError) as e:
        return _status_response(ApiError(500, "InternalError", f"error dialing backend: {e}"))
