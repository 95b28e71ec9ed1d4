"""Network namespaces and the commands that act on them (``ip``, via asyncio)."""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path

NETNS_DIR = Path("/run/netns")


class CommandError(Exception):
    def __init__(self, argv: list[str], rc: int, out: str) -> None:
        super().__init__(f"{' '.join(argv)} failed ({rc}): {out.strip()}")
        self.rc = rc
        self.output = out


async def run(*argv: str, input: str | None = None, check: bool = True) -> str:
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE if input is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate(input.encode() if input is not None else None)
    text = out.decode(errors="replace")
    if check and proc.returncode != 0:
        raise CommandError(list(argv), proc.returncode or 0, text)
    return text


def short_hash(*parts: str, n: int = 11) -> str:
    return hashlib.sha1("/".join(parts).encode()).hexdigest()[:n]


def pod_netns_name(cluster: str, uid: str) -> str:
    return f"tk-{cluster}-{uid}"


def exists(name: str) -> bool:
    return (NETNS_DIR / name).exists()


def list_netns(prefix: str = "") -> list[str]:
    try:
        return sorted(n for n in os.listdir(NETNS_DIR) if n.startswith(prefix))
    except FileNotFoundError:
        return []


async def create(name: str) -> None:
    if not exists(name):
        await run("ip", "netns", "add", name)


async def delete(name: str) -> None:
    if exists(name):
        await run("ip", "netns", "delete", name, check=False)


async def batch(name: str | None, commands: list[str]) -> str:
    """Run ``ip -batch`` (inside netns ``name`` when given)."""
    argv = ["ip"] + (["-n", name] if name else []) + ["-batch", "-"]
    return await run(*argv, input="\n".join(commands) + "\n")


def link_exists(ifname: str) -> bool:
    return Path("/sys/class/net", ifname).exists()
