"""Running nft: whole transactions through `nft -f -`, JSON listings, table removal.

Every function takes an optional network namespace name; with it the command runs under
`ip netns exec <netns>` (tests program a node namespace, never the host's)."""
from __future__ import annotations

import asyncio
import json
from typing import Any

from .render import Existing


class NftError(RuntimeError):
    def __init__(self, argv: list[str], rc: int, stderr: str):
        super().__init__(f"{' '.join(argv)} failed ({rc}): {stderr.strip()}")
        self.rc = rc
        self.stderr = stderr


def _argv(args: list[str], netns: str | None) -> list[str]:
    return (["ip", "netns", "exec", netns] if netns else []) + args


async def run(args: list[str], stdin: str | None = None, netns: str | None = None,
              check: bool = True) -> tuple[int, str, str]:
    argv = _argv(args, netns)
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate(stdin.encode() if stdin is not None else None)
    rc = proc.returncode or 0
    if check and rc != 0:
        raise NftError(argv, rc, err.decode(errors="replace"))
    return rc, out.decode(errors="replace"), err.decode(errors="replace")


async def apply(script: str, netns: str | None = None) -> None:
    """Apply one script as one transaction (all or nothing)."""
    if script.strip():
        await run(["nft", "-f", "-"], stdin=script, netns=netns)


async def list_json(what: list[str], netns: str | None = None) -> list[dict[str, Any]] | None:
    """`nft -j list <what>` as the list of objects; None when the table does not exist."""
    rc, out, err = await run(["nft", "-j", "list", *what], netns=netns, check=False)
    if rc != 0:
        if "No such file or directory" in err:
            return None
        raise NftError(["nft", "-j", "list", *what], rc, err)
    return json.loads(out).get("nftables", [])


async def table_exists(table: str, family: str = "ip", netns: str | None = None) -> bool:
    rc, _, _ = await run(["nft", "list", "table", family, table], netns=netns, check=False)
    return rc == 0


async def existing(table: str, family: str = "ip", netns: str | None = None) -> Existing | None:
    """The chains, sets/maps and counters of the table; None when it does not exist."""
    objs = await list_json(["table", family, table], netns)
    if objs is None:
        return None
    ex = Existing()
    for o in objs:
        if "chain" in o:
            ex.chains.add(o["chain"]["name"])
        elif "set" in o:
            ex.sets.add(o["set"]["name"])
        elif "map" in o:
            ex.sets.add(o["map"]["name"])
        elif "counter" in o:
            ex.counters.add(o["counter"]["name"])
    return ex


async def counters(table: str, family: str = "ip",
                   netns: str | None = None) -> dict[str, tuple[int, int]]:
    """Named counters of the table: name -> (packets, bytes)."""
    objs = await list_json(["counters", "table", family, table], netns)
    out: dict[str, tuple[int, int]] = {}
    for o in objs or []:
        c = o.get("counter")
        if c and c.get("table") == table:
            out[c["name"]] = (int(c.get("packets", 0)), int(c.get("bytes", 0)))
    return out


async def delete_table(table: str, family: str = "ip", netns: str | None = None) -> None:
    """Delete the table if it exists (idempotent)."""
    await apply(f"add table {family} {table}\ndelete table {family} {table}\n", netns)


async def conntrack_delete(args: list[str], netns: str | None = None) -> None:
    """`conntrack -D <args>`; "0 flow entries" is not an error."""
    await run(["conntrack", "-D", *args], netns=netns, check=False)
