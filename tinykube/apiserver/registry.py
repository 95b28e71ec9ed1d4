"""The REST semantics of every resource over the Store: metadata, defaulting, validation,
allocation, optimistic concurrency, graceful deletion, finalizers, garbage collection.

The HTTP layer parses requests and formats responses; everything a verb *means* is here.
"""
from __future__ import annotations

import asyncio
import copy
import ipaddress
import json
import logging
import secrets
import time
import uuid
from dataclasses import dataclass, field
from typing import AsyncIterator

from tinykube.api import errors
from tinykube.api.errors import ApiError, FieldError
from tinykube.api.resources import RESOURCES, Resource, get as get_resource
from tinykube.store.base import Event, Expired, KeyExists, KeyNotFound, RevisionMismatch, Store, revision_of

log = logging.getLogger(__name__)

_STATUS_KINDS = {"Pod", "Service", "Node", "Namespace", "Deployment", "ReplicaSet", "StatefulSet",
                 "DaemonSet", "Ingress"}
_NAME_CHARS = "bcdfghjklmnpqrstvwxz2456789"
SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


_last_stamp: tuple[int, str] = (-1, "")


def now_rfc3339() -> str:
    global _last_stamp
    sec = int(time.time())          # the text changes once a second: format it once a second
    if sec != _last_stamp[0]:
        _last_stamp = (sec, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(sec)))
    return _last_stamp[1]


_ATOMS = (str, int, float, bool, type(None))


def _copy_json(obj):
    """copy.deepcopy for trees of dicts, lists and JSON scalars (what request bodies are),
    without deepcopy's per-node dispatch; anything else, or a container met twice (shared or
    cyclic, which deepcopy reproduces), goes to copy.deepcopy."""
    seen: set[int] = set()

    def walk(o):
        t = type(o)
        if t is dict:
            if id(o) in seen:
                raise _NotTree
            seen.add(id(o))
            return {k if type(k) is str else walk_key(k): walk(v) for k, v in o.items()}
        if t is list:
            if id(o) in seen:
                raise _NotTree
            seen.add(id(o))
            return [walk(v) for v in o]
        if t in _ATOMS:
            return o
        raise _NotTree

    def walk_key(k):
        if type(k) in _ATOMS:
            return k
        raise _NotTree

    try:
        return walk(obj)
    except _NotTree:
        return copy.deepcopy(obj)


class _NotTree(Exception):
    pass


@dataclass
class ClusterConfig:
    service_cidr: str = "10.96.0.0/12"
    node_port_range: tuple[int, int] = (30000, 32767)
    lb_pool: str = ""


@dataclass
class WriteOptions:
    dry_run: bool = False
    field_validation: str = "Strict"     # Strict | Warn | Ignore
    field_manager: str = ""
    warnings: list[str] = field(default_factory=list)


def _canonical_ip(ip: str) -> str:
    try:
        return str(ipaddress.ip_address(ip))
    except ValueError:
        return ip


class _UsedByOthers:
    """Values of `counts` that some holder other than the one owning `own` has."""

    def __init__(self, counts: dict, own: tuple) -> None:
        self.counts, self.own = counts, own

    def __contains__(self, v: object) -> bool:
        return self.counts.get(v, 0) > self.own.count(v)

    def __iter__(self):
        return (v for v in self.counts if v in self)

    def __eq__(self, other: object) -> bool:
        return set(self) == other


class StoreIndex:
    """What the registry needs to look up without scanning the store, kept current from the
    store's own watch: owner uid -> dependents (the garbage collector's graph), the ClusterIPs and
    node ports in use (the allocators' bitmaps), and which namespaces are terminating."""

    def __init__(self) -> None:
        self._owners_of: dict[str, tuple[str, ...]] = {}
        self._dependents: dict[str, set[str]] = {}
        self._allocations: dict[str, tuple[tuple[str, ...], tuple[int, ...]]] = {}
        self._ip_count: dict[str, int] = {}      # allocated value -> Services holding it
        self._port_count: dict[int, int] = {}
        self.namespaces: dict[str, bool] = {}   # name -> terminating
        self.revision = 0
        self._advanced = asyncio.Condition()

    def used_by_others(self, key: str) -> tuple[_UsedByOthers, _UsedByOthers]:
        """The ClusterIPs and node ports held by Services other than `key`, as membership
        views (O(1) per question, whatever the number of Services)."""
        own_ips, own_ports = self._allocations.get(key, ((), ()))
        return (_UsedByOthers(self._ip_count, own_ips),
                _UsedByOthers(self._port_count, own_ports))

    def _set(self, key: str, obj: dict | None) -> None:
        if key.startswith(_SERVICES_PREFIX):
            self._count(self._allocations.pop(key, ((), ())), -1)
            if obj is not None:
                spec = obj.get("spec", {})
                ips = tuple(_canonical_ip(ip) for ip in (spec.get("clusterIPs") or [spec.get("clusterIP")])
                            if ip and ip != "None")
                ports = tuple(p["nodePort"] for p in spec.get("ports") or [] if p.get("nodePort"))
                if spec.get("healthCheckNodePort"):
                    ports += (spec["healthCheckNodePort"],)
                self._allocations[key] = (ips, ports)
                self._count((ips, ports), 1)
        elif key.startswith(_NAMESPACES_PREFIX):
            name = key[len(_NAMESPACES_PREFIX):]
            if obj is None:
                self.namespaces.pop(name, None)
            else:
                self.namespaces[name] = bool(obj.get("metadata", {}).get("deletionTimestamp"))
        self._set_owners(key, obj)

    def _count(self, allocation: tuple[tuple[str, ...], tuple[int, ...]], delta: int) -> None:
        for counts, values in ((self._ip_count, allocation[0]), (self._port_count, allocation[1])):
            for v in values:
                n = counts.get(v, 0) + delta
                if n > 0:
                    counts[v] = n
                else:
                    counts.pop(v, None)

    def _set_owners(self, key: str, obj: dict | None) -> None:
        for uid in self._owners_of.pop(key, ()):
            deps = self._dependents.get(uid)
            if deps is not None:
                deps.discard(key)
                if not deps:
                    del self._dependents[uid]
        uids = tuple(r.get("uid") for r in ((obj or {}).get("metadata", {}).get("ownerReferences") or [])
                     if r.get("uid"))
        if uids:
            self._owners_of[key] = uids
            for uid in uids:
                self._dependents.setdefault(uid, set()).add(key)

    def dependents(self, uid: str) -> list[str]:
        return sorted(self._dependents.get(uid, ()))

    async def run(self, store: Store) -> None:
        items, rev = await store.list("/registry/")
        for o in items:
            self._set(_key_of(o), o)
        await self._advance(rev)
        while True:
            try:
                async for ev in store.watch("/registry/", self.revision):
                    self._set(ev.key, None if ev.type == "DELETED" else ev.object)
                    await self._advance(ev.revision)
                return  # the store closed
            except Expired:
                items, rev = await store.list("/registry/")
                self._owners_of.clear()
                self._dependents.clear()
                self._allocations.clear()
                self.namespaces.clear()
                for o in items:
                    self._set(_key_of(o), o)
                await self._advance(rev)

    async def _advance(self, rev: int) -> None:
        async with self._advanced:
            self.revision = max(self.revision, rev)
            self._advanced.notify_all()

    async def caught_up(self, rev: int) -> None:
        async with self._advanced:
            await self._advanced.wait_for(lambda: self.revision >= rev)


_SERVICES_PREFIX = "/registry/core/services/"
_NAMESPACES_PREFIX = "/registry/core/namespaces/"


def _key_of(obj: dict) -> str:
    from tinykube.api.resources import by_kind
    res = by_kind(obj.get("apiVersion", ""), obj.get("kind", ""))
    md = obj.get("metadata", {})
    return res.key(md.get("namespace"), md.get("name")) if res else ""


def _resource_of_key(key: str) -> Resource | None:
    parts = key.split("/")  # ["", "registry", group, plural, ...]
    if len(parts) < 5:
        return None
    group = "" if parts[2] == "core" else parts[2]
    try:
        return get_resource(parts[3], group)
    except KeyError:
        return None


class Registry:
    def __init__(self, store: Store, config: ClusterConfig | None = None):
        self.store = store
        self.config = config or ClusterConfig()
        self._svc_lock = asyncio.Lock()
        self._bg: set[asyncio.Task] = set()
        self.index = StoreIndex()
        self._owner_task: asyncio.Task | None = None

    # ------------------------------------------------------------------ reads

    async def get(self, res: Resource, ns: str | None, name: str) -> dict:
        try:
            return await self.store.get(res.key(ns, name))
        except KeyNotFound:
            raise errors.not_found(res.plural, res.group, name) from None

    async def list(self, res: Resource, ns: str | None) -> tuple[list[dict], int]:
        return await self.store.list(res.key(ns))

    def watch(self, res: Resource, ns: str | None, since: int) -> AsyncIterator[Event]:
        return self.store.watch(res.key(ns), since)

    # ------------------------------------------------------------------ create

    async def create(self, res: Resource, ns: str | None, obj: dict, opts: WriteOptions,
                     owned: bool = False) -> dict:
        """`owned`: the caller hands over `obj` (a freshly decoded body) and never reads it again."""
        obj = self._prepare_new(res, ns, obj if owned else _copy_json(obj), opts)
        if res.namespaced:
            await self._check_namespace_open(res, obj["metadata"]["namespace"])
        from tinykube.api import defaults
        defaults.apply_defaults(res, obj)
        if res.kind == "Service":
            async with self._svc_lock:
                await self._allocate_service(obj, None)
                self._validate(res, obj, None)
                return await self._settle_services(await self._store_create(res, obj, opts))
        self._validate(res, obj, None)
        return await self._store_create(res, obj, opts)

    def _prepare_new(self, res: Resource, ns: str | None, obj: dict, opts: WriteOptions) -> dict:
        obj["kind"] = res.kind
        obj["apiVersion"] = res.api_version
        md = obj.setdefault("metadata", {})
        if not isinstance(md, dict):
            raise errors.bad_request("metadata must be an object")
        if res.namespaced:
            body_ns = md.get("namespace")
            if ns and body_ns and body_ns != ns:
                raise errors.bad_request("the namespace of the provided object does not match the namespace sent on the request")
            md["namespace"] = ns or body_ns or "default"
        else:
            md.pop("namespace", None)
        if not md.get("name"):
            if md.get("generateName"):
                md["name"] = md["generateName"] + "".join(secrets.choice(_NAME_CHARS) for _ in range(5))
            else:
                raise errors.invalid(res.kind, res.group, "", [FieldError(
                    "Required", "metadata.name", detail="name or generateName is required")])
        md["uid"] = str(uuid.uuid4())
        md["creationTimestamp"] = now_rfc3339()
        for k in ("resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds", "selfLink"):
            md.pop(k, None)
        md.pop("generation", None)  # defaulting sets it for the kinds that have one
        if res.kind == "Namespace":
            obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
            obj["status"] = {"phase": "Active"}
        elif res.kind in _STATUS_KINDS and res.kind not in ("Node",):
            # status is written through /status by the controllers, not by creators
            obj.pop("status", None)
        return obj

    async def _check_namespace_open(self, res: Resource, ns: str) -> None:
        terminating = self.index.namespaces.get(ns)
        if terminating is None:  # not in the index (yet): ask the store
            try:
                nsobj = await self.store.get(get_resource("namespaces").key(None, ns))
            except KeyNotFound:
                raise errors.not_found("namespaces", "", ns) from None
            terminating = bool(nsobj.get("metadata", {}).get("deletionTimestamp"))
        if terminating:
            raise errors.forbidden(res.plural, res.group, "",
                                   f"unable to create new content in namespace {ns} because it is being terminated")

    async def _store_create(self, res: Resource, obj: dict, opts: WriteOptions) -> dict:
        md = obj["metadata"]
        key = res.key(md.get("namespace"), md["name"])
        if opts.dry_run:
            try:
                await self.store.get(key)
            except KeyNotFound:
                return obj
            raise errors.already_exists(res.plural, res.group, md["name"])
        try:
            return await self.store.create(key, obj)
        except KeyExists:
            raise errors.already_exists(res.plural, res.group, md["name"]) from None

    def _validate(self, res: Resource, obj: dict, old: dict | None, subresource: str | None = None) -> None:
        from tinykube.api import validation
        errs = validation.validate(res, obj, old, subresource)
        if errs:
            raise errors.invalid(res.kind, res.group, obj.get("metadata", {}).get("name", ""), errs)

    # ------------------------------------------------------------------ update

    async def update(self, res: Resource, ns: str | None, name: str, obj: dict, opts: WriteOptions,
                     subresource: str | None = None) -> dict:
        """PUT semantics: full replacement, conditional on metadata.resourceVersion when given."""
        if not isinstance(obj.get("metadata"), dict):
            obj["metadata"] = {}
        md = obj["metadata"]
        if md.get("name") and md["name"] != name:
            raise errors.bad_request(
                f'the name of the object ({md["name"]}) does not match the name on the URL ({name})')
        if res.namespaced and md.get("namespace") and ns and md["namespace"] != ns:
            raise errors.bad_request("the namespace of the provided object does not match the namespace sent on the request")
        expected = int(md["resourceVersion"]) if str(md.get("resourceVersion") or "").isdigit() else None
        if md.get("resourceVersion") and expected is None:
            raise errors.bad_request(f'resourceVersion: Invalid value: "{md["resourceVersion"]}": must be a number')
        key = res.key(ns, name)
        try:
            current = await self.store.get(key)
        except KeyNotFound:
            raise errors.not_found(res.plural, res.group, name) from None
        if expected is not None and expected != revision_of(current):
            raise errors.conflict(res.plural, res.group, name)
        return await self._write_update(res, current, obj, opts, subresource, expected or revision_of(current))

    async def _write_update(self, res: Resource, current: dict, new: dict, opts: WriteOptions,
                            subresource: str | None, expected_rv: int) -> dict:
        from tinykube.api import defaults
        new = copy.deepcopy(new)
        new["kind"], new["apiVersion"] = res.kind, res.api_version
        if subresource == "status":
            merged = copy.deepcopy(current)
            merged["status"] = new.get("status", {})
            new = merged
        else:
            self._carry_server_fields(res, current, new)
        defaults.apply_defaults(res, new, current)
        if res.kind == "Service" and subresource != "status":
            async with self._svc_lock:
                await self._allocate_service(new, current)
                self._validate(res, new, current, subresource)
                return await self._settle_services(await self._store_update(res, current, new, opts, expected_rv))
        self._validate(res, new, current, subresource)
        return await self._store_update(res, current, new, opts, expected_rv)

    def _carry_server_fields(self, res: Resource, current: dict, new: dict) -> None:
        """Fields the client may not change through the main resource."""
        md, cur_md = new.setdefault("metadata", {}), current["metadata"]
        for k in ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds",
                  "generation", "namespace", "name"):
            if k in cur_md:
                md[k] = cur_md[k]
            else:
                md.pop(k, None)
        if res.kind in _STATUS_KINDS and res.kind != "Node" or res.kind == "Namespace":
            if "status" in current:
                new["status"] = current["status"]
            else:
                new.pop("status", None)
        if res.kind == "Namespace":
            new.setdefault("spec", {})["finalizers"] = current.get("spec", {}).get("finalizers", [])

    async def _store_update(self, res: Resource, current: dict, new: dict, opts: WriteOptions,
                            expected_rv: int) -> dict:
        md = new["metadata"]
        md["resourceVersion"] = current["metadata"].get("resourceVersion")
        if _same_object(current, new):
            return current  # a no-op write does not bump the resourceVersion (as Kubernetes)
        if opts.dry_run:
            return new
        key = res.key(md.get("namespace"), md["name"])
        # A finalizer removal on an object being deleted may complete the deletion.
        if md.get("deletionTimestamp") and not md.get("finalizers") and self._deletable_now(res, new):
            try:
                await self.store.update(key, new, expected_rv)
                gone = await self.store.delete(key)
            except RevisionMismatch:
                raise errors.conflict(res.plural, res.group, md["name"]) from None
            except KeyNotFound:
                raise errors.not_found(res.plural, res.group, md["name"]) from None
            self._after_delete(res, gone, "Background")
            return gone
        try:
            return await self.store.update(key, new, expected_rv)
        except RevisionMismatch:
            raise errors.conflict(res.plural, res.group, md["name"]) from None
        except KeyNotFound:
            raise errors.not_found(res.plural, res.group, md["name"]) from None

    def _deletable_now(self, res: Resource, obj: dict) -> bool:
        if res.kind == "Pod" and obj.get("spec", {}).get("nodeName"):
            # the kubelet finishes a pod's graceful deletion with a grace-period-0 delete
            return obj["metadata"].get("deletionGracePeriodSeconds") == 0
        if res.kind == "Namespace":
            return not obj.get("spec", {}).get("finalizers")
        return True

    # ------------------------------------------------------------------ patch

    async def patch(self, res: Resource, ns: str | None, name: str, body: bytes, content_type: str,
                    opts: WriteOptions, subresource: str | None = None, force: bool = False) -> tuple[dict, bool]:
        """Returns (object, created). apply-patch creates a missing object."""
        from tinykube.api import patch as patching
        key = res.key(ns, name)
        for _attempt in range(5):
            try:
                current = await self.store.get(key)
            except KeyNotFound:
                if content_type.startswith("application/apply-patch"):
                    applied = _parse_yaml_or_json(body)
                    applied.setdefault("metadata", {})["name"] = name
                    self._check_fields(res, applied, opts)
                    return await self.create(res, ns, applied, opts), True
                raise errors.not_found(res.plural, res.group, name) from None
            base = self._view(res, current, subresource)
            if content_type.startswith("application/apply-patch"):
                applied = _parse_yaml_or_json(body)
                self._check_fields(res, applied, opts)
                patched = patching.server_side_apply(base, applied)
            else:
                patched = patching.apply_patch(base, body, content_type)
                if content_type.startswith("application/strategic") or content_type.startswith("application/merge"):
                    self._check_fields(res, patched, opts)
            if not isinstance(patched, dict):
                raise errors.bad_request("the patch did not produce an object")
            new_md = patched.get("metadata") or {}
            rv = new_md.get("resourceVersion")
            if rv and str(rv) != current["metadata"].get("resourceVersion"):
                raise errors.conflict(res.plural, res.group, name)
            if subresource == "scale":
                new = self._unscale(res, current, patched)
                sub = None
            else:
                new, sub = patched, subresource
            try:
                return await self._write_update(res, current, new, opts, sub, revision_of(current)), False
            except ApiError as e:
                if e.code == 409 and e.reason == "Conflict" and not rv:
                    continue  # someone wrote in between: re-apply the patch to the fresh object
                raise
        raise errors.conflict(res.plural, res.group, name)

    def _check_fields(self, res: Resource, obj: dict, opts: WriteOptions) -> None:
        from tinykube.api import fields
        err, warnings = fields.strict_error(res.api_version, res.kind, obj, opts.field_validation)
        if err:
            raise err
        opts.warnings.extend(warnings)

    def _view(self, res: Resource, obj: dict, subresource: str | None) -> dict:
        return self.scale_of(res, obj) if subresource == "scale" else obj

    # ------------------------------------------------------------------ binding

    async def bind(self, ns: str, name: str, node: str) -> dict:
        """pods/binding: the one way spec.nodeName is set after creation (it is immutable otherwise)."""
        res = get_resource("pods")
        key = res.key(ns, name)
        for _ in range(5):
            pod = await self.get(res, ns, name)
            if pod["spec"].get("nodeName"):
                raise errors.conflict("pods/binding", "", name,
                                      f'pod {name} is already assigned to node "{pod["spec"]["nodeName"]}"')
            if pod["metadata"].get("deletionTimestamp"):
                raise errors.conflict("pods/binding", "", name, f"pod {name} is being deleted, cannot be assigned to a host")
            new = copy.deepcopy(pod)
            new["spec"]["nodeName"] = node
            st = new.setdefault("status", {})
            conds = [c for c in st.get("conditions", []) if c.get("type") != "PodScheduled"]
            conds.insert(0, {"type": "PodScheduled", "status": "True", "lastProbeTime": None,
                             "lastTransitionTime": now_rfc3339()})
            st["conditions"] = conds
            try:
                return await self.store.update(key, new, revision_of(pod))
            except RevisionMismatch:
                continue
            except KeyNotFound:
                raise errors.not_found(res.plural, res.group, name) from None
        raise errors.conflict(res.plural, res.group, name)

    # ------------------------------------------------------------------ scale

    def scale_of(self, res: Resource, obj: dict) -> dict:
        from tinykube.api import selectors
        md = obj["metadata"]
        sel = obj.get("spec", {}).get("selector")
        return {"kind": "Scale", "apiVersion": "autoscaling/v1",
                "metadata": {k: md[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
                             if k in md},
                "spec": {"replicas": obj.get("spec", {}).get("replicas", 0)},
                "status": {"replicas": obj.get("status", {}).get("replicas", 0),
                           "selector": str(selectors.selector_from_spec(sel)) if sel else ""}}

    def _unscale(self, res: Resource, current: dict, scale: dict) -> dict:
        replicas = (scale.get("spec") or {}).get("replicas", 0)
        if not isinstance(replicas, int) or isinstance(replicas, bool):
            raise errors.bad_request("spec.replicas must be an integer")
        if replicas < 0:
            raise errors.invalid("Scale", "autoscaling", current["metadata"]["name"], [
                FieldError("Invalid", "spec.replicas", replicas, "must be greater than or equal to 0")])
        new = copy.deepcopy(current)
        new["spec"]["replicas"] = replicas
        return new

    async def update_scale(self, res: Resource, ns: str | None, name: str, scale: dict, opts: WriteOptions) -> dict:
        current = await self.get(res, ns, name)
        rv = (scale.get("metadata") or {}).get("resourceVersion")
        if rv and str(rv) != current["metadata"]["resourceVersion"]:
            raise errors.conflict(res.plural, res.group, name)
        new = self._unscale(res, current, scale)
        out = await self._write_update(res, current, new, opts, None, revision_of(current))
        return self.scale_of(res, out)

    # ------------------------------------------------------------------ delete

    async def delete(self, res: Resource, ns: str | None, name: str, options: dict, opts: WriteOptions) -> dict:
        key = res.key(ns, name)
        try:
            current = await self.store.get(key)
        except KeyNotFound:
            raise errors.not_found(res.plural, res.group, name) from None
        pre = (options.get("preconditions") or {})
        if pre.get("uid") and pre["uid"] != current["metadata"].get("uid"):
            raise errors.conflict(res.plural, res.group, name,
                                  f'Precondition failed: UID in precondition: {pre["uid"]}, UID in object meta: {current["metadata"].get("uid")}')
        if pre.get("resourceVersion") and pre["resourceVersion"] != current["metadata"].get("resourceVersion"):
            raise errors.conflict(res.plural, res.group, name)
        policy = options.get("propagationPolicy")
        if options.get("orphanDependents") is True:
            policy = "Orphan"
        if policy is None:
            # ReplicaSets/Deployments orphaned by default only in extensions; apps default Background
            policy = "Background"
        if opts.dry_run:
            return current
        grace = options.get("gracePeriodSeconds")
        md = current["metadata"]
        if res.kind == "Namespace":
            return await self._delete_namespace(current)
        if res.kind == "Pod" and current.get("spec", {}).get("nodeName") and current.get("status", {}).get(
                "phase") not in ("Succeeded", "Failed"):
            if grace is None:
                grace = current["spec"].get("terminationGracePeriodSeconds", 30)
            if grace > 0:
                return await self._mark_deleting(res, current, grace, policy)
        if md.get("finalizers") or policy == "Foreground":
            return await self._mark_deleting(res, current, 0, policy)
        try:
            gone = await self.store.delete(key)
        except KeyNotFound:
            raise errors.not_found(res.plural, res.group, name) from None
        self._after_delete(res, gone, policy)
        return gone

    async def _mark_deleting(self, res: Resource, current: dict, grace: int, policy: str) -> dict:
        new = copy.deepcopy(current)
        md = new["metadata"]
        if policy == "Foreground" and "foregroundDeletion" not in md.get("finalizers", []):
            md.setdefault("finalizers", []).append("foregroundDeletion")
        if policy == "Orphan" and "orphan" not in md.get("finalizers", []):
            md.setdefault("finalizers", []).append("orphan")
        if md.get("deletionTimestamp"):
            # a second delete may only shorten the grace period
            old_grace = md.get("deletionGracePeriodSeconds", grace)
            if grace >= old_grace and not (policy == "Foreground"):
                return current
        md["deletionTimestamp"] = now_rfc3339()
        md["deletionGracePeriodSeconds"] = grace
        key = res.key(md.get("namespace"), md["name"])
        try:
            out = await self.store.update(key, new, revision_of(current))
        except RevisionMismatch:
            raise errors.conflict(res.plural, res.group, md["name"]) from None
        if "foregroundDeletion" in md.get("finalizers", []) or "orphan" in md.get("finalizers", []):
            self._spawn(self._finish_finalizers(res, out))
        return out

    async def _finish_finalizers(self, res: Resource, owner: dict) -> None:
        """The garbage collector's part of foreground and orphan deletion."""
        md = owner["metadata"]
        uid = md["uid"]
        fins = md.get("finalizers", [])
        if "orphan" in fins:
            await self._orphan_dependents(md.get("namespace"), uid)
            await self._remove_finalizer(res, md.get("namespace"), md["name"], "orphan")
        if "foregroundDeletion" in fins:
            for _ in range(600):
                deps = await self._dependents(md.get("namespace"), uid)
                if not deps:
                    break
                for dres, dep in deps:
                    if not dep["metadata"].get("deletionTimestamp"):
                        try:
                            await self.delete(dres, dep["metadata"].get("namespace"), dep["metadata"]["name"],
                                              {"propagationPolicy": "Foreground"}, WriteOptions())
                        except ApiError:
                            pass
                await asyncio.sleep(0.5)
            await self._remove_finalizer(res, md.get("namespace"), md["name"], "foregroundDeletion")

    async def _remove_finalizer(self, res: Resource, ns: str | None, name: str, fin: str) -> None:
        for _ in range(10):
            try:
                cur = await self.store.get(res.key(ns, name))
            except KeyNotFound:
                return
            new = copy.deepcopy(cur)
            new["metadata"]["finalizers"] = [f for f in cur["metadata"].get("finalizers", []) if f != fin]
            if not new["metadata"]["finalizers"]:
                del new["metadata"]["finalizers"]
            try:
                await self._store_update(res, cur, new, WriteOptions(), revision_of(cur))
                return
            except ApiError as e:
                if e.code != 409:
                    return

    def _after_delete(self, res: Resource, gone: dict, policy: str) -> None:
        if policy == "Orphan":
            self._spawn(self._orphan_dependents(gone["metadata"].get("namespace"), gone["metadata"]["uid"],
                                                revision_of(gone)))
        else:
            self._spawn(self._collect_dependents(gone["metadata"].get("namespace"), gone["metadata"]["uid"],
                                                 revision_of(gone)))

    async def _dependents(self, ns: str | None, uid: str, revision: int = 0) -> list[tuple[Resource, dict]]:
        await asyncio.wait_for(self.index.caught_up(revision), 30)
        out = []
        for key in self.index.dependents(uid):
            res = _resource_of_key(key)
            if res is None:
                continue
            try:
                out.append((res, await self.store.get(key)))
            except KeyNotFound:
                pass
        return out

    async def _collect_dependents(self, ns: str | None, uid: str, revision: int = 0) -> None:
        """Background cascading deletion: dependents whose every owner is gone are deleted."""
        for dres, dep in await self._dependents(ns, uid, revision):
            refs = [r for r in dep["metadata"].get("ownerReferences", []) if r.get("uid") != uid]
            try:
                if refs:
                    new = copy.deepcopy(dep)
                    new["metadata"]["ownerReferences"] = refs
                    await self._store_update(dres, dep, new, WriteOptions(), revision_of(dep))
                else:
                    await self.delete(dres, dep["metadata"].get("namespace"), dep["metadata"]["name"],
                                      {"propagationPolicy": "Background"}, WriteOptions())
            except ApiError:
                pass

    async def _orphan_dependents(self, ns: str | None, uid: str, revision: int = 0) -> None:
        for dres, dep in await self._dependents(ns, uid, revision):
            new = copy.deepcopy(dep)
            new["metadata"]["ownerReferences"] = [r for r in dep["metadata"].get("ownerReferences", [])
                                                  if r.get("uid") != uid]
            if not new["metadata"]["ownerReferences"]:
                del new["metadata"]["ownerReferences"]
            try:
                await self._store_update(dres, dep, new, WriteOptions(), revision_of(dep))
            except ApiError:
                pass

    async def delete_collection(self, res: Resource, ns: str | None, matches, options: dict,
                                opts: WriteOptions) -> list[dict]:
        items, _ = await self.list(res, ns)
        out = []
        for o in items:
            if matches(o):
                try:
                    out.append(await self.delete(res, o["metadata"].get("namespace"), o["metadata"]["name"],
                                                 options, opts))
                except ApiError as e:
                    if e.code != 404:
                        raise
        return out

    # ------------------------------------------------------------------ namespaces

    async def _delete_namespace(self, ns_obj: dict) -> dict:
        res = get_resource("namespaces")
        md = ns_obj["metadata"]
        if md["name"] in SYSTEM_NAMESPACES:
            raise errors.forbidden("namespaces", "", md["name"], "this namespace may not be deleted")
        if md.get("deletionTimestamp"):
            return ns_obj
        new = copy.deepcopy(ns_obj)
        new["metadata"]["deletionTimestamp"] = now_rfc3339()
        new["metadata"]["deletionGracePeriodSeconds"] = 0
        new["status"] = {"phase": "Terminating"}
        out = await self.store.update(res.key(None, md["name"]), new, revision_of(ns_obj))
        self._spawn(self._empty_namespace(md["name"]))
        return out

    async def _empty_namespace(self, ns: str) -> None:
        """The namespace controller: delete everything in it, wait until it is gone, then the namespace."""
        nsres = get_resource("namespaces")
        for _ in range(1200):
            remaining = 0
            for r in RESOURCES:
                if not r.namespaced or r.group == "events.k8s.io":
                    continue
                items, _ = await self.store.list(r.key(ns))
                remaining += len(items)
                for o in items:
                    if o["metadata"].get("deletionTimestamp"):
                        continue
                    try:
                        await self.delete(r, ns, o["metadata"]["name"], {"propagationPolicy": "Background"},
                                          WriteOptions())
                    except ApiError:
                        pass
            if not remaining:
                break
            await asyncio.sleep(0.5)
        try:
            await self.store.delete(nsres.key(None, ns))
        except KeyNotFound:
            pass

    async def ensure_system_objects(self) -> None:
        if self._owner_task is None:
            self._owner_task = asyncio.get_running_loop().create_task(self.index.run(self.store))
        nsres = get_resource("namespaces")
        for ns in SYSTEM_NAMESPACES:
            try:
                await self.store.get(nsres.key(None, ns))
            except KeyNotFound:
                await self.create(nsres, None, {"metadata": {"name": ns}}, WriteOptions())
        # resume namespace deletions interrupted by a restart
        items, _ = await self.store.list(nsres.key(None))
        for o in items:
            if o["metadata"].get("deletionTimestamp"):
                self._spawn(self._empty_namespace(o["metadata"]["name"]))

    # ------------------------------------------------------------------ services

    async def _allocate_service(self, svc: dict, old: dict | None) -> None:
        """Runs under _svc_lock; every Service write made under the lock waits for the index to
        see it (_settle_services), so the index is exact here."""
        from tinykube.api import allocators
        md = svc["metadata"]
        used_ips, used_ports = self.index.used_by_others(get_resource("services").key(md.get("namespace"), md["name"]))
        ips = allocators.ClusterIPAllocator(self.config.service_cidr, used_ips)
        ports = allocators.NodePortAllocator(self.config.node_port_range, used_ports)
        errs = allocators.allocate_service(svc, old, ips, ports)
        if errs:
            raise errors.invalid("Service", "", md["name"], errs)

    async def _settle_services(self, written: dict) -> dict:
        if written.get("metadata", {}).get("resourceVersion"):
            await asyncio.wait_for(self.index.caught_up(revision_of(written)), 30)
        return written

    # ------------------------------------------------------------------ misc

    def _spawn(self, coro) -> None:
        t = asyncio.get_running_loop().create_task(coro)
        self._bg.add(t)
        t.add_done_callback(self._bg.discard)


def _same_object(a: dict, b: dict) -> bool:
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def _parse_yaml_or_json(body: bytes) -> dict:
    import yaml
    try:
        obj = yaml.safe_load(body)
    except yaml.YAMLError as e:
        raise errors.bad_request(f"error decoding YAML: {e}") from None
    if not isinstance(obj, dict):
        raise errors.bad_request("the body of an apply patch must be an object")
    return obj
