"""Routes tinykube owns. The service CIDR is a `local` route on lo: a host-started connection
to a ClusterIP then reaches the nat output hook (a blackhole or unreachable route fails before
it), DNAT sends it on to a pod, and an address without a rule is refused on the spot instead of
following the default route."""
from __future__ import annotations

import asyncio
import subprocess


def _ip(args: list[str], netns: str | None) -> subprocess.CompletedProcess:
    argv = (["ip", "-n", netns] if netns else ["ip"]) + args
    return subprocess.run(argv, capture_output=True, text=True)


def add_local_route(cidr: str, netns: str | None = None) -> None:
    """`ip route replace local <cidr> dev lo table local` (idempotent)."""
    r = _ip(["route", "replace", "local", cidr, "dev", "lo", "table", "local"], netns)
    if r.returncode != 0:
        raise RuntimeError(f"adding local route {cidr}: {r.stderr.strip()}")


def remove_local_route(cidr: str, netns: str | None = None) -> None:
    """Remove the local route if present (idempotent)."""
    r = _ip(["route", "del", "local", cidr, "dev", "lo", "table", "local"], netns)
    if r.returncode != 0 and "No such process" not in r.stderr \
            and "not found" not in r.stderr.lower():
        raise RuntimeError(f"removing local route {cidr}: {r.stderr.strip()}")


def has_local_route(cidr: str, netns: str | None = None) -> bool:
    r = _ip(["route", "show", "table", "local", "type", "local", cidr], netns)
    return r.returncode == 0 and r.stdout.strip() != ""


async def async_add_local_route(cidr: str, netns: str | None = None) -> None:
    await asyncio.to_thread(add_local_route, cidr, netns)


async def async_remove_local_route(cidr: str, netns: str | None = None) -> None:
    await asyncio.to_thread(remove_local_route, cidr, netns)
