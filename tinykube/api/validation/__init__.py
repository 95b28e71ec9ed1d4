"""Validation of every kind tinykube serves, with Kubernetes' field paths and messages.

`validate(res, obj, old)` returns a list of FieldError (empty when valid); the caller raises
`errors.invalid(res.kind, res.group, name, errs)`. For a `/status` write pass
`subresource="status"`: only metadata immutability and status rules are checked then.

Order the API server should use for a write: `defaults.apply_defaults(res, obj, old)` →
`validate(res, obj, old)` → for Services `allocators.allocate_service(...)`.
"""
from __future__ import annotations

from typing import Callable

from tinykube.api.errors import FieldError
from tinykube.api.resources import Resource

from . import apps, core, networking
from .common import (  # re-exported helpers other modules may want
    GoValue, Path, go_string_map, go_string_slice, is_dns1035_label, is_dns1123_label,
    is_dns1123_subdomain, is_qualified_name, is_valid_label_value, is_valid_port_name,
    selector_matches, validate_object_meta_update,
)

Create = Callable[[dict], list[FieldError]]
Update = Callable[[dict, dict], list[FieldError]]


def _generic_update(create: Create) -> Update:
    def upd(obj: dict, old: dict) -> list[FieldError]:
        return validate_object_meta_update(obj.get("metadata"), old.get("metadata")) + create(obj)
    return upd


_TABLE: dict[tuple[str, str], tuple[Create, Update]] = {
    ("", "services"): (core.validate_service, core.validate_service_update),
    ("", "pods"): (core.validate_pod, core.validate_pod_update),
    ("", "endpoints"): (core.validate_endpoints, _generic_update(core.validate_endpoints)),
    ("", "configmaps"): (core.validate_configmap, core.validate_configmap_update),
    ("", "secrets"): (core.validate_secret, core.validate_secret_update),
    ("", "namespaces"): (core.validate_namespace, _generic_update(core.validate_namespace)),
    ("", "nodes"): (core.validate_node, core.validate_node_update),
    ("", "serviceaccounts"): (core.validate_service_account, _generic_update(core.validate_service_account)),
    ("", "events"): (core.validate_event, _generic_update(core.validate_event)),
    ("events.k8s.io", "events"): (lambda o: core.validate_event(o, events_api=True),
                                  _generic_update(lambda o: core.validate_event(o, events_api=True))),
    ("apps", "deployments"): (apps.validate_deployment, apps.validate_deployment_update),
    ("apps", "replicasets"): (apps.validate_replicaset, apps.validate_replicaset_update),
    ("apps", "statefulsets"): (apps.validate_statefulset, apps.validate_statefulset_update),
    ("apps", "daemonsets"): (apps.validate_daemonset, apps.validate_daemonset_update),
    ("apps", "controllerrevisions"): (apps.validate_controller_revision, apps.validate_controller_revision_update),
    ("discovery.k8s.io", "endpointslices"): (networking.validate_endpoint_slice,
                                             networking.validate_endpoint_slice_update),
    ("networking.k8s.io", "ingresses"): (networking.validate_ingress, networking.validate_ingress_update),
    ("networking.k8s.io", "ingressclasses"): (networking.validate_ingress_class,
                                              networking.validate_ingress_class_update),
    ("coordination.k8s.io", "leases"): (networking.validate_lease, _generic_update(networking.validate_lease)),
}

_STATUS: dict[tuple[str, str], Create] = {
    ("", "services"): core.validate_service_status,
    ("networking.k8s.io", "ingresses"): networking.validate_ingress_status,
}


def validate(res: Resource, obj: dict, old: dict | None = None,
             subresource: str | None = None) -> list[FieldError]:
    """All validation errors of `obj` (a create when `old` is None, else an update)."""
    if not isinstance(obj, dict):
        return [FieldError("Invalid", "", None, "object must be a JSON object")]
    key = (res.group, res.plural)
    if subresource == "status":
        errs: list[FieldError] = []
        if old is not None:
            errs.extend(validate_object_meta_update(obj.get("metadata"), old.get("metadata")))
        st = _STATUS.get(key)
        if st is not None:
            errs.extend(st(obj))
        return errs
    fns = _TABLE.get(key)
    if fns is None:
        return []
    if old is None:
        return fns[0](obj)
    return fns[1](obj, old)


__all__ = ["validate", "GoValue", "Path", "go_string_map", "go_string_slice", "is_dns1035_label",
           "is_dns1123_label", "is_dns1123_subdomain", "is_qualified_name", "is_valid_label_value",
           "is_valid_port_name", "selector_matches"]
