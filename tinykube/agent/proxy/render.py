"""Services and EndpointSlices -> nftables script text. Pure: no I/O, no clock.

The table has a fixed set of chains and rules; every Service lives only in the elements of
data maps and sets. A change to a Service is therefore a transaction of element adds and
deletes, and it costs the same whatever the size of the table: the kernel re-validates the
whole table after any transaction that adds a rule or a `goto`/`jump` verdict (per-Service
chains, as kube-proxy's nftables mode has, made one update cost 0.15 ms at 100 Services and
84 ms at 10,000), but never after element changes in data maps (bench/proxy_sync.py).

Each service port gets an id (a `ct mark` value, from IdAllocator) per group of endpoints it
balances over: "cluster" (every usable endpoint) and "local" (this node's, for traffic policy
Local). A new connection walks:

- nat `services` (prerouting and output): the destination picks the id, through
  `service-ips` (ClusterIPs; and the external addresses of externalTrafficPolicy Local
  Services, for pod and node sources), `external-ips` (externalIPs and LoadBalancer ingress
  IPs of Cluster-policy Services), `local-external-ips` (Local policy, remote sources); the
  same three for node ports (`service-nodeports`, `cluster-nodeports`, `local-nodeports`)
  on the addresses of `nodeport-ips`. The rule that picks an id also sets the masquerade mark
  where needed: a ClusterIP source outside the pod CIDRs, any external entry of a Cluster
  policy Service;
- `session-affinity`: per timeout T, ids in `affinity-T-ids` reuse the endpoint recorded for
  the client in the dynamic map `affinity-T`;
- `load-balance-<proto>`: ids in `lb-N` (N usable endpoints) DNAT to
  `endpoints-<proto>[id . numgen random mod N]`.
- nat postrouting: counts the connection in `endpoint-counters[id . endpoint]` (read back by
  read_counters), records affinity, masquerades hairpin traffic (`hairpin[id . ip . ip]`: a
  pod reaching itself) and everything marked.
- filter input/forward/output (after DNAT): ids in `reject-ids` (no endpoints at all) are
  refused (TCP reset, ICMP port-unreachable), ids in `drop-ids` (Local policy, none on this
  node) dropped, and anything else aimed at the service CIDR that was not DNATed is refused.

The `ids` set names every id (`comment "ns/name/proto/port"`), so the table explains itself
and a restarted proxy keeps its ids, counters and affinity.

Every script here is one transaction, so the kernel applies all of it or nothing.
"""
from __future__ import annotations

import socket
from dataclasses import dataclass, field
from typing import Iterable

MASQ_MARK = 0x4000
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
DEFAULT_AFFINITY_TIMEOUT = 10800
# endpoint counts and affinity timeouts whose rules always exist, so changes among them never
# add a rule; others get theirs the first time a Service needs them
STANDING_TIERS = tuple(range(1, 17))
STANDING_TIMEOUTS = (DEFAULT_AFFINITY_TIMEOUT,)
AFFINITY_MAP_SIZE = 65536
L4 = "meta l4proto { tcp, udp, sctp }"
# one endpoints map and load-balance chain per protocol: nft can only check a DNAT to
# `ip . port` from a map it reads back from the kernel when the rule matches that one protocol
PROTOCOLS = ("tcp", "udp", "sctp")

BASE_CHAINS: dict[str, str] = {
    "nat-prerouting": "type nat hook prerouting priority -100; policy accept;",
    "nat-output": "type nat hook output priority -100; policy accept;",
    "nat-postrouting": "type nat hook postrouting priority 100; policy accept;",
    "filter-input": "type filter hook input priority 0; policy accept;",
    "filter-forward": "type filter hook forward priority 0; policy accept;",
    "filter-output": "type filter hook output priority 0; policy accept;",
    "services": "",
    "session-affinity": "",
    **{f"load-balance-{p}": "" for p in PROTOCOLS},
    "affinity-update": "",
    "masquerading": "",
    "endpoints-check": "",
    "reject-chain": "",
}
_ADDR_MAP = "type ipv4_addr . inet_proto . inet_service : mark;"
_PORT_MAP = "type inet_proto . inet_service : mark;"
BASE_SETS: dict[str, str] = {
    "ids": "type mark;",
    "service-ips": _ADDR_MAP,
    "external-ips": _ADDR_MAP,
    "local-external-ips": _ADDR_MAP,
    "nodeport-ips": "type ipv4_addr;",
    "service-nodeports": _PORT_MAP,
    "cluster-nodeports": _PORT_MAP,
    "local-nodeports": _PORT_MAP,
    **{f"endpoints-{p}": f"typeof ct mark . numgen random mod 2 : ip daddr . {p} dport;"
       for p in PROTOCOLS},
    "endpoint-counters": "type mark . ipv4_addr . inet_service; counter;",
    "hairpin": "type mark . ipv4_addr . ipv4_addr;",
    "reject-ids": "type mark;",
    "drop-ids": "type mark;",
}
COUNTERS = "endpoint-counters"

CounterKey = tuple[str, str, str, str]   # (namespace, service, "80/TCP", "10.244.0.5:8080")
ServiceKey = tuple[str, str]             # (namespace, name)
Element = tuple[str, str]                # (set or map name, key text)


def tier_set(n: int) -> str:
    return f"lb-{n}"


def affinity_map(timeout: int) -> str:
    return f"affinity-{timeout}"


def affinity_ids(timeout: int) -> str:
    return f"affinity-{timeout}-ids"


@dataclass(frozen=True)
class ProxyConfig:
    table: str
    node_name: str
    node_ips: tuple[str, ...] = ()
    cluster_cidrs: tuple[str, ...] = ()   # pod CIDRs: sources that are not masqueraded
    service_cidrs: tuple[str, ...] = ()   # refused when no Service matched
    family: str = "ip"


@dataclass
class Endpoint:
    ip: str
    port: int
    node: str
    ready: bool
    serving: bool
    terminating: bool


class IdAllocator:
    """Ids (ct mark values) of endpoint groups ("ns/name/proto/port" or "... local"). Ids only
    grow, so an id is never reused while conntrack entries or affinity records of its former
    owner may still exist."""

    def __init__(self) -> None:
        self.by_group: dict[str, int] = {}
        self.next = 1

    def get(self, group: str) -> int:
        i = self.by_group.get(group)
        if i is None:
            i = self.by_group[group] = self.next
            self.next += 1
        return i

    def release(self, group: str) -> None:
        self.by_group.pop(group, None)

    def restore(self, comments: dict[int, str]) -> None:
        """Take the ids a table already has (from its `ids` set)."""
        for i, group in comments.items():
            self.by_group.setdefault(group, i)
            self.next = max(self.next, i + 1)


@dataclass
class ServiceRules:
    """Everything one Service contributes to the table: elements, each with the text that
    follows its key when added (": 5", ' comment "..."', or "")."""
    elements: dict[Element, str] = field(default_factory=dict)
    groups: dict[str, int] = field(default_factory=dict)        # endpoint group -> id
    tiers: set[int] = field(default_factory=set)                 # lb-N sets used
    # affinity id -> (timeout, "ip . port" of its endpoints)
    affinity: dict[int, tuple[int, frozenset[str]]] = field(default_factory=dict)
    # (frontend ip or "" for node ports, frontend port, endpoint ip) of UDP flows, so the
    # proxier can flush conntrack entries of endpoints that went away
    udp_flows: set[tuple[str, int, str]] = field(default_factory=set)


@dataclass
class Existing:
    """What the table in the kernel holds now, as far as a full sync needs to know."""
    chains: set[str] = field(default_factory=set)
    sets: set[str] = field(default_factory=set)                  # sets and maps
    maps: set[str] = field(default_factory=set)                  # the maps among them
    ids: dict[int, str] = field(default_factory=dict)            # id -> group
    counters: set[str] = field(default_factory=set)              # endpoint-counters keys
    affinity: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # map -> (k, v)


# ------------------------------------------------------------------------------ endpoints

def _v4(ip: str) -> bytes | None:
    """The 4 bytes of an IPv4 address (they sort in address order), None for anything else.
    (inet_pton rather than ipaddress: a full sync checks every endpoint address, and this is
    20 times faster.)"""
    try:
        return socket.inet_pton(socket.AF_INET, ip)
    except (OSError, TypeError, ValueError):
        return None


def _is_v4(ip: str) -> bool:
    return _v4(ip) is not None


def slices_by_service(slices: Iterable[dict]) -> dict[ServiceKey, list[dict]]:
    out: dict[ServiceKey, list[dict]] = {}
    for s in slices:
        md = s.get("metadata") or {}
        svc = (md.get("labels") or {}).get(SERVICE_NAME_LABEL)
        if not svc:
            continue
        out.setdefault((md.get("namespace") or "default", svc), []).append(s)
    return out


def endpoints_for_port(slices: Iterable[dict], port_name: str, protocol: str) -> list[Endpoint]:
    """All IPv4 endpoints of the slices for the service port named `port_name` (the slice's
    port carries the resolved target port), deduplicated by ip:port."""
    seen: dict[tuple[str, int], Endpoint] = {}
    for s in slices:
        if s.get("addressType", "IPv4") != "IPv4":
            continue
        port = None
        for p in s.get("ports") or []:
            if (p.get("name") or "") == (port_name or "") and \
                    (p.get("protocol") or "TCP") == protocol and p.get("port"):
                port = int(p["port"])
                break
        if port is None:
            continue
        for ep in s.get("endpoints") or []:
            addrs = [a for a in ep.get("addresses") or [] if _is_v4(a)]
            if not addrs:
                continue
            cond = ep.get("conditions") or {}
            ready = cond.get("ready")
            ready = True if ready is None else bool(ready)
            serving = cond.get("serving")
            serving = ready if serving is None else bool(serving)
            terminating = bool(cond.get("terminating") or False)
            key = (addrs[0], port)
            if key not in seen:
                seen[key] = Endpoint(addrs[0], port, ep.get("nodeName") or "", ready,
                                     serving, terminating)
    return sorted(seen.values(), key=lambda e: (_v4(e.ip), e.port))


def usable(eps: list[Endpoint]) -> list[Endpoint]:
    """Ready endpoints; when there are none, the serving-and-terminating ones (kube-proxy's
    fallback so a rolling update does not drop traffic)."""
    ready = [e for e in eps if e.ready]
    if ready:
        return ready
    return [e for e in eps if e.serving and e.terminating]


# -------------------------------------------------------------------------------- service

def port_group(ns: str, name: str, proto: str, port: int, local: bool = False) -> str:
    return f"{ns}/{name}/{proto.lower()}/{port}" + (" local" if local else "")


def parse_group(group: str) -> tuple[str, str, str] | None:
    """(namespace, service, "80/TCP") of an endpoint group name."""
    try:
        ns, name, proto, port = group.split(" ")[0].split("/")
    except ValueError:
        return None
    return ns, name, f"{port}/{proto.upper()}"


def _endpoint_group(out: ServiceRules, group: str, ids: IdAllocator, eps: list[Endpoint],
                    empty_verdict: str, affinity_timeout: int | None, proto: str) -> int:
    """Elements of one endpoint group: its id's name, then either its endpoints (by slot),
    counters and hairpin entries, or its no-endpoints verdict."""
    i = ids.get(group)
    out.groups[group] = i
    out.elements[("ids", str(i))] = f' comment "{group}"'
    if not eps:
        out.elements[(empty_verdict, str(i))] = ""
        return i
    out.tiers.add(len(eps))
    out.elements[(tier_set(len(eps)), str(i))] = ""
    for slot, e in enumerate(eps):
        out.elements[(f"endpoints-{proto}", f"{i} . {slot}")] = f" : {e.ip} . {e.port}"
        out.elements[(COUNTERS, f"{i} . {e.ip} . {e.port}")] = ""
        out.elements[("hairpin", f"{i} . {e.ip} . {e.ip}")] = ""
    if affinity_timeout is not None:
        out.elements[(affinity_ids(affinity_timeout), str(i))] = ""
        out.affinity[i] = (affinity_timeout, frozenset(f"{e.ip} . {e.port}" for e in eps))
    return i


def render_service(svc: dict, slices: list[dict], cfg: ProxyConfig,
                   ids: IdAllocator) -> ServiceRules:
    """The elements of one Service (ids for its endpoint groups come from `ids`)."""
    out = ServiceRules()
    md = svc.get("metadata") or {}
    ns, name = md.get("namespace") or "default", md.get("name") or ""
    spec = svc.get("spec") or {}
    stype = spec.get("type") or "ClusterIP"
    if stype == "ExternalName":
        return out
    cips = [ip for ip in (spec.get("clusterIPs") or [spec.get("clusterIP")] or [])
            if ip and ip != "None" and _is_v4(ip)]
    if not cips:          # headless: DNS only, nothing to proxy
        return out
    ext_ips = [ip for ip in spec.get("externalIPs") or [] if _is_v4(ip)]
    lb_ips = [i["ip"] for i in ((svc.get("status") or {}).get("loadBalancer") or {})
              .get("ingress") or [] if i.get("ip") and _is_v4(i["ip"])
              and i.get("ipMode", "VIP") != "Proxy"]
    timeout = None
    if spec.get("sessionAffinity") == "ClientIP":
        timeout = int((((spec.get("sessionAffinityConfig") or {}).get("clientIP") or {})
                       .get("timeoutSeconds")) or DEFAULT_AFFINITY_TIMEOUT)
    itp_local = spec.get("internalTrafficPolicy") == "Local"
    etp_local = spec.get("externalTrafficPolicy") == "Local"

    for sp in spec.get("ports") or []:
        proto = (sp.get("protocol") or "TCP")
        p = proto.lower()
        port = int(sp.get("port") or 0)
        if not port:
            continue
        node_port = int(sp.get("nodePort") or 0) if stype in ("NodePort", "LoadBalancer") else 0
        fronts = [f"{ip} . {p} . {port}" for ip in ext_ips + lb_ips]
        all_eps = endpoints_for_port(slices, sp.get("name") or "", proto)
        cluster_eps = usable(all_eps)
        local_eps = usable([e for e in all_eps if e.node == cfg.node_name])
        cluster_id = _endpoint_group(out, port_group(ns, name, proto, port), ids, cluster_eps,
                                     "reject-ids", timeout, p)
        local_id = None
        if itp_local or (etp_local and (fronts or node_port)):
            local_id = _endpoint_group(out, port_group(ns, name, proto, port, local=True), ids,
                                       local_eps, "drop-ids" if cluster_eps else "reject-ids",
                                       timeout, p)
        for cip in cips:
            out.elements[("service-ips", f"{cip} . {p} . {port}")] = \
                f" : {local_id if itp_local else cluster_id}"
        np_key = f"{p} . {node_port}"
        if etp_local:
            # remote clients keep their address and reach this node's endpoints only; pods
            # and the node itself are served like ClusterIP traffic
            for key in fronts:
                out.elements[("local-external-ips", key)] = f" : {local_id}"
                out.elements[("service-ips", key)] = f" : {cluster_id}"
            if node_port:
                out.elements[("local-nodeports", np_key)] = f" : {local_id}"
                out.elements[("cluster-nodeports", np_key)] = f" : {cluster_id}"
        else:
            for key in fronts:
                out.elements[("external-ips", key)] = f" : {cluster_id}"
            if node_port:
                out.elements[("service-nodeports", np_key)] = f" : {cluster_id}"
        if p == "udp":
            for e in cluster_eps + local_eps:
                for cip in cips + ext_ips + lb_ips:
                    out.udp_flows.add((cip, port, e.ip))
                if node_port:
                    out.udp_flows.add(("", node_port, e.ip))
    return out


def render_all(services: Iterable[dict], slices: Iterable[dict], cfg: ProxyConfig,
               ids: IdAllocator) -> dict[ServiceKey, ServiceRules]:
    by_svc = slices_by_service(slices)
    out: dict[ServiceKey, ServiceRules] = {}
    for svc in services:
        md = svc.get("metadata") or {}
        key = (md.get("namespace") or "default", md.get("name") or "")
        out[key] = render_service(svc, by_svc.get(key, []), cfg, ids)
    return out


# ---------------------------------------------------------------------------------- rules

def _cidr_set(cidrs: Iterable[str]) -> str:
    cidrs = list(cidrs)
    return cidrs[0] if len(cidrs) == 1 else "{ " + ", ".join(cidrs) + " }"


def _base_rules(cfg: ProxyConfig) -> dict[str, list[str]]:
    m = f"0x{MASQ_MARK:x}"
    masq = f"meta mark set meta mark | {m}"
    not_pod = f"ip saddr != {_cidr_set(cfg.cluster_cidrs)} " if cfg.cluster_cidrs else ""
    remote = f"{not_pod}fib saddr type != local "
    addr = "ip daddr . meta l4proto . th dport"
    nport = "ip daddr @nodeport-ips ct mark 0"
    nkey = "meta l4proto . th dport"
    input_rules = ["ct state new jump endpoints-check"]
    if cfg.service_cidrs:
        # a service CIDR packet that reaches input was not DNATed: unknown IP or port
        input_rules.append(f"ct state new ip daddr {_cidr_set(cfg.service_cidrs)} "
                           "jump reject-chain")
    return {
        "nat-prerouting": ["jump services"],
        "nat-output": ["jump services"],
        "nat-postrouting": ["ct status dnat jump affinity-update",
                            f"ct status dnat ct mark . ip daddr . th dport @{COUNTERS}",
                            f"ct status dnat ct mark . ip saddr . ip daddr @hairpin {masq}",
                            "jump masquerading"],
        "filter-input": input_rules,
        "filter-forward": ["ct state new jump endpoints-check"],
        "filter-output": ["ct state new jump endpoints-check"],
        "services": [
            f"{remote}ct mark set {addr} map @local-external-ips",
            f"ct mark 0 ct mark set {addr} map @service-ips {not_pod}{masq}",
            f"ct mark 0 ct mark set {addr} map @external-ips {masq}",
            f"{nport} {remote}ct mark set {nkey} map @local-nodeports",
            f"{nport} ct mark set {nkey} map @cluster-nodeports {not_pod}{masq}",
            f"{nport} ct mark set {nkey} map @service-nodeports {masq}",
            "ct mark 0 return",
            "jump session-affinity",
            *(f"meta l4proto {p} goto load-balance-{p}" for p in PROTOCOLS),
        ],
        "session-affinity": [],
        **{f"load-balance-{p}": [] for p in PROTOCOLS},
        "affinity-update": [],
        "masquerading": [f"meta mark & {m} == 0 return",
                         f"meta mark set meta mark ^ {m}",
                         "masquerade fully-random"],
        "endpoints-check": ["ct mark @reject-ids jump reject-chain",
                            "ct mark @drop-ids drop"],
        "reject-chain": ["meta l4proto tcp reject with tcp reset", "reject"],
    }


def _tier(t: str, n: int) -> list[str]:
    return [f"add set {t} {tier_set(n)} {{ type mark; }}"] + [
        f"add rule {t} load-balance-{p} ct mark @{tier_set(n)} meta l4proto {p} "
        f"dnat ip to ct mark . numgen random mod {n} map @endpoints-{p}" for p in PROTOCOLS]


def _affinity(t: str, timeout: int) -> list[str]:
    m, s = affinity_map(timeout), affinity_ids(timeout)
    return [f"add set {t} {s} {{ type mark; }}",
            f"add map {t} {m} {{ type ipv4_addr . mark : ipv4_addr . inet_service; "
            f"flags dynamic,timeout; timeout {timeout}s; size {AFFINITY_MAP_SIZE}; }}",
            f"add rule {t} session-affinity ct mark @{s} {L4} "
            f"dnat ip to ip saddr . ct mark map @{m}",
            f"add rule {t} affinity-update ct mark @{s} "
            f"update @{m} {{ ip saddr . ct mark : ip daddr . th dport }}"]


def _add_elements(lines: list[str], t: str, elements: Iterable[tuple[Element, str]]) -> None:
    by_set: dict[str, list[str]] = {}
    for (s, key), tail in elements:
        by_set.setdefault(s, []).append(key + tail)
    for s in sorted(by_set):
        items = by_set[s]
        for k in range(0, len(items), 4096):     # keep each command's text bounded
            lines.append(f"add element {t} {s} {{ {', '.join(items[k:k + 4096])} }}")


def _delete_elements(lines: list[str], t: str, elements: Iterable[Element]) -> None:
    by_set: dict[str, list[str]] = {}
    for s, key in elements:
        by_set.setdefault(s, []).append(key)
    for s in sorted(by_set):
        items = by_set[s]
        for k in range(0, len(items), 4096):
            lines.append(f"delete element {t} {s} {{ {', '.join(items[k:k + 4096])} }}")


def stale_affinity(entries: dict[str, list[tuple[str, str]]],
                   live: dict[int, tuple[int, frozenset[str]]],
                   only: Iterable[int] | None = None) -> list[Element]:
    """Affinity records ("client . id" -> "ip . port") to delete: their id no longer has
    affinity with that timeout, or their endpoint is gone. With `only`, just those ids."""
    only = set(only) if only is not None else None
    out: list[Element] = []
    for m, items in entries.items():
        for key, value in items:
            try:
                i = int(key.rsplit(" . ", 1)[1])
            except (IndexError, ValueError):
                continue
            if only is not None and i not in only:
                continue
            t, eps = live.get(i, (None, frozenset()))
            if t is None or affinity_map(t) != m or value not in eps:
                out.append((m, key))
    return out


def render_full(rules: dict[ServiceKey, ServiceRules], cfg: ProxyConfig,
                existing: Existing | None) -> str:
    """One transaction that makes the table exactly what `rules` describe.

    `existing` is what the kernel has now (None when unknown: then the table is deleted and
    recreated, which loses counters and affinity records but nothing else). Counters and
    affinity records of endpoints that still exist are kept: those two are updated element
    by element instead of flushed."""
    t = f"{cfg.family} {cfg.table}"
    lines = [f"add table {t}"]
    if existing is None:
        lines += [f"delete table {t}", f"add table {t}"]
        existing = Existing()
    tiers = set(STANDING_TIERS)
    timeouts = set(STANDING_TIMEOUTS)
    wanted: dict[Element, str] = {}
    live_affinity: dict[int, tuple[int, frozenset[str]]] = {}
    for sr in rules.values():
        tiers |= sr.tiers
        timeouts |= {tm for tm, _ in sr.affinity.values()}
        wanted.update(sr.elements)
        live_affinity.update(sr.affinity)
    for name, hook in BASE_CHAINS.items():
        lines.append(f"add chain {t} {name}" + (f" {{ {hook} }}" if hook else ""))
        if name in existing.chains:
            lines.append(f"flush chain {t} {name}")
    for name in sorted(existing.chains - set(BASE_CHAINS)):
        lines.append(f"delete chain {t} {name}")
    sets = dict(BASE_SETS)
    stateful = {COUNTERS} | {affinity_map(tm) for tm in timeouts}
    for name, body in sets.items():
        kind = "map" if ":" in body else "set"
        lines.append(f"add {kind} {t} {name} {{ {body} }}")
        if name in existing.sets and name not in stateful:
            lines.append(f"flush {kind} {t} {name}")
    structure: list[str] = []
    for n in sorted(tiers):
        structure += _tier(t, n)
    for tm in sorted(timeouts):
        structure += _affinity(t, tm)
    own = {tier_set(n) for n in tiers} | {affinity_ids(tm) for tm in timeouts}
    for name in sorted(own & existing.sets):
        lines.append(f"flush set {t} {name}")
    for name in sorted(existing.sets - set(sets) - own - stateful):
        kind = "map" if name in existing.maps else "set"
        lines.append(f"delete {kind} {t} {name}")   # tiers and timeouts no longer used
    for name, rs in _base_rules(cfg).items():
        lines += [f"add rule {t} {name} {r}" for r in rs]
    lines += structure
    # stateful elements: delete what is stale, add what is missing (an existing element
    # keeps its counter)
    _delete_elements(lines, t, [(COUNTERS, k) for k in sorted(existing.counters)
                                if (COUNTERS, k) not in wanted])
    _delete_elements(lines, t, stale_affinity(
        {m: v for m, v in existing.affinity.items() if m in stateful}, live_affinity))
    v4 = [ip for ip in cfg.node_ips if _is_v4(ip)]
    if v4:
        lines.append(f"add element {t} nodeport-ips {{ {', '.join(v4)} }}")
    _add_elements(lines, t, ((e, tail) for e, tail in wanted.items()
                             if not (e[0] == COUNTERS and e[1] in existing.counters)))
    return "\n".join(lines) + "\n"


@dataclass
class Present:
    """The on-demand structures (lb-N tiers, affinity timeouts) the table has."""
    tiers: set[int] = field(default_factory=lambda: set(STANDING_TIERS))
    timeouts: set[int] = field(default_factory=lambda: set(STANDING_TIMEOUTS))

    @classmethod
    def of(cls, rules: dict[ServiceKey, ServiceRules]) -> "Present":
        p = cls()
        for sr in rules.values():
            p.tiers |= sr.tiers
            p.timeouts |= {tm for tm, _ in sr.affinity.values()}
        return p


def render_incremental(old: dict[ServiceKey, ServiceRules],
                       new: dict[ServiceKey, ServiceRules],
                       changed: Iterable[ServiceKey], cfg: ProxyConfig, present: Present,
                       stale: Iterable[Element] = ()) -> str:
    """One transaction of element changes for the changed services (`old` must be what the
    kernel has: the last applied render), plus the lb-N / affinity structures they need
    that `present` lacks (which is updated), plus deleting `stale` affinity records.
    Returns "" when nothing differs."""
    t = f"{cfg.family} {cfg.table}"
    empty = ServiceRules()
    o_el: dict[Element, str] = {}
    n_el: dict[Element, str] = {}
    need_tiers: set[int] = set()
    need_timeouts: set[int] = set()
    for k in changed:
        o_el.update(old.get(k, empty).elements)
        sr = new.get(k, empty)
        n_el.update(sr.elements)
        need_tiers |= sr.tiers - present.tiers
        need_timeouts |= {tm for tm, _ in sr.affinity.values()} - present.timeouts
    lines: list[str] = []
    _delete_elements(lines, t, sorted(set(stale) | {e for e, tail in o_el.items()
                                                     if n_el.get(e) != tail}))
    for n in sorted(need_tiers):
        lines += _tier(t, n)
    for tm in sorted(need_timeouts):
        lines += _affinity(t, tm)
    present.tiers |= need_tiers
    present.timeouts |= need_timeouts
    _add_elements(lines, t, ((e, tail) for e, tail in n_el.items() if o_el.get(e) != tail))
    return "\n".join(lines) + "\n" if lines else ""


def render_delete(cfg: ProxyConfig) -> str:
    """Delete the table if it exists."""
    t = f"{cfg.family} {cfg.table}"
    return f"add table {t}\ndelete table {t}\n"
