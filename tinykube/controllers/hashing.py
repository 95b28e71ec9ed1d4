"""Hashes Kubernetes puts in names and labels: pod-template-hash and controller-revision-hash.

Both are FNV-32a hashes rendered with rand.SafeEncodeString (each character of the number's
text mapped into the alphabet "bcdfghjklmnpqrstvwxz2456789"). Upstream hashes a Go struct dump
(spew) of the object; tinykube hashes its canonical JSON instead, so the hash differs from a
real cluster's for the same template but has the same shape, stability and collision handling.
"""
from __future__ import annotations

import json
import struct

ALPHANUMS = "bcdfghjklmnpqrstvwxz2456789"

FNV32_OFFSET = 0x811C9DC5
FNV32_PRIME = 0x01000193


def fnv32a(data: bytes, h: int = FNV32_OFFSET) -> int:
    for b in data:
        h ^= b
        h = (h * FNV32_PRIME) & 0xFFFFFFFF
    return h


def safe_encode_string(s: str) -> str:
    return "".join(ALPHANUMS[ord(c) % len(ALPHANUMS)] for c in s)


def canonical(obj) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def compute_hash(template: dict, collision_count: int | None = None) -> str:
    """controller.ComputeHash: the pod-template-hash of a Deployment's pod template."""
    h = fnv32a(canonical(template))
    if collision_count is not None:
        # binary.LittleEndian.PutUint32 into an 8-byte buffer, all 8 bytes written
        h = fnv32a(struct.pack("<I", collision_count & 0xFFFFFFFF) + b"\0\0\0\0", h)
    return safe_encode_string(str(h))


def revision_hash(data: dict, collision_count: int | None = None) -> str:
    """history.HashControllerRevision: like compute_hash, rendered from the hex form of the sum."""
    h = fnv32a(canonical(data))
    if collision_count is not None:
        h = fnv32a(struct.pack("<I", collision_count & 0xFFFFFFFF) + b"\0\0\0\0", h)
    return safe_encode_string(format(h, "x"))
