"""The guard: an nftables table, installed before anything routes a cluster range and removed
last, that stops any packet for a cluster range (pod CIDR, service CIDR, node network,
LoadBalancer pool) from leaving through an interface tinykube did not create.

Table `inet tinykube-<cluster>-guard`:
- `output` and `forward` (priority 10, after the nat hooks, so DNATed packets are checked)
  reject such packets with admin-prohibited;
- `postrouting` (priority 200) drops them: it sees the real output interface of a locally
  started packet that DNAT re-routed (the output hook still reports the pre-NAT one);
- every stopped packet increments the named counter `leaked` (`guard_leak_count`).
"""
from __future__ import annotations

import asyncio
import json
import subprocess
from typing import Iterable

DEFAULT_PREFIXES = ("tk",)


def guard_table(cluster: str) -> str:
    return f"tinykube-{cluster}-guard"


def _nft(args: list[str], netns: str | None, stdin: str | None = None) -> subprocess.CompletedProcess:
    argv = (["ip", "netns", "exec", netns] if netns else []) + ["nft", *args]
    return subprocess.run(argv, input=stdin, capture_output=True, text=True)


def render_guard(cluster: str, cidrs: Iterable[str],
                 allowed_prefixes: Iterable[str] = DEFAULT_PREFIXES) -> str:
    """The guard as one idempotent transaction (re-installing keeps the counter)."""
    t = f"inet {guard_table(cluster)}"
    v4 = sorted(c for c in cidrs if ":" not in c)
    v6 = sorted(c for c in cidrs if ":" in c)
    ifs = " ".join(f'oifname != "{p}*"' for p in allowed_prefixes)
    lines = [f"add table {t}",
             f"add counter {t} leaked",
             f"add set {t} ranges4 {{ type ipv4_addr; flags interval; auto-merge; }}",
             f"add set {t} ranges6 {{ type ipv6_addr; flags interval; auto-merge; }}",
             f"flush set {t} ranges4", f"flush set {t} ranges6"]
    hooks = {"output": ("filter hook output priority 10", "reject with icmpx type admin-prohibited"),
             "forward": ("filter hook forward priority 10", "reject with icmpx type admin-prohibited"),
             "postrouting": ("filter hook postrouting priority 200", "drop")}
    for name, (hook, _) in hooks.items():
        lines += [f"add chain {t} {name} {{ type {hook}; policy accept; }}",
                  f"flush chain {t} {name}"]
    if v4:
        lines.append(f"add element {t} ranges4 {{ {', '.join(v4)} }}")
    if v6:
        lines.append(f"add element {t} ranges6 {{ {', '.join(v6)} }}")
    for name, (_, verdict) in hooks.items():
        for fam, s in (("ip", "ranges4"), ("ip6", "ranges6")):
            lines.append(f'add rule {t} {name} {fam} daddr @{s} oifname != "lo" {ifs} '
                         f"counter name leaked {verdict}")
    return "\n".join(lines) + "\n"


def install_guard(cluster: str, cidrs: Iterable[str], *,
                  allowed_prefixes: Iterable[str] = DEFAULT_PREFIXES,
                  netns: str | None = None) -> None:
    """Install (or update) the guard for these ranges; one transaction, idempotent."""
    r = _nft(["-f", "-"], netns, render_guard(cluster, cidrs, allowed_prefixes))
    if r.returncode != 0:
        raise RuntimeError(f"installing guard: {r.stderr.strip()}")


def remove_guard(cluster: str, netns: str | None = None) -> None:
    """Delete the guard table if present (call last, after routes and rules are gone)."""
    t = f"inet {guard_table(cluster)}"
    r = _nft(["-f", "-"], netns, f"add table {t}\ndelete table {t}\n")
    if r.returncode != 0:
        raise RuntimeError(f"removing guard: {r.stderr.strip()}")


def guard_installed(cluster: str, netns: str | None = None) -> bool:
    return _nft(["list", "table", "inet", guard_table(cluster)], netns).returncode == 0


def guard_leak_count(cluster: str, netns: str | None = None) -> int:
    """Packets the guard stopped so far (the `leaked` counter); -1 when no guard exists."""
    r = _nft(["-j", "list", "counter", "inet", guard_table(cluster), "leaked"], netns)
    if r.returncode != 0:
        return -1
    for o in json.loads(r.stdout).get("nftables", []):
        if "counter" in o:
            return int(o["counter"].get("packets", 0))
    return -1


async def async_install_guard(cluster: str, cidrs: Iterable[str], *,
                              allowed_prefixes: Iterable[str] = DEFAULT_PREFIXES,
                              netns: str | None = None) -> None:
    await asyncio.to_thread(install_guard, cluster, list(cidrs),
                            allowed_prefixes=tuple(allowed_prefixes), netns=netns)


async def async_guard_installed(cluster: str, netns: str | None = None) -> bool:
    return await asyncio.to_thread(guard_installed, cluster, netns)
