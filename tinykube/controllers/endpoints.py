"""The Endpoints controller: core/v1 Endpoints for every Service with a selector.

compute_subsets() is the pure part (syncService + RepackSubsets + truncation); the controller
watches services and pods and writes the result when it differs."""
from __future__ import annotations

import ipaddress
import logging
import math
from typing import Any

from tinykube.api.errors import ApiError
from tinykube.api.resources import get as get_resource

from .base import Controller, SharedInformers
from .podports import (find_port, has_selector, is_headless, pod_ip_for_family, pod_trigger_time,
                       service_families, should_pod_be_in_endpoints, should_set_hostname, target_ref)
from .util import meta, service_selector, ns_name

log = logging.getLogger("tinykube.controllers.endpoints")

ENDPOINTS = get_resource("endpoints")
MAX_CAPACITY = 1000
OVER_CAPACITY = "endpoints.kubernetes.io/over-capacity"
TRIGGER_TIME = "endpoints.kubernetes.io/last-change-trigger-time"
MANAGED_BY = "endpoints.kubernetes.io/managed-by"
CONTROLLER_NAME = "endpoint-controller"
HEADLESS = "service.kubernetes.io/headless"
SKIP_MIRROR = "endpointslice.kubernetes.io/skip-mirror"


# ---------------------------------------------------------------- pure part

def endpoint_address(svc: dict, pod: dict) -> dict | None:
    ip = pod_ip_for_family(pod, service_families(svc)[0])
    if ip is None:
        return None
    addr: dict[str, Any] = {"ip": ip}
    if should_set_hostname(pod, svc):
        addr["hostname"] = pod["spec"]["hostname"]
    node = (pod.get("spec") or {}).get("nodeName")
    if node:
        addr["nodeName"] = node
    addr["targetRef"] = target_ref(pod)
    return addr


def endpoint_port(service_port: dict, port: int) -> dict:
    out: dict[str, Any] = {}
    if service_port.get("name"):
        out["name"] = service_port["name"]
    out["port"] = port
    out["protocol"] = service_port.get("protocol") or "TCP"
    if service_port.get("appProtocol"):
        out["appProtocol"] = service_port["appProtocol"]
    return out


def _ip_key(ip: str) -> str:
    return ip   # byte-wise string comparison, as upstream (10.0.0.10 < 10.0.0.9)


def _addr_key(a: dict) -> tuple[str, str]:
    return a.get("ip", ""), (a.get("targetRef") or {}).get("uid", "")


def _port_key(p: dict) -> tuple:
    return (p.get("name", ""), p.get("port", 0), p.get("protocol", ""), p.get("appProtocol", ""))


def _freeze_port(p: dict) -> tuple:
    return tuple(sorted(p.items()))


def repack_subsets(subsets: list[dict]) -> list[dict]:
    """RepackSubsets: merge addresses that offer exactly the same set of ports, then sort."""
    all_addrs: dict[tuple, dict] = {}
    port_to_addrs: dict[tuple, dict[tuple, bool]] = {}
    sentinel = (("port", -1),)
    for ss in subsets:
        ports = [_freeze_port(p) for p in ss.get("ports") or []] or [sentinel]
        for fp in ports:
            ready_map = port_to_addrs.setdefault(fp, {})
            for a in ss.get("addresses") or []:
                k = _addr_key(a)
                all_addrs.setdefault(k, a)
                ready_map[k] = True
            for a in ss.get("notReadyAddresses") or []:
                k = _addr_key(a)
                all_addrs.setdefault(k, a)
                ready_map.setdefault(k, False)
    # group ports by the identical (address, readiness) set that offers them
    groups: dict[frozenset, list[tuple]] = {}
    for fp, ready_map in port_to_addrs.items():
        groups.setdefault(frozenset(ready_map.items()), []).append(fp)
    final = []
    for addrset, fports in groups.items():
        ready = [all_addrs[k] for k, r in addrset if r]
        not_ready = [all_addrs[k] for k, r in addrset if not r]
        ports = [dict(fp) for fp in fports if fp != sentinel]
        ss: dict[str, Any] = {}
        if ready:
            ss["addresses"] = ready
        if not_ready:
            ss["notReadyAddresses"] = not_ready
        if ports:
            ss["ports"] = ports
        final.append(ss)
    return sort_subsets(final)


def sort_subsets(subsets: list[dict]) -> list[dict]:
    for ss in subsets:
        for k in ("addresses", "notReadyAddresses"):
            if ss.get(k):
                ss[k].sort(key=lambda a: (_ip_key(a.get("ip", "")), (a.get("targetRef") or {}).get("uid", "")))
        if ss.get("ports"):
            ss["ports"].sort(key=_port_key)

    def skey(ss: dict) -> tuple:
        first = (ss.get("addresses") or ss.get("notReadyAddresses") or [{}])[0]
        return (tuple(_port_key(p) for p in ss.get("ports") or []), first.get("ip", ""))
    subsets.sort(key=skey)
    return subsets


def truncate_subsets(subsets: list[dict], max_capacity: int = MAX_CAPACITY) -> bool:
    """truncateEndpoints: keep ready addresses first, proportionally per subset. True if truncated."""
    total_ready = sum(len(s.get("addresses") or []) for s in subsets)
    total_not_ready = sum(len(s.get("notReadyAddresses") or []) for s in subsets)
    if total_ready + total_not_ready <= max_capacity:
        return False
    truncate_ready = False
    cap = max_capacity - total_ready
    num_total = total_not_ready
    if total_ready > max_capacity:
        truncate_ready = True
        cap = max_capacity
        num_total = total_ready
    can_add = cap
    for ss in subsets:
        n = len(ss.get("addresses") or []) if truncate_ready else len(ss.get("notReadyAddresses") or [])
        to_add = int(math.ceil(n / num_total * cap)) if num_total else 0
        to_add = min(to_add, can_add)
        if truncate_ready:
            ss["addresses"] = (ss.get("addresses") or [])[:to_add]
            ss.pop("notReadyAddresses", None)
            can_add -= len(ss["addresses"])
        else:
            nr = (ss.get("notReadyAddresses") or [])[:to_add]
            if nr:
                ss["notReadyAddresses"] = nr
            else:
                ss.pop("notReadyAddresses", None)
            can_add -= len(nr)
    return True


def compute_subsets(svc: dict, pods: list[dict]) -> list[dict]:
    """The subsets of the Endpoints for svc given the pods its selector matches (already filtered)."""
    spec = svc.get("spec") or {}
    tolerate = bool(spec.get("publishNotReadyAddresses"))
    ports = spec.get("ports") or []
    subsets: list[dict] = []
    from .util import is_pod_ready
    for pod in pods:
        if not should_pod_be_in_endpoints(pod, tolerate):
            continue
        addr = endpoint_address(svc, pod)
        if addr is None:
            continue
        ready = tolerate or is_pod_ready(pod)
        key = "addresses" if ready else "notReadyAddresses"
        if not ports:
            if is_headless(svc):
                subsets.append({key: [dict(addr)]})
            continue
        for sp in ports:
            num = find_port(pod, sp)
            if num is None:
                continue
            subsets.append({key: [dict(addr)], "ports": [endpoint_port(sp, num)]})
    return repack_subsets(subsets)


def endpoints_labels(svc: dict) -> dict:
    labels = dict(meta(svc).get("labels") or {})
    labels.pop(HEADLESS, None)
    if is_headless(svc):
        labels[HEADLESS] = ""
    labels[MANAGED_BY] = CONTROLLER_NAME
    return labels


def desired_endpoints(svc: dict, pods: list[dict], trigger_time: str | None = None) -> dict:
    subsets = compute_subsets(svc, pods)
    truncated = truncate_subsets(subsets)
    md = meta(svc)
    annotations: dict[str, str] = {}
    if trigger_time:
        annotations[TRIGGER_TIME] = trigger_time
    if truncated:
        annotations[OVER_CAPACITY] = "truncated"
    out = {"apiVersion": "v1", "kind": "Endpoints",
           "metadata": {"name": md["name"], "namespace": md.get("namespace", "default"),
                        "labels": endpoints_labels(svc)}}
    if annotations:
        out["metadata"]["annotations"] = annotations
    if subsets:
        out["subsets"] = subsets
    return out


def endpoints_equal(current: dict, desired: dict) -> bool:
    """What the controller compares before writing: subsets, labels and the capacity annotation."""
    cm, dm = meta(current), meta(desired)
    return ((current.get("subsets") or []) == (desired.get("subsets") or [])
            and (cm.get("labels") or {}) == (dm.get("labels") or {})
            and (cm.get("annotations") or {}).get(OVER_CAPACITY) == (dm.get("annotations") or {}).get(OVER_CAPACITY))


def selected_pods(svc: dict, pods: list[dict]) -> list[dict]:
    sel = service_selector(svc)
    ns = meta(svc).get("namespace", "")
    return sorted((p for p in pods if meta(p).get("namespace", "") == ns and sel.matches(meta(p).get("labels"))),
                  key=lambda p: meta(p).get("name", ""))


def latest_trigger_time(svc: dict, pods: list[dict]) -> str | None:
    times = [t for t in (pod_trigger_time(p) for p in pods) if t]
    if meta(svc).get("creationTimestamp"):
        times.append(meta(svc)["creationTimestamp"])
    return max(times) if times else None


# ---------------------------------------------------------------- controller

class EndpointsController(Controller):
    name = "endpoints-controller"

    def __init__(self, client, informers: SharedInformers):
        super().__init__(client, informers)
        self.services = informers.get("services")
        self.pods = informers.get("pods")
        self.endpoints = informers.get("endpoints")
        self.services.on_add(lambda s: self.enqueue(ns_name(s)))
        self.services.on_update(lambda o, n: self.enqueue(ns_name(n)))
        self.services.on_delete(lambda s: self.enqueue(ns_name(s)))
        self.pods.on_add(self._pod_changed)
        self.pods.on_update(lambda o, n: (self._pod_changed(o), self._pod_changed(n)))
        self.pods.on_delete(self._pod_changed)
        self.endpoints.on_delete(lambda e: self.enqueue(ns_name(e)))
        self.endpoints.on_update(self._endpoints_updated)

    def _pod_changed(self, pod: dict) -> None:
        ns = meta(pod).get("namespace", "")
        labels = meta(pod).get("labels") or {}
        for svc in self.services.items():
            if meta(svc).get("namespace") != ns or not has_selector(svc):
                continue
            if service_selector(svc).matches(labels):
                self.enqueue(ns_name(svc))

    def _endpoints_updated(self, old: dict, new: dict) -> None:
        # someone else wrote our object: put it back
        if (meta(new).get("labels") or {}).get(MANAGED_BY) != CONTROLLER_NAME:
            self.enqueue(ns_name(new))

    async def on_synced(self) -> None:
        for svc in self.services.items():
            self.enqueue(ns_name(svc))
        # Endpoints we manage whose service is gone (deleted while we were down)
        for ep in self.endpoints.items():
            if (meta(ep).get("labels") or {}).get(MANAGED_BY) == CONTROLLER_NAME:
                self.enqueue(ns_name(ep))

    async def reconcile(self, key: tuple[str, str]) -> None:
        ns, name = key
        svc = self.services.get(ns, name)
        current = self.endpoints.get(ns, name)
        if svc is None:
            if current is not None and (meta(current).get("labels") or {}).get(MANAGED_BY) == CONTROLLER_NAME:
                await _delete_quietly(self.client, ns, name)
            return
        if not has_selector(svc):
            return  # hand-made Endpoints (or the kubernetes service) are not ours
        if meta(svc).get("deletionTimestamp"):
            return
        pods = selected_pods(svc, self.pods.items())
        desired = desired_endpoints(svc, pods, latest_trigger_time(svc, pods))
        if current is None:
            try:
                await self.client.create(ENDPOINTS, desired, ns)
            except ApiError as e:
                if e.code != 409:
                    raise
                current = await self.client.get(ENDPOINTS, ns, name)
            else:
                return
        if endpoints_equal(current, desired):
            return
        new = dict(current)
        new["metadata"] = dict(meta(current))
        new["metadata"]["labels"] = desired["metadata"]["labels"]
        ann = dict(new["metadata"].get("annotations") or {})
        ann.pop(OVER_CAPACITY, None)
        ann.update(desired["metadata"].get("annotations") or {})
        if ann:
            new["metadata"]["annotations"] = ann
        else:
            new["metadata"].pop("annotations", None)
        if desired.get("subsets"):
            new["subsets"] = desired["subsets"]
        else:
            new.pop("subsets", None)
        await self.client.update(ENDPOINTS, new)


async def _delete_quietly(client, ns: str, name: str) -> None:
    try:
        await client.delete(ENDPOINTS, ns, name)
    except ApiError as e:
        if e.code != 404:
            raise


def api_server_address(cluster) -> str:
    """Where pods reach the API server: the node's first address, else loopback."""
    bind = getattr(cluster, "api_bind", "") or ""
    try:
        if bind and not ipaddress.ip_address(bind).is_unspecified and not ipaddress.ip_address(bind).is_loopback:
            return bind
    except ValueError:
        pass
    ips = cluster.node_ips()
    return ips[0] if ips else "127.0.0.1"
