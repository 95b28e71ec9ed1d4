"""Pod IP allocation from a node's pod CIDR, persisted on disk.

Each allocated address is a file ``<dir>/<ip>`` holding the owner (pod uid); a
``last_reserved`` file makes allocation round-robin (like CNI host-local) so an
address is handed out again only after it was released and the others were used.
State survives an agent restart because it lives only in files.
"""

from __future__ import annotations

import ipaddress
import os
import threading
from pathlib import Path

_lock = threading.Lock()


class IPAMExhausted(Exception):
    pass


class IPAM:
    def __init__(self, state_dir: Path, cidr: str) -> None:
        self.net = ipaddress.ip_network(cidr, strict=False)
        self.dir = Path(state_dir) / str(self.net).replace("/", "_")
        self.dir.mkdir(parents=True, exist_ok=True)

    @property
    def gateway(self) -> str:
        return str(self.net.network_address + 1)

    @property
    def prefixlen(self) -> int:
        return self.net.prefixlen

    def _candidates(self) -> list[ipaddress.IPv4Address]:
        hosts = list(self.net.hosts())
        return [h for h in hosts if str(h) != self.gateway]

    def get(self, owner: str) -> str | None:
        """The address already held by ``owner``, if any."""
        for f in self.dir.iterdir():
            if f.name == "last_reserved":
                continue
            try:
                if f.read_text().strip() == owner:
                    return f.name
            except OSError:
                continue
        return None

    def allocate(self, owner: str) -> str:
        with _lock:
            held = self.get(owner)
            if held:
                return held
            cands = self._candidates()
            last_file = self.dir / "last_reserved"
            start = 0
            try:
                last = ipaddress.ip_address(last_file.read_text().strip())
                if last in cands:
                    start = cands.index(last) + 1
            except (OSError, ValueError):
                pass
            n = len(cands)
            for i in range(n):
                ip = cands[(start + i) % n]
                path = self.dir / str(ip)
                try:
                    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                except FileExistsError:
                    continue
                with os.fdopen(fd, "w") as fh:
                    fh.write(owner)
                tmp = last_file.with_suffix(".tmp")
                tmp.write_text(str(ip))
                os.replace(tmp, last_file)
                return str(ip)
            raise IPAMExhausted(f"no free address in {self.net}")

    def release(self, owner: str) -> str | None:
        with _lock:
            ip = self.get(owner)
            if ip:
                try:
                    (self.dir / ip).unlink()
                except FileNotFoundError:
                    pass
            return ip

    def allocations(self) -> dict[str, str]:
        """ip -> owner"""
        out = {}
        for f in self.dir.iterdir():
            if f.name != "last_reserved" and not f.name.endswith(".tmp"):
                try:
                    out[f.name] = f.read_text().strip()
                except OSError:
                    pass
        return out
