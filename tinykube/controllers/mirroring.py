"""EndpointSliceMirroring: hand-made Endpoints of selector-less Services mirrored into slices,
plus the apiserver's own reconciler for default/kubernetes (its Endpoints and EndpointSlice)."""
from __future__ import annotations

import copy
import ipaddress
import logging
from typing import Any

from tinykube.api.errors import ApiError

from .base import Controller, SharedInformers
from .endpoints import ENDPOINTS, SKIP_MIRROR, api_server_address
from .endpointslice import MANAGED_BY, SERVICE_NAME, SLICES, ports_key
from .util import BY_SERVICE, meta, ns_name, slice_service

log = logging.getLogger("tinykube.controllers.mirroring")

MIRROR_NAME = "endpointslicemirroring-controller.k8s.io"
MAX_PER_SUBSET = 1000
SKIP_ANNOTATIONS = {"endpoints.kubernetes.io/last-change-trigger-time",
                    "kubectl.kubernetes.io/last-applied-configuration"}


def _family(ip: str) -> str | None:
    try:
        return "IPv6" if ipaddress.ip_address(ip).version == 6 else "IPv4"
    except ValueError:
        return None


def _address_to_endpoint(addr: dict, ready: bool) -> dict:
    ep: dict[str, Any] = {"addresses": [addr["ip"]], "conditions": {"ready": ready}}
    if addr.get("hostname"):
        ep["hostname"] = addr["hostname"]
    if addr.get("targetRef"):
        ep["targetRef"] = addr["targetRef"]
    if addr.get("nodeName"):
        ep["nodeName"] = addr["nodeName"]
    return ep


def _slice_port(p: dict) -> dict:
    out: dict[str, Any] = {"name": p.get("name") or "", "port": p.get("port"), "protocol": p.get("protocol") or "TCP"}
    if p.get("appProtocol"):
        out["appProtocol"] = p["appProtocol"]
    return out


def should_mirror(svc: dict | None, ep: dict | None) -> bool:
    if svc is None or ep is None:
        return False
    if (svc.get("spec") or {}).get("selector") is not None:
        return False
    return (meta(ep).get("labels") or {}).get(SKIP_MIRROR) != "true"


def mirror_labels(ep: dict) -> dict:
    labels = {k: v for k, v in (meta(ep).get("labels") or {}).items() if k not in (MANAGED_BY, SKIP_MIRROR)}
    labels[SERVICE_NAME] = meta(ep)["name"]
    labels[MANAGED_BY] = MIRROR_NAME
    return labels


def desired_mirror_slices(svc: dict, ep: dict) -> dict[tuple[str, str], list[dict]]:
    """{(family, ports key): [slice body, ...]} mirroring each subset (≤1000 addresses per subset)."""
    groups: dict[tuple[str, str], tuple[list[dict], list[dict], set]] = {}
    for ss in ep.get("subsets") or []:
        ports = [_slice_port(p) for p in ss.get("ports") or []]
        pk = ports_key(ports)
        addrs = [(a, True) for a in ss.get("addresses") or []] + \
                [(a, False) for a in ss.get("notReadyAddresses") or []]
        for a, ready in addrs[:MAX_PER_SUBSET]:
            fam = _family(a.get("ip", ""))
            if fam is None:
                continue
            g = groups.setdefault((fam, pk), (ports, [], set()))
            if a["ip"] in g[2]:
                continue
            g[2].add(a["ip"])
            g[1].append(_address_to_endpoint(a, ready))
    md = meta(ep)
    annotations = {k: v for k, v in (md.get("annotations") or {}).items() if k not in SKIP_ANNOTATIONS}
    out: dict[tuple[str, str], list[dict]] = {}
    for (fam, pk), (ports, eps, _) in groups.items():
        bodies = []
        for i in range(0, len(eps), MAX_PER_SUBSET):
            s: dict[str, Any] = {
                "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"generateName": f"{md['name']}-", "namespace": md.get("namespace", "default"),
                             "labels": mirror_labels(ep),
                             "ownerReferences": [{"apiVersion": "v1", "kind": "Service",
                                                  "name": meta(svc)["name"], "uid": meta(svc).get("uid", ""),
                                                  "controller": True, "blockOwnerDeletion": True}]},
                "addressType": fam, "endpoints": eps[i:i + MAX_PER_SUBSET]}
            if annotations:
                s["metadata"]["annotations"] = dict(annotations)
            if ports:
                s["ports"] = ports
            bodies.append(s)
        out[(fam, pk)] = bodies
    return out


def _same(cur: dict, want: dict) -> bool:
    return (cur.get("endpoints") or []) == (want.get("endpoints") or []) \
        and (cur.get("ports") or []) == (want.get("ports") or []) \
        and (meta(cur).get("labels") or {}) == (meta(want).get("labels") or {}) \
        and (meta(cur).get("annotations") or {}) == (meta(want).get("annotations") or {})


class MirroringController(Controller):
    name = "endpointslicemirroring-controller"

    def __init__(self, client, informers: SharedInformers):
        super().__init__(client, informers)
        self.services = informers.get("services")
        self.endpoints = informers.get("endpoints")
        self.slices = informers.get("endpointslices", "discovery.k8s.io")
        self.slices.add_index(BY_SERVICE, slice_service)
        for inf in (self.services, self.endpoints):
            inf.on_add(lambda o: self.enqueue(ns_name(o)))
            inf.on_update(lambda o, n: self.enqueue(ns_name(n)))
            inf.on_delete(lambda o: self.enqueue(ns_name(o)))
        self.slices.on_add(self._slice_changed)
        self.slices.on_update(lambda o, n: self._slice_changed(n))
        self.slices.on_delete(self._slice_changed)
        self._pending: dict[tuple[str, str], set[str]] = {}

    def _slice_changed(self, s: dict) -> None:
        labels = meta(s).get("labels") or {}
        if labels.get(MANAGED_BY) == MIRROR_NAME and labels.get(SERVICE_NAME):
            self.enqueue((meta(s).get("namespace", ""), labels[SERVICE_NAME]))

    async def on_synced(self) -> None:
        for ep in self.endpoints.items():
            self.enqueue(ns_name(ep))
        for s in self.slices.items():
            self._slice_changed(s)

    async def reconcile(self, key: tuple[str, str]) -> None:
        ns, name = key
        pending = self._pending.get(key)
        if pending:
            pending -= {meta(s).get("name") for s in self.slices.by_index(BY_SERVICE, f"{ns}/{name}")}
            if pending:
                self.enqueue_after(key, 0.5)
                return
            self._pending.pop(key, None)
        svc = self.services.get(ns, name)
        ep = self.endpoints.get(ns, name)
        existing = [s for s in self.slices.by_index(BY_SERVICE, f"{ns}/{name}")
                    if (meta(s).get("labels") or {}).get(MANAGED_BY) == MIRROR_NAME]
        desired = desired_mirror_slices(svc, ep) if should_mirror(svc, ep) else {}
        by_key: dict[tuple[str, str], list[dict]] = {}
        for s in sorted(existing, key=lambda x: meta(x).get("name", "")):
            by_key.setdefault((s.get("addressType", ""), ports_key(s.get("ports"))), []).append(s)
        for k in set(by_key) | set(desired):
            cur, want = by_key.get(k, []), desired.get(k, [])
            for i, w in enumerate(want):
                if i < len(cur):
                    if not _same(cur[i], w):
                        new = copy.deepcopy(cur[i])
                        new["metadata"]["labels"] = w["metadata"]["labels"]
                        if w["metadata"].get("annotations"):
                            new["metadata"]["annotations"] = w["metadata"]["annotations"]
                        else:
                            new["metadata"].pop("annotations", None)
                        new["endpoints"] = w["endpoints"]
                        if w.get("ports"):
                            new["ports"] = w["ports"]
                        else:
                            new.pop("ports", None)
                        await self.client.update(SLICES, new)
                else:
                    out = await self.client.create(SLICES, w, ns)
                    self._pending.setdefault(key, set()).add(meta(out).get("name"))
            for s in cur[len(want):]:
                try:
                    await self.client.delete(SLICES, ns, meta(s)["name"])
                except ApiError as e:
                    if e.code != 404:
                        raise


# ---------------------------------------------------------------- default/kubernetes

def kubernetes_endpoints(ip: str, port: int) -> dict:
    return {"apiVersion": "v1", "kind": "Endpoints",
            "metadata": {"name": "kubernetes", "namespace": "default", "labels": {SKIP_MIRROR: "true"}},
            "subsets": [{"addresses": [{"ip": ip}], "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}]}


def kubernetes_slice(ip: str, port: int) -> dict:
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "kubernetes", "namespace": "default", "labels": {SERVICE_NAME: "kubernetes"}},
            "addressType": "IPv6" if ":" in ip else "IPv4",
            "endpoints": [{"addresses": [ip], "conditions": {"ready": True}}],
            "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}


class KubernetesServiceController(Controller):
    """What the apiserver's endpoint reconciler does: default/kubernetes points at the API server."""

    name = "kubernetes-service-endpoints"
    workers = 1

    def __init__(self, client, informers: SharedInformers, cluster):
        super().__init__(client, informers)
        self.cluster = cluster
        self.endpoints = informers.get("endpoints")
        self.slices = informers.get("endpointslices", "discovery.k8s.io")
        for inf in (self.endpoints, self.slices):
            inf.on_update(lambda o, n: self._maybe(n))
            inf.on_delete(self._maybe)

    def _maybe(self, obj: dict) -> None:
        if meta(obj).get("namespace") == "default" and meta(obj).get("name") == "kubernetes":
            self.enqueue("kubernetes")

    async def on_synced(self) -> None:
        self.enqueue("kubernetes")

    async def reconcile(self, key: str) -> None:
        ip = api_server_address(self.cluster)
        port = int(self.cluster.api_port)
        for res, inf, want, same in (
                (ENDPOINTS, self.endpoints, kubernetes_endpoints(ip, port),
                 lambda c, w: c.get("subsets") == w["subsets"] and (meta(c).get("labels") or {}) == w["metadata"]["labels"]),
                (SLICES, self.slices, kubernetes_slice(ip, port),
                 lambda c, w: c.get("endpoints") == w["endpoints"] and c.get("ports") == w["ports"]
                 and c.get("addressType") == w["addressType"]
                 and (meta(c).get("labels") or {}) == w["metadata"]["labels"])):
            cur = inf.get("default", "kubernetes")
            if cur is None:
                try:
                    await self.client.create(res, want, "default")
                    continue
                except ApiError as e:
                    if e.code != 409:
                        raise
                    cur = await self.client.get(res, "default", "kubernetes")
            if same(cur, want):
                continue
            if cur.get("addressType") and cur.get("addressType") != want.get("addressType"):
                await self.client.delete(res, "default", "kubernetes")
                await self.client.create(res, want, "default")
                continue
            new = copy.deepcopy(cur)
            new["metadata"]["labels"] = want["metadata"]["labels"]
            for f in ("subsets", "endpoints", "ports"):
                if f in want:
                    new[f] = want[f]
            await self.client.update(res, new)
