"""Services and EndpointSlices -> nftables script text. Pure: no I/O, no clock.

The table layout follows the design of kube-proxy's nftables mode (the facts, not its code):

- base chains `nat-prerouting` / `nat-output` jump to `services`, which dispatches through
  the verdict map `service-ips` (`ipv4_addr . inet_proto . inet_service`: ClusterIPs,
  externalIPs, LoadBalancer ingress IPs) and, for destinations in the set `nodeport-ips`,
  through `service-nodeports` (`inet_proto . inet_service`);
- one `service-<hash>-<ns>/<name>/<proto>/<port>` chain per service port picks a ready
  endpoint with `numgen random mod N vmap`, after the session-affinity checks;
  `local-...` does the same over this node's endpoints only (traffic policy Local);
  `external-...` is the entry for NodePort / externalIPs / LoadBalancer IPs;
- one `endpoint-<hash>-<ns>/<name>/<proto>/<port>__<ip>/<port>` chain per endpoint: hairpin
  masquerade mark, affinity-set update, a named per-endpoint counter (readable back, survives
  resyncs), then the DNAT;
- service ports without usable endpoints are entries of `no-endpoint-services` /
  `no-endpoint-nodeports`, checked by filter chains before NAT: reject (TCP reset, ICMP
  port-unreachable) when the service has no endpoints at all, drop when a Local policy finds
  none on this node;
- masquerade (mark 0x4000, `masquerade fully-random` in postrouting) only where needed:
  ClusterIP traffic whose source is outside the pod CIDRs, a pod reaching itself (hairpin),
  and external traffic under externalTrafficPolicy Cluster. Pod-to-service traffic keeps the
  client's IP.

Every transaction this module writes is one `nft -f -` script, so the kernel applies all of it
or nothing. Full renders do not `flush table` (that would empty the affinity sets and the
per-endpoint counters); they flush every chain and map of the table, delete what is stale and
add everything back, which is the same end state in one transaction.
"""
from __future__ import annotations

import base64
import hashlib
import ipaddress
from dataclasses import dataclass, field
from typing import Iterable

MASQ_MARK = 0x4000
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
DEFAULT_AFFINITY_TIMEOUT = 10800

# chains, maps and sets that every table has
BASE_CHAINS: dict[str, str] = {
    "nat-prerouting": "type nat hook prerouting priority -100; policy accept;",
    "nat-output": "type nat hook output priority -100; policy accept;",
    "nat-postrouting": "type nat hook postrouting priority 100; policy accept;",
    "filter-input": "type filter hook input priority -110; policy accept;",
    "filter-forward": "type filter hook forward priority -110; policy accept;",
    "filter-output": "type filter hook output priority -110; policy accept;",
    "services": "",
    "masquerading": "",
    "mark-for-masquerade": "",
    "reject-chain": "",
    "service-endpoints-check": "",
    "nodeport-endpoints-check": "",
}
MAPS: dict[str, str] = {
    "service-ips": "ipv4_addr . inet_proto . inet_service : verdict",
    "service-nodeports": "inet_proto . inet_service : verdict",
    "no-endpoint-services": "ipv4_addr . inet_proto . inet_service : verdict",
    "no-endpoint-nodeports": "inet_proto . inet_service : verdict",
}
BASE_SETS = ("nodeport-ips",)

CounterKey = tuple[str, str, str, str]   # (namespace, service, "80/TCP", "10.244.0.5:8080")
ServiceKey = tuple[str, str]             # (namespace, name)


@dataclass(frozen=True)
class ProxyConfig:
    table: str
    node_name: str
    node_ips: tuple[str, ...] = ()
    cluster_cidrs: tuple[str, ...] = ()   # pod CIDRs: sources that are not masqueraded
    service_cidrs: tuple[str, ...] = ()   # refused when no rule matched
    family: str = "ip"
    # "vmap": `numgen random mod N vmap { 0 : goto ep0, ... }` (kube-proxy nftables mode);
    # "rules": `numgen random mod N-k 0 goto ep_k` one rule per endpoint (equally uniform). The
    # kernel names every anonymous vmap by scanning all sets of the table, so loading
    # thousands of services with "vmap" grows quadratically (bench/proxy_sync.py); "rules" has
    # no anonymous sets and stays linear.
    lb_mode: str = "vmap"


@dataclass
class Endpoint:
    ip: str
    port: int
    node: str
    ready: bool
    serving: bool
    terminating: bool


@dataclass
class ServiceRules:
    """Everything one Service contributes to the table, by name, so a later transaction can
    remove exactly it."""
    chains: dict[str, list[str]] = field(default_factory=dict)   # name -> rule texts, in order
    sets: dict[str, str] = field(default_factory=dict)           # name -> set body
    counters: dict[str, CounterKey] = field(default_factory=dict)
    elements: list[tuple[str, str, str]] = field(default_factory=list)  # (map, key, verdict)
    # (frontend ip or "" for node ports, frontend port, endpoint ip) of UDP flows, so the
    # proxier can flush conntrack entries of endpoints that went away
    udp_flows: set[tuple[str, int, str]] = field(default_factory=set)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ServiceRules):
            return NotImplemented
        return (self.chains == other.chains and self.sets == other.sets
                and self.counters == other.counters
                and sorted(self.elements) == sorted(other.elements))


@dataclass
class Existing:
    """What the table in the kernel holds now (from `nft -j list table`)."""
    chains: set[str] = field(default_factory=set)
    sets: set[str] = field(default_factory=set)        # sets and maps
    counters: set[str] = field(default_factory=set)


# ---------------------------------------------------------------------------------- naming

def _hash(s: str) -> str:
    return base64.b32encode(hashlib.sha256(s.encode()).digest()).decode()[:8]


def port_base(ns: str, name: str, proto: str, port: int) -> str:
    return f"{ns}/{name}/{proto.lower()}/{port}"


def chain_name(kind: str, base: str) -> str:
    """`service-<hash>-ns/name/tcp/80`, `local-...`, `external-...`."""
    return f"{kind}-{_hash(base)}-{base}"


def endpoint_chain_name(base: str, ip: str, port: int) -> str:
    full = f"{base}__{ip}/{port}"
    return f"endpoint-{_hash(full)}-{full}"


def affinity_set_name(base: str, ip: str, port: int, timeout: int) -> str:
    full = f"{base}__{ip}/{port}"
    return f"affinity-{_hash(f'{full}@{timeout}')}-{full}"


def parse_counter_name(name: str) -> CounterKey | None:
    """The (namespace, service, "port/PROTO", "ip:port") a per-endpoint counter counts for."""
    if not name.startswith("endpoint-"):
        return None
    try:
        rest = name.split("-", 2)[2]
        front, back = rest.split("__", 1)
        ns, svc, proto, port = front.split("/")
        ip, tport = back.split("/")
    except ValueError:
        return None
    return ns, svc, f"{port}/{proto.upper()}", f"{ip}:{tport}"


# ------------------------------------------------------------------------------ endpoints

def _is_v4(ip: str) -> bool:
    try:
        return isinstance(ipaddress.ip_address(ip), ipaddress.IPv4Address)
    except ValueError:
        return False


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
    return sorted(seen.values(), key=lambda e: (ipaddress.ip_address(e.ip), e.port))


def usable(eps: list[Endpoint]) -> list[Endpoint]:
    """Ready endpoints; when there are none, the serving-and-terminating ones (kube-proxy's
    fallback so a rolling update does not drop traffic)."""
    ready = [e for e in eps if e.ready]
    if ready:
        return ready
    return [e for e in eps if e.serving and e.terminating]


# -------------------------------------------------------------------------------- service

def _cidr_set(cidrs: Iterable[str]) -> str:
    cidrs = list(cidrs)
    return cidrs[0] if len(cidrs) == 1 else "{ " + ", ".join(cidrs) + " }"


def _lb_rules(eps: list[Endpoint], ep_chain: dict[tuple[str, int], str],
              aff_set: dict[tuple[str, int], str], mode: str = "vmap") -> list[str]:
    rules = []
    for e in eps:
        s = aff_set.get((e.ip, e.port))
        if s:
            rules.append(f"ip saddr @{s} goto {ep_chain[(e.ip, e.port)]}")
    if len(eps) == 1:
        rules.append(f"goto {ep_chain[(eps[0].ip, eps[0].port)]}")
    elif mode == "rules":
        n = len(eps)
        for k, e in enumerate(eps[:-1]):
            rules.append(f"numgen random mod {n - k} 0 goto {ep_chain[(e.ip, e.port)]}")
        rules.append(f"goto {ep_chain[(eps[-1].ip, eps[-1].port)]}")
    else:
        vm = ", ".join(f"{i} : goto {ep_chain[(e.ip, e.port)]}" for i, e in enumerate(eps))
        rules.append(f"numgen random mod {len(eps)} vmap {{ {vm} }}")
    return rules


def render_service(svc: dict, slices: list[dict], cfg: ProxyConfig) -> ServiceRules:
    """The chains, sets, counters and map elements of one Service."""
    out = ServiceRules()
    md = svc.get("metadata") or {}
    ns, name = md.get("namespace") or "default", md.get("name") or ""
    spec = svc.get("spec") or {}
    stype = spec.get("type") or "ClusterIP"
    if stype == "ExternalName":
        return out
    cips = [ip for ip in (spec.get("clusterIPs") or [spec.get("clusterIP")] or [])
            if ip and ip != "None" and _is_v4(ip)]
    ext_ips = [ip for ip in spec.get("externalIPs") or [] if _is_v4(ip)]
    lb_ips = [i["ip"] for i in ((svc.get("status") or {}).get("loadBalancer") or {})
              .get("ingress") or [] if i.get("ip") and _is_v4(i["ip"])
              and i.get("ipMode", "VIP") != "Proxy"]
    if not cips:          # headless: DNS only, nothing to proxy
        return out
    affinity = spec.get("sessionAffinity") == "ClientIP"
    timeout = DEFAULT_AFFINITY_TIMEOUT
    if affinity:
        timeout = int((((spec.get("sessionAffinityConfig") or {}).get("clientIP") or {})
                       .get("timeoutSeconds")) or DEFAULT_AFFINITY_TIMEOUT)
    itp_local = spec.get("internalTrafficPolicy") == "Local"
    etp_local = spec.get("externalTrafficPolicy") == "Local"
    not_pod = f"ip saddr != {_cidr_set(cfg.cluster_cidrs)} " if cfg.cluster_cidrs else ""

    for sp in spec.get("ports") or []:
        proto = (sp.get("protocol") or "TCP")
        p = proto.lower()
        port = int(sp.get("port") or 0)
        if not port:
            continue
        node_port = int(sp.get("nodePort") or 0) if stype in ("NodePort", "LoadBalancer") else 0
        base = port_base(ns, name, proto, port)
        all_eps = endpoints_for_port(slices, sp.get("name") or "", proto)
        cluster_eps = usable(all_eps)
        local_eps = usable([e for e in all_eps if e.node == cfg.node_name])

        # endpoint chains (shared by the cluster and local chains)
        ep_chain: dict[tuple[str, int], str] = {}
        aff_set: dict[tuple[str, int], str] = {}
        for e in {(e.ip, e.port): e for e in cluster_eps + local_eps}.values():
            cn = endpoint_chain_name(base, e.ip, e.port)
            ep_chain[(e.ip, e.port)] = cn
            rules = [f"ip saddr {e.ip} jump mark-for-masquerade"]
            if affinity:
                sn = affinity_set_name(base, e.ip, e.port, timeout)
                aff_set[(e.ip, e.port)] = sn
                out.sets[sn] = f"type ipv4_addr; flags dynamic,timeout; timeout {timeout}s;"
                rules.append(f"update @{sn} {{ ip saddr }}")
            out.counters[cn] = (ns, name, f"{port}/{proto}", f"{e.ip}:{e.port}")
            rules.append(f"counter name {cn}")
            rules.append(f"meta l4proto {p} dnat to {e.ip}:{e.port}")
            out.chains[cn] = rules

        masq = [f"ip daddr {cip} {p} dport {port} {not_pod}jump mark-for-masquerade"
                for cip in cips]
        svc_chain = chain_name("service", base)
        local_chain = chain_name("local", base)
        if cluster_eps:
            out.chains[svc_chain] = masq + _lb_rules(cluster_eps, ep_chain, aff_set, cfg.lb_mode)
        if (itp_local or etp_local) and local_eps:
            out.chains[local_chain] = masq + _lb_rules(local_eps, ep_chain, aff_set, cfg.lb_mode)

        # ClusterIPs
        internal = local_eps if itp_local else cluster_eps
        for cip in cips:
            key = f"{cip} . {p} . {port}"
            if internal:
                out.elements.append(("service-ips", key,
                                     f"goto {local_chain if itp_local else svc_chain}"))
            else:
                out.elements.append(("no-endpoint-services", key,
                                     "drop" if cluster_eps else "goto reject-chain"))
        # external entry points
        fronts = [(ip, f"{ip} . {p} . {port}") for ip in ext_ips + lb_ips]
        if fronts or node_port:
            external = local_eps if etp_local else cluster_eps
            if external:
                xc = chain_name("external", base)
                if etp_local:
                    rules = []
                    if cfg.cluster_cidrs:
                        rules.append(f"ip saddr {_cidr_set(cfg.cluster_cidrs)} goto {svc_chain}")
                    rules += ["fib saddr type local jump mark-for-masquerade",
                              f"fib saddr type local goto {svc_chain}",
                              f"goto {local_chain}"]
                else:
                    rules = ["jump mark-for-masquerade", f"goto {svc_chain}"]
                out.chains[xc] = rules
                for _, key in fronts:
                    out.elements.append(("service-ips", key, f"goto {xc}"))
                if node_port:
                    out.elements.append(("service-nodeports", f"{p} . {node_port}", f"goto {xc}"))
            else:
                verdict = "drop" if cluster_eps else "goto reject-chain"
                for _, key in fronts:
                    out.elements.append(("no-endpoint-services", key, verdict))
                if node_port:
                    out.elements.append(("no-endpoint-nodeports", f"{p} . {node_port}", verdict))
        if p == "udp":
            for e in cluster_eps + local_eps:
                for cip in cips + ext_ips + lb_ips:
                    out.udp_flows.add((cip, port, e.ip))
                if node_port:
                    out.udp_flows.add(("", node_port, e.ip))
    return out


def render_all(services: Iterable[dict], slices: Iterable[dict],
               cfg: ProxyConfig) -> dict[ServiceKey, ServiceRules]:
    by_svc = slices_by_service(slices)
    out: dict[ServiceKey, ServiceRules] = {}
    for svc in services:
        md = svc.get("metadata") or {}
        key = (md.get("namespace") or "default", md.get("name") or "")
        out[key] = render_service(svc, by_svc.get(key, []), cfg)
    return out


# --------------------------------------------------------------------------------- scripts

def _base_rules(cfg: ProxyConfig) -> dict[str, list[str]]:
    m = f"0x{MASQ_MARK:x}"
    input_rules = ["ct state new jump nodeport-endpoints-check",
                   "ct state new jump service-endpoints-check"]
    if cfg.service_cidrs:
        # a ClusterIP packet that reaches input was not DNATed: unknown IP or port
        input_rules.append(f"ct state new ip daddr {_cidr_set(cfg.service_cidrs)} "
                           "jump reject-chain")
    return {
        "nat-prerouting": ["jump services"],
        "nat-output": ["jump services"],
        "nat-postrouting": ["jump masquerading"],
        "filter-input": input_rules,
        "filter-forward": ["ct state new jump service-endpoints-check"],
        "filter-output": ["ct state new jump service-endpoints-check"],
        "services": ["ip daddr . meta l4proto . th dport vmap @service-ips",
                     "ip daddr @nodeport-ips meta l4proto . th dport vmap @service-nodeports"],
        "masquerading": [f"meta mark & {m} == 0 return",
                         f"meta mark set meta mark ^ {m}",
                         "masquerade fully-random"],
        "mark-for-masquerade": [f"meta mark set meta mark | {m}"],
        "reject-chain": ["meta l4proto tcp reject with tcp reset", "reject"],
        "service-endpoints-check":
            ["ip daddr . meta l4proto . th dport vmap @no-endpoint-services"],
        "nodeport-endpoints-check":
            ["ip daddr @nodeport-ips meta l4proto . th dport vmap @no-endpoint-nodeports"],
    }


def _elements(lines: list[str], t: str, elements: Iterable[tuple[str, str, str]]) -> None:
    by_map: dict[str, list[str]] = {}
    for mp, key, verdict in elements:
        by_map.setdefault(mp, []).append(f"{key} : {verdict}")
    for mp in sorted(by_map):
        lines.append(f"add element {t} {mp} {{ {', '.join(by_map[mp])} }}")


def _chain_decl(lines: list[str], t: str, name: str, hook: str = "") -> None:
    lines.append(f"add chain {t} {name}" + (f" {{ {hook} }}" if hook else ""))


def render_full(rules: dict[ServiceKey, ServiceRules], cfg: ProxyConfig,
                existing: Existing | None) -> str:
    """One transaction that makes the table exactly what `rules` describe.

    `existing` is what the kernel has now (None when unknown: then the table is deleted and
    recreated, which loses counters and affinity state but nothing else)."""
    t = f"{cfg.family} {cfg.table}"
    lines = [f"add table {t}"]
    if existing is None:
        lines += [f"delete table {t}", f"add table {t}"]
        existing = Existing()
    base = _base_rules(cfg)
    for name, hook in BASE_CHAINS.items():
        _chain_decl(lines, t, name, hook)
    for name, typ in MAPS.items():
        lines.append(f"add map {t} {name} {{ type {typ}; }}")
    lines.append(f"add set {t} nodeport-ips {{ type ipv4_addr; }}")
    wanted_chains: dict[str, list[str]] = dict(base)
    wanted_sets: dict[str, str] = {}
    wanted_counters: set[str] = set()
    for sr in rules.values():
        wanted_chains.update(sr.chains)
        wanted_sets.update(sr.sets)
        wanted_counters.update(sr.counters)
    for name in wanted_chains:
        if name not in BASE_CHAINS:
            _chain_decl(lines, t, name)
    # empty everything that exists, then drop what is stale
    for name in sorted(existing.chains | set(wanted_chains)):
        if name in existing.chains:
            lines.append(f"flush chain {t} {name}")
    for name in MAPS:
        if name in existing.sets:
            lines.append(f"flush map {t} {name}")
    if "nodeport-ips" in existing.sets:
        lines.append(f"flush set {t} nodeport-ips")
    for name in sorted(existing.chains - set(wanted_chains)):
        lines.append(f"delete chain {t} {name}")
    for name in sorted(existing.sets - set(wanted_sets) - set(MAPS) - set(BASE_SETS)):
        lines.append(f"delete set {t} {name}")
    for name in sorted(existing.counters - wanted_counters):
        lines.append(f"delete counter {t} {name}")
    # objects, rules, elements
    for name, body in sorted(wanted_sets.items()):
        lines.append(f"add set {t} {name} {{ {body} }}")
    for name in sorted(wanted_counters):
        lines.append(f"add counter {t} {name}")
    for name, rs in wanted_chains.items():
        for r in rs:
            lines.append(f"add rule {t} {name} {r}")
    if cfg.node_ips:
        v4 = [ip for ip in cfg.node_ips if _is_v4(ip)]
        if v4:
            lines.append(f"add element {t} nodeport-ips {{ {', '.join(v4)} }}")
    _elements(lines, t, (e for sr in rules.values() for e in sr.elements))
    return "\n".join(lines) + "\n"


def render_incremental(old: dict[ServiceKey, ServiceRules],
                       new: dict[ServiceKey, ServiceRules],
                       changed: Iterable[ServiceKey], cfg: ProxyConfig) -> str:
    """One transaction that replaces only the changed services' chains, sets, counters and
    map elements; `old` must be what the kernel has (the last applied render). Returns ""
    when nothing differs."""
    t = f"{cfg.family} {cfg.table}"
    keys = [k for k in changed if old.get(k, ServiceRules()) != new.get(k, ServiceRules())]
    if not keys:
        return ""
    empty = ServiceRules()
    o_chains: dict[str, list[str]] = {}
    n_chains: dict[str, list[str]] = {}
    o_sets: set[str] = set()
    n_sets: dict[str, str] = {}
    o_ctr: set[str] = set()
    n_ctr: set[str] = set()
    del_el: list[tuple[str, str]] = []
    add_el: list[tuple[str, str, str]] = []
    for k in keys:
        o, n = old.get(k, empty), new.get(k, empty)
        o_chains.update(o.chains)
        n_chains.update(n.chains)
        o_sets.update(o.sets)
        n_sets.update(n.sets)
        o_ctr.update(o.counters)
        n_ctr.update(n.counters)
        del_el += [(mp, key) for mp, key, _ in o.elements]
        add_el += n.elements
    lines: list[str] = []
    by_map: dict[str, list[str]] = {}
    for mp, key in del_el:
        by_map.setdefault(mp, []).append(key)
    for mp in sorted(by_map):
        lines.append(f"delete element {t} {mp} {{ {', '.join(by_map[mp])} }}")
    for name in n_chains:
        if name not in o_chains:
            _chain_decl(lines, t, name)
    for name in o_chains:
        lines.append(f"flush chain {t} {name}")
    for name in o_chains:
        if name not in n_chains:
            lines.append(f"delete chain {t} {name}")
    for name in sorted(o_sets - set(n_sets)):
        lines.append(f"delete set {t} {name}")
    for name in sorted(o_ctr - n_ctr):
        lines.append(f"delete counter {t} {name}")
    for name in sorted(set(n_sets) - o_sets):
        lines.append(f"add set {t} {name} {{ {n_sets[name]} }}")
    for name in sorted(n_ctr - o_ctr):
        lines.append(f"add counter {t} {name}")
    for name, rs in n_chains.items():
        for r in rs:
            lines.append(f"add rule {t} {name} {r}")
    _elements(lines, t, add_el)
    return "\n".join(lines) + "\n"


def render_delete(cfg: ProxyConfig) -> str:
    """Delete the table if it exists."""
    t = f"{cfg.family} {cfg.table}"
    return f"add table {t}\ndelete table {t}\n"
