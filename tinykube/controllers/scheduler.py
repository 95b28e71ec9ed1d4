"""A default-scheduler: binds pending pods to a Ready, schedulable node that fits."""
from __future__ import annotations

import logging

from tinykube.api.errors import ApiError
from tinykube.api.resources import get as get_resource

from .base import Controller, SharedInformers
from .events import Recorder
from .util import meta, now_rfc3339, ns_name

log = logging.getLogger("tinykube.controllers.scheduler")

PODS = get_resource("pods")
COMPONENT = "default-scheduler"
NOT_READY_TAINT = "node.kubernetes.io/not-ready"


def node_ready(node: dict) -> bool:
    for c in (node.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return c.get("status") == "True"
    return False


def _tolerates(tolerations: list[dict], taint: dict) -> bool:
    for t in tolerations or []:
        if t.get("effect") and t.get("effect") != taint.get("effect"):
            continue
        op = t.get("operator") or "Equal"
        if not t.get("key") and op == "Exists":
            return True
        if t.get("key") != taint.get("key"):
            continue
        if op == "Exists" or (t.get("value") or "") == (taint.get("value") or ""):
            return True
    return False


def _taint_str(t: dict) -> str:
    return "{%s: %s}" % (t.get("key", ""), t.get("value", ""))


def _match_expr(labels: dict, e: dict) -> bool:
    key, op, vals = e.get("key"), e.get("operator"), e.get("values") or []
    if op == "In":
        return key in labels and labels[key] in vals
    if op == "NotIn":
        return key not in labels or labels[key] not in vals
    if op == "Exists":
        return key in labels
    if op == "DoesNotExist":
        return key not in labels
    if op in ("Gt", "Lt"):
        try:
            v, w = int(labels[key]), int(vals[0])
        except (KeyError, ValueError, IndexError):
            return False
        return v > w if op == "Gt" else v < w
    return False


def _affinity_ok(pod: dict, node: dict) -> bool:
    req = (((pod.get("spec") or {}).get("affinity") or {}).get("nodeAffinity") or {}) \
        .get("requiredDuringSchedulingIgnoredDuringExecution")
    if not req:
        return True
    labels = meta(node).get("labels") or {}
    fields = {"metadata.name": meta(node).get("name", "")}
    for term in req.get("nodeSelectorTerms") or []:
        if all(_match_expr(labels, e) for e in term.get("matchExpressions") or []) and \
                all(_match_expr(fields, e) for e in term.get("matchFields") or []):
            if term.get("matchExpressions") or term.get("matchFields"):
                return True
    return False


def fit_failure(pod: dict, node: dict) -> str | None:
    """Why the pod cannot go to the node (the scheduler's reason string), or None when it fits."""
    spec = pod.get("spec") or {}
    tolerations = spec.get("tolerations") or []
    nspec = node.get("spec") or {}
    if nspec.get("unschedulable") and not _tolerates(
            tolerations, {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}):
        return "node(s) were unschedulable"
    labels = meta(node).get("labels") or {}
    sel = spec.get("nodeSelector") or {}
    if any(labels.get(k) != v for k, v in sel.items()) or not _affinity_ok(pod, node):
        return "node(s) didn't match Pod's node affinity/selector"
    taints = list(nspec.get("taints") or [])
    if not node_ready(node) and not any(t.get("key") == NOT_READY_TAINT for t in taints):
        taints.insert(0, {"key": NOT_READY_TAINT, "effect": "NoSchedule"})
    for t in taints:
        if t.get("effect") in ("NoSchedule", "NoExecute") and not _tolerates(tolerations, t):
            return f"node(s) had untolerated taint {_taint_str(t)}"
    return None


def failed_scheduling_message(reasons: list[str], num_nodes: int) -> str:
    if num_nodes == 0:
        return "no nodes available to schedule pods"
    hist: dict[str, int] = {}
    for r in reasons:
        hist[r] = hist.get(r, 0) + 1
    parts = sorted(f"{n} {r}" for r, n in hist.items())
    return (f"0/{num_nodes} nodes are available: {', '.join(parts)}. preemption: 0/{num_nodes} nodes are "
            f"available: {num_nodes} Preemption is not helpful for scheduling.")


def choose_node(pod: dict, nodes: list[dict], pods: list[dict]) -> tuple[str | None, list[str]]:
    """The node to bind to (fewest pods, then name), or None and the per-node reasons."""
    reasons, fits = [], []
    for n in nodes:
        why = fit_failure(pod, n)
        if why is None:
            fits.append(n)
        else:
            reasons.append(why)
    if not fits:
        return None, reasons
    load: dict[str, int] = {}
    for p in pods:
        nn = (p.get("spec") or {}).get("nodeName")
        if nn and (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed"):
            load[nn] = load.get(nn, 0) + 1
    best = min(fits, key=lambda n: (load.get(meta(n)["name"], 0), meta(n)["name"]))
    return meta(best)["name"], []


def needs_scheduling(pod: dict) -> bool:
    spec = pod.get("spec") or {}
    if spec.get("nodeName") or meta(pod).get("deletionTimestamp"):
        return False
    if (spec.get("schedulerName") or COMPONENT) != COMPONENT:
        return False
    return (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed")


class Scheduler(Controller):
    name = "scheduler"
    workers = 1   # one binding decision at a time keeps the spread honest

    def __init__(self, client, informers: SharedInformers, recorder: Recorder):
        super().__init__(client, informers)
        self.recorder = recorder
        self.pods = informers.get("pods")
        self.nodes = informers.get("nodes")
        self.pods.on_add(self._pod)
        self.pods.on_update(lambda o, n: self._pod(n))
        self.nodes.on_add(lambda n: self._requeue_pending())
        self.nodes.on_update(lambda o, n: self._requeue_pending())
        self._bound: dict[tuple[str, str], str] = {}   # bindings the cache may not show yet
        self._last_failure: dict[tuple[str, str], str] = {}

    def _pod(self, pod: dict) -> None:
        if needs_scheduling(pod):
            self.enqueue(ns_name(pod))
        else:
            self._bound.pop(ns_name(pod), None)
            self._last_failure.pop(ns_name(pod), None)

    def _requeue_pending(self) -> None:
        for p in self.pods.items():
            if needs_scheduling(p):
                self.enqueue(ns_name(p))

    async def on_synced(self) -> None:
        self._requeue_pending()

    async def reconcile(self, key: tuple[str, str]) -> None:
        ns, name = key
        pod = self.pods.get(ns, name)
        if pod is None or not needs_scheduling(pod) or key in self._bound:
            return
        pods = self.pods.items()
        # count our recent bindings the cache has not caught up with
        view = [dict(p, spec=dict(p.get("spec") or {}, nodeName=self._bound.get(ns_name(p))))
                if ns_name(p) in self._bound else p for p in pods]
        nodes = self.nodes.items()
        node, reasons = choose_node(pod, nodes, view)
        if node is None:
            msg = failed_scheduling_message(reasons, len(nodes))
            if self._last_failure.get(key) != msg:
                self._last_failure[key] = msg
                await self._set_condition(pod, "False", "Unschedulable", msg)
                await self.recorder.record(pod, "Warning", "FailedScheduling", msg, COMPONENT)
            return
        body = {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name, "namespace": ns},
                "target": {"apiVersion": "v1", "kind": "Node", "name": node}}
        try:
            await self.client.request("POST", f"/api/v1/namespaces/{ns}/pods/{name}/binding", body=body)
        except ApiError as e:
            if e.code in (404, 409):
                return  # gone, or bound by someone else
            raise
        self._bound[key] = node
        self._last_failure.pop(key, None)
        await self._set_condition(pod, "True", None, None)
        await self.recorder.record(pod, "Normal", "Scheduled", f"Successfully assigned {ns}/{name} to {node}",
                                   COMPONENT)

    async def _set_condition(self, pod: dict, status: str, reason: str | None, message: str | None) -> None:
        ns, name = ns_name(pod)
        for _ in range(5):
            try:
                cur = await self.client.get(PODS, ns, name)
            except ApiError as e:
                if e.code == 404:
                    return
                raise
            st = cur.setdefault("status", {})
            conds = [c for c in st.get("conditions") or [] if c.get("type") != "PodScheduled"]
            old = next((c for c in st.get("conditions") or [] if c.get("type") == "PodScheduled"), None)
            cond = {"type": "PodScheduled", "status": status, "lastProbeTime": None,
                    "lastTransitionTime": old["lastTransitionTime"] if old and old.get("status") == status
                    and old.get("lastTransitionTime") else now_rfc3339()}
            if reason:
                cond["reason"] = reason
            if message:
                cond["message"] = message
            if old == cond:
                return
            st["conditions"] = conds + [cond]
            st.setdefault("phase", "Pending")
            try:
                await self.client.update_status(PODS, cur)
                return
            except ApiError as e:
                if e.code != 409:
                    raise
