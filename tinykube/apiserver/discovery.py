"""Discovery documents (legacy and aggregated) and the OpenAPI answers kubectl needs.

kubectl validates manifests through OpenAPI. tinykube serves a minimal OpenAPI v3 per group
version that tells kubectl (1.29+) the server validates fields itself, and an empty v2 document
(a valid, empty protobuf) for 1.27/1.28, so the server is the only validator.
"""
from __future__ import annotations

import hashlib
import json

from tinykube.api.resources import BY_GROUP_VERSION, RESOURCES, Resource

AGG_V2 = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
AGG_V2BETA1 = "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList"

_SUB_KIND = {"scale": ("autoscaling", "v1", "Scale"), "eviction": ("policy", "v1", "Eviction"),
             "binding": ("", "v1", "Binding")}
_STREAM_SUBS = {"log", "exec", "attach", "portforward", "proxy"}


def _sub_verbs(sub: str) -> list[str]:
    if sub in ("status", "scale"):
        return ["get", "patch", "update"]
    if sub == "log":
        return ["get"]
    if sub in ("exec", "attach", "portforward", "proxy"):
        return ["create", "get"]
    if sub == "finalize":
        return ["update"]
    return ["create"]


def _groups() -> list[tuple[str, list[str]]]:
    out: dict[str, list[str]] = {}
    for r in RESOURCES:
        if r.group:
            out.setdefault(r.group, [])
            if r.version not in out[r.group]:
                out[r.group].append(r.version)
    return list(out.items())


def api_versions(server_address: str) -> dict:
    return {"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}]}


def api_group_list() -> dict:
    groups = []
    for g, versions in _groups():
        vs = [{"groupVersion": f"{g}/{v}", "version": v} for v in versions]
        groups.append({"name": g, "versions": vs, "preferredVersion": vs[0]})
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def api_resource_list(group_version: str) -> dict | None:
    resources = BY_GROUP_VERSION.get(group_version)
    if resources is None:
        return None
    out = []
    for r in resources:
        entry = {"name": r.plural, "singularName": r.singular_name, "namespaced": r.namespaced, "kind": r.kind,
                 "verbs": list(r.verbs)}
        if r.short_names:
            entry["shortNames"] = list(r.short_names)
        if r.categories:
            entry["categories"] = list(r.categories)
        out.append(entry)
        for sub in r.subresources:
            e = {"name": f"{r.plural}/{sub}", "singularName": "", "namespaced": r.namespaced,
                 "kind": r.kind, "verbs": _sub_verbs(sub)}
            if sub in _SUB_KIND:
                g, v, k = _SUB_KIND[sub]
                e.update({"group": g, "version": v, "kind": k})
            elif sub in _STREAM_SUBS:
                e["kind"] = {"log": "Pod", "exec": "PodExecOptions", "attach": "PodAttachOptions",
                             "portforward": "PodPortForwardOptions",
                             "proxy": f"{r.kind}ProxyOptions"}[sub]
            out.append(e)
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": out}


def _agg_resource(r: Resource) -> dict:
    d = {"resource": r.plural, "responseKind": {"group": r.group, "version": r.version, "kind": r.kind},
         "scope": "Namespaced" if r.namespaced else "Cluster", "singularResource": r.singular_name,
         "verbs": list(r.verbs)}
    if r.short_names:
        d["shortNames"] = list(r.short_names)
    if r.categories:
        d["categories"] = list(r.categories)
    subs = []
    for sub in r.subresources:
        g, v, k = _SUB_KIND.get(sub, (r.group, r.version, r.kind))
        subs.append({"subresource": sub, "responseKind": {"group": g, "version": v, "kind": k},
                     "verbs": _sub_verbs(sub)})
    if subs:
        d["subresources"] = subs
    return d


def aggregated(core: bool, version: str) -> dict:
    """APIGroupDiscoveryList for /api (core=True) or /apis, in apidiscovery v2 or v2beta1."""
    items = []
    if core:
        items.append({"metadata": {"name": ""}, "versions": [
            {"version": "v1", "freshness": "Current",
             "resources": [_agg_resource(r) for r in BY_GROUP_VERSION["v1"]]}]})
    else:
        for g, versions in _groups():
            items.append({"metadata": {"name": g}, "versions": [
                {"version": v, "freshness": "Current",
                 "resources": [_agg_resource(r) for r in BY_GROUP_VERSION[f"{g}/{v}"]]} for v in versions]})
    return {"kind": "APIGroupDiscoveryList", "apiVersion": f"apidiscovery.k8s.io/{version}", "metadata": {},
            "items": items}


def wants_aggregated(accept: str) -> str | None:
    """The aggregated version to answer with, from kubectl's Accept header, or None for legacy."""
    for part in accept.split(","):
        p = part.replace(" ", "")
        if "as=APIGroupDiscoveryList" in p and "g=apidiscovery.k8s.io" in p:
            if "v=v2beta1" in p:
                return "v2beta1"
            if "v=v2;" in p + ";" or p.endswith("v=v2"):
                return "v2"
    return None


# ---------------------------------------------------------------- OpenAPI v3

def _gv_path(gv: str) -> str:
    return "api/v1" if gv == "v1" else f"apis/{gv}"


def _openapi_doc(gv: str) -> dict:
    paths = {}
    for r in BY_GROUP_VERSION[gv]:
        base = "/api/v1" if not r.group else f"/apis/{gv}"
        ns = "/namespaces/{namespace}" if r.namespaced else ""
        op = {"operationId": f"patch{r.kind}", "parameters": [
            {"name": "fieldValidation", "in": "query", "schema": {"type": "string"}},
            {"name": "fieldManager", "in": "query", "schema": {"type": "string"}},
            {"name": "dryRun", "in": "query", "schema": {"type": "string"}}],
              "requestBody": {"content": {"application/json-patch+json": {"schema": {"type": "object"}},
                                          "application/merge-patch+json": {"schema": {"type": "object"}},
                                          "application/apply-patch+yaml": {"schema": {"type": "object"}}}},
              "responses": {"200": {"description": "OK"}},
              "x-kubernetes-action": "patch",
              "x-kubernetes-group-version-kind": {"group": r.group, "version": r.version, "kind": r.kind}}
        paths[f"{base}{ns}/{r.plural}/{{name}}"] = {"patch": op}
    return {"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": "tinykube"}, "paths": paths,
            "components": {}}


_V3 = {_gv_path(gv): json.dumps(_openapi_doc(gv)).encode() for gv in BY_GROUP_VERSION}
_V3_HASH = {p: hashlib.sha256(b).hexdigest()[:16].upper() for p, b in _V3.items()}


def openapi_v3_root() -> dict:
    return {"paths": {p: {"serverRelativeURL": f"/openapi/v3/{p}?hash={h}"} for p, h in _V3_HASH.items()}}


def openapi_v3_doc(path: str) -> bytes | None:
    return _V3.get(path)
