"""Forwarding of names outside the cluster zone to the host's resolvers, with a cache.

Upstreams come from a resolv.conf file (`nameserver` lines; as an extension for tests,
`nameserver 127.0.0.5:5353` or `nameserver [::1]:5353` name a port). Every lookup has one
deadline (default 1.5 s) shared by all upstreams; when it passes the caller answers SERVFAIL.
Answers are cached for the smallest TTL in them, at most 30 s (CoreDNS `cache 30`), and served
from the cache with their TTLs counted down. Concurrent identical questions share one lookup."""
from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import random
import struct
import time

from . import wire as W

log = logging.getLogger("tinykube.dns.forward")


def parse_resolv_conf(path: str) -> list[tuple[str, int]]:
    out: list[tuple[str, int]] = []
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError as e:
        log.warning("cannot read %s: %s", path, e)
        return out
    for line in lines:
        parts = line.split("#", 1)[0].split(";", 1)[0].split()
        if len(parts) < 2 or parts[0] != "nameserver":
            continue
        text, port = parts[1], 53
        if text.startswith("["):
            host, _, rest = text[1:].partition("]")
            if rest.startswith(":"):
                port = int(rest[1:])
            text = host
        elif text.count(":") == 1:
            text, p = text.split(":")
            port = int(p)
        text = text.split("%", 1)[0]
        try:
            ip = str(ipaddress.ip_address(text))
        except ValueError:
            continue
        if 0 < port < 65536 and (ip, port) not in out:
            out.append((ip, port))
    return out


class Answer:
    """An upstream answer: header flags and counts, the sections after the question (OPT
    removed) and where their TTLs are, for counting down."""
    __slots__ = ("flags", "rcode", "an", "ns", "ar", "body", "ttl_offsets", "msg", "stored",
                 "expires")

    def serve(self, now: float) -> bytes:
        elapsed = int(now - self.stored)
        if elapsed <= 0 or not self.ttl_offsets:
            return self.body
        body = bytearray(self.body)
        for off in self.ttl_offsets:
            ttl = W.U32.unpack_from(body, off)[0]
            W.U32.pack_into(body, off, max(0, ttl - elapsed))
        return bytes(body)


def parse_answer(msg: bytes, qid: int, question: bytes) -> Answer | None:
    """Validate an upstream response to our question; None if it is not one."""
    if len(msg) < 12:
        return None
    rid, flags, qd, an, ns, ar = W.HEADER.unpack_from(msg, 0)
    if rid != qid or not flags & W.QR or qd != 1:
        return None
    qend = 12 + len(question)
    if msg[12:qend].lower() != question:
        return None
    a = Answer()
    a.flags = flags
    a.rcode = flags & 0xF
    offsets = []
    off = qend
    ttls = []
    neg_ttl = None
    cut = None
    try:
        for i in range(an + ns + ar):
            start = off
            rtype, ttl_off, rdata, off = W.skip_rr(msg, off)
            if rtype == W.OPT:
                if i == an + ns + ar - 1:
                    cut = start
                continue
            offsets.append(ttl_off - qend)
            ttl = W.U32.unpack_from(msg, ttl_off)[0]
            if i < an:
                ttls.append(ttl)
            elif i < an + ns and rtype == W.SOA:
                _, p = W.read_name(msg, rdata)
                _, p = W.read_name(msg, p)
                if p + 20 <= len(msg):
                    minimum = W.U32.unpack_from(msg, p + 16)[0]
                    neg_ttl = min(ttl, minimum)
    except (W.WireError, struct.error):
        return None
    end = cut if cut is not None else off
    a.an, a.ns, a.ar = an, ns, ar - (1 if cut is not None else 0)
    a.body = msg[qend:end]
    a.ttl_offsets = tuple(offsets)
    a.msg = msg
    a.stored = time.monotonic()
    if a.rcode == W.NOERROR and ttls:
        cache_ttl = min(ttls)
    elif a.rcode in (W.NOERROR, W.NXDOMAIN) and neg_ttl is not None:
        cache_ttl = neg_ttl
    else:
        cache_ttl = 0
    cache_ttl = min(cache_ttl, 30)
    a.expires = a.stored + cache_ttl
    if cache_ttl > 0 and offsets:
        # like CoreDNS's cache, clients never see a TTL longer than the cache keeps it
        body = bytearray(a.body)
        for off in offsets:
            if off + 4 <= len(body) and W.U32.unpack_from(body, off)[0] > cache_ttl:
                W.U32.pack_into(body, off, cache_ttl)
        a.body = bytes(body)
    return a


class _UdpClient(asyncio.DatagramProtocol):
    def __init__(self, qid: int, question: bytes, fut: asyncio.Future) -> None:
        self.qid, self.question, self.fut = qid, question, fut

    def datagram_received(self, data: bytes, addr) -> None:
        if self.fut.done():
            return
        a = parse_answer(data, self.qid, self.question)
        if a is not None:
            self.fut.set_result(a)

    def error_received(self, exc: Exception) -> None:
        if not self.fut.done():
            self.fut.set_exception(exc)

    def connection_lost(self, exc) -> None:
        if not self.fut.done():
            self.fut.set_exception(exc or ConnectionError("closed"))


class Forwarder:
    def __init__(self, resolv_conf: str = "/etc/resolv.conf", timeout: float = 1.5,
                 cache_size: int = 10000, exclude: tuple[tuple[str, int], ...] = ()) -> None:
        self.resolv_conf = resolv_conf
        self.timeout = timeout
        self.cache_size = cache_size
        self.exclude = set(exclude)
        self.cache: dict[tuple[bytes, int, int], Answer] = {}
        self.inflight: dict[tuple[bytes, int, int], asyncio.Future] = {}
        self._mtime = None
        self._servers: list[tuple[str, int]] = []
        self.upstream_queries = 0

    @property
    def servers(self) -> list[tuple[str, int]]:
        try:
            mtime = os.stat(self.resolv_conf).st_mtime_ns
        except OSError:
            mtime = None
        if mtime != self._mtime:
            self._mtime = mtime
            self._servers = parse_resolv_conf(self.resolv_conf)
        return [s for s in self._servers if s not in self.exclude]

    def cached(self, qname: bytes, qtype: int, qclass: int) -> Answer | None:
        a = self.cache.get((qname, qtype, qclass))
        if a is not None and a.expires > time.monotonic():
            return a
        return None

    async def query(self, qname: bytes, qtype: int, qclass: int = W.CLASS_IN) -> Answer | None:
        """The upstream answer for a question (lowercased wire name), or None on failure."""
        key = (qname, qtype, qclass)
        a = self.cache.get(key)
        now = time.monotonic()
        if a is not None:
            if a.expires > now:
                return a
            del self.cache[key]
        fut = self.inflight.get(key)
        if fut is not None:
            return await asyncio.shield(fut)
        fut = asyncio.get_running_loop().create_future()
        self.inflight[key] = fut
        try:
            a = await self._lookup(qname, qtype, qclass)
            if a is not None and a.expires > a.stored:
                if len(self.cache) >= self.cache_size:
                    self.cache.pop(next(iter(self.cache)))
                self.cache[key] = a
            fut.set_result(a)
            return a
        except BaseException as e:
            fut.set_result(None)
            if isinstance(e, asyncio.CancelledError):
                raise
            log.warning("forwarding failed: %s", e)
            return None
        finally:
            del self.inflight[key]

    async def _lookup(self, qname: bytes, qtype: int, qclass: int) -> Answer | None:
        servers = self.servers
        deadline = time.monotonic() + self.timeout
        question = qname + struct.pack(">HH", qtype, qclass)
        for i, server in enumerate(servers):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            per = remaining / (len(servers) - i)
            try:
                return await asyncio.wait_for(self._ask(server, question), per)
            except (OSError, asyncio.TimeoutError, EOFError, ValueError) as e:
                log.debug("upstream %s failed: %r", server, e)
        return None

    async def _ask(self, server: tuple[str, int], question: bytes) -> Answer:
        qid = random.getrandbits(16)
        msg = W.HEADER.pack(qid, W.RD, 1, 0, 0, 1) + question + W.opt_rr(1232)
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self.upstream_queries += 1
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _UdpClient(qid, question, fut), remote_addr=server)
        try:
            transport.sendto(msg)
            a = await fut
        finally:
            transport.close()
        if a.flags & W.TC:
            a = await self._ask_tcp(server, question)
        return a

    async def _ask_tcp(self, server: tuple[str, int], question: bytes) -> Answer:
        qid = random.getrandbits(16)
        msg = W.HEADER.pack(qid, W.RD, 1, 0, 0, 1) + question + W.opt_rr(65535)
        reader, writer = await asyncio.open_connection(*server)
        try:
            writer.write(W.U16.pack(len(msg)) + msg)
            await writer.drain()
            while True:
                n = W.U16.unpack(await reader.readexactly(2))[0]
                data = await reader.readexactly(n)
                a = parse_answer(data, qid, question)
                if a is not None:
                    return a
        finally:
            writer.close()

    async def answer_rrs(self, qname: bytes, qtype: int) -> tuple[list[W.RR], bool] | None:
        """The answer-section records of an upstream lookup, decoded (for appending to an
        ExternalName CNAME), and whether upstream truncated; None on failure."""
        import dns.message
        a = await self.query(qname, qtype)
        if a is None:
            return None
        try:
            m = dns.message.from_wire(a.msg, ignore_trailing=True)
        except Exception:
            return None
        elapsed = int(time.monotonic() - a.stored)
        out = []
        for rrset in m.answer:
            owner = rrset.name.canonicalize().to_wire()
            for rd in rrset:
                out.append(W.RR(owner, int(rrset.rdtype), max(0, rrset.ttl - elapsed),
                                (rd.to_wire(),)))
        return out, bool(a.flags & W.TC)
