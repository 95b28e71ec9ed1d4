"""Running nft: whole transactions through `nft -f -`, JSON listings, table removal.

Every function takes an optional network namespace name; with it the command runs under
`ip netns exec <netns>` (tests program a node namespace, never the host's).

Transactions for the process's own network namespace (netns None: the agent on the host) go
through libnftables in this process when Debian's python3-nftables is installed: the same
parser, evaluation and single netlink batch as `nft -f -`, without starting two processes
(~12 ms saved per transaction, bench/README.md). One worker thread owns the library context
(it is not thread-safe) so the event loop never blocks. TINYKUBE_NFT_EXEC=1 forces `nft -f -`."""
from __future__ import annotations

import asyncio
import concurrent.futures
import ctypes
import importlib.util
import json
import os
import threading
from typing import Any

from .render import COUNTERS, Existing


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


_LIBNFT_PATHS = ("/usr/lib/python3/dist-packages/nftables/nftables.py",)
LIBNFT_IDLE_RELEASE = 5.0   # seconds without a transaction before the context is freed


def _load_libnftables() -> Any | None:
    """A libnftables context (python3-nftables), or None when it is not installed."""
    try:
        import nftables  # type: ignore[import-not-found]
    except ImportError:
        nftables = None
        for path in _LIBNFT_PATHS:
            if os.path.exists(path):
                spec = importlib.util.spec_from_file_location("_tinykube_nftables", path)
                if spec and spec.loader:
                    nftables = importlib.util.module_from_spec(spec)
                    spec.loader.exec_module(nftables)
                    break
    if nftables is None:
        return None
    return nftables.Nftables()


class LibNft:
    """One libnftables context used from one worker thread. The context keeps nft's cache of
    the whole ruleset after a transaction (~75 MB at 10,000 Services), so it is freed (and the
    heap trimmed) after LIBNFT_IDLE_RELEASE seconds without transactions; making a new one
    costs ~0.3 ms."""

    def __init__(self, ctx: Any):
        self._cls = type(ctx)
        self._ctx: Any | None = ctx
        self._worker = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="libnftables")
        self._release: asyncio.TimerHandle | None = None
        try:
            self._trim = ctypes.CDLL(None).malloc_trim
        except (OSError, AttributeError):
            self._trim = None

    def _cmd(self, script: str) -> tuple[int, str, str]:
        if self._ctx is None:
            self._ctx = self._cls()
        return self._ctx.cmd(script)

    def _free(self) -> None:
        if self._ctx is not None:
            self._ctx = None        # Nftables.__del__ frees the context and its cache
            if self._trim is not None:
                self._trim(0)

    async def cmd(self, script: str) -> tuple[int, str, str]:
        loop = asyncio.get_running_loop()
        if self._release is not None:
            self._release.cancel()
        try:
            return await loop.run_in_executor(self._worker, self._cmd, script)
        finally:
            self._release = loop.call_later(
                LIBNFT_IDLE_RELEASE, lambda: self._worker.submit(self._free))


_lib_lock = threading.Lock()
_lib: LibNft | None = None
_lib_failed = False


def libnftables() -> LibNft | None:
    """The in-process libnftables runner, or None (then transactions use `nft -f -`)."""
    global _lib, _lib_failed
    if _lib is not None or _lib_failed:
        return _lib
    with _lib_lock:
        if _lib is None and not _lib_failed:
            ctx = None
            if os.environ.get("TINYKUBE_NFT_EXEC") != "1":
                try:
                    ctx = _load_libnftables()
                except Exception:  # noqa: BLE001  (present but unusable: fall back)
                    ctx = None
            if ctx is None:
                _lib_failed = True
            else:
                _lib = LibNft(ctx)
    return _lib


async def apply(script: str, netns: str | None = None) -> None:
    """Apply one script as one transaction (all or nothing)."""
    if not script.strip():
        return
    lib = libnftables() if netns is None else None
    if lib is None:
        await run(["nft", "-f", "-"], stdin=script, netns=netns)
        return
    rc, _, err = await lib.cmd(script)
    if rc != 0:
        raise NftError(["nft", "-f", "-"], rc, err or "")


async def list_json(what: list[str], netns: str | None = None,
                    terse: bool = False) -> list[dict[str, Any]] | None:
    """`nft -j list <what>` as the list of objects (`-t`: without set elements); None when
    the table or set does not exist."""
    argv = ["nft", "-j"] + (["-t"] if terse else []) + ["list", *what]
    rc, out, err = await run(argv, netns=netns, check=False)
    if rc != 0:
        if "No such file or directory" in err:
            return None
        raise NftError(argv, rc, err)
    return json.loads(out).get("nftables", [])


async def table_exists(table: str, family: str = "ip", netns: str | None = None) -> bool:
    rc, _, _ = await run(["nft", "list", "table", family, table], netns=netns, check=False)
    return rc == 0


def _text(v: Any) -> str:
    """An element key or value of `nft -j` output as the text nft reads back."""
    if isinstance(v, dict):
        if "concat" in v:
            return " . ".join(_text(x) for x in v["concat"])
        if "elem" in v:
            return _text(v["elem"].get("val"))
    return str(v)


def _elements(obj: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(key, value, element attributes) of a listed set or map ("" value for sets)."""
    out = []
    for e in obj.get("elem") or []:
        if isinstance(e, list):                       # map: [key, value]
            k, v = e
            attrs = k.get("elem", {}) if isinstance(k, dict) else {}
            out.append((_text(k), _text(v), attrs))
        else:
            attrs = e.get("elem", {}) if isinstance(e, dict) else {}
            out.append((_text(e), "", attrs))
    return out


async def list_set(table: str, name: str, family: str = "ip", netns: str | None = None,
                   kind: str = "set") -> list[tuple[str, str, dict[str, Any]]]:
    objs = await list_json([kind, family, table, name], netns)
    for o in objs or []:
        body = o.get("set") or o.get("map")
        if body and body.get("name") == name:
            return _elements(body)
    return []


async def existing(table: str, family: str = "ip", netns: str | None = None) -> Existing | None:
    """The chains and sets of the table with the elements a full sync keeps (ids, counters,
    affinity records); None when the table does not exist. The big stateless maps are not
    listed (`-t`)."""
    objs = await list_json(["table", family, table], netns, terse=True)
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
            ex.maps.add(o["map"]["name"])
    if "ids" in ex.sets:
        for key, _, attrs in await list_set(table, "ids", family, netns):
            if key.isdigit() and attrs.get("comment"):
                ex.ids[int(key)] = attrs["comment"]
    if COUNTERS in ex.sets:
        ex.counters = {k for k, _, _ in await list_set(table, COUNTERS, family, netns)}
    for name in ex.maps:
        if name.startswith("affinity-"):
            ex.affinity[name] = [(k, v) for k, v, _ in
                                 await list_set(table, name, family, netns, "map")]
    return ex


async def counters(table: str, family: str = "ip",
                   netns: str | None = None) -> list[tuple[str, str, int]]:
    """(id group comment, "ip . port" endpoint, packets) of every endpoint counter."""
    groups = {k: attrs.get("comment", "")
              for k, _, attrs in await list_set(table, "ids", family, netns)}
    out = []
    for key, _, attrs in await list_set(table, COUNTERS, family, netns):
        i, _, ep = key.partition(" . ")
        out.append((groups.get(i, ""), ep, int((attrs.get("counter") or {}).get("packets", 0))))
    return out


async def delete_table(table: str, family: str = "ip", netns: str | None = None) -> None:
    """Delete the table if it exists (idempotent)."""
    await apply(f"add table {family} {table}\ndelete table {family} {table}\n", netns)


async def conntrack_delete(args: list[str], netns: str | None = None) -> None:
    """`conntrack -D <args>`; "0 flow entries" is not an error."""
    await run(["conntrack", "-D", *args], netns=netns, check=False)
