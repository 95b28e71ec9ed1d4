"""The node bridge and the veth pairs that attach pods to it."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from . import netns as nsmod
from .netns import run


def bridge_guard_table(bridge: str) -> str:
    return f"tinykube-{bridge}-guard"


async def ensure_bridge(bridge: str, cidr: str, guard: bool = True) -> str:
    """Create (idempotently) the bridge holding the .1 gateway of ``cidr``.

    Enables IPv4 forwarding (needed for Service DNAT between pods) and, with
    ``guard``, installs a forward filter so nothing arriving from the bridge is
    ever forwarded to an interface tinykube did not create (no route to eth0)."""
    net = ipaddress.ip_network(cidr, strict=False)
    gw = f"{net.network_address + 1}/{net.prefixlen}"
    if not nsmod.link_exists(bridge):
        await run("ip", "link", "add", bridge, "type", "bridge")
    out = await run("ip", "-o", "-4", "addr", "show", "dev", bridge)
    if gw not in out:
        await run("ip", "addr", "add", gw, "dev", bridge)
    await run("ip", "link", "set", bridge, "up")
    if guard:
        table = bridge_guard_table(bridge)
        await run("nft", "-f", "-", input=(
            f"table inet {table} {{}}\n"
            f"delete table inet {table}\n"
            f"table inet {table} {{\n"
            f"  chain forward {{ type filter hook forward priority -5; policy accept;\n"
            f'    iifname "{bridge}" oifname != "tk*" reject with icmpx type admin-prohibited\n'
            f'    oifname "{bridge}" iifname != "tk*" reject with icmpx type admin-prohibited\n'
            f"  }}\n}}\n"))
    Path("/proc/sys/net/ipv4/ip_forward").write_text("1\n")
    return gw


async def delete_bridge(bridge: str) -> None:
    if nsmod.link_exists(bridge):
        await run("ip", "link", "delete", bridge, check=False)
    table = bridge_guard_table(bridge)
    await run("nft", "delete", "table", "inet", table, check=False)


def veth_name(cluster: str, uid: str) -> str:
    return "tk" + nsmod.short_hash(cluster, uid, n=11)


async def attach_pod(bridge: str, netns: str, host_if: str, ip: str, prefixlen: int,
                     gateway: str) -> None:
    """veth ``host_if`` on the bridge (hairpin on) <-> eth0 in ``netns`` with ``ip``."""
    peer = "tp" + host_if[2:]
    if not nsmod.link_exists(host_if):
        await run("ip", "link", "add", host_if, "type", "veth", "peer", "name", peer,
                  "netns", netns)
        await nsmod.batch(netns, [f"link set {peer} name eth0"])
    await nsmod.batch(None, [f"link set {host_if} master {bridge}", f"link set {host_if} up"])
    await run("bridge", "link", "set", "dev", host_if, "hairpin", "on")
    out = await run("ip", "-n", netns, "-o", "-4", "addr", "show", "dev", "eth0")
    cmds = ["link set lo up", "link set eth0 up"]
    if f"{ip}/{prefixlen}" not in out:
        cmds.insert(0, f"addr add {ip}/{prefixlen} dev eth0")
    await nsmod.batch(netns, cmds)
    routes = await run("ip", "-n", netns, "route", "show", "default")
    if "default" not in routes:
        await nsmod.batch(netns, [f"route add default via {gateway} dev eth0"])


async def detach_pod(host_if: str) -> None:
    if nsmod.link_exists(host_if):
        await run("ip", "link", "delete", host_if, check=False)
