"""The resources tinykube serves: one table that discovery, routing, the store keys and the
clients all read, so a kind is added in exactly one place."""
from __future__ import annotations

from dataclasses import dataclass

ALL_VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
SUB_VERBS = ["get", "patch", "update"]


@dataclass(frozen=True)
class Resource:
    group: str            # "" for core
    version: str
    plural: str
    kind: str
    namespaced: bool = True
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    subresources: tuple[str, ...] = ()   # "status", "scale", "log", "exec", ...
    singular: str = ""
    verbs: tuple[str, ...] = tuple(ALL_VERBS)

    @property
    def group_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def api_version(self) -> str:
        return self.group_version

    @property
    def singular_name(self) -> str:
        return self.singular or self.kind.lower()

    @property
    def qualified(self) -> str:
        """`services` or `deployments.apps`: how Kubernetes names the resource in messages."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    def key(self, namespace: str | None, name: str | None = None) -> str:
        """The store key (or key prefix when name is None) of an object of this resource.

        Keys look like `/registry/<group or core>/<plural>/<namespace>/<name>`; cluster-scoped
        objects have no namespace segment. Events of two API groups share one table, so the
        key names the resource, not the version."""
        g = self.group or "core"
        parts = ["", "registry", g, self.plural]
        if self.namespaced and namespace:
            parts.append(namespace)
        if name is not None:
            if self.namespaced and not namespace:
                raise ValueError("namespaced resource needs a namespace for a name key")
            parts.append(name)
        return "/".join(parts) + ("" if name is not None else "/")


_ALL = ("all",)

RESOURCES: list[Resource] = [
    # core/v1
    Resource("", "v1", "namespaces", "Namespace", namespaced=False, short_names=("ns",),
             subresources=("status", "finalize")),
    Resource("", "v1", "pods", "Pod", short_names=("po",), categories=_ALL,
             subresources=("status", "log", "exec", "attach", "portforward", "binding", "eviction")),
    Resource("", "v1", "services", "Service", short_names=("svc",), categories=_ALL,
             subresources=("status", "proxy")),
    Resource("", "v1", "endpoints", "Endpoints", short_names=("ep",), singular="endpoints"),
    Resource("", "v1", "nodes", "Node", namespaced=False, short_names=("no",),
             subresources=("status", "proxy")),
    Resource("", "v1", "events", "Event", short_names=("ev",)),
    Resource("", "v1", "configmaps", "ConfigMap", short_names=("cm",)),
    Resource("", "v1", "secrets", "Secret"),
    Resource("", "v1", "serviceaccounts", "ServiceAccount", short_names=("sa",)),
    # apps/v1
    Resource("apps", "v1", "deployments", "Deployment", short_names=("deploy",), categories=_ALL,
             subresources=("status", "scale")),
    Resource("apps", "v1", "replicasets", "ReplicaSet", short_names=("rs",), categories=_ALL,
             subresources=("status", "scale")),
    Resource("apps", "v1", "statefulsets", "StatefulSet", short_names=("sts",), categories=_ALL,
             subresources=("status", "scale")),
    Resource("apps", "v1", "daemonsets", "DaemonSet", short_names=("ds",), categories=_ALL,
             subresources=("status",)),
    Resource("apps", "v1", "controllerrevisions", "ControllerRevision"),
    # discovery.k8s.io/v1
    Resource("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice"),
    # networking.k8s.io/v1
    Resource("networking.k8s.io", "v1", "ingresses", "Ingress", short_names=("ing",),
             subresources=("status",)),
    Resource("networking.k8s.io", "v1", "ingressclasses", "IngressClass", namespaced=False),
    # events.k8s.io/v1
    Resource("events.k8s.io", "v1", "events", "Event"),
    # coordination.k8s.io/v1
    Resource("coordination.k8s.io", "v1", "leases", "Lease"),
]

BY_GROUP_VERSION: dict[str, list[Resource]] = {}
for _r in RESOURCES:
    BY_GROUP_VERSION.setdefault(_r.group_version, []).append(_r)

_BY_PATH: dict[tuple[str, str], Resource] = {(r.group_version, r.plural): r for r in RESOURCES}
_BY_KIND: dict[tuple[str, str], Resource] = {(r.group_version, r.kind): r for r in RESOURCES}


def lookup(group_version: str, plural: str) -> Resource | None:
    return _BY_PATH.get((group_version, plural))


def by_kind(api_version: str, kind: str) -> Resource | None:
    return _BY_KIND.get((api_version, kind))


def get(plural: str, group: str = "") -> Resource:
    """The resource by plural and group, e.g. get("deployments", "apps")."""
    for r in RESOURCES:
        if r.plural == plural and r.group == group:
            return r
    raise KeyError(f"{plural}.{group}")


# Event objects of core/v1 and events.k8s.io/v1 are the same objects in Kubernetes; tinykube
# stores them once, under the core key, and converts on the way out.
STORAGE_ALIAS = {("events.k8s.io", "events"): ("", "events")}
