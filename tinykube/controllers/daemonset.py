"""The DaemonSet controller: one pod per Ready node the template's nodeSelector admits."""
from __future__ import annotations

import logging
import time

from tinykube.api.errors import ApiError
from tinykube.api.resources import get as get_resource

from . import rollout
from .base import Controller, SharedInformers
from .events import Recorder
from .hashing import revision_hash
from .scheduler import node_ready
from .statefulset import revision_data
from .util import (ns_name, controller_ref, is_pod_available, is_pod_ready, is_terminal, meta,
                   owner_ref, pod_from_template)

log = logging.getLogger("tinykube.controllers.daemonset")

PODS = get_resource("pods")
DAEMONSETS = get_resource("daemonsets", "apps")
COMPONENT = "daemonset-controller"
REVISION_LABEL = "controller-revision-hash"
GENERATION_LABEL = "pod-template-generation"

# AddOrUpdateDaemonPodTolerations
DAEMON_TOLERATIONS = [
    {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/disk-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/memory-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/pid-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"},
]


def node_wanted(ds: dict, node: dict) -> bool:
    if not node_ready(node):
        return False
    sel = (((ds.get("spec") or {}).get("template") or {}).get("spec") or {}).get("nodeSelector") or {}
    labels = meta(node).get("labels") or {}
    return all(labels.get(k) == v for k, v in sel.items())


def template_hash(ds: dict) -> str:
    return revision_hash(revision_data(ds), (ds.get("status") or {}).get("collisionCount"))


def daemon_pod(ds: dict, node_name: str) -> dict:
    md = meta(ds)
    pod = pod_from_template((ds.get("spec") or {}).get("template") or {}, md.get("namespace", "default"),
                            owner_ref(ds, "DaemonSet", "apps/v1"), generate_name=f"{md['name']}-")
    pod["metadata"]["labels"][REVISION_LABEL] = template_hash(ds)
    pod["metadata"]["labels"][GENERATION_LABEL] = str(md.get("generation", 1))
    spec = pod["spec"]
    spec["nodeName"] = node_name
    tol = list(spec.get("tolerations") or [])
    have = {(t.get("key"), t.get("effect")) for t in tol}
    for t in DAEMON_TOLERATIONS:
        if (t["key"], t["effect"]) not in have:
            tol.append(dict(t))
    spec["tolerations"] = tol
    return pod


class DaemonSetController(Controller):
    name = "daemonset-controller"

    def __init__(self, client, informers: SharedInformers, recorder: Recorder):
        super().__init__(client, informers)
        self.recorder = recorder
        self.sets = informers.get("daemonsets", "apps")
        self.pods = informers.get("pods")
        self.nodes = informers.get("nodes")
        self.sets.on_add(lambda o: self.enqueue(ns_name(o)))
        self.sets.on_update(lambda o, n: self.enqueue(ns_name(n)))
        for h in (self.pods.on_add, self.pods.on_delete):
            h(self._pod_changed)
        self.pods.on_update(lambda o, n: self._pod_changed(n))
        for h in (self.nodes.on_add, self.nodes.on_delete):
            h(lambda n: self._all())
        self.nodes.on_update(lambda o, n: self._all())
        self._pending: dict[tuple[str, str], set[str]] = {}   # node names we created a pod for

    def _pod_changed(self, pod: dict) -> None:
        ref = controller_ref(pod)
        if ref is not None and ref.get("kind") == "DaemonSet":
            self.enqueue((meta(pod).get("namespace", ""), ref.get("name", "")))

    def _all(self) -> None:
        for ds in self.sets.items():
            self.enqueue(ns_name(ds))

    async def on_synced(self) -> None:
        self._all()

    async def reconcile(self, key: tuple[str, str]) -> None:
        ns, name = key
        ds = self.sets.get(ns, name)
        if ds is None or meta(ds).get("deletionTimestamp"):
            self._pending.pop(key, None)
            return
        uid = meta(ds).get("uid")
        pods = [p for p in self.pods.items() if meta(p).get("namespace", "") == ns
                and (controller_ref(p) or {}).get("uid") == uid]
        by_node: dict[str, list[dict]] = {}
        for p in pods:
            by_node.setdefault((p.get("spec") or {}).get("nodeName") or "", []).append(p)
        pend = self._pending.get(key, set())
        pend -= {n for n, ps in by_node.items() if ps}
        nodes = {meta(n)["name"]: n for n in self.nodes.items()}
        wanted = {n for n, node in nodes.items() if node_wanted(ds, node)}
        h = template_hash(ds)
        for n in sorted(wanted):
            live = [p for p in by_node.get(n, []) if not is_terminal(p)]
            for p in by_node.get(n, []):
                if is_terminal(p) and not meta(p).get("deletionTimestamp"):
                    await self._delete(ds, p)
            if not live and n not in pend:
                await self._create(ds, n)
                pend.add(n)
            for extra in sorted(live, key=lambda p: meta(p).get("creationTimestamp", ""))[1:]:
                if not meta(extra).get("deletionTimestamp"):
                    await self._delete(ds, extra)
        for n, ps in by_node.items():
            if n not in wanted:
                for p in ps:
                    if not meta(p).get("deletionTimestamp"):
                        await self._delete(ds, p)
        self._pending[key] = pend
        # rolling update: replace outdated pods, at most maxUnavailable unavailable at a time
        strat = (ds.get("spec") or {}).get("updateStrategy") or {}
        min_ready = int((ds.get("spec") or {}).get("minReadySeconds") or 0)
        if (strat.get("type") or "RollingUpdate") == "RollingUpdate":
            mu = rollout.scaled_value((strat.get("rollingUpdate") or {}).get("maxUnavailable", 1), len(wanted), True)
            mu = max(mu, 1)
            current = [p for n in wanted for p in by_node.get(n, []) if not is_terminal(p)]
            unavailable = len(wanted) - sum(1 for p in current if is_pod_available(p, min_ready)
                                            and not meta(p).get("deletionTimestamp"))
            for p in sorted(current, key=lambda p: (is_pod_available(p, min_ready), meta(p)["name"])):
                if (meta(p).get("labels") or {}).get(REVISION_LABEL) == h or meta(p).get("deletionTimestamp"):
                    continue
                if is_pod_available(p, min_ready):
                    if unavailable >= mu:
                        break
                    unavailable += 1
                await self._delete(ds, p)
        await self._status(ds, wanted, by_node, h, min_ready)

    async def _create(self, ds: dict, node: str) -> None:
        try:
            out = await self.client.create(PODS, daemon_pod(ds, node), meta(ds).get("namespace"))
        except ApiError as e:
            await self.recorder.record(ds, "Warning", "FailedCreate", f"Error creating: {e.message}", COMPONENT)
            raise
        await self.recorder.record(ds, "Normal", "SuccessfulCreate", f"Created pod: {meta(out)['name']}", COMPONENT)

    async def _delete(self, ds: dict, pod: dict) -> None:
        try:
            await self.client.delete(PODS, meta(pod).get("namespace"), meta(pod)["name"])
        except ApiError as e:
            if e.code == 404:
                return
            raise
        await self.recorder.record(ds, "Normal", "SuccessfulDelete", f"Deleted pod: {meta(pod)['name']}", COMPONENT)

    async def _status(self, ds: dict, wanted: set[str], by_node: dict[str, list[dict]], h: str,
                      min_ready: int) -> None:
        now = time.time()
        scheduled = [p for n in wanted for p in by_node.get(n, [])[:1]]
        st = dict(ds.get("status") or {})
        st["desiredNumberScheduled"] = len(wanted)
        st["currentNumberScheduled"] = sum(1 for n in wanted if by_node.get(n))
        st["numberMisscheduled"] = sum(1 for n, ps in by_node.items() if n not in wanted and ps)
        st["numberReady"] = sum(1 for p in scheduled if is_pod_ready(p))
        st["updatedNumberScheduled"] = sum(1 for p in scheduled if (meta(p).get("labels") or {}).get(REVISION_LABEL) == h)
        st["numberAvailable"] = sum(1 for p in scheduled if is_pod_available(p, min_ready, now))
        st["numberUnavailable"] = len(wanted) - st["numberAvailable"]
        st["observedGeneration"] = meta(ds).get("generation", 1)
        for k in ("updatedNumberScheduled", "numberAvailable", "numberUnavailable"):
            if not st[k]:
                st.pop(k)
        self.requeue_when_available(ds, scheduled, min_ready, now)
        await self.write_status(DAEMONSETS, ds, st)
