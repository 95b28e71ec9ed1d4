"""Service ClusterIP and NodePort allocation as Kubernetes' service REST storage does it.

Pure: the API server calls these under its lock with the set of values in use (computed from
the stored Services) and stores the allocated object. "Releasing" a value just means the field
is gone from the stored object.

Like Kubernetes' ipallocator/portallocator bitmaps, random (dynamic) picks prefer the upper
part of the range, leaving a lower band for static requests: for IPs the band is
min(max(16, size/16), 256) addresses, for node ports min(max(16, size/32), 128) ports.
"""
from __future__ import annotations

import ipaddress
import random
from typing import Callable, Container, Iterable

from tinykube.api import errors
from tinykube.api.defaults import prepare_service
from tinykube.api.errors import FieldError
from tinykube.api.validation.common import go_string_slice, parse_ip


class AllocationError(Exception):
    """A requested value could not be allocated; str() is Kubernetes' text."""


class NotInRangeError(AllocationError):
    pass


class AlreadyAllocatedError(AllocationError):
    pass


class RangeFullError(AllocationError):
    def __init__(self) -> None:
        super().__init__("range is full")


def _range_offset(size: int, step: int, hi: int) -> int:
    """calculateRangeOffset: min(max(16, size/step), hi), 0 for ranges smaller than 16."""
    if size < 16:
        return 0
    return max(16, min(size // step, hi))


def _pick(lo: int, hi: int, taken, rng: random.Random) -> int | None:
    """A random free offset in [lo, hi), or None."""
    n = hi - lo
    if n <= 0:
        return None
    for _ in range(32):
        cand = lo + rng.randrange(n)
        if cand not in taken:
            return cand
    start = rng.randrange(n)
    for i in range(n):
        cand = lo + (start + i) % n
        if cand not in taken:
            return cand
    return None


class _Taken:
    """The offsets for which `is_taken(offset)` holds, as a container _pick can ask."""

    def __init__(self, is_taken: Callable[[int], bool]) -> None:
        self.is_taken = is_taken

    def __contains__(self, off: int) -> bool:
        return self.is_taken(off)


class ClusterIPAllocator:
    """Service IPs of one CIDR. Network and broadcast addresses are never handed out.

    `used` is asked membership only (canonical IP strings), so the API server passes a view of
    its index instead of a copy of every allocated IP."""

    def __init__(self, cidr: str, used: Container[str] = frozenset(),
                 rng: random.Random | None = None):
        self.net = ipaddress.ip_network(cidr, strict=False)
        self.cidr = str(self.net)
        self.family = "IPv4" if self.net.version == 4 else "IPv6"
        self.base = int(self.net.network_address) + 1
        total = self.net.num_addresses
        if self.net.version == 4:
            self.max = max(0, total - 2)
        else:
            self.max = max(0, total - 1)
        self.offset = _range_offset(total, 16, 256)
        self.used: set[int] = set()        # offsets of this allocator's own allocations
        self.taken = _Taken(lambda off: off in self.used
                            or str(ipaddress.ip_address(self.base + off)) in used)
        self.rng = rng or random.SystemRandom()

    def contains(self, ip: str) -> bool:
        p = parse_ip(ip)
        if p is None or p.version != self.net.version or p not in self.net:
            return False
        return 0 <= int(p) - self.base < self.max

    def allocate(self, requested: str | None = None) -> str:
        """The requested IP if in range and free, else a random free one.

        Raises NotInRangeError / AlreadyAllocatedError (requested) or RangeFullError."""
        if requested:
            p = parse_ip(requested)
            if not self.contains(requested) or p is None:
                raise NotInRangeError(f"the provided IP ({requested}) is not in the valid range. "
                                      f"The range of valid IPs is {self.cidr}")
            off = int(p) - self.base
            if off in self.taken:
                raise AlreadyAllocatedError("provided IP is already allocated")
            self.used.add(off)
            return str(p)
        off = _pick(self.offset, self.max, self.taken, self.rng)
        if off is None:
            off = _pick(0, min(self.offset, self.max), self.taken, self.rng)
        if off is None:
            raise RangeFullError()
        self.used.add(off)
        return str(ipaddress.ip_address(self.base + off))

    def allocate_next(self) -> str:
        return self.allocate(None)


class NodePortAllocator:
    """Node ports of one range, shared by all protocols (as Kubernetes' single bitmap)."""

    def __init__(self, range: tuple[int, int] = (30000, 32767),  # noqa: A002 - the brief's name
                 used: Container[int] | Iterable[tuple[int, str]] = frozenset(),
                 rng: random.Random | None = None):
        self.lo, self.hi = int(range[0]), int(range[1])
        self.used: set[int] = set()        # this allocator's own allocations
        if isinstance(used, (set, frozenset, list, tuple)):
            used = {int(u[0]) if isinstance(u, tuple) else int(u) for u in used}
        self.elsewhere = used
        size = self.hi - self.lo + 1
        self.offset = _range_offset(size, 32, 128)
        self.rng = rng or random.SystemRandom()

    def _taken(self, port: int) -> bool:
        return port in self.used or port in self.elsewhere

    @property
    def range_text(self) -> str:
        return f"{self.lo}-{self.hi}"

    def allocate(self, requested: int | None = None) -> int:
        if requested:
            if not self.lo <= requested <= self.hi:
                raise NotInRangeError("provided port is not in the valid range. "
                                      f"The range of valid ports is {self.range_text}")
            if self._taken(requested):
                raise AlreadyAllocatedError("provided port is already allocated")
            self.used.add(requested)
            return requested
        n = self.hi - self.lo + 1
        taken = _Taken(lambda off: self._taken(self.lo + off))
        off = _pick(self.offset, n, taken, self.rng)
        if off is None:
            off = _pick(0, min(self.offset, n), taken, self.rng)
        if off is None:
            raise RangeFullError()
        self.used.add(self.lo + off)
        return self.lo + off

    def allocate_next(self) -> int:
        return self.allocate(None)


# ============================================================================================


def _d(x) -> dict:
    return x if isinstance(x, dict) else {}


def _l(x) -> list:
    return x if isinstance(x, list) else []


def _int(x) -> int:
    return x if isinstance(x, int) and not isinstance(x, bool) else 0


def _needs_cluster_ip(spec: dict) -> bool:
    return spec.get("type") != "ExternalName"


def _needs_node_port(spec: dict) -> bool:
    return spec.get("type") in ("NodePort", "LoadBalancer")


def _needs_hc(spec: dict) -> bool:
    return spec.get("type") == "LoadBalancer" and spec.get("externalTrafficPolicy") == "Local"


def _should_allocate_node_ports(spec: dict) -> bool:
    if spec.get("type") == "NodePort":
        return True
    if spec.get("type") == "LoadBalancer":
        return spec.get("allocateLoadBalancerNodePorts") is not False
    return False


def _is_headless(spec: dict) -> bool:
    ips = _l(spec.get("clusterIPs"))
    return (ips[:1] == ["None"]) or spec.get("clusterIP") == "None"


def _init_ip_families(spec: dict, ospec: dict | None, cluster_family: str) -> list[FieldError]:
    """initIPFamilyFields for a single-stack cluster."""
    errs: list[FieldError] = []
    if ospec is not None and _needs_cluster_ip(ospec):
        if not _l(spec.get("ipFamilies")) and _l(ospec.get("ipFamilies")):
            spec["ipFamilies"] = list(ospec["ipFamilies"])
        if spec.get("ipFamilyPolicy") is None and ospec.get("ipFamilyPolicy") is not None:
            spec["ipFamilyPolicy"] = ospec["ipFamilyPolicy"]
    headless = _is_headless(spec)
    selectorless = not _d(spec.get("selector"))
    if spec.get("ipFamilyPolicy") is None:
        spec["ipFamilyPolicy"] = "RequireDualStack" if headless and selectorless else "SingleStack"
    fams = _l(spec.get("ipFamilies"))
    if not fams:
        ips = [ip for ip in _l(spec.get("clusterIPs")) if ip != "None"]
        for ip in ips:
            p = parse_ip(ip)
            if p is not None:
                fams.append("IPv4" if p.version == 4 else "IPv6")
    if spec["ipFamilyPolicy"] == "RequireDualStack" and not (headless and selectorless):
        errs.append(FieldError("Invalid", "spec.ipFamilyPolicy", "RequireDualStack",
                               "this cluster is not configured for dual-stack services"))
    for i, f in enumerate(fams):
        if f != cluster_family:
            errs.append(FieldError("Invalid", f"spec.ipFamilies[{i}]", f, "not configured on this cluster"))
    if errs:
        return errs
    spec["ipFamilies"] = fams or [cluster_family]
    return errs


def _find_requested_node_port(port: int, ports: list) -> int:
    for p in ports:
        p = _d(p)
        if _int(p.get("port")) == port and _int(p.get("nodePort")):
            return _int(p["nodePort"])
    return 0


def _node_port_error(i: int, np: int, err: Exception) -> FieldError:
    return FieldError("Invalid", f"spec.ports[{i}].nodePort", np, str(err))


def _init_node_ports(spec: dict, node_ports: NodePortAllocator) -> list[FieldError]:
    """initNodePorts: one node port per service port number (TCP and UDP of a port share it)."""
    by_port: dict[int, int] = {}
    ports = _l(spec.get("ports"))
    should = _should_allocate_node_ports(spec)
    for i, sp in enumerate(ports):
        if not isinstance(sp, dict):
            continue
        np_req = _int(sp.get("nodePort"))
        if not np_req and not should:
            continue
        port = _int(sp.get("port"))
        allocated = by_port.get(port, 0)
        if not allocated:
            np = _find_requested_node_port(port, ports)
            if np:
                try:
                    node_ports.allocate(np)
                except AllocationError as e:
                    return [_node_port_error(i, np, e)]
                sp["nodePort"] = np
                by_port[port] = np
            else:
                try:
                    np = node_ports.allocate_next()
                except RangeFullError as e:
                    raise errors.internal(f"failed to allocate a nodePort: {e}")
                sp["nodePort"] = np
                by_port[port] = np
        elif np_req != allocated:
            if not np_req:
                sp["nodePort"] = allocated
            else:
                try:
                    node_ports.allocate(np_req)
                except AllocationError as e:
                    return [_node_port_error(i, np_req, e)]
    return []


def _update_node_ports(spec: dict, ospec: dict, node_ports: NodePortAllocator) -> list[FieldError]:
    """updateNodePorts: keep the old service's ports, allocate new requests and missing ones."""
    old_numbers = {_int(_d(p).get("nodePort")) for p in _l(ospec.get("ports"))} - {0}
    allocated_here: set[int] = set()
    should = _should_allocate_node_ports(spec)
    for i, sp in enumerate(_l(spec.get("ports"))):
        if not isinstance(sp, dict):
            continue
        np = _int(sp.get("nodePort"))
        if not np and not should:
            continue
        if np:
            if np not in old_numbers and np not in allocated_here:
                try:
                    node_ports.allocate(np)
                except AllocationError as e:
                    return [_node_port_error(i, np, e)]
                allocated_here.add(np)
        else:
            try:
                sp["nodePort"] = node_ports.allocate_next()
            except RangeFullError as e:
                raise errors.internal(f"failed to allocate a nodePort: {e}")
    return []


def allocate_service(svc: dict, old: dict | None, cluster_ips: ClusterIPAllocator,
                     node_ports: NodePortAllocator) -> list[FieldError]:
    """Fill spec.clusterIP(s), ipFamilies, ipFamilyPolicy, ports[].nodePort and
    healthCheckNodePort for a create (`old` None) or an update, in place.

    Returns the FieldErrors Kubernetes reports as 422 Invalid (requested IP/port out of range
    or taken, families not configured). Raises ApiError 500 when a pool is exhausted."""
    prepare_service(svc, old)
    spec = svc.setdefault("spec", {})
    ospec = _d(old.get("spec")) if old is not None else None

    if not _needs_cluster_ip(spec):
        return []

    errs = _init_ip_families(spec, ospec, cluster_ips.family)
    if errs:
        return errs

    # ---- cluster IPs
    if _is_headless(spec):
        spec["clusterIP"] = "None"
        spec["clusterIPs"] = ["None"]
    else:
        keep = (ospec is not None and _needs_cluster_ip(ospec) and _l(ospec.get("clusterIPs"))
                and _l(spec.get("clusterIPs")))
        if not keep:
            ips = _l(spec.get("clusterIPs"))
            requested = ips[0] if ips else (spec.get("clusterIP") or None)
            if requested is not None and parse_ip(requested) is None:
                return []   # not an IP: validation reports it
            try:
                ip = cluster_ips.allocate(requested)
            except RangeFullError as e:
                raise errors.internal(f"failed to allocate a serviceIP: {e}")
            except AllocationError as e:
                return [FieldError("Invalid", "spec.clusterIPs", go_string_slice(spec.get("clusterIPs") or [requested]),
                                   f"failed to allocate IP {requested}: {e}")]
            spec["clusterIP"] = ip
            spec["clusterIPs"] = [ip]

    # ---- node ports
    if _needs_node_port(spec):
        if ospec is not None and _needs_node_port(ospec):
            errs = _update_node_ports(spec, ospec, node_ports)
        else:
            errs = _init_node_ports(spec, node_ports)
        if errs:
            return errs

    # ---- health check node port
    if _needs_hc(spec):
        if ospec is not None and _needs_hc(ospec) and _int(spec.get("healthCheckNodePort")):
            pass   # kept (validation rejects a change)
        else:
            hc = _int(spec.get("healthCheckNodePort"))
            try:
                if hc:
                    node_ports.allocate(hc)
                else:
                    spec["healthCheckNodePort"] = node_ports.allocate_next()
            except AllocationError as e:
                if hc:
                    raise errors.internal(f"failed to allocate requested HealthCheck NodePort {hc}: {e}")
                raise errors.internal(f"failed to allocate a HealthCheck NodePort 0: {e}")
    return []
