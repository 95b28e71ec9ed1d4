"""The Deployment controller: ReplicaSets per pod template, rolling update or recreate, status."""
from __future__ import annotations

import copy
import logging
import time
from typing import Any

from tinykube.api.errors import ApiError
from tinykube.api.resources import get as get_resource

from . import rollout
from .base import Controller, SharedInformers
from .events import Recorder
from .hashing import compute_hash
from .util import controller_ref, label_selector, meta, now_rfc3339, owner_ref, parse_time, ns_name

log = logging.getLogger("tinykube.controllers.deployment")

DEPLOYMENTS = get_resource("deployments", "apps")
REPLICASETS = get_resource("replicasets", "apps")
PODS = get_resource("pods")
COMPONENT = "deployment-controller"

HASH_LABEL = "pod-template-hash"
REVISION = "deployment.kubernetes.io/revision"
REVISION_HISTORY = "deployment.kubernetes.io/revision-history"
DESIRED_REPLICAS = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
SKIP_COPY = {LAST_APPLIED, REVISION, REVISION_HISTORY, DESIRED_REPLICAS, MAX_REPLICAS,
             "deprecated.deployment.rollback.to"}


# ---------------------------------------------------------------- pure helpers

def template_without_hash(template: dict) -> dict:
    t = copy.deepcopy(template or {})
    labels = (t.get("metadata") or {}).get("labels")
    if labels and HASH_LABEL in labels:
        del labels[HASH_LABEL]
    return t


def equal_ignore_hash(a: dict, b: dict) -> bool:
    return _norm(template_without_hash(a)) == _norm(template_without_hash(b))


def _norm(t: dict) -> dict:
    """Drop empty containers so a defaulted and a hand-written template compare equal."""
    if isinstance(t, dict):
        return {k: _norm(v) for k, v in t.items() if v not in (None, {}, [])}
    if isinstance(t, list):
        return [_norm(x) for x in t]
    return t


def revision_of(obj: dict) -> int:
    try:
        return int((meta(obj).get("annotations") or {}).get(REVISION, "0"))
    except ValueError:
        return 0


def rs_replicas(rs: dict) -> int:
    return rollout.replicas_of(rs)


def rs_status(rs: dict, field: str) -> int:
    return int((rs.get("status") or {}).get(field) or 0)


def new_rs_body(d: dict, hash_: str, replicas: int, revision: int) -> dict:
    md = meta(d)
    spec = d.get("spec") or {}
    template = copy.deepcopy(spec.get("template") or {})
    template.setdefault("metadata", {}).setdefault("labels", {})[HASH_LABEL] = hash_
    selector = copy.deepcopy(spec.get("selector") or {})
    selector.setdefault("matchLabels", {})[HASH_LABEL] = hash_
    annotations = {k: v for k, v in (md.get("annotations") or {}).items() if k not in SKIP_COPY}
    annotations[DESIRED_REPLICAS] = str(rollout.replicas_of(d))
    annotations[MAX_REPLICAS] = str(rollout.replicas_of(d) + rollout.max_surge(d))
    annotations[REVISION] = str(revision)
    labels = dict(template["metadata"]["labels"])
    rs_spec: dict[str, Any] = {"replicas": replicas, "minReadySeconds": spec.get("minReadySeconds") or 0,
                               "selector": selector, "template": template}
    return {"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": f"{md['name']}-{hash_}", "namespace": md.get("namespace", "default"),
                         "labels": labels, "annotations": annotations,
                         "ownerReferences": [owner_ref(d, "Deployment", "apps/v1")]},
            "spec": rs_spec}


def set_condition(status: dict, cond: dict) -> None:
    """SetDeploymentCondition."""
    conds = status.get("conditions") or []
    cur = next((c for c in conds if c.get("type") == cond["type"]), None)
    if cur is not None and cur.get("status") == cond["status"] and cur.get("reason") == cond.get("reason"):
        return
    if cur is not None and cur.get("status") == cond["status"]:
        cond["lastTransitionTime"] = cur.get("lastTransitionTime", cond["lastTransitionTime"])
    status["conditions"] = [c for c in conds if c.get("type") != cond["type"]] + [cond]


def new_condition(ctype: str, status: str, reason: str, message: str) -> dict:
    now = now_rfc3339()
    return {"type": ctype, "status": status, "lastUpdateTime": now, "lastTransitionTime": now,
            "reason": reason, "message": message}


def deployment_complete(d: dict, status: dict) -> bool:
    n = rollout.replicas_of(d)
    return (status.get("updatedReplicas", 0) == n and status.get("replicas", 0) == n
            and status.get("availableReplicas", 0) == n
            and status.get("observedGeneration", 0) >= meta(d).get("generation", 1))


def deployment_progressing(d: dict, new: dict) -> bool:
    old = d.get("status") or {}
    old_old = old.get("replicas", 0) - old.get("updatedReplicas", 0)
    new_old = new.get("replicas", 0) - new.get("updatedReplicas", 0)
    return (new.get("updatedReplicas", 0) > old.get("updatedReplicas", 0)
            or new_old < old_old
            or new.get("readyReplicas", 0) > old.get("readyReplicas", 0)
            or new.get("availableReplicas", 0) > old.get("availableReplicas", 0))


def calculate_status(d: dict, all_rss: list[dict], new_rs: dict | None) -> dict:
    status: dict[str, Any] = {}
    old = d.get("status") or {}
    status["observedGeneration"] = meta(d).get("generation", 1)
    status["replicas"] = sum(rs_status(r, "replicas") for r in all_rss)
    status["updatedReplicas"] = rs_status(new_rs, "replicas") if new_rs else 0
    status["readyReplicas"] = sum(rs_status(r, "readyReplicas") for r in all_rss)
    status["availableReplicas"] = sum(rs_status(r, "availableReplicas") for r in all_rss)
    status["unavailableReplicas"] = max(0, rollout.replicas_of(d) - status["availableReplicas"])
    if old.get("collisionCount") is not None:
        status["collisionCount"] = old["collisionCount"]
    status["conditions"] = copy.deepcopy(old.get("conditions") or [])
    n = rollout.replicas_of(d)
    if status["availableReplicas"] >= n - rollout.max_unavailable(d):
        set_condition(status, new_condition("Available", "True", "MinimumReplicasAvailable",
                                            "Deployment has minimum availability."))
    else:
        set_condition(status, new_condition("Available", "False", "MinimumReplicasUnavailable",
                                            "Deployment does not have minimum availability."))
    return status


def sync_rollout_status(d: dict, status: dict, new_rs: dict | None, now: float | None = None) -> None:
    """syncRolloutStatus: the Progressing condition."""
    conds = status.get("conditions") or []
    cur = next((c for c in conds if c.get("type") == "Progressing"), None)
    deadline = (d.get("spec") or {}).get("progressDeadlineSeconds")
    if (d.get("spec") or {}).get("paused"):
        return
    if cur is not None and cur.get("reason") == "NewReplicaSetAvailable" and deployment_complete(d, status):
        return
    name = meta(new_rs)["name"] if new_rs else ""
    cond = None
    if new_rs is not None and deployment_complete(d, status):
        cond = new_condition("Progressing", "True", "NewReplicaSetAvailable",
                             f'ReplicaSet "{name}" has successfully progressed.')
    elif new_rs is not None and deployment_progressing(d, status):
        cond = new_condition("Progressing", "True", "ReplicaSetUpdated", f'ReplicaSet "{name}" is progressing.')
        if cur is not None:
            if cur.get("status") == "True":
                cond["lastTransitionTime"] = cur.get("lastTransitionTime", cond["lastTransitionTime"])
            status["conditions"] = [c for c in conds if c.get("type") != "Progressing"]
    elif new_rs is not None and cur is not None and deadline is not None and cur.get("status") == "True" \
            and cur.get("reason") != "NewReplicaSetAvailable":
        last = parse_time(cur.get("lastUpdateTime"))
        if last is not None and last + int(deadline) < (now if now is not None else time.time()):
            cond = new_condition("Progressing", "False", "ProgressDeadlineExceeded",
                                 f'ReplicaSet "{name}" has timed out progressing.')
    if cond is not None:
        set_condition(status, cond)


def cleanup_candidates(d: dict, old_rss: list[dict]) -> list[dict]:
    """Old ReplicaSets beyond revisionHistoryLimit that may be deleted (oldest revisions first)."""
    limit = (d.get("spec") or {}).get("revisionHistoryLimit")
    limit = 10 if limit is None else int(limit)
    alive = [r for r in old_rss if not meta(r).get("deletionTimestamp")]
    diff = len(alive) - limit
    if diff <= 0:
        return []
    alive.sort(key=lambda r: (revision_of(r), meta(r).get("creationTimestamp", "")))
    out = []
    for r in alive[:diff]:   # upstream looks at the `diff` oldest only, skipping busy ones
        if rs_replicas(r) != 0 or rs_status(r, "replicas") != 0 or (r.get("status") or {}).get(
                "observedGeneration", 0) < meta(r).get("generation", 1):
            continue
        out.append(r)
    return out


def _by_creation(r: dict) -> tuple:
    return (meta(r).get("creationTimestamp", ""), meta(r).get("name", ""))


# ---------------------------------------------------------------- controller

class DeploymentController(Controller):
    name = "deployment-controller"
    workers = 4

    def __init__(self, client, informers: SharedInformers, recorder: Recorder):
        super().__init__(client, informers)
        self.recorder = recorder
        self.deployments = informers.get("deployments", "apps")
        self.rss = informers.get("replicasets", "apps")
        self.pods = informers.get("pods")
        self.deployments.on_add(lambda o: self.enqueue(ns_name(o)))
        self.deployments.on_update(lambda o, n: self.enqueue(ns_name(n)))
        self.rss.on_add(self._rs_changed)
        self.rss.on_update(lambda o, n: (self._rs_changed(o), self._rs_changed(n)))
        self.rss.on_delete(self._rs_changed)
        self.pods.on_delete(self._pod_deleted)
        # names of ReplicaSets created and not yet in the cache
        self._pending: dict[tuple[str, str], set[str]] = {}

    def _rs_changed(self, rs: dict) -> None:
        ref = controller_ref(rs)
        if ref is not None and ref.get("kind") == "Deployment":
            self.enqueue((meta(rs).get("namespace", ""), ref.get("name", "")))

    def _pod_deleted(self, pod: dict) -> None:
        # Recreate waits for old pods to be gone
        ref = controller_ref(pod)
        if ref is None or ref.get("kind") != "ReplicaSet":
            return
        rs = self.rss.get(meta(pod).get("namespace"), ref.get("name", ""))
        if rs is not None:
            self._rs_changed(rs)

    async def on_synced(self) -> None:
        for d in self.deployments.items():
            self.enqueue(ns_name(d))

    def owned_rss(self, d: dict) -> list[dict]:
        ns, uid = meta(d).get("namespace", ""), meta(d).get("uid")
        return [r for r in self.rss.items() if meta(r).get("namespace", "") == ns
                and (controller_ref(r) or {}).get("uid") == uid]

    async def reconcile(self, key: tuple[str, str]) -> None:
        ns, name = key
        d = self.deployments.get(ns, name)
        if d is None or meta(d).get("deletionTimestamp"):
            return
        pending = self._pending.get(key)
        if pending:
            pending -= {meta(r).get("name") for r in self.rss.items() if meta(r).get("namespace") == ns}
            if pending:
                self.enqueue_after(key, 0.5)
                return
            self._pending.pop(key, None)
        d = copy.deepcopy(d)
        sel = label_selector(d)
        if sel.empty:
            return   # "all pods" selectors are rejected; nothing sensible to do
        await self._adopt(d, sel)
        rss = self.owned_rss(d)
        if (d.get("spec") or {}).get("paused"):
            new_rs = self.find_new_rs(d, rss)
            await self.sync_status(d, rss, new_rs)
            return
        strategy = ((d.get("spec") or {}).get("strategy") or {}).get("type") or "RollingUpdate"
        if strategy == "Recreate":
            await self.recreate(d, rss)
        else:
            await self.rolling(d, rss)

    async def _adopt(self, d: dict, sel) -> None:
        ns = meta(d).get("namespace", "")
        for r in self.rss.items():
            if meta(r).get("namespace", "") != ns or controller_ref(r) is not None:
                continue
            if sel.matches(meta(r).get("labels")):
                try:
                    await self.client.patch(REPLICASETS, ns, meta(r)["name"], {"metadata": {
                        "ownerReferences": list(meta(r).get("ownerReferences") or [])
                        + [owner_ref(d, "Deployment", "apps/v1")]}})
                except ApiError as e:
                    if e.code not in (404, 409, 422):
                        raise

    # ------------------------------------------------------------ new ReplicaSet

    def find_new_rs(self, d: dict, rss: list[dict]) -> dict | None:
        template = (d.get("spec") or {}).get("template") or {}
        matches = sorted((r for r in rss if equal_ignore_hash((r.get("spec") or {}).get("template") or {}, template)),
                         key=_by_creation)
        return matches[0] if matches else None

    async def get_new_rs(self, d: dict, rss: list[dict], create: bool) -> tuple[dict | None, list[dict]]:
        """getNewReplicaSet: find or create the ReplicaSet of the current template; syncs revisions."""
        old = [r for r in rss]
        existing = self.find_new_rs(d, rss)
        old = [r for r in rss if existing is None or meta(r)["name"] != meta(existing)["name"]]
        max_old = max((revision_of(r) for r in old), default=0)
        new_revision = max_old + 1
        ns = meta(d).get("namespace", "")
        if existing is not None:
            rs = existing
            want_ann = dict(meta(rs).get("annotations") or {})
            changed = False
            if revision_of(rs) < new_revision:
                want_ann[REVISION] = str(new_revision)
                changed = True
            for k, v in ((DESIRED_REPLICAS, str(rollout.replicas_of(d))),
                         (MAX_REPLICAS, str(rollout.replicas_of(d) + rollout.max_surge(d)))):
                if want_ann.get(k) != v and rs_replicas(rs) == rollout.replicas_of(d):
                    want_ann[k] = v
                    changed = True
            min_ready = (d.get("spec") or {}).get("minReadySeconds") or 0
            if changed or ((rs.get("spec") or {}).get("minReadySeconds") or 0) != min_ready:
                rs = copy.deepcopy(rs)
                rs["metadata"]["annotations"] = want_ann
                rs["spec"]["minReadySeconds"] = min_ready
                rs = await self.client.update(REPLICASETS, rs)
            await self._set_deployment_revision(d, revision_of(rs))
            if not any(c.get("type") == "Progressing" for c in (d.get("status") or {}).get("conditions") or []):
                st = copy.deepcopy(d.get("status") or {})
                set_condition(st, new_condition("Progressing", "True", "FoundNewReplicaSet",
                                                f'Found new replica set "{meta(rs)["name"]}"'))
                d["status"] = st
            return rs, old
        if not create:
            return None, old
        template = (d.get("spec") or {}).get("template") or {}
        collision = (d.get("status") or {}).get("collisionCount")
        hash_ = compute_hash(template, collision)
        all_replicas = sum(rs_replicas(r) for r in old)
        replicas = rollout.new_rs_new_replicas(d, all_replicas, 0)
        body = new_rs_body(d, hash_, replicas, new_revision)
        try:
            rs = await self.client.create(REPLICASETS, body, ns)
        except ApiError as e:
            if e.code != 409:
                raise
            try:
                cur = await self.client.get(REPLICASETS, ns, body["metadata"]["name"])
            except ApiError:
                raise e from None
            if (controller_ref(cur) or {}).get("uid") == meta(d).get("uid") and equal_ignore_hash(
                    (cur.get("spec") or {}).get("template") or {}, template):
                return cur, old
            # a hash collision: bump collisionCount and try again with a new name
            st = copy.deepcopy(d.get("status") or {})
            st["collisionCount"] = int(collision or 0) + 1
            d["status"] = st
            await self.client.update_status(DEPLOYMENTS, d)
            raise
        self._pending.setdefault(ns_name(d), set()).add(meta(rs)["name"])
        if replicas > 0:
            await self.recorder.record(d, "Normal", "ScalingReplicaSet",
                                       f"Scaled up replica set {meta(rs)['name']} from 0 to {replicas}", COMPONENT)
        await self._set_deployment_revision(d, new_revision)
        st = copy.deepcopy(d.get("status") or {})
        set_condition(st, new_condition("Progressing", "True", "NewReplicaSetCreated",
                                        f'Created new replica set "{meta(rs)["name"]}"'))
        d["status"] = st
        return rs, old

    async def _set_deployment_revision(self, d: dict, revision: int) -> None:
        ann = meta(d).get("annotations") or {}
        if ann.get(REVISION) == str(revision):
            return
        # PATCH, not PUT: the deployment may have moved on since the cache saw it
        out = await self.client.patch(DEPLOYMENTS, meta(d).get("namespace"), meta(d)["name"],
                                      {"metadata": {"annotations": {REVISION: str(revision)}}})
        d["metadata"]["annotations"] = dict(ann, **{REVISION: str(revision)})
        d["metadata"]["resourceVersion"] = meta(out).get("resourceVersion")

    # ------------------------------------------------------------ scaling

    async def scale_rs(self, d: dict, rs: dict, new_scale: int) -> dict:
        old_scale = rs_replicas(rs)
        ann = dict(meta(rs).get("annotations") or {})
        want_ann = dict(ann)
        want_ann[DESIRED_REPLICAS] = str(rollout.replicas_of(d))
        want_ann[MAX_REPLICAS] = str(rollout.replicas_of(d) + rollout.max_surge(d))
        if old_scale == new_scale and want_ann == ann:
            return rs
        new = copy.deepcopy(rs)
        new["spec"]["replicas"] = new_scale
        new["metadata"]["annotations"] = want_ann
        out = await self.client.update(REPLICASETS, new)
        if old_scale != new_scale:
            op = "up" if new_scale > old_scale else "down"
            await self.recorder.record(d, "Normal", "ScalingReplicaSet",
                                       f"Scaled {op} replica set {meta(rs)['name']} from {old_scale} to {new_scale}",
                                       COMPONENT)
        return out

    async def rolling(self, d: dict, rss: list[dict]) -> None:
        new_rs, old_rss = await self.get_new_rs(d, rss, create=True)
        all_rss = ([new_rs] if new_rs else []) + old_rss
        want = rollout.replicas_of(d)
        # scale up the new ReplicaSet
        if new_rs is not None:
            cur = rs_replicas(new_rs)
            if cur > want:
                new_rs = await self.scale_rs(d, new_rs, want)
            elif cur < want:
                total = sum(rs_replicas(r) for r in all_rss)
                n = rollout.new_rs_new_replicas(d, total, cur)
                if n != cur:
                    new_rs = await self.scale_rs(d, new_rs, n)
                    await self.sync_status(d, [new_rs] + old_rss, new_rs)
                    return
        # scale down old ReplicaSets
        old_rss = await self.reconcile_old(d, new_rs, old_rss)
        all_rss = ([new_rs] if new_rs else []) + old_rss
        status = calculate_status(d, all_rss, new_rs)
        if deployment_complete(d, status):
            await self.cleanup(d, old_rss)
        await self.sync_status(d, all_rss, new_rs)

    async def reconcile_old(self, d: dict, new_rs: dict | None, old_rss: list[dict]) -> list[dict]:
        old_count = sum(rs_replicas(r) for r in old_rss)
        if old_count == 0:
            return old_rss
        all_rss = ([new_rs] if new_rs else []) + old_rss
        all_count = sum(rs_replicas(r) for r in all_rss)
        new_replicas = rs_replicas(new_rs) if new_rs else 0
        new_avail = rs_status(new_rs, "availableReplicas") if new_rs else 0
        budget = rollout.max_scaled_down(d, all_count, new_replicas, new_avail)
        if budget <= 0:
            return old_rss
        by_name = {meta(r)["name"]: r for r in old_rss}
        # first the unhealthy replicas of old ReplicaSets, oldest first
        cleaned = 0
        for r in sorted(old_rss, key=_by_creation):
            if cleaned >= budget:
                break
            reps = rs_replicas(by_name[meta(r)["name"]])
            if reps == 0:
                continue
            unhealthy = reps - rs_status(r, "availableReplicas")
            if unhealthy <= 0:
                continue
            down = min(budget - cleaned, unhealthy)
            by_name[meta(r)["name"]] = await self.scale_rs(d, by_name[meta(r)["name"]], reps - down)
            cleaned += down
        # then available ones, keeping minAvailable
        total_available = sum(rs_status(r, "availableReplicas") for r in all_rss)
        total_down = min(rollout.old_scale_down_budget(d, total_available), budget - cleaned)
        done = 0
        for r in sorted(by_name.values(), key=_by_creation):
            if done >= total_down:
                break
            reps = rs_replicas(r)
            if reps == 0:
                continue
            down = min(reps, total_down - done)
            by_name[meta(r)["name"]] = await self.scale_rs(d, r, reps - down)
            done += down
        return list(by_name.values())

    async def recreate(self, d: dict, rss: list[dict]) -> None:
        new_rs, old_rss = await self.get_new_rs(d, rss, create=False)
        scaled = False
        out = []
        for r in old_rss:
            if rs_replicas(r) != 0:
                r = await self.scale_rs(d, r, 0)
                scaled = True
            out.append(r)
        old_rss = out
        if scaled:
            await self.sync_status(d, ([new_rs] if new_rs else []) + old_rss, new_rs)
            return
        old_uids = {meta(r).get("uid") for r in old_rss}
        running = [p for p in self.pods.items() if (controller_ref(p) or {}).get("uid") in old_uids
                   and (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")]
        if running:
            await self.sync_status(d, ([new_rs] if new_rs else []) + old_rss, new_rs)
            return
        if new_rs is None:
            new_rs, old_rss = await self.get_new_rs(d, rss, create=True)
        if new_rs is not None and rs_replicas(new_rs) != rollout.replicas_of(d):
            new_rs = await self.scale_rs(d, new_rs, rollout.replicas_of(d))
        all_rss = ([new_rs] if new_rs else []) + old_rss
        if deployment_complete(d, calculate_status(d, all_rss, new_rs)):
            await self.cleanup(d, old_rss)
        await self.sync_status(d, all_rss, new_rs)

    async def cleanup(self, d: dict, old_rss: list[dict]) -> None:
        for r in cleanup_candidates(d, old_rss):
            try:
                await self.client.delete(REPLICASETS, meta(r).get("namespace"), meta(r)["name"])
            except ApiError as e:
                if e.code != 404:
                    raise

    async def sync_status(self, d: dict, all_rss: list[dict], new_rs: dict | None) -> None:
        status = calculate_status(d, all_rss, new_rs)
        sync_rollout_status(d, status, new_rs)
        conds = status.get("conditions") or []
        prog = next((c for c in conds if c.get("type") == "Progressing"), None)
        deadline = (d.get("spec") or {}).get("progressDeadlineSeconds")
        if prog is not None and prog.get("status") == "True" and prog.get("reason") != "NewReplicaSetAvailable" \
                and deadline is not None:
            t = parse_time(prog.get("lastUpdateTime"))
            if t is not None:
                self.enqueue_after(ns_name(d), max(0.1, t + int(deadline) + 1 - time.time()))
        await self.write_status(DEPLOYMENTS, d, status)
