"""DNS wire format: the few pieces the server needs, written for speed and for hostile input.

Names inside tinykube are kept as *wire bytes* (`b"\\x03svc\\x07cluster\\x05local\\x00"`),
lowercased, so a query's question name, sliced straight out of the packet and passed through
`bytes.lower()`, is a dictionary key. Answers are encoded once, when the zone changes, with
every owner name equal to the question written as a compression pointer to offset 12: the
question is copied from the query, so the answer echoes the client's spelling for free."""
from __future__ import annotations

import ipaddress
import struct

# RR types
A, NS, CNAME, SOA, PTR, HINFO, MX, TXT, AAAA, SRV, OPT, IXFR, AXFR, ANY = (
    1, 2, 5, 6, 12, 13, 15, 16, 28, 33, 41, 251, 252, 255)
TYPE_NAMES = {A: "A", NS: "NS", CNAME: "CNAME", SOA: "SOA", PTR: "PTR", HINFO: "HINFO", MX: "MX",
              TXT: "TXT", AAAA: "AAAA", SRV: "SRV", OPT: "OPT", IXFR: "IXFR", AXFR: "AXFR",
              ANY: "ANY"}
CLASS_IN, CLASS_ANY = 1, 255

# RCODEs
NOERROR, FORMERR, SERVFAIL, NXDOMAIN, NOTIMP, REFUSED = 0, 1, 2, 3, 4, 5
BADVERS = 16
RCODE_NAMES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP",
               5: "REFUSED", 16: "BADVERS"}

# header flag bits
QR, AA, TC, RD, RA, CD = 0x8000, 0x0400, 0x0200, 0x0100, 0x0080, 0x0010

HEADER = struct.Struct(">HHHHHH")
U16 = struct.Struct(">H")
U32 = struct.Struct(">I")
RRFIX = struct.Struct(">HHIH")      # type, class, ttl, rdlength


class WireError(ValueError):
    """The packet is not a well-formed DNS message (answered FORMERR when possible)."""


# ---------------------------------------------------------------------------------- names

def to_wire(name: str) -> bytes:
    """`svc.ns.svc.cluster.local` (trailing dot optional) → lowercased wire bytes."""
    name = name.rstrip(".")
    out = bytearray()
    if name:
        for label in name.split("."):
            b = label.encode("ascii").lower()
            if not 0 < len(b) < 64:
                raise ValueError(f"bad label in {name!r}")
            out.append(len(b))
            out += b
    out.append(0)
    if len(out) > 255:
        raise ValueError(f"name too long: {name!r}")
    return bytes(out)


def labels(wire: bytes) -> list[bytes]:
    """The labels of an uncompressed wire name, left to right."""
    out = []
    i = 0
    while wire[i]:
        n = wire[i]
        out.append(wire[i + 1:i + 1 + n])
        i += 1 + n
    return out


def from_labels(parts: list[bytes]) -> bytes:
    return b"".join(bytes((len(p),)) + p for p in parts) + b"\x00"


def to_text(wire: bytes) -> str:
    parts = labels(wire)
    return ".".join(p.decode("ascii", "backslashreplace") for p in parts) + "."


def read_name(msg: bytes, off: int) -> tuple[bytes, int]:
    """Read a possibly compressed name at `off`: (uncompressed wire name, offset after it).

    Rejects reserved label types, pointer loops (every pointer must go strictly backwards),
    names over 255 bytes and reads past the end."""
    out = bytearray()
    end = -1
    limit = len(msg)
    lowest = off
    while True:
        if off >= limit:
            raise WireError("name runs past the end")
        n = msg[off]
        if n == 0:
            out.append(0)
            if end < 0:
                end = off + 1
            break
        kind = n & 0xC0
        if kind == 0xC0:
            if off + 1 >= limit:
                raise WireError("truncated pointer")
            ptr = ((n & 0x3F) << 8) | msg[off + 1]
            if end < 0:
                end = off + 2
            if ptr >= lowest:
                raise WireError("compression pointer does not point backwards")
            lowest = ptr
            off = ptr
            continue
        if kind:
            raise WireError("reserved label type")
        if off + 1 + n > limit:
            raise WireError("label runs past the end")
        out += msg[off:off + 1 + n]
        if len(out) > 254:
            raise WireError("name longer than 255 bytes")
        off += 1 + n
    return bytes(out), end


def skip_rr(msg: bytes, off: int) -> tuple[int, int, int, int]:
    """Skip one resource record: (type, offset of its TTL, offset of rdata, offset after it)."""
    _, off = read_name(msg, off)
    if off + 10 > len(msg):
        raise WireError("truncated resource record")
    rtype, _cls, _ttl, rdlen = RRFIX.unpack_from(msg, off)
    rdata = off + 10
    if rdata + rdlen > len(msg):
        raise WireError("truncated rdata")
    return rtype, off + 4, rdata, rdata + rdlen


# ---------------------------------------------------------------------------------- queries

class Query:
    """A parsed query. `question` is the raw question bytes (name + type + class) as sent."""
    __slots__ = ("id", "flags", "qname", "qtype", "qclass", "question", "edns", "bufsize",
                 "ednsver", "do")

    def __init__(self) -> None:
        self.edns = False
        self.bufsize = 512
        self.ednsver = 0
        self.do = False


def parse_query(msg: bytes) -> Query:
    """Parse a query. Raises WireError (FORMERR) for malformed messages whose header was
    readable; the caller drops messages shorter than a header."""
    q = Query()
    qid, flags, qd, an, ns, ar = HEADER.unpack_from(msg, 0)
    q.id, q.flags = qid, flags
    if qd != 1:
        raise WireError("exactly one question required")
    off = 12
    # Fast path for the uncompressed question every resolver sends.
    limit = len(msg)
    while True:
        if off >= limit:
            raise WireError("question runs past the end")
        n = msg[off]
        if n == 0:
            off += 1
            break
        if n & 0xC0:
            raise WireError("compressed or reserved label in the question")
        off += 1 + n
    if off - 12 > 255:
        raise WireError("question name longer than 255 bytes")
    if off + 4 > limit:
        raise WireError("truncated question")
    q.qname = msg[12:off].lower()
    q.qtype, q.qclass = struct.unpack_from(">HH", msg, off)
    q.question = msg[12:off + 4]
    off += 4
    if an or ns or ar:
        seen_opt = False
        for i in range(an + ns + ar):
            start = off
            rtype, ttl_off, rdata, off = skip_rr(msg, off)
            if rtype == OPT:
                if i < an + ns or seen_opt or msg[start] != 0:
                    raise WireError("misplaced OPT record")
                seen_opt = True
                q.edns = True
                q.bufsize = max(512, U16.unpack_from(msg, start + 3)[0])
                q.ednsver = msg[ttl_off + 1]
                q.do = bool(msg[ttl_off + 2] & 0x80)
    return q


def header_only(msg: bytes, rcode: int) -> bytes:
    """A reply carrying only the header (and the question when it can be read)."""
    qid, flags = struct.unpack_from(">HH", msg, 0)
    flags = QR | (flags & (0x7800 | RD)) | rcode
    qd = 0
    question = b""
    try:
        _, _, qdcount, _, _, _ = HEADER.unpack_from(msg, 0)
        if qdcount == 1:
            name, off = read_name(msg, 12)
            if off + 4 <= len(msg) and msg[12] & 0xC0 == 0:
                question = msg[12:off + 4]
                qd = 1
    except (WireError, struct.error):
        pass
    return HEADER.pack(qid, flags, qd, 0, 0, 0) + question


def opt_rr(bufsize: int = 1232, ext_rcode: int = 0, do: bool = False) -> bytes:
    return b"\x00" + RRFIX.pack(OPT, bufsize, (ext_rcode << 24) | (0x8000 if do else 0), 0)


# ---------------------------------------------------------------------------------- encoding

class RR:
    """One resource record. owner None means "the question name" (encoded as a pointer to 12).
    rdata is a tuple of parts: bytes, or ("c", wire) for a compressible name, or ("n", wire)
    for a name that must not be compressed (SRV targets)."""
    __slots__ = ("owner", "rtype", "ttl", "rdata")

    def __init__(self, owner: bytes | None, rtype: int, ttl: int, rdata: tuple) -> None:
        self.owner, self.rtype, self.ttl, self.rdata = owner, rtype, ttl, rdata

    def __repr__(self) -> str:
        return f"RR({self.owner!r}, {self.rtype}, {self.ttl}, {self.rdata!r})"


class Encoder:
    """Encodes records after a question of known name, with name compression."""

    def __init__(self, qname: bytes) -> None:
        self.base = 12 + len(qname) + 4
        self.buf = bytearray()
        self.names: dict[bytes, int] = {}
        off = 12
        w = qname
        while w != b"\x00":
            self.names.setdefault(w, off)
            n = w[0] + 1
            w = w[n:]
            off += n

    def _name(self, wire: bytes, compress: bool = True) -> None:
        buf = self.buf
        while wire != b"\x00":
            if compress:
                ptr = self.names.get(wire)
                if ptr is not None:
                    buf += U16.pack(0xC000 | ptr)
                    return
            pos = self.base + len(buf)
            if pos < 0x3FFF:
                self.names.setdefault(wire, pos)
            n = wire[0] + 1
            buf += wire[:n]
            wire = wire[n:]
        buf.append(0)

    def add(self, rr: RR) -> None:
        buf = self.buf
        if rr.owner is None:
            buf += b"\xc0\x0c"
        else:
            self._name(rr.owner)
        buf += RRFIX.pack(rr.rtype, CLASS_IN, rr.ttl, 0)
        start = len(buf)
        for part in rr.rdata:
            if type(part) is tuple:
                self._name(part[1], part[0] == "c")
            else:
                buf += part
        U16.pack_into(buf, start - 2, len(buf) - start)

    def bytes(self) -> bytes:
        return bytes(self.buf)


def rdata_a(ip: str) -> tuple:
    return (ipaddress.IPv4Address(ip).packed,)


def rdata_aaaa(ip: str) -> tuple:
    return (ipaddress.IPv6Address(ip).packed,)


def rdata_txt(*strings: str) -> tuple:
    out = bytearray()
    for s in strings:
        b = s.encode()
        out.append(len(b))
        out += b
    return (bytes(out),)


def rdata_srv(prio: int, weight: int, port: int, target: bytes) -> tuple:
    return (struct.pack(">HHH", prio, weight, port), ("n", target))
