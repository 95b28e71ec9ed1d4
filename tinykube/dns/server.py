"""The DNS server: UDP and TCP on one address (SO_REUSEPORT, so several processes can share
it), EDNS0, truncation, and answers from a `Zone` with a `Forwarder` behind it.

Every malformed message gets FORMERR / NOTIMP when its header can be read, or silence; no
input makes the server raise."""
from __future__ import annotations

import asyncio
import logging
import socket
import threading
import struct
import time

from . import wire as W
from .forward import Forwarder
from .metrics import Metrics
from .zone import FORWARD, Entry, Zone, _Chase, encode

log = logging.getLogger("tinykube.dns")

MAX_UDP = 4096                 # the largest UDP payload we send (and advertise)
ADVERTISED = 1232
TCP_IDLE = 10.0
_perf = time.perf_counter


class Handler:
    """Turns a query message into a response message (bytes), None (no reply), or an
    awaitable of either when an upstream lookup is needed."""

    def __init__(self, zone: Zone, forwarder: Forwarder | None = None,
                 metrics: Metrics | None = None) -> None:
        self.zone = zone
        self.forwarder = forwarder
        self.metrics = metrics or Metrics()
        self.zone_label = zone.domain + "."
        self.family = "1"

    # ---------------------------------------------------------------- building
    def build(self, q: W.Query, e: Entry, limit: int, aa: bool = True) -> bytes:
        flags = W.QR | (q.flags & (W.RD | W.CD)) | e.rcode
        if aa:
            flags |= W.AA
        an, ns, ar, body = e.an, e.ns, e.ar, e.body
        if e.soa:
            soa = self.zone.soa_rr(q.qname)
            if e.soa == 1:
                ns += 1
                body = body + soa
            else:
                an += 1
                body = soa + body
        if q.edns:
            ar += 1
            body = body + W.opt_rr(ADVERTISED)
        resp = W.HEADER.pack(q.id, flags, 1, an, ns, ar) + q.question + body
        if len(resp) > limit:
            return self.truncated(q, flags)
        return resp

    def truncated(self, q: W.Query, flags: int) -> bytes:
        tail = W.opt_rr(ADVERTISED) if q.edns else b""
        return W.HEADER.pack(q.id, flags | W.TC, 1, 0, 0, 1 if q.edns else 0) + q.question + tail

    def error(self, q: W.Query, rcode: int, aa: bool = False) -> bytes:
        ext = rcode >> 4
        flags = W.QR | (q.flags & (W.RD | W.CD)) | (rcode & 0xF) | (W.AA if aa else 0)
        tail = W.opt_rr(ADVERTISED, ext) if q.edns else b""
        return W.HEADER.pack(q.id, flags, 1, 0, 0, 1 if q.edns else 0) + q.question + tail

    # ---------------------------------------------------------------- answering
    def answer(self, data: bytes, tcp: bool, t0: float = 0.0):
        """Answer one message. Returns bytes, None, or a coroutine producing bytes/None."""
        if len(data) < 12 or data[2] & 0x80:
            return None                      # not even a header, or a response: silence
        opcode = (data[2] >> 3) & 0xF
        if opcode != 0:
            return self._count(W.header_only(data, W.NOTIMP), "other", tcp, 0, t0)
        try:
            q = W.parse_query(data)
        except (W.WireError, struct.error, IndexError):
            return self._count(W.header_only(data, W.FORMERR), "other", tcp, 0, t0)
        limit = 65535 if tcp else (min(q.bufsize, MAX_UDP) if q.edns else 512)
        if q.edns and q.ednsver:
            return self._count(self.error(q, W.BADVERS), self.zone_label, tcp, q.qtype, t0)
        if q.qclass != W.CLASS_IN and q.qclass != W.CLASS_ANY:
            return self._count(self.error(q, W.NOTIMP), "other", tcp, q.qtype, t0)
        zone = self.zone
        e = zone.answers.get((q.qname, q.qtype))
        if e is None:
            e = zone.resolve(q.qname, q.qtype)
            if e is FORWARD:
                return self._forward(q, limit, tcp, t0)
            if type(e) is _Chase:
                if e.forward is not None:
                    return self._chase(q, e, limit, tcp, t0)
                e = encode(q.qname, e.rrs)
        return self._count(self.build(q, e, limit), self.zone_label, tcp, q.qtype, t0)

    def _count(self, resp: bytes | None, zone: str, tcp: bool, qtype: int, t0: float):
        if resp is not None:
            self.metrics.observe(zone, "tcp" if tcp else "udp", self.family, qtype,
                                 resp[3] & 0xF, _perf() - t0 if t0 else 0.0)
        return resp

    async def _forward(self, q: W.Query, limit: int, tcp: bool, t0: float) -> bytes:
        a = None
        if self.forwarder is not None:
            self.metrics.forward_requests += 1
            a = await self.forwarder.query(q.qname, q.qtype, q.qclass)
        if a is None:
            return self._count(self.error(q, W.SERVFAIL), ".", tcp, q.qtype, t0)
        flags = (a.flags & ~(W.RD | W.CD | 0x7800)) | (q.flags & (W.RD | W.CD)) | W.QR
        ar = a.ar
        body = a.serve(time.monotonic())
        if q.edns:
            ar += 1
            body = body + W.opt_rr(ADVERTISED)
        resp = W.HEADER.pack(q.id, flags, 1, a.an, a.ns, ar) + q.question + body
        if len(resp) > limit:
            resp = self.truncated(q, flags)
        return self._count(resp, ".", tcp, q.qtype, t0)

    async def _chase(self, q: W.Query, c: _Chase, limit: int, tcp: bool, t0: float) -> bytes:
        rrs = list(c.rrs)
        truncated = False
        if self.forwarder is not None:
            got = await self.forwarder.answer_rrs(c.forward, c.qtype)
            if got is not None:
                rrs.extend(got[0])
                truncated = got[1]
        resp = self.build(q, encode(q.qname, rrs), limit)
        if truncated:
            resp = resp[:2] + bytes((resp[2] | 0x02,)) + resp[3:]
        return self._count(resp, self.zone_label, tcp, q.qtype, t0)


class UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.transport = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        try:
            r = self.handler.answer(data, False, _perf())
        except Exception:                      # never let one packet stop the server
            log.exception("error answering a UDP query")
            return
        if r is None:
            return
        if type(r) is bytes:
            self.transport.sendto(r, addr)
        else:
            asyncio.ensure_future(self._later(r, addr))

    async def _later(self, coro, addr) -> None:
        try:
            r = await coro
        except Exception:
            log.exception("error answering a UDP query")
            return
        if r is not None and self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(r, addr)

    def error_received(self, exc) -> None:
        pass


class UdpThread:
    def __init__(self, handler: Handler, sock: socket.socket, loop: asyncio.AbstractEventLoop) -> None:
        self.handler = handler
        self.sock = sock
        self.loop = loop
        self._closing = False
        self._thread = threading.Thread(target=self._serve, name="dns-udp", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _serve(self) -> None:
        recv, send, answer = self.sock.recvfrom, self.sock.sendto, self.handler.answer
        while not self._closing:
            try:
                data, addr = recv(65535)
            except OSError:
                if self._closing:
                    return
                continue
            try:
                r = answer(data, False, _perf())
            except Exception:                  # never let one packet stop the server
                log.exception("error answering a UDP query")
                continue
            if r is None:
                continue
            if type(r) is bytes:
                try:
                    send(r, addr)
                except OSError:
                    pass
            else:
                fut = asyncio.run_coroutine_threadsafe(r, self.loop)
                fut.add_done_callback(lambda f, addr=addr: self._send_later(f, addr))

    def _send_later(self, fut, addr) -> None:
        try:
            r = fut.result()
        except Exception:
            log.exception("error answering a UDP query")
            return
        if r is not None and not self._closing:
            try:
                self.sock.sendto(r, addr)
            except OSError:
                pass

    def close(self) -> None:
        self._closing = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


class TcpProtocol(asyncio.Protocol):
    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.buf = bytearray()
        self.transport = None
        self.timer = None

    def connection_made(self, transport) -> None:
        self.transport = transport
        self._arm()

    def _arm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.timer = asyncio.get_running_loop().call_later(TCP_IDLE, self._idle)

    def _idle(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.transport = None

    def data_received(self, data: bytes) -> None:
        self.buf += data
        self._arm()
        while len(self.buf) >= 2:
            n = (self.buf[0] << 8) | self.buf[1]
            if n < 12:
                self.transport.close()         # cannot even hold a header
                self.buf.clear()
                return
            if len(self.buf) < 2 + n:
                return
            msg = bytes(self.buf[2:2 + n])
            del self.buf[:2 + n]
            try:
                r = self.handler.answer(msg, True, _perf())
            except Exception:
                log.exception("error answering a TCP query")
                continue
            if r is None:
                continue
            if type(r) is bytes:
                self._send(r)
            else:
                asyncio.ensure_future(self._later(r))

    async def _later(self, coro) -> None:
        try:
            r = await coro
        except Exception:
            log.exception("error answering a TCP query")
            return
        if r is not None:
            self._send(r)

    def _send(self, r: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(W.U16.pack(len(r)) + r)


class DnsServer:
    """A running server: `await DnsServer(handler).start(host, port)`; `port` is the bound
    port (useful with port 0); `await close()`."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.udp = None
        self.tcp = None
        self.host = ""
        self.port = 0
        self.metrics_runner = None

    async def start(self, host: str, port: int, reuse_port: bool = True) -> "DnsServer":
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        for attempt in range(20):
            udp_sock = socket.socket(family, socket.SOCK_DGRAM)
            if reuse_port:
                udp_sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            udp_sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            udp_sock.bind((host, port))
            bound = udp_sock.getsockname()[1]
            tcp_sock = socket.socket(family, socket.SOCK_STREAM)
            tcp_sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                tcp_sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            try:
                tcp_sock.bind((host, bound))
            except OSError:
                udp_sock.close()
                tcp_sock.close()
                if port:
                    raise
                continue
            break
        else:
            raise OSError("no free port for UDP and TCP together")
        tcp_sock.listen(1024)
        tcp_sock.setblocking(False)
        # UDP is served by a thread in a blocking recvfrom/sendto loop: it answers about twice
        # as many queries per second as an event-loop datagram protocol (no callback and
        # transport machinery per packet). Queries that must be forwarded go to the event loop.
        self.udp = UdpThread(self.handler, udp_sock, loop)
        self.udp.start()
        self.tcp = await loop.create_server(lambda: TcpProtocol(self.handler), sock=tcp_sock)
        self.host, self.port = host, bound
        self.handler.family = "2" if family == socket.AF_INET6 else "1"
        self.handler.metrics.server = f"dns://{host}:{bound}"
        return self

    async def close(self) -> None:
        if self.udp is not None:
            self.udp.close()
        if self.tcp is not None:
            self.tcp.close()
            await self.tcp.wait_closed()
        if self.metrics_runner is not None:
            await self.metrics_runner.cleanup()


async def serve_static(zone: Zone, host: str = "127.0.0.1", port: int = 0,
                       resolv_conf: str | None = None, metrics_port: int | None = None,
                       forward_timeout: float = 1.5) -> DnsServer:
    """Serve a zone the caller feeds (tests, benchmarks). Marks it synced. Without
    `resolv_conf` nothing is forwarded (out-of-zone names get SERVFAIL)."""
    zone.synced = True
    fwd = Forwarder(resolv_conf, timeout=forward_timeout) if resolv_conf else None
    server = DnsServer(Handler(zone, fwd))
    await server.start(host, port)
    if fwd is not None:
        fwd.exclude.add((host, server.port))
    if metrics_port is not None:
        from .metrics import start_metrics_server
        server.metrics_runner = await start_metrics_server(server.handler.metrics, host,
                                                           metrics_port)
    return server
