"""The StatefulSet controller: ordinal pods, ControllerRevisions, ordered or parallel management,
rolling updates in reverse ordinal order."""
from __future__ import annotations

import copy
import logging
import re
import time
from typing import Any

from tinykube.api.errors import ApiError
from tinykube.api.resources import get as get_resource

from .base import Controller, SharedInformers
from .events import Recorder
from .hashing import revision_hash
from .util import (ns_name, controller_ref, is_pod_available, is_pod_ready, is_running_and_ready,
                   is_terminal, meta, owner_ref, pod_from_template)

log = logging.getLogger("tinykube.controllers.statefulset")

PODS = get_resource("pods")
STATEFULSETS = get_resource("statefulsets", "apps")
REVISIONS = get_resource("controllerrevisions", "apps")
COMPONENT = "statefulset-controller"
POD_NAME_LABEL = "statefulset.kubernetes.io/pod-name"
POD_INDEX_LABEL = "apps.kubernetes.io/pod-index"
REVISION_LABEL = "controller-revision-hash"


# ---------------------------------------------------------------- pure helpers

def parse_ordinal(set_name: str, pod_name: str) -> int | None:
    m = re.fullmatch(re.escape(set_name) + r"-(\d+)", pod_name)
    return int(m.group(1)) if m else None


def replica_range(sts: dict) -> tuple[int, int]:
    spec = sts.get("spec") or {}
    start = int(((spec.get("ordinals") or {}).get("start")) or 0)
    r = spec.get("replicas")
    n = 1 if r is None else int(r)
    return start, start + n


def revision_data(sts: dict) -> dict:
    """getPatch: the part of the set a revision records (its template, replaced wholesale)."""
    template = copy.deepcopy((sts.get("spec") or {}).get("template") or {})
    template["$patch"] = "replace"
    return {"spec": {"template": template}}


def new_revision(sts: dict, revision: int, collision_count: int | None) -> dict:
    md = meta(sts)
    data = revision_data(sts)
    hash_ = revision_hash(data, collision_count)
    labels = dict(((sts.get("spec") or {}).get("template") or {}).get("metadata", {}).get("labels") or {})
    labels[REVISION_LABEL] = hash_
    return {"apiVersion": "apps/v1", "kind": "ControllerRevision",
            "metadata": {"name": f"{md['name'][:223]}-{hash_}", "namespace": md.get("namespace", "default"),
                         "labels": labels, "ownerReferences": [owner_ref(sts, "StatefulSet", "apps/v1")]},
            "data": data, "revision": revision}


def template_from_revision(rev: dict) -> dict:
    t = copy.deepcopy(((rev.get("data") or {}).get("spec") or {}).get("template") or {})
    t.pop("$patch", None)
    return t


def new_pod(sts: dict, ordinal: int, rev: dict) -> dict:
    md = meta(sts)
    name = f"{md['name']}-{ordinal}"
    pod = pod_from_template(template_from_revision(rev), md.get("namespace", "default"),
                            owner_ref(sts, "StatefulSet", "apps/v1"), name=name)
    labels = pod["metadata"]["labels"]
    labels[POD_NAME_LABEL] = name
    labels[POD_INDEX_LABEL] = str(ordinal)
    labels[REVISION_LABEL] = meta(rev)["name"]
    pod["spec"]["hostname"] = name
    svc = (sts.get("spec") or {}).get("serviceName")
    if svc:
        pod["spec"]["subdomain"] = svc
    return pod


def pod_revision(pod: dict) -> str:
    return (meta(pod).get("labels") or {}).get(REVISION_LABEL, "")


def compute_status(sts: dict, pods: list[dict], current: str, update: str, now: float | None = None) -> dict:
    spec = sts.get("spec") or {}
    min_ready = int(spec.get("minReadySeconds") or 0)
    old = sts.get("status") or {}
    st: dict[str, Any] = {"observedGeneration": meta(sts).get("generation", 1)}
    live = [p for p in pods if not is_terminal(p)]
    st["replicas"] = len(live)
    st["readyReplicas"] = sum(1 for p in live if is_pod_ready(p))
    st["availableReplicas"] = sum(1 for p in live if is_pod_available(p, min_ready, now))
    st["currentReplicas"] = sum(1 for p in live if pod_revision(p) == current)
    st["updatedReplicas"] = sum(1 for p in live if pod_revision(p) == update)
    st["currentRevision"] = current
    st["updateRevision"] = update
    st["collisionCount"] = int(old.get("collisionCount") or 0)
    strat = (spec.get("updateStrategy") or {}).get("type") or "RollingUpdate"
    start, end = replica_range(sts)
    if strat == "RollingUpdate" and st["updatedReplicas"] == end - start and st["readyReplicas"] == end - start \
            and st["replicas"] == end - start:
        st["currentRevision"] = update
        st["currentReplicas"] = st["updatedReplicas"]
    for k in ("readyReplicas", "currentReplicas", "updatedReplicas"):
        if not st[k]:
            st.pop(k)
    if old.get("conditions"):
        st["conditions"] = old["conditions"]
    return st


# ---------------------------------------------------------------- controller

class StatefulSetController(Controller):
    name = "statefulset-controller"
    workers = 2

    def __init__(self, client, informers: SharedInformers, recorder: Recorder):
        super().__init__(client, informers)
        self.recorder = recorder
        self.sets = informers.get("statefulsets", "apps")
        self.pods = informers.get("pods")
        self.revisions = informers.get("controllerrevisions", "apps")
        self.sets.on_add(lambda o: self.enqueue(ns_name(o)))
        self.sets.on_update(lambda o, n: self.enqueue(ns_name(n)))
        for h in (self.pods.on_add, self.pods.on_delete):
            h(self._pod_changed)
        self.pods.on_update(lambda o, n: self._pod_changed(n))
        self.revisions.on_add(self._pod_changed)
        # objects we wrote that the cache may not show yet: (kind, ns, name)
        self._pending: dict[tuple[str, str], set[tuple[str, str]]] = {}

    def _pod_changed(self, obj: dict) -> None:
        ref = controller_ref(obj)
        if ref is not None and ref.get("kind") == "StatefulSet":
            self.enqueue((meta(obj).get("namespace", ""), ref.get("name", "")))

    async def on_synced(self) -> None:
        for s in self.sets.items():
            self.enqueue(ns_name(s))

    def _owned(self, inf, sts: dict) -> list[dict]:
        ns, uid = meta(sts).get("namespace", ""), meta(sts).get("uid")
        return [o for o in inf.items() if meta(o).get("namespace", "") == ns
                and (controller_ref(o) or {}).get("uid") == uid]

    def _stale(self, key: tuple[str, str]) -> bool:
        pend = self._pending.get(key)
        if not pend:
            return False
        ns = key[0]
        seen = set()
        for kind, name in pend:
            inf = self.pods if kind == "pod" else self.revisions
            if inf.get(ns, name) is not None:
                seen.add((kind, name))
        pend -= seen
        if pend:
            return True
        self._pending.pop(key, None)
        return False

    async def reconcile(self, key: tuple[str, str]) -> None:
        ns, name = key
        sts = self.sets.get(ns, name)
        if sts is None or meta(sts).get("deletionTimestamp"):
            self._pending.pop(key, None)
            return
        if self._stale(key):
            self.enqueue_after(key, 0.5)
            return
        revisions = sorted(self._owned(self.revisions, sts), key=lambda r: r.get("revision", 0))
        update_rev = await self._update_revision(sts, revisions)
        if update_rev is None:
            return
        cur_name = (sts.get("status") or {}).get("currentRevision") or meta(update_rev)["name"]
        current_rev = next((r for r in revisions if meta(r)["name"] == cur_name), update_rev)
        pods = self._owned(self.pods, sts)
        await self._manage(sts, pods, current_rev, update_rev)
        pods = self._owned(self.pods, sts)
        await self._status(sts, pods, meta(current_rev)["name"], meta(update_rev)["name"])
        await self._truncate_history(sts, revisions, {meta(current_rev)["name"], meta(update_rev)["name"]}, pods)

    async def _update_revision(self, sts: dict, revisions: list[dict]) -> dict | None:
        data = revision_data(sts)
        max_rev = max((r.get("revision", 0) for r in revisions), default=0)
        equal = [r for r in revisions if r.get("data") == data]
        ns = meta(sts).get("namespace", "")
        if equal:
            rev = equal[-1]
            if rev.get("revision", 0) < max_rev:   # rolled back to an older template
                rev = copy.deepcopy(rev)
                rev["revision"] = max_rev + 1
                rev = await self.client.update(REVISIONS, rev)
            return rev
        collision = int((sts.get("status") or {}).get("collisionCount") or 0)
        body = new_revision(sts, max_rev + 1, collision)
        try:
            rev = await self.client.create(REVISIONS, body, ns)
        except ApiError as e:
            if e.code != 409:
                raise
            cur = await self.client.get(REVISIONS, ns, body["metadata"]["name"])
            if cur.get("data") == data and (controller_ref(cur) or {}).get("uid") == meta(sts).get("uid"):
                return cur
            st = copy.deepcopy(sts.get("status") or {})
            st["collisionCount"] = collision + 1
            await self.client.update_status(STATEFULSETS, dict(sts, status=st))
            return None
        self._pending.setdefault(ns_name(sts), set()).add(("rev", meta(rev)["name"]))
        return rev

    async def _create(self, sts: dict, ordinal: int, rev: dict) -> None:
        body = new_pod(sts, ordinal, rev)
        pname = body["metadata"]["name"]
        try:
            await self.client.create(PODS, body, meta(sts).get("namespace"))
        except ApiError as e:
            if e.code == 409:
                return
            await self.recorder.record(sts, "Warning", "FailedCreate",
                                       f"create Pod {pname} in StatefulSet {meta(sts)['name']} failed error: {e.message}",
                                       COMPONENT)
            raise
        self._pending.setdefault(ns_name(sts), set()).add(("pod", pname))
        await self.recorder.record(sts, "Normal", "SuccessfulCreate",
                                   f"create Pod {pname} in StatefulSet {meta(sts)['name']} successful", COMPONENT)

    async def _delete(self, sts: dict, pod: dict) -> None:
        pname = meta(pod)["name"]
        try:
            await self.client.delete(PODS, meta(pod).get("namespace"), pname)
        except ApiError as e:
            if e.code == 404:
                return
            raise
        await self.recorder.record(sts, "Normal", "SuccessfulDelete",
                                   f"delete Pod {pname} in StatefulSet {meta(sts)['name']} successful", COMPONENT)

    async def _manage(self, sts: dict, pods: list[dict], current_rev: dict, update_rev: dict) -> None:
        spec = sts.get("spec") or {}
        parallel = spec.get("podManagementPolicy") == "Parallel"
        strategy = spec.get("updateStrategy") or {}
        partition = int(((strategy.get("rollingUpdate") or {}).get("partition")) or 0)
        start, end = replica_range(sts)
        set_name = meta(sts)["name"]
        by_ord: dict[int, dict] = {}
        condemned: list[dict] = []
        for p in pods:
            o = parse_ordinal(set_name, meta(p)["name"])
            if o is None:
                continue
            if start <= o < end:
                by_ord[o] = p
            else:
                condemned.append(p)
        condemned.sort(key=lambda p: -(parse_ordinal(set_name, meta(p)["name"]) or 0))
        # replace failed/succeeded pods
        for o, p in list(by_ord.items()):
            if is_terminal(p) and not meta(p).get("deletionTimestamp"):
                await self._delete(sts, p)
                if not parallel:
                    return
        # create missing ordinals in order; OrderedReady waits for each to be Running and Ready
        for o in range(start, end):
            p = by_ord.get(o)
            if p is None:
                rev = current_rev if (o - start) < partition and current_rev is not update_rev else update_rev
                if strategy.get("type") == "OnDelete":
                    rev = current_rev if meta(current_rev)["name"] != meta(update_rev)["name"] else update_rev
                await self._create(sts, o, rev)
                if not parallel:
                    return
                continue
            if not parallel and (meta(p).get("deletionTimestamp") or not is_running_and_ready(p)):
                return
        # scale down: highest ordinal first, one at a time unless Parallel
        for p in condemned:
            if meta(p).get("deletionTimestamp"):
                if not parallel:
                    return
                continue
            if not parallel and not all(is_running_and_ready(x) and not meta(x).get("deletionTimestamp")
                                        for x in by_ord.values()):
                return
            await self._delete(sts, p)
            if not parallel:
                return
        if condemned and not parallel:
            return
        if strategy.get("type") == "OnDelete":
            return
        # rolling update: highest ordinal first, down to the partition, each after the rest is ready
        if not all(is_running_and_ready(x) for x in by_ord.values()):
            return
        upd = meta(update_rev)["name"]
        for o in range(end - 1, start + partition - 1, -1):
            p = by_ord.get(o)
            if p is None:
                return
            if pod_revision(p) != upd:
                if not meta(p).get("deletionTimestamp"):
                    await self._delete(sts, p)
                return

    async def _status(self, sts: dict, pods: list[dict], current: str, update: str) -> None:
        now = time.time()
        st = compute_status(sts, pods, current, update, now)
        min_ready = int((sts.get("spec") or {}).get("minReadySeconds") or 0)
        self.requeue_when_available(sts, pods, min_ready, now)
        await self.write_status(STATEFULSETS, sts, st)

    async def _truncate_history(self, sts: dict, revisions: list[dict], live: set[str], pods: list[dict]) -> None:
        limit = (sts.get("spec") or {}).get("revisionHistoryLimit")
        limit = 10 if limit is None else int(limit)
        live = live | {pod_revision(p) for p in pods}
        history = [r for r in revisions if meta(r)["name"] not in live]
        for r in history[:max(0, len(history) - limit)]:
            try:
                await self.client.delete(REVISIONS, meta(r).get("namespace"), meta(r)["name"])
            except ApiError as e:
                if e.code != 404:
                    raise
