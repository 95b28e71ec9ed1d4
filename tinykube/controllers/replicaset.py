"""The ReplicaSet controller: keep spec.replicas active pods, report status."""
from __future__ import annotations

import asyncio
import logging
import time

from tinykube.api.errors import ApiError
from tinykube.api.resources import get as get_resource

from .base import Controller, SharedInformers
from .events import Recorder
from .util import (ns_name, Expectations, controller_ref, is_active, is_pod_available, is_pod_ready,
                   label_selector, meta, owner_ref, parse_time, pod_from_template)

log = logging.getLogger("tinykube.controllers.replicaset")

PODS = get_resource("pods")
REPLICASETS = get_resource("replicasets", "apps")
COMPONENT = "replicaset-controller"
BURST_REPLICAS = 500

_PHASE_RANK = {"Pending": 0, "Unknown": 1, "Running": 2}


def deletion_rank(pod: dict, now: float | None = None) -> tuple:
    """ActivePods ordering: the pod that sorts first is deleted first (unassigned, pending,
    not ready, ready for less time, more restarts, newer)."""
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    assigned = 1 if spec.get("nodeName") else 0
    phase = _PHASE_RANK.get(status.get("phase", "Pending"), 0)
    ready = 1 if is_pod_ready(pod) else 0
    ready_since = 0.0
    if ready:
        for c in status.get("conditions") or []:
            if c.get("type") == "Ready":
                t = parse_time(c.get("lastTransitionTime"))
                ready_since = -(t or 0.0)   # more recently ready first
    restarts = sum(cs.get("restartCount", 0) for cs in status.get("containerStatuses") or [])
    created = parse_time(meta(pod).get("creationTimestamp")) or 0.0
    return (assigned, phase, ready, ready_since, -restarts, -created, meta(pod).get("name", ""))


def pods_to_delete(pods: list[dict], n: int) -> list[dict]:
    return sorted(pods, key=deletion_rank)[:n]


def template_labels_match(pod: dict, template: dict) -> bool:
    want = (template.get("metadata") or {}).get("labels") or {}
    have = meta(pod).get("labels") or {}
    return all(have.get(k) == v for k, v in want.items())


def calculate_status(rs: dict, pods: list[dict], now: float | None = None) -> dict:
    spec = rs.get("spec") or {}
    min_ready = int(spec.get("minReadySeconds") or 0)
    template = spec.get("template") or {}
    status = dict(rs.get("status") or {})
    status["replicas"] = len(pods)
    status["fullyLabeledReplicas"] = sum(1 for p in pods if template_labels_match(p, template))
    status["readyReplicas"] = sum(1 for p in pods if is_pod_ready(p))
    status["availableReplicas"] = sum(1 for p in pods if is_pod_available(p, min_ready, now))
    status["observedGeneration"] = meta(rs).get("generation", 1)
    for k in ("readyReplicas", "availableReplicas", "fullyLabeledReplicas"):
        if not status[k]:
            status.pop(k)   # omitempty, as the API shows them
    return status


class ReplicaSetController(Controller):
    name = "replicaset-controller"
    workers = 4

    def __init__(self, client, informers: SharedInformers, recorder: Recorder):
        super().__init__(client, informers)
        self.recorder = recorder
        self.expectations = Expectations()
        self.rss = informers.get("replicasets", "apps")
        self.pods = informers.get("pods")
        self.rss.on_add(lambda o: self.enqueue(ns_name(o)))
        self.rss.on_update(lambda o, n: self.enqueue(ns_name(n)))
        self.rss.on_delete(self._rs_deleted)
        self.pods.on_add(self._pod_added)
        self.pods.on_update(self._pod_updated)
        self.pods.on_delete(self._pod_deleted)

    def _owner_key(self, pod: dict) -> tuple[str, str] | None:
        ref = controller_ref(pod)
        if ref is None or ref.get("kind") != "ReplicaSet":
            return None
        return meta(pod).get("namespace", ""), ref.get("name", "")

    def _orphan_owners(self, pod: dict) -> None:
        ns = meta(pod).get("namespace", "")
        for rs in self.rss.items():
            if meta(rs).get("namespace") == ns and label_selector(rs).matches(meta(pod).get("labels")):
                self.enqueue(ns_name(rs))

    def _pod_added(self, pod: dict) -> None:
        k = self._owner_key(pod)
        if k is None:
            self._orphan_owners(pod)
            return
        self.expectations.creation_observed(k)
        self.enqueue(k)

    def _pod_updated(self, old: dict, new: dict) -> None:
        k = self._owner_key(new)
        if k is not None and not meta(old).get("deletionTimestamp") and meta(new).get("deletionTimestamp"):
            self.expectations.deletion_observed(k)
        ko = self._owner_key(old)
        if ko is not None and ko != k:
            self.enqueue(ko)
        if k is None:
            self._orphan_owners(new)
        else:
            self.enqueue(k)

    def _pod_deleted(self, pod: dict) -> None:
        k = self._owner_key(pod)
        if k is None:
            return
        if not meta(pod).get("deletionTimestamp"):
            self.expectations.deletion_observed(k)
        self.enqueue(k)

    def _rs_deleted(self, rs: dict) -> None:
        self.expectations.clear(ns_name(rs))

    async def on_synced(self) -> None:
        for rs in self.rss.items():
            self.enqueue(ns_name(rs))

    # ------------------------------------------------------------ reconcile

    def claim_pods(self, rs: dict) -> tuple[list[dict], list[dict]]:
        """(owned active pods, orphans to adopt)."""
        ns, uid = meta(rs).get("namespace", ""), meta(rs).get("uid")
        sel = label_selector(rs)
        owned, orphans = [], []
        for p in self.pods.items():
            if meta(p).get("namespace", "") != ns:
                continue
            ref = controller_ref(p)
            if ref is not None:
                if ref.get("uid") == uid and is_active(p):
                    owned.append(p)
            elif sel.matches(meta(p).get("labels")) and is_active(p) and not meta(rs).get("deletionTimestamp"):
                orphans.append(p)
        return owned, orphans

    async def reconcile(self, key: tuple[str, str]) -> None:
        ns, name = key
        rs = self.rss.get(ns, name)
        if rs is None:
            self.expectations.clear(key)
            return
        owned, orphans = self.claim_pods(rs)
        ref = owner_ref(rs, "ReplicaSet", "apps/v1")
        for p in orphans:
            try:
                await self.client.patch(PODS, ns, meta(p)["name"], {"metadata": {
                    "ownerReferences": list(meta(p).get("ownerReferences") or []) + [ref]}})
                owned.append(p)
            except ApiError as e:
                if e.code not in (404, 409, 422):
                    raise
        if self.expectations.satisfied(key) and not meta(rs).get("deletionTimestamp"):
            await self.manage_replicas(rs, owned)
        await self.update_status(rs, owned)

    async def manage_replicas(self, rs: dict, pods: list[dict]) -> None:
        ns, name = ns_name(rs)
        r = (rs.get("spec") or {}).get("replicas")
        want = 1 if r is None else int(r)
        diff = len(pods) - want
        if diff < 0:
            n = min(-diff, BURST_REPLICAS)
            self.expectations.expect((ns, name), adds=n)
            template = (rs.get("spec") or {}).get("template") or {}
            ref = owner_ref(rs, "ReplicaSet", "apps/v1")
            # slow start: 1, 2, 4, ... so a failing template does not produce a storm of errors
            batch, done = 1, 0
            while done < n:
                size = min(batch, n - done)
                results = await asyncio.gather(*(self._create_pod(rs, template, ref) for _ in range(size)),
                                               return_exceptions=True)
                fails = [r for r in results if isinstance(r, BaseException)]
                done += size
                if fails:
                    skipped = n - done
                    for _ in range(len(fails) + skipped):
                        self.expectations.creation_observed((ns, name))
                    raise fails[0]
                batch *= 2
        elif diff > 0:
            victims = pods_to_delete(pods, min(diff, BURST_REPLICAS))
            self.expectations.expect((ns, name), dels=len(victims))
            for p in victims:
                try:
                    await self.client.delete(PODS, ns, meta(p)["name"])
                except ApiError as e:
                    self.expectations.deletion_observed((ns, name))
                    if e.code != 404:
                        raise
                    continue
                await self.recorder.record(rs, "Normal", "SuccessfulDelete", f"Deleted pod: {meta(p)['name']}",
                                           COMPONENT)

    async def _create_pod(self, rs: dict, template: dict, ref: dict) -> dict:
        ns, name = ns_name(rs)
        body = pod_from_template(template, ns, ref, generate_name=f"{name}-")
        try:
            out = await self.client.create(PODS, body, ns)
        except ApiError as e:
            await self.recorder.record(rs, "Warning", "FailedCreate", f"Error creating: {e.message}", COMPONENT)
            raise
        await self.recorder.record(rs, "Normal", "SuccessfulCreate", f"Created pod: {meta(out)['name']}", COMPONENT)
        return out

    async def update_status(self, rs: dict, pods: list[dict]) -> None:
        now = time.time()
        status = calculate_status(rs, pods, now)
        min_ready = int((rs.get("spec") or {}).get("minReadySeconds") or 0)
        self.requeue_when_available(rs, pods, min_ready, now)
        await self.write_status(REPLICASETS, rs, status)
