"""The cluster zone: every answer the kubernetes DNS plugin would give, computed when objects
change so that answering a query is a dictionary lookup.

Pure: fed with plain object dicts (what the API returns), no I/O. The server reads
`Zone.answers[(qname_wire_lower, qtype)]` on the hot path and calls `Zone.resolve` on a miss.

Behaviour follows the Kubernetes DNS specification as CoreDNS's kubernetes plugin implements
it with kubeadm's configuration (`pods insecure`, `ttl 30`, reverse zones with fallthrough)."""
from __future__ import annotations

import ipaddress
import time
from dataclasses import dataclass

from . import wire as W
from .wire import RR

SCHEMA_VERSION = "1.1.0"
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
REVERSE_V4 = W.to_wire("in-addr.arpa")
REVERSE_V6 = W.to_wire("ip6.arpa")


class Entry:
    """A precomputed answer. `body` is the wire encoding of all sections after the question,
    valid for the question name it was built for (only the name's length matters).
    soa: 0 none, 1 the zone SOA goes in Authority (negative answers), 2 it is the Answer.
    alias: for ExternalName services, the CNAME target (A/AAAA/TXT are chased per query)."""
    __slots__ = ("rcode", "an", "ns", "ar", "body", "soa", "rrs", "alias")

    def __init__(self, rcode: int = W.NOERROR, an: int = 0, ns: int = 0, ar: int = 0,
                 body: bytes = b"", soa: int = 0, rrs: tuple = (), alias: bytes | None = None):
        self.rcode, self.an, self.ns, self.ar, self.body = rcode, an, ns, ar, body
        self.soa, self.rrs, self.alias = soa, rrs, alias

    def __repr__(self) -> str:
        return (f"Entry({W.RCODE_NAMES.get(self.rcode, self.rcode)}, an={self.an}, "
                f"ns={self.ns}, ar={self.ar}, soa={self.soa})")


NXDOMAIN = Entry(W.NXDOMAIN, soa=1)
NODATA = Entry(W.NOERROR, soa=1)
SOA_ANSWER = Entry(W.NOERROR, soa=2)
SERVFAIL = Entry(W.SERVFAIL)
REFUSED = Entry(W.REFUSED)
FORWARD = Entry(W.NOERROR)          # sentinel: ask the upstream resolvers


def encode(qname: bytes, answer: list[RR], additional: list[RR] = (), rcode: int = W.NOERROR,
           alias: bytes | None = None) -> Entry:
    enc = W.Encoder(qname)
    for rr in answer:
        enc.add(rr)
    for rr in additional:
        enc.add(rr)
    return Entry(rcode, len(answer), 0, len(additional), enc.bytes(), 0, tuple(answer), alias)


@dataclass
class _Chase:
    """An ExternalName answer to finish per query: `rrs` so far, and the out-of-zone name
    (with `qtype`) whose upstream answer must be appended, if any."""
    rrs: list
    forward: bytes | None
    qtype: int


def endpoint_name(ip: str, hostname: str | None) -> str:
    """The DNS label of an endpoint: its hostname, else the address with dashes."""
    if hostname:
        return hostname
    if ":" in ip:
        s = ip.replace(":", "-")
        return s + "0" if s.endswith("-") else s
    return ip.replace(".", "-")


def _ip_from_label(label: str) -> ipaddress._BaseAddress | None:
    if label.count("-") == 3 and "--" not in label:
        text = label.replace("-", ".")
    else:
        text = label.replace("-", ":")
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _addr_rr(owner: bytes | None, ip: str, ttl: int) -> RR:
    addr = ipaddress.ip_address(ip)
    return RR(owner, W.A if addr.version == 4 else W.AAAA, ttl, (addr.packed,))


class Zone:
    def __init__(self, cluster_domain: str = "cluster.local", dns_ip: str = "10.96.0.10",
                 ttl: int = 30, pods: str = "insecure", clock=time.time) -> None:
        if pods not in ("insecure", "verified", "disabled"):
            raise ValueError("pods must be insecure, verified or disabled")
        self.domain = cluster_domain.strip(".").lower()
        self.zwire = W.to_wire(self.domain)
        self.zlabels = W.labels(self.zwire)
        self.zlen = len(self.zwire)
        self.dns_ip = dns_ip
        self.ttl = ttl
        self.pods_mode = pods
        self.clock = clock
        self.synced = False
        # object state
        self.namespaces: set[str] = set()
        self.services: dict[tuple[str, str], dict] = {}
        self.svc_by_ns: dict[str, set[str]] = {}
        self.slices: dict[tuple[str, str], tuple[str, dict]] = {}
        self.slices_by_svc: dict[tuple[str, str], dict[str, dict]] = {}
        self.pod_ips: dict[tuple[str, str], list[str]] = {}
        self.pod_ip_count: dict[tuple[str, str], int] = {}      # (ns, ip) -> pods
        # answers
        self.answers: dict[tuple[bytes, int], Entry] = {}
        self.names: dict[bytes, Entry | bool] = {}      # existing names (NODATA otherwise)
        self._owned: dict[tuple[str, str], tuple[list, list]] = {}
        self._ptr_claims: dict[str, dict[tuple[str, str], list[bytes]]] = {}
        self._svc_ptrs: dict[tuple[str, str], set[str]] = {}
        self._ptr_stale: dict[bytes, str] = {}      # reverse name -> IP whose PTR is unbuilt
        self._ns_owner: tuple[str, str] | None = None
        self.serial = 0
        self.soa_tail = b""
        self._touch()
        self._build_apex()

    # ------------------------------------------------------------------ helpers
    def _w(self, *parts: str) -> bytes:
        return W.to_wire(".".join(parts + (self.domain,)))

    def _touch(self) -> None:
        self.serial = int(self.clock()) & 0xFFFFFFFF
        mname = self._w("ns", "dns")
        rname = self._w("hostmaster")
        minttl = self.ttl
        rdata = mname + rname + W.struct.pack(">IIIII", self.serial, 7200, 1800, 86400, minttl)
        self.soa_tail = W.RRFIX.pack(W.SOA, W.CLASS_IN, min(minttl, 300), len(rdata)) + rdata

    def soa_rr(self, qname: bytes) -> bytes:
        """The zone's SOA record for a response whose question is `qname` (in the zone)."""
        return W.U16.pack(0xC000 | (12 + len(qname) - self.zlen)) + self.soa_tail

    def _build_apex(self) -> None:
        z = self.zwire
        for name in (z, self._w("svc"), self._w("pod")):
            self.names[name] = True
        self.answers[(z, W.SOA)] = SOA_ANSWER
        ver = self._w("dns-version")
        self.answers[(ver, W.TXT)] = encode(ver, [RR(None, W.TXT, 28800,
                                                     W.rdata_txt(SCHEMA_VERSION))])
        self._build_ns()

    def _build_ns(self) -> None:
        """NS of the zone: the Service fronting this server (the one owning dns_ip), else
        ns.dns.<zone> with dns_ip as glue."""
        owner = None
        for key, svc in sorted(self.services.items()):
            if key[0] in self.namespaces and self.dns_ip in self._cluster_ips(svc):
                owner = key
                break
        self._ns_owner = owner
        if owner:
            target = self._w(owner[1], owner[0], "svc")
            ips = [ip for ip in self._cluster_ips(self.services[owner])]
        else:
            target = self._w("ns", "dns")
            ips = [self.dns_ip]
        z = self.zwire
        self.answers[(z, W.NS)] = encode(z, [RR(None, W.NS, self.ttl, (("c", target),))],
                                         [_addr_rr(target, ip, self.ttl) for ip in ips])

    @staticmethod
    def _cluster_ips(svc: dict) -> list[str]:
        spec = svc.get("spec") or {}
        if spec.get("type") == "ExternalName":
            return []
        ips = spec.get("clusterIPs") or ([spec["clusterIP"]] if spec.get("clusterIP") else [])
        out = []
        for ip in ips:
            try:
                out.append(str(ipaddress.ip_address(ip)))
            except ValueError:
                pass            # "None" (headless) or garbage
        return out

    # ------------------------------------------------------------------ object feed
    def set_namespace(self, obj: dict) -> None:
        name = obj["metadata"]["name"]
        if name in self.namespaces:
            return
        self.namespaces.add(name)
        self._namespace_changed(name)

    def delete_namespace(self, name: str) -> None:
        if name not in self.namespaces:
            return
        self.namespaces.discard(name)
        self._namespace_changed(name)

    def _namespace_changed(self, ns: str) -> None:
        for form in ("svc", "pod"):
            w = self._w(ns, form)
            if ns in self.namespaces:
                self.names[w] = True
            else:
                self.names.pop(w, None)
        for svc in list(self.svc_by_ns.get(ns, ())):
            self._recompute(ns, svc)
        self._touch()

    def set_service(self, obj: dict) -> None:
        md = obj["metadata"]
        ns, name = md.get("namespace") or "default", md["name"]
        self.services[(ns, name)] = obj
        self.svc_by_ns.setdefault(ns, set()).add(name)
        self._recompute(ns, name)
        self._touch()

    def delete_service(self, ns: str, name: str) -> None:
        if self.services.pop((ns, name), None) is None:
            return
        names = self.svc_by_ns.get(ns)
        if names:
            names.discard(name)
            if not names:
                del self.svc_by_ns[ns]
        self._recompute(ns, name)
        self._touch()

    def set_endpointslice(self, obj: dict) -> None:
        md = obj["metadata"]
        ns, name = md.get("namespace") or "default", md["name"]
        svc = (md.get("labels") or {}).get(SERVICE_NAME_LABEL)
        old = self.slices.get((ns, name))
        if old and old[0] != svc:
            self.delete_endpointslice(ns, name)
        if not svc:
            return
        self.slices[(ns, name)] = (svc, obj)
        self.slices_by_svc.setdefault((ns, svc), {})[name] = obj
        self._recompute(ns, svc)
        self._touch()

    def delete_endpointslice(self, ns: str, name: str) -> None:
        old = self.slices.pop((ns, name), None)
        if not old:
            return
        svc = old[0]
        group = self.slices_by_svc.get((ns, svc))
        if group is not None:
            group.pop(name, None)
            if not group:
                del self.slices_by_svc[(ns, svc)]
        self._recompute(ns, svc)
        self._touch()

    def set_pod(self, obj: dict) -> None:
        md = obj["metadata"]
        ns, name = md.get("namespace") or "default", md["name"]
        st = obj.get("status") or {}
        ips = [p.get("ip") for p in st.get("podIPs") or []] or (
            [st["podIP"]] if st.get("podIP") else [])
        self._pod_ips_set(ns, name, [ip for ip in ips if ip])

    def delete_pod(self, ns: str, name: str) -> None:
        self._pod_ips_set(ns, name, [])

    def _pod_ips_set(self, ns: str, name: str, ips: list[str]) -> None:
        for ip in self.pod_ips.pop((ns, name), []):
            k = (ns, ip)
            self.pod_ip_count[k] -= 1
            if not self.pod_ip_count[k]:
                del self.pod_ip_count[k]
        if ips:
            norm = []
            for ip in ips:
                try:
                    norm.append(str(ipaddress.ip_address(ip)))
                except ValueError:
                    continue
            self.pod_ips[(ns, name)] = norm
            for ip in norm:
                self.pod_ip_count[(ns, ip)] = self.pod_ip_count.get((ns, ip), 0) + 1

    # ------------------------------------------------------------------ per-service answers
    def _recompute(self, ns: str, name: str) -> None:
        key = (ns, name)
        old_keys, old_names = self._owned.pop(key, ((), ()))
        for k in old_keys:
            self.answers.pop(k, None)
        for n in old_names:
            self.names.pop(n, None)
        answers: dict[tuple[bytes, int], Entry] = {}
        names: dict[bytes, Entry | bool] = {}
        ptrs: dict[str, list[bytes]] = {}
        svc = self.services.get(key)
        if svc is not None and ns in self.namespaces:
            self._service_records(ns, name, svc, answers, names, ptrs)
        self.answers.update(answers)
        self.names.update(names)
        self._owned[key] = (list(answers), list(names))
        # reverse records
        old_ips = self._svc_ptrs.pop(key, set())
        for ip in old_ips:
            claims = self._ptr_claims.get(ip)
            if claims:
                claims.pop(key, None)
                if not claims:
                    del self._ptr_claims[ip]
        for ip, targets in ptrs.items():
            self._ptr_claims.setdefault(ip, {})[key] = targets
        if ptrs:
            self._svc_ptrs[key] = set(ptrs)
        for ip in old_ips | set(ptrs):
            self._ptr_changed(ip)
        # the zone's NS follows the service that owns the DNS server's address
        if self._ns_owner == key or (svc is not None and self.dns_ip in self._cluster_ips(svc)):
            self._build_ns()

    def _ptr_changed(self, ip: str) -> None:
        """Drop the PTR answer of `ip`; the next question for it builds it again. (A pod IP
        behind many Services has a claim from each: building its answer on every change
        would make creating N such Services cost N^2.)"""
        rev = W.to_wire(ipaddress.ip_address(ip).reverse_pointer)
        self.answers.pop((rev, W.PTR), None)
        self._ptr_stale[rev] = ip

    def _build_ptr(self, ip: str) -> None:
        rev = W.to_wire(ipaddress.ip_address(ip).reverse_pointer)
        self._ptr_stale.pop(rev, None)
        # a snapshot taken in one C call: the UDP thread builds lazily while the event loop
        # may be changing the claims
        claims = sorted((self._ptr_claims.get(ip) or {}).items())
        if not claims:
            self.answers.pop((rev, W.PTR), None)
            return
        svc_targets = [t[1] for k, t in claims if t[0] == "svc"]
        if svc_targets:
            targets = svc_targets[:1]
        else:
            targets = sorted({t for k, ts in claims for t in ts[1:]})
        self.answers[(rev, W.PTR)] = encode(rev, [RR(None, W.PTR, self.ttl, (("c", t),))
                                                  for t in targets])

    def _ready_endpoints(self, ns: str, name: str) -> list[tuple[str, str, list[dict]]]:
        """(endpoint name, ip, ports of its slice) for every ready address."""
        out = []
        for _, sl in sorted(self.slices_by_svc.get((ns, name), {}).items()):
            if sl.get("addressType", "IPv4") not in ("IPv4", "IPv6"):
                continue
            ports = sl.get("ports") or []
            for ep in sl.get("endpoints") or []:
                cond = ep.get("conditions") or {}
                if cond.get("ready") is False:
                    continue
                for ip in ep.get("addresses") or []:
                    try:
                        ip = str(ipaddress.ip_address(ip))
                    except ValueError:
                        continue
                    out.append((endpoint_name(ip, ep.get("hostname")), ip, ports))
        return out

    def _service_records(self, ns: str, name: str, svc: dict, answers: dict, names: dict,
                         ptrs: dict) -> None:
        ttl = self.ttl
        spec = svc.get("spec") or {}
        base = self._w(name, ns, "svc")
        if spec.get("type") == "ExternalName":
            try:
                target = W.to_wire(spec.get("externalName") or "")
            except ValueError:
                target = None
            if target is None or target == b"\x00":
                names[base] = True
                return
            cname = encode(base, [RR(None, W.CNAME, ttl, (("c", target),))], alias=target)
            answers[(base, W.CNAME)] = cname
            names[base] = cname
            return
        eps = self._ready_endpoints(ns, name)
        cips = self._cluster_ips(svc)
        headless = (spec.get("clusterIP") == "None"
                    or "None" in (spec.get("clusterIPs") or ()))
        # endpoint names (CoreDNS answers them for every service with endpoints)
        by_name: dict[str, list[str]] = {}
        for epname, ip, _ in eps:
            ips = by_name.setdefault(epname, [])
            if ip not in ips:
                ips.append(ip)
            try:
                t = self._w(epname, name, ns, "svc")
            except ValueError:
                continue
            ptrs.setdefault(ip, ["ep"])
            if t not in ptrs[ip]:
                ptrs[ip].append(t)
        for epname, ips in by_name.items():
            try:
                w = self._w(epname, name, ns, "svc")
            except ValueError:
                continue
            names[w] = True
            self._addr_answers(w, ips, answers)

        if headless:
            if not eps:
                return              # no ready address: NXDOMAIN for the whole name
            names[base] = True
            ips = []
            for _, ip, _ in eps:
                if ip not in ips:
                    ips.append(ip)
            self._addr_answers(base, ips, answers)
            # SRV: one per (ready endpoint address, port); glue per endpoint name
            all_c: list[tuple[bytes, int, str]] = []
            by_port: dict[bytes, list[tuple[bytes, int, str]]] = {}
            for epname, ip, ports in eps:
                try:
                    target = self._w(epname, name, ns, "svc")
                except ValueError:
                    continue
                for p in ports:
                    if p.get("port") is None:
                        continue
                    c = (target, int(p["port"]), ip)
                    all_c.append(c)
                    pname = p.get("name") or ""
                    if pname:
                        proto = (p.get("protocol") or "TCP").lower()
                        w = W.from_labels([b"_" + pname.encode().lower(),
                                           b"_" + proto.encode()] + W.labels(base))
                        by_port.setdefault(w, []).append(c)
            self._srv(base, all_c, answers)
            for w, cands in by_port.items():
                names[w] = True
                self._srv(w, cands, answers)
            return

        names[base] = True
        for ip in cips:
            ptrs[ip] = ["svc", base]
        self._addr_answers(base, cips, answers)
        ports = spec.get("ports") or []
        all_c = [(base, int(p["port"]), ip) for p in ports if p.get("port") for ip in cips]
        if cips:
            self._srv(base, all_c, answers)
        by_port = {}
        for p in ports:
            pname = p.get("name") or ""
            if not pname or not p.get("port"):
                continue
            proto = (p.get("protocol") or "TCP").lower()
            w = W.from_labels([b"_" + pname.encode().lower(), b"_" + proto.encode()]
                              + W.labels(base))
            by_port.setdefault(w, []).extend((base, int(p["port"]), ip) for ip in cips)
        for w, cands in by_port.items():
            names[w] = True
            if cands:
                self._srv(w, cands, answers)

    def _addr_answers(self, owner: bytes, ips: list[str], answers: dict) -> None:
        v4 = [ip for ip in ips if ":" not in ip]
        v6 = [ip for ip in ips if ":" in ip]
        if v4:
            answers[(owner, W.A)] = encode(owner, [_addr_rr(None, ip, self.ttl) for ip in v4])
        if v6:
            answers[(owner, W.AAAA)] = encode(owner, [_addr_rr(None, ip, self.ttl) for ip in v6])

    def _srv(self, owner: bytes, cands: list[tuple[bytes, int, str]], answers: dict) -> None:
        """SRV records from candidates (target, port, ip): weight is computed over all
        candidates before duplicates (same target and port) are merged."""
        if not cands:
            return
        weight = max(1, 100 // len(cands))
        seen = set()
        srv = []
        glue = []
        glued = set()
        for target, port, ip in cands:
            if (target, port) not in seen:
                seen.add((target, port))
                srv.append(RR(None, W.SRV, self.ttl, W.rdata_srv(0, weight, port, target)))
            if (target, ip) not in glued:
                glued.add((target, ip))
                glue.append(_addr_rr(target, ip, self.ttl))
        answers[(owner, W.SRV)] = encode(owner, srv, glue)

    # ------------------------------------------------------------------ queries
    def in_zone(self, qname: bytes) -> bool:
        return qname.endswith(self.zwire) and (
            len(qname) == self.zlen or W.labels(qname)[-len(self.zlabels):] == self.zlabels)

    def resolve(self, qname: bytes, qtype: int):
        """Answer a question (lowercased wire name): an Entry, the FORWARD sentinel, or a
        _Chase for ExternalName. The hot path reads `answers` itself before calling this."""
        e = self.answers.get((qname, qtype))
        if e is not None:
            return e
        if qtype == W.PTR and qname in self._ptr_stale:
            self._build_ptr(self._ptr_stale[qname])
            e = self.answers.get((qname, qtype))
            if e is not None:
                return e
        if qtype in (W.AXFR, W.IXFR):
            return REFUSED if self.in_zone(qname) else FORWARD
        if not qname.endswith(self.zwire):
            return FORWARD              # reverse zones fall through, other names go upstream
        labels = W.labels(qname)
        zl = len(self.zlabels)
        if labels[-zl:] != self.zlabels:
            return FORWARD
        n = self.names.get(qname)
        if n is not None:
            if type(n) is Entry and n.alias and qtype in (W.A, W.AAAA, W.TXT):
                return self.chase(qname, qtype)
            return NODATA
        rel = labels[:-zl]
        # _port._proto may be written without underscores
        if len(rel) == 5 and rel[-1] == b"svc":
            alt = [rel[0].lstrip(b"_"), rel[1].lstrip(b"_")]
            if alt[0] and alt[1]:
                w = W.from_labels([b"_" + alt[0], b"_" + alt[1]] + labels[2:])
                if w != qname:
                    e = self.answers.get((w, qtype))
                    if e is not None:
                        return encode(qname, [RR(None, rr.rtype, rr.ttl, rr.rdata)
                                              for rr in e.rrs], _glue(e, w, self))
                    if w in self.names:
                        return NODATA
        if len(rel) == 3 and rel[-1] == b"pod" and self.pods_mode != "disabled":
            ns = rel[1].decode("ascii", "replace")
            if ns in self.namespaces:
                addr = _ip_from_label(rel[0].decode("ascii", "replace"))
                if addr is not None and (self.pods_mode == "insecure"
                                         or (ns, str(addr)) in self.pod_ip_count):
                    want = W.A if addr.version == 4 else W.AAAA
                    if qtype == want:
                        return encode(qname, [RR(None, want, self.ttl, (addr.packed,))])
                    return NODATA
        return NXDOMAIN if self.synced else SERVFAIL

    def chase(self, qname: bytes, qtype: int) -> _Chase:
        """Follow an ExternalName's CNAME chain (at most 10 links) through the zone."""
        first = self.names[qname]
        rrs = [first.rrs[0]]
        cur = first.alias
        seen = {qname}
        for _ in range(10):
            if cur in seen:
                return _Chase(rrs, None, qtype)
            seen.add(cur)
            if not self.in_zone(cur):
                return _Chase(rrs, cur, qtype)
            e = self.answers.get((cur, qtype))
            if e is not None:
                rrs.extend(RR(cur if rr.owner is None else rr.owner, rr.rtype, rr.ttl, rr.rdata)
                           for rr in e.rrs)
                return _Chase(rrs, None, qtype)
            n = self.names.get(cur)
            if type(n) is Entry and n.alias:
                rrs.append(RR(cur, W.CNAME, n.rrs[0].ttl, n.rrs[0].rdata))
                cur = n.alias
                continue
            break
        return _Chase(rrs, None, qtype)


def _glue(e: Entry, name: bytes, zone: Zone) -> list[RR]:
    """Recover the additional records of an SRV entry by re-deriving them (rare path)."""
    out = []
    for rr in e.rrs:
        if rr.rtype == W.SRV:
            target = rr.rdata[1][1]
            for t in (W.A, W.AAAA):
                ge = zone.answers.get((target, t))
                if ge is not None:
                    out.extend(RR(target, g.rtype, g.ttl, g.rdata) for g in ge.rrs)
    seen = set()
    uniq = []
    for rr in out:
        k = (rr.owner, rr.rtype, rr.rdata)
        if k not in seen:
            seen.add(k)
            uniq.append(rr)
    return uniq
