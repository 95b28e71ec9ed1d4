"""The EndpointSlice controller: slices for every Service with a selector.

Pure parts: pod_to_endpoint / endpoint_ports (the desired endpoints per port set) and
reconcile_slices (which slices to create, update and delete, keeping unchanged endpoints where
they are, at most max_per_slice per slice, and a placeholder slice when there is nothing)."""
from __future__ import annotations

import copy
import hashlib
import json
import logging
from dataclasses import dataclass, field
from typing import Any

from tinykube.api.errors import ApiError
from tinykube.api.resources import get as get_resource

from .base import Controller, SharedInformers
from .endpoints import latest_trigger_time, selected_pods
from .podports import (find_port, has_selector, is_headless, pod_ip_for_family, service_families,
                       should_pod_be_in_endpoints, should_set_hostname, target_ref)
from .util import BY_SERVICE, is_pod_ready, meta, ns_name, slice_service

log = logging.getLogger("tinykube.controllers.endpointslice")

SLICES = get_resource("endpointslices", "discovery.k8s.io")
SERVICE_NAME = "kubernetes.io/service-name"
MANAGED_BY = "endpointslice.kubernetes.io/managed-by"
CONTROLLER_NAME = "endpointslice-controller.k8s.io"
HEADLESS = "service.kubernetes.io/headless"
TRIGGER_TIME = "endpoints.kubernetes.io/last-change-trigger-time"
ZONE_LABEL = "topology.kubernetes.io/zone"
MAX_PER_SLICE = 100
RESERVED_LABELS = {SERVICE_NAME, MANAGED_BY, HEADLESS}


# ---------------------------------------------------------------- pure part

def pod_to_endpoint(svc: dict, pod: dict, family: str, node: dict | None = None) -> dict | None:
    ip = pod_ip_for_family(pod, family)
    if ip is None:
        return None
    serving = is_pod_ready(pod)
    terminating = bool(meta(pod).get("deletionTimestamp"))
    ready = bool((svc.get("spec") or {}).get("publishNotReadyAddresses")) or (serving and not terminating)
    ep: dict[str, Any] = {"addresses": [ip],
                          "conditions": {"ready": ready, "serving": serving, "terminating": terminating}}
    if should_set_hostname(pod, svc):
        ep["hostname"] = pod["spec"]["hostname"]
    ep["targetRef"] = target_ref(pod)
    node_name = (pod.get("spec") or {}).get("nodeName")
    if node_name:
        ep["nodeName"] = node_name
    zone = ((node or {}).get("metadata", {}).get("labels") or {}).get(ZONE_LABEL)
    if zone:
        ep["zone"] = zone
    return ep


def endpoint_ports(svc: dict, pod: dict) -> list[dict]:
    out = []
    for sp in (svc.get("spec") or {}).get("ports") or []:
        num = find_port(pod, sp)
        if num is None:
            continue
        p: dict[str, Any] = {"name": sp.get("name") or "", "port": num, "protocol": sp.get("protocol") or "TCP"}
        if sp.get("appProtocol"):
            p["appProtocol"] = sp["appProtocol"]
        out.append(p)
    return out


def ports_key(ports: list[dict] | None) -> str:
    """A stable key for a port list (order-insensitive)."""
    norm = sorted(json.dumps(p, sort_keys=True) for p in ports or [])
    return hashlib.sha256("\n".join(norm).encode()).hexdigest()[:16]


def desired_endpoints_by_ports(svc: dict, pods: list[dict], family: str,
                               nodes: dict[str, dict] | None = None) -> dict[str, tuple[list[dict], list[dict]]]:
    """{ports_key: (ports, [endpoint, ...])} for the pods (already selected by the service)."""
    out: dict[str, tuple[list[dict], list[dict]]] = {}
    nodes = nodes or {}
    for pod in pods:
        if not should_pod_be_in_endpoints(pod, True):
            continue
        ep = pod_to_endpoint(svc, pod, family, nodes.get((pod.get("spec") or {}).get("nodeName") or ""))
        if ep is None:
            continue
        ports = endpoint_ports(svc, pod)
        if not ports and (svc.get("spec") or {}).get("ports"):
            # every service port failed to resolve on this pod: upstream still lists it with no ports
            pass
        k = ports_key(ports)
        out.setdefault(k, (ports, []))[1].append(ep)
    return out


def _ep_key(ep: dict) -> str:
    return (ep.get("addresses") or [""])[0]


def slice_labels(svc: dict) -> dict:
    labels = {k: v for k, v in (meta(svc).get("labels") or {}).items() if k not in RESERVED_LABELS}
    labels[SERVICE_NAME] = meta(svc)["name"]
    labels[MANAGED_BY] = CONTROLLER_NAME
    if is_headless(svc):
        labels[HEADLESS] = ""
    return labels


def new_slice(svc: dict, family: str, ports: list[dict] | None, endpoints: list[dict]) -> dict:
    md = meta(svc)
    s: dict[str, Any] = {
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"generateName": f"{md['name']}-", "namespace": md.get("namespace", "default"),
                     "labels": slice_labels(svc),
                     "ownerReferences": [{"apiVersion": "v1", "kind": "Service", "name": md["name"],
                                          "uid": md.get("uid", ""), "controller": True,
                                          "blockOwnerDeletion": True}]},
        "addressType": family,
        "endpoints": endpoints,
    }
    if ports:
        s["ports"] = ports
    return s


def is_placeholder(s: dict) -> bool:
    return not s.get("endpoints") and not s.get("ports")


@dataclass
class SlicePlan:
    create: list[dict] = field(default_factory=list)
    update: list[dict] = field(default_factory=list)
    delete: list[dict] = field(default_factory=list)


def reconcile_slices(svc: dict, family: str, existing: list[dict],
                     desired: dict[str, tuple[list[dict], list[dict]]], max_per_slice: int = MAX_PER_SLICE,
                     trigger_time: str | None = None) -> SlicePlan:
    """The reconciler's plan for one address family."""
    plan = SlicePlan()
    want_labels = slice_labels(svc)
    by_key: dict[str, list[dict]] = {}
    for s in existing:
        by_key.setdefault(ports_key(s.get("ports")), []).append(s)

    def stamp(s: dict) -> dict:
        if trigger_time:
            s["metadata"].setdefault("annotations", {})[TRIGGER_TIME] = trigger_time
        return s

    for pk in set(by_key) | set(desired):
        ports, eps = desired.get(pk, (None, []))
        want = {_ep_key(e): e for e in eps}
        placed: set[str] = set()
        to_update: list[dict] = []
        keep: list[dict] = []
        for s in sorted(by_key.get(pk, []), key=lambda x: meta(x).get("name", "")):
            new_eps, changed = [], False
            for e in s.get("endpoints") or []:
                k = _ep_key(e)
                if k in want and k not in placed:
                    new_eps.append(want[k])
                    placed.add(k)
                    if want[k] != e:
                        changed = True
                else:
                    changed = True
            if not new_eps:
                plan.delete.append(s)
                continue
            label_drift = meta(s).get("labels") != want_labels
            if changed or label_drift:
                ns = copy.deepcopy(s)
                ns["endpoints"] = new_eps
                ns["metadata"]["labels"] = dict(want_labels)
                to_update.append(stamp(ns))
            else:
                keep.append(s)
        remaining = [e for k, e in want.items() if k not in placed]
        # fill slices already being updated, then the kept slice with the most room
        for s in to_update:
            room = max_per_slice - len(s["endpoints"])
            if room > 0 and remaining:
                s["endpoints"].extend(remaining[:room])
                remaining = remaining[room:]
        if remaining and keep:
            keep.sort(key=lambda x: len(x.get("endpoints") or []))
            s = keep[0]
            room = max_per_slice - len(s.get("endpoints") or [])
            if room >= len(remaining):
                ns = copy.deepcopy(s)
                ns["endpoints"] = list(ns.get("endpoints") or []) + remaining
                ns["metadata"]["labels"] = dict(want_labels)
                to_update.append(stamp(ns))
                remaining = []
        while remaining:
            chunk, remaining = remaining[:max_per_slice], remaining[max_per_slice:]
            plan.create.append(stamp(new_slice(svc, family, ports, chunk)))
        plan.update.extend(to_update)

    # placeholder: a service with nothing still has exactly one empty slice
    kept = len(existing) - len(plan.delete)
    if not plan.create and kept == 0:
        placeholders = [s for s in plan.delete if is_placeholder(s)]
        if placeholders:
            plan.delete.remove(placeholders[0])
            if meta(placeholders[0]).get("labels") != want_labels:
                ns = copy.deepcopy(placeholders[0])
                ns["metadata"]["labels"] = dict(want_labels)
                plan.update.append(ns)
        else:
            plan.create.append(new_slice(svc, family, None, []))
    return plan


# ---------------------------------------------------------------- controller

class EndpointSliceController(Controller):
    name = "endpointslice-controller"

    def __init__(self, client, informers: SharedInformers, max_per_slice: int = MAX_PER_SLICE):
        super().__init__(client, informers)
        self.max_per_slice = max_per_slice
        self.services = informers.get("services")
        self.pods = informers.get("pods")
        self.nodes = informers.get("nodes")
        self.slices = informers.get("endpointslices", "discovery.k8s.io")
        self.slices.add_index(BY_SERVICE, slice_service)
        self.services.on_add(lambda s: self.enqueue(ns_name(s)))
        self.services.on_update(lambda o, n: self.enqueue(ns_name(n)))
        self.services.on_delete(lambda s: self.enqueue(ns_name(s)))
        self.pods.on_add(self._pod_changed)
        self.pods.on_update(lambda o, n: (self._pod_changed(o), self._pod_changed(n)))
        self.pods.on_delete(self._pod_changed)
        for h in (self.slices.on_add, self.slices.on_delete):
            h(self._slice_changed)
        self.slices.on_update(lambda o, n: self._slice_changed(n))
        # names of slices we created that the informer has not shown yet: until it does, the
        # cache is stale for this service and a reconcile would create duplicates
        self._pending: dict[tuple[str, str], set[str]] = {}

    def _pod_changed(self, pod: dict) -> None:
        ns = meta(pod).get("namespace", "")
        labels = meta(pod).get("labels") or {}
        from .util import service_selector
        for svc in self.services.items():
            if meta(svc).get("namespace") == ns and has_selector(svc) and service_selector(svc).matches(labels):
                self.enqueue(ns_name(svc))

    def _slice_changed(self, s: dict) -> None:
        labels = meta(s).get("labels") or {}
        if labels.get(MANAGED_BY) == CONTROLLER_NAME and labels.get(SERVICE_NAME):
            self.enqueue((meta(s).get("namespace", ""), labels[SERVICE_NAME]))

    async def on_synced(self) -> None:
        for svc in self.services.items():
            self.enqueue(ns_name(svc))

    def _owned_slices(self, ns: str, name: str) -> list[dict]:
        return [s for s in self.slices.by_index(BY_SERVICE, f"{ns}/{name}")
                if (meta(s).get("labels") or {}).get(MANAGED_BY) == CONTROLLER_NAME
                and not meta(s).get("deletionTimestamp")]

    async def reconcile(self, key: tuple[str, str]) -> None:
        ns, name = key
        pending = self._pending.get(key)
        if pending:
            pending -= {meta(s).get("name") for s in self.slices.by_index(BY_SERVICE, f"{ns}/{name}")}
            if pending:
                self.enqueue_after(key, 0.5)   # the slice add event re-queues us sooner
                return
            self._pending.pop(key, None)
        svc = self.services.get(ns, name)
        existing = self._owned_slices(ns, name)
        if svc is None or not has_selector(svc) or meta(svc).get("deletionTimestamp"):
            # the garbage collector removes owned slices with the service; a service that lost
            # its selector keeps no controller-managed slices
            if svc is not None and not has_selector(svc):
                for s in existing:
                    await _delete_slice(self.client, s)
            return
        pods = selected_pods(svc, self.pods.items())
        nodes = {meta(n).get("name", ""): n for n in self.nodes.items()}
        trigger = latest_trigger_time(svc, pods)
        families = service_families(svc)
        for fam in families:
            mine = [s for s in existing if s.get("addressType") == fam]
            desired = desired_endpoints_by_ports(svc, pods, fam, nodes)
            plan = reconcile_slices(svc, fam, mine, desired, self.max_per_slice, trigger)
            for s in plan.create:
                out = await self.client.create(SLICES, s, ns)
                self._pending.setdefault(key, set()).add(meta(out).get("name"))
            for s in plan.update:
                await self.client.update(SLICES, s)
            for s in plan.delete:
                await _delete_slice(self.client, s)
        for s in existing:
            if s.get("addressType") not in families:
                await _delete_slice(self.client, s)


async def _delete_slice(client, s: dict) -> None:
    try:
        await client.delete(SLICES, meta(s).get("namespace"), meta(s)["name"])
    except ApiError as e:
        if e.code != 404:
            raise
