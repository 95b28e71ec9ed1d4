"""SPDY/3.1 framing and header-block codec (pure: no I/O, no asyncio).

Only what kubectl's SPDY streams (exec/attach/port-forward) need: the frame types of the
SPDY/3 draft, the zlib-compressed name/value header blocks with the SPDY/3 preset
dictionary, and an incremental parser. The session logic (replies, streams, FINs) lives in
`tinykube.apiserver.streams`.

Frame header (8 bytes):
  control: 1 bit set | 15-bit version (3) | 16-bit type | 8-bit flags | 24-bit length
  data:    1 bit 0   | 31-bit stream id                | 8-bit flags | 24-bit length
"""
from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field

VERSION = 3

# control frame types
SYN_STREAM = 1
SYN_REPLY = 2
RST_STREAM = 3
SETTINGS = 4
PING = 6
GOAWAY = 7
HEADERS = 8
WINDOW_UPDATE = 9

FLAG_FIN = 0x01
FLAG_UNIDIRECTIONAL = 0x02

# RST_STREAM status codes
RST_PROTOCOL_ERROR = 1
RST_INVALID_STREAM = 2
RST_REFUSED_STREAM = 3
RST_CANCEL = 5
RST_INTERNAL_ERROR = 6

MAX_DATA_CHUNK = 32 * 1024  # what we put in one DATA frame (the format allows 16 MiB)
MAX_FRAME_LENGTH = 0xFFFFFF


def _build_dictionary() -> bytes:
    """The SPDY/3 header-compression preset dictionary (draft-mbelshe-httpbis-spdy-00 §2.6.10.1).

    It is a fixed protocol constant: 65 length-prefixed header words, then one run of
    status codes, status lines, dates and common values. 1423 bytes, adler32 0xe3c6a7c2.
    """
    words = [
        "options", "head", "post", "put", "delete", "trace", "accept", "accept-charset",
        "accept-encoding", "accept-language", "accept-ranges", "age", "allow", "authorization",
        "cache-control", "connection", "content-base", "content-encoding", "content-language",
        "content-length", "content-location", "content-md5", "content-range", "content-type",
        "date", "etag", "expect", "expires", "from", "host", "if-match", "if-modified-since",
        "if-none-match", "if-range", "if-unmodified-since", "last-modified", "location",
        "max-forwards", "pragma", "proxy-authenticate", "proxy-authorization", "range", "referer",
        "retry-after", "server", "te", "trailer", "transfer-encoding", "upgrade", "user-agent",
        "vary", "via", "warning", "www-authenticate", "method", "get", "status", "200 OK",
        "version", "HTTP/1.1", "url", "public", "set-cookie", "keep-alive", "origin",
    ]
    tail = (
        "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505"
        "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request"
        "401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented"
        "503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 "
        "Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,image/jpg,image/gif,"
        "application/xml,application/xhtml+xml,text/plain,text/javascript,publicprivatemax-age="
        "gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0."
    )
    out = b"".join(struct.pack(">I", len(w)) + w.encode() for w in words) + tail.encode()
    assert len(out) == 1423 and zlib.adler32(out) == 0xE3C6A7C2
    return out


DICTIONARY = _build_dictionary()


class ProtocolError(Exception):
    """The peer sent bytes that are not valid SPDY/3."""


# --------------------------------------------------------------------------- header blocks

Headers = dict[str, list[str]]


def encode_header_block(headers: Headers | dict[str, str]) -> bytes:
    """Uncompressed name/value block: u32 count, then u32-length name, u32-length value
    (several values joined with NUL). Names are lower-cased as SPDY/3 requires."""
    parts = [struct.pack(">I", len(headers))]
    for name, value in headers.items():
        v = "\0".join(value) if isinstance(value, (list, tuple)) else str(value)
        nb, vb = name.lower().encode(), v.encode()
        parts += [struct.pack(">I", len(nb)), nb, struct.pack(">I", len(vb)), vb]
    return b"".join(parts)


def _read_string(raw: bytes, pos: int) -> tuple[str, int]:
    (n,) = struct.unpack_from(">I", raw, pos)
    if pos + 4 + n > len(raw):
        raise ProtocolError("truncated header block")
    return raw[pos + 4:pos + 4 + n].decode(), pos + 4 + n


def decode_header_block(raw: bytes) -> Headers:
    try:
        (count,), pos = struct.unpack_from(">I", raw, 0), 4
        out: Headers = {}
        for _ in range(count):
            name, pos = _read_string(raw, pos)
            value, pos = _read_string(raw, pos)
            out.setdefault(name.lower(), []).extend(value.split("\0"))
        return out
    except (struct.error, UnicodeDecodeError) as e:
        raise ProtocolError(f"bad header block: {e}") from None


class HeaderCompressor:
    """One zlib stream per direction per connection, flushed with Z_SYNC_FLUSH per block."""

    def __init__(self) -> None:
        self._z = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, 15, 8,
                                   zlib.Z_DEFAULT_STRATEGY, DICTIONARY)

    def compress(self, headers: Headers | dict[str, str]) -> bytes:
        raw = encode_header_block(headers)
        return self._z.compress(raw) + self._z.flush(zlib.Z_SYNC_FLUSH)


class HeaderDecompressor:
    def __init__(self) -> None:
        self._z = zlib.decompressobj(zdict=DICTIONARY)

    def decompress(self, block: bytes) -> Headers:
        try:
            raw = self._z.decompress(block)
        except zlib.error as e:
            raise ProtocolError(f"header block does not decompress: {e}") from None
        return decode_header_block(raw)


# --------------------------------------------------------------------------- frames

@dataclass
class DataFrame:
    stream_id: int
    data: bytes = b""
    flags: int = 0

    @property
    def fin(self) -> bool:
        return bool(self.flags & FLAG_FIN)


@dataclass
class SynStream:
    stream_id: int
    headers: Headers = field(default_factory=dict)
    associated_id: int = 0
    priority: int = 0
    flags: int = 0

    @property
    def fin(self) -> bool:
        return bool(self.flags & FLAG_FIN)


@dataclass
class SynReply:
    stream_id: int
    headers: Headers = field(default_factory=dict)
    flags: int = 0


@dataclass
class HeadersFrame:
    stream_id: int
    headers: Headers = field(default_factory=dict)
    flags: int = 0


@dataclass
class RstStream:
    stream_id: int
    status: int


@dataclass
class Settings:
    entries: list[tuple[int, int, int]] = field(default_factory=list)  # (flags, id, value)
    flags: int = 0


@dataclass
class Ping:
    ping_id: int


@dataclass
class GoAway:
    last_good_stream_id: int
    status: int = 0


@dataclass
class WindowUpdate:
    stream_id: int
    delta: int


@dataclass
class UnknownControl:
    type: int
    flags: int
    payload: bytes


Frame = (DataFrame | SynStream | SynReply | HeadersFrame | RstStream | Settings | Ping | GoAway
         | WindowUpdate | UnknownControl)


def _control(ftype: int, flags: int, payload: bytes) -> bytes:
    if len(payload) > MAX_FRAME_LENGTH:
        raise ValueError("frame too long")
    return struct.pack(">HHI", 0x8000 | VERSION, ftype, (flags << 24) | len(payload)) + payload


def encode_data(stream_id: int, data: bytes = b"", fin: bool = False) -> bytes:
    if len(data) > MAX_FRAME_LENGTH:
        raise ValueError("frame too long")
    return struct.pack(">II", stream_id & 0x7FFFFFFF,
                       ((FLAG_FIN if fin else 0) << 24) | len(data)) + bytes(data)


def encode_syn_stream(comp: HeaderCompressor, stream_id: int, headers: Headers | dict[str, str],
                      associated_id: int = 0, priority: int = 0, flags: int = 0) -> bytes:
    payload = struct.pack(">IIBB", stream_id & 0x7FFFFFFF, associated_id & 0x7FFFFFFF,
                          (priority & 0x7) << 5, 0) + comp.compress(headers)
    return _control(SYN_STREAM, flags, payload)


def encode_syn_reply(comp: HeaderCompressor, stream_id: int,
                     headers: Headers | dict[str, str] | None = None, flags: int = 0) -> bytes:
    return _control(SYN_REPLY, flags,
                    struct.pack(">I", stream_id & 0x7FFFFFFF) + comp.compress(headers or {}))


def encode_headers(comp: HeaderCompressor, stream_id: int, headers: Headers | dict[str, str],
                   flags: int = 0) -> bytes:
    return _control(HEADERS, flags, struct.pack(">I", stream_id & 0x7FFFFFFF) + comp.compress(headers))


def encode_rst_stream(stream_id: int, status: int) -> bytes:
    return _control(RST_STREAM, 0, struct.pack(">II", stream_id & 0x7FFFFFFF, status))


def encode_settings(entries: list[tuple[int, int, int]] = (), flags: int = 0) -> bytes:  # type: ignore[assignment]
    body = struct.pack(">I", len(entries)) + b"".join(
        struct.pack(">II", (f << 24) | (i & 0xFFFFFF), v) for f, i, v in entries)
    return _control(SETTINGS, flags, body)


def encode_ping(ping_id: int) -> bytes:
    return _control(PING, 0, struct.pack(">I", ping_id))


def encode_goaway(last_good_stream_id: int, status: int = 0) -> bytes:
    return _control(GOAWAY, 0, struct.pack(">II", last_good_stream_id & 0x7FFFFFFF, status))


def encode_window_update(stream_id: int, delta: int) -> bytes:
    return _control(WINDOW_UPDATE, 0, struct.pack(">II", stream_id & 0x7FFFFFFF, delta & 0x7FFFFFFF))


class FrameParser:
    """Incremental parser: feed() any chunk of the byte stream, get back whole frames.

    Owns the connection's inbound header decompressor, so feed frames in stream order.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._dec = HeaderDecompressor()

    def feed(self, data: bytes) -> list[Frame]:
        self._buf += data
        frames: list[Frame] = []
        while len(self._buf) >= 8:
            w1, w2 = struct.unpack_from(">II", self._buf, 0)
            length = w2 & 0xFFFFFF
            if len(self._buf) < 8 + length:
                break
            flags = w2 >> 24
            payload = bytes(self._buf[8:8 + length])
            del self._buf[:8 + length]
            if w1 & 0x80000000:
                version = (w1 >> 16) & 0x7FFF
                if version != VERSION:
                    raise ProtocolError(f"unsupported SPDY version {version}")
                frames.append(self._control(w1 & 0xFFFF, flags, payload))
            else:
                frames.append(DataFrame(w1 & 0x7FFFFFFF, payload, flags))
        return frames

    def _control(self, ftype: int, flags: int, p: bytes) -> Frame:
        try:
            if ftype == SYN_STREAM:
                sid, assoc, pri, _slot = struct.unpack_from(">IIBB", p, 0)
                return SynStream(sid & 0x7FFFFFFF, self._dec.decompress(p[10:]), assoc & 0x7FFFFFFF,
                                 pri >> 5, flags)
            if ftype in (SYN_REPLY, HEADERS):
                (sid,) = struct.unpack_from(">I", p, 0)
                cls = SynReply if ftype == SYN_REPLY else HeadersFrame
                return cls(sid & 0x7FFFFFFF, self._dec.decompress(p[4:]), flags)
            if ftype == RST_STREAM:
                sid, status = struct.unpack_from(">II", p, 0)
                return RstStream(sid & 0x7FFFFFFF, status)
            if ftype == SETTINGS:
                (n,) = struct.unpack_from(">I", p, 0)
                entries = []
                for i in range(n):
                    fid, value = struct.unpack_from(">II", p, 4 + 8 * i)
                    entries.append((fid >> 24, fid & 0xFFFFFF, value))
                return Settings(entries, flags)
            if ftype == PING:
                return Ping(struct.unpack_from(">I", p, 0)[0])
            if ftype == GOAWAY:
                last, status = struct.unpack_from(">I", p, 0)[0], 0
                if len(p) >= 8:
                    status = struct.unpack_from(">I", p, 4)[0]
                return GoAway(last & 0x7FFFFFFF, status)
            if ftype == WINDOW_UPDATE:
                sid, delta = struct.unpack_from(">II", p, 0)
                return WindowUpdate(sid & 0x7FFFFFFF, delta & 0x7FFFFFFF)
        except struct.error as e:
            raise ProtocolError(f"short control frame type {ftype}: {e}") from None
        return UnknownControl(ftype, flags, p)
