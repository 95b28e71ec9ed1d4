"""PATCH bodies applied to a current object (plain JSON dicts), the way kube-apiserver does it.

- application/json-patch+json        RFC 6902 (the jsonpatch library)
- application/merge-patch+json       RFC 7386
- application/strategic-merge-patch+json
      merge keys and strategies per Go type (kubernetes/api struct tags), found by walking the
      object's type in schema.json: Pod spec.containers, Deployment
      spec.template.spec.containers, Service spec.ports by `port`, conditions by `type`, ...
      Directives: $patch (replace|delete|merge), $retainKeys, $setElementOrder/<list>,
      $deleteFromPrimitiveList/<list>; null deletes.
- application/apply-patch+yaml       server-side apply (server_side_apply), no ownership tracking

Errors follow kube-apiserver: a malformed body is 400 BadRequest; a json-patch that cannot be
applied (failed test, missing path) is 422 Invalid "the server rejected our request due to an
error in our request".
"""
from __future__ import annotations

import copy
import json
from typing import Any

import jsonpatch
import jsonpointer

from . import errors
from .fields import field_type, go_struct, is_struct, root_type

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
PATCH_TYPES = [JSON_PATCH, MERGE_PATCH, APPLY_PATCH, STRATEGIC_MERGE_PATCH]

# ---------------------------------------------------------------------------
# strategic merge: (Go struct, json field) -> (patchStrategy, patchMergeKey)

_CONTAINER_LISTS = {
    "ports": ("merge", "containerPort"),
    "env": ("merge", "name"),
    "volumeMounts": ("merge", "mountPath"),
    "volumeDevices": ("merge", "devicePath"),
}
SMP_STRATEGIES: dict[tuple[str, str], tuple[str, str | None]] = {
    ("PodSpec", "containers"): ("merge", "name"),
    ("PodSpec", "initContainers"): ("merge", "name"),
    ("PodSpec", "ephemeralContainers"): ("merge", "name"),
    ("PodSpec", "volumes"): ("merge,retainKeys", "name"),
    ("PodSpec", "imagePullSecrets"): ("merge", "name"),
    ("PodSpec", "schedulingGates"): ("merge", "name"),
    ("PodSpec", "resourceClaims"): ("merge,retainKeys", "name"),
    ("PodSpec", "hostAliases"): ("merge", "ip"),
    ("PodSpec", "topologySpreadConstraints"): ("merge", "topologyKey"),
    **{("Container", f): v for f, v in _CONTAINER_LISTS.items()},
    **{("EphemeralContainer", f): v for f, v in _CONTAINER_LISTS.items()},
    ("ServiceSpec", "ports"): ("merge", "port"),
    ("PodStatus", "conditions"): ("merge", "type"),
    ("PodStatus", "podIPs"): ("merge", "ip"),
    ("PodStatus", "hostIPs"): ("merge", "ip"),
    ("NodeStatus", "conditions"): ("merge", "type"),
    ("NodeStatus", "addresses"): ("merge", "type"),
    ("NamespaceStatus", "conditions"): ("merge", "type"),
    ("ServiceStatus", "conditions"): ("merge", "type"),
    ("DeploymentStatus", "conditions"): ("merge", "type"),
    ("ReplicaSetStatus", "conditions"): ("merge", "type"),
    ("StatefulSetStatus", "conditions"): ("merge", "type"),
    ("DaemonSetStatus", "conditions"): ("merge", "type"),
    ("DeploymentSpec", "strategy"): ("retainKeys", None),
    ("ObjectMeta", "finalizers"): ("merge", None),
    ("ObjectMeta", "ownerReferences"): ("merge", "uid"),
}

# server-side apply list types: (Go struct, json field) -> list of key fields, "set" or "atomic"
_SSA_CONTAINER = {"ports": ["containerPort", "protocol"], "env": ["name"],
                  "volumeMounts": ["mountPath"], "volumeDevices": ["devicePath"]}
SSA_LIST_TYPES: dict[tuple[str, str], list[str] | str] = {
    ("PodSpec", "containers"): ["name"],
    ("PodSpec", "initContainers"): ["name"],
    ("PodSpec", "ephemeralContainers"): ["name"],
    ("PodSpec", "volumes"): ["name"],
    ("PodSpec", "imagePullSecrets"): ["name"],
    ("PodSpec", "schedulingGates"): ["name"],
    ("PodSpec", "resourceClaims"): ["name"],
    ("PodSpec", "hostAliases"): ["ip"],
    ("PodSpec", "topologySpreadConstraints"): ["topologyKey", "whenUnsatisfiable"],
    **{("Container", f): v for f, v in _SSA_CONTAINER.items()},
    **{("EphemeralContainer", f): v for f, v in _SSA_CONTAINER.items()},
    ("ServiceSpec", "ports"): ["port", "protocol"],
    ("PodStatus", "conditions"): ["type"],
    ("PodStatus", "podIPs"): ["ip"],
    ("PodStatus", "hostIPs"): ["ip"],
    ("NodeStatus", "conditions"): ["type"],
    ("NodeStatus", "addresses"): ["type"],
    ("NamespaceStatus", "conditions"): ["type"],
    ("ServiceStatus", "conditions"): ["type"],
    ("DeploymentStatus", "conditions"): ["type"],
    ("ReplicaSetStatus", "conditions"): ["type"],
    ("StatefulSetStatus", "conditions"): ["type"],
    ("DaemonSetStatus", "conditions"): ["type"],
    ("ObjectMeta", "finalizers"): "set",
    ("ObjectMeta", "ownerReferences"): ["uid"],
}
# defaults of list-map key fields (structured-merge-diff uses them when a key is omitted)
_SSA_KEY_DEFAULTS = {"protocol": "TCP"}

_DELETE = object()   # a map patched with {"$patch": "delete"}


def _child_type(t: str | None, key: str) -> str | None:
    if not t:
        return None
    if t.startswith("map["):
        return t[4:-1]
    if is_struct(t):
        return field_type(t, key)
    return None


def _elem_type(t: str | None) -> str | None:
    return t[2:] if t and t.startswith("[]") else None


def _strategy(t: str | None, key: str, table: dict) -> Any:
    if not t or not is_struct(t):
        return None
    return table.get((go_struct(t), key))


def _go_fmt(v: Any) -> str:
    """Go's %v for decoded JSON (used in strategic-merge error messages)."""
    if isinstance(v, dict):
        return "map[" + " ".join(f"{k}:{_go_fmt(v[k])}" for k in sorted(v)) + "]"
    if isinstance(v, list):
        return "[" + " ".join(_go_fmt(x) for x in v) + "]"
    if v is None:
        return "<nil>"
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def _strip(v: Any) -> Any:
    """A patch value with no original to merge into: drop directives and nulls (as SMP does)."""
    if isinstance(v, dict):
        if v.get("$patch") == "delete":
            return _DELETE
        out = {}
        for k, x in v.items():
            if k.startswith("$") or x is None:
                continue
            y = _strip(x)
            if y is not _DELETE:
                out[k] = y
        return out
    if isinstance(v, list):
        out_l = []
        for x in v:
            if isinstance(x, dict) and x.get("$patch") in ("delete", "replace", "merge") and len(x) >= 1:
                if x.get("$patch") == "delete":
                    continue
                x = {k: y for k, y in x.items() if k != "$patch"}
                if not x:
                    continue
            out_l.append(_strip(x))
        return out_l
    return v


def _smp_map(orig: dict, patch: dict, t: str | None) -> Any:
    directive = patch.get("$patch")
    if directive is not None:
        if directive == "replace":
            return _strip({k: v for k, v in patch.items() if k != "$patch"})
        if directive == "delete":
            return _DELETE
        if directive != "merge":
            raise errors.bad_request(f"unknown patch type: {directive} in map: {_go_fmt(patch)}")
    result = copy.deepcopy(orig)
    retain = patch.get("$retainKeys")
    if retain is not None:
        if not isinstance(retain, list):
            raise errors.bad_request(f"invalid patch: retainKeys must be a list, got {_go_fmt(retain)}")
        result = {k: v for k, v in result.items() if k in retain}
    orders: dict[str, list] = {}
    for k, v in patch.items():
        if k.startswith("$setElementOrder/"):
            if not isinstance(v, list):
                raise errors.bad_request(f"invalid type for $setElementOrder list: {_go_fmt(v)}")
            orders[k[len("$setElementOrder/"):]] = v
        elif k.startswith("$deleteFromPrimitiveList/"):
            name = k[len("$deleteFromPrimitiveList/"):]
            if not isinstance(v, list):
                raise errors.bad_request(f"invalid type for $deleteFromPrimitiveList list: {_go_fmt(v)}")
            if isinstance(result.get(name), list):
                result[name] = [x for x in result[name] if x not in v]
    for k, pv in patch.items():
        if k.startswith("$"):
            continue
        if pv is None:
            result.pop(k, None)
            continue
        ft = _child_type(t, k)
        ov = result.get(k)
        if isinstance(pv, dict):
            merged = _smp_map(ov if isinstance(ov, dict) else {}, pv, ft)
            if merged is _DELETE:
                result.pop(k, None)
            else:
                result[k] = merged
        elif isinstance(pv, list):
            strat = _strategy(t, k, SMP_STRATEGIES)
            result[k] = _smp_list(ov if isinstance(ov, list) else [], pv, strat, _elem_type(ft))
        else:
            result[k] = pv
    for name, order in orders.items():
        strat = _strategy(t, name, SMP_STRATEGIES)
        if isinstance(result.get(name), list):
            result[name] = _reorder(result[name], order, strat[1] if strat else None)
    return result


def _smp_list(orig: list, patch: list, strat: tuple[str, str | None] | None, elem_t: str | None) -> list:
    if not strat or "merge" not in strat[0].split(","):
        return _strip(patch)
    merge_key = strat[1]
    for e in patch:
        if isinstance(e, dict) and e.get("$patch") == "replace":
            return _strip([x for x in patch if x is not e])
    if merge_key is None:   # a set of scalars
        result = copy.deepcopy(orig)
        for e in patch:
            if isinstance(e, (dict, list)):
                raise errors.bad_request(
                    f"unable to find api field in struct for the list of primitives: {_go_fmt(patch)}")
            if e not in result:
                result.append(e)
        return result
    result = copy.deepcopy(orig)
    for e in patch:
        if not isinstance(e, dict):
            raise errors.bad_request(f"cannot merge a primitive into a list of maps: {_go_fmt(e)}")
        d = e.get("$patch")
        if d == "delete":
            if merge_key in e:
                result = [x for x in result if not (isinstance(x, dict) and x.get(merge_key) == e[merge_key])]
            else:
                raise _no_merge_key(e, merge_key)
            continue
        if d == "merge":
            raise errors.bad_request("merging lists cannot yet be specified in the patch")
        if d is not None:
            raise errors.bad_request(f"unknown patch type: {d} in map: {_go_fmt(e)}")
        if merge_key not in e:
            raise _no_merge_key(e, merge_key)
        for i, x in enumerate(result):
            if isinstance(x, dict) and x.get(merge_key) == e[merge_key]:
                merged = _smp_map(x, e, elem_t)
                if merged is _DELETE:
                    del result[i]
                else:
                    result[i] = merged
                break
        else:
            merged = _smp_map({}, e, elem_t)
            if merged is not _DELETE:
                result.append(merged)
    return result


def _no_merge_key(e: dict, key: str) -> errors.ApiError:
    return errors.ApiError(500, "", f"map: {_go_fmt(e)} does not contain declared merge key: {key}")


def _reorder(items: list, order: list, merge_key: str | None) -> list:
    """$setElementOrder: the listed elements take the listed order; elements not listed (say,
    added on the server by someone else) keep their positions."""
    def ident(x: Any) -> Any:
        if merge_key is not None:
            return json.dumps(x.get(merge_key), sort_keys=True) if isinstance(x, dict) else None
        return json.dumps(x, sort_keys=True)

    rank: dict[Any, int] = {}
    for i, o in enumerate(order):
        rank.setdefault(ident(o), i)
    slots = [i for i, x in enumerate(items) if ident(x) in rank]
    ordered = sorted((items[i] for i in slots), key=lambda x: rank[ident(x)])
    out = list(items)
    for slot, x in zip(slots, ordered):
        out[slot] = x
    return out


def strategic_merge(current: dict, patch: dict, type_name: str | None = None) -> dict:
    """Apply a strategic merge patch (already decoded) to `current`; returns a new dict."""
    if type_name is None:
        type_name = root_type(str(current.get("apiVersion", "")), str(current.get("kind", "")))
    merged = _smp_map(current, patch, type_name)
    return {} if merged is _DELETE else merged


# ---------------------------------------------------------------------------
# RFC 7386


def merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            result.pop(k, None)
        else:
            result[k] = merge_patch(result.get(k), v)
    return result


# ---------------------------------------------------------------------------
# server-side apply


def _ssa_key(item: Any, keys: list[str]) -> str | None:
    if not isinstance(item, dict):
        return None
    return json.dumps([item.get(k, _SSA_KEY_DEFAULTS.get(k)) for k in keys])


def _ssa_value(cur: Any, app: Any, t: str | None, list_type: Any = None) -> Any:
    if isinstance(app, dict):
        if not isinstance(cur, dict):
            cur = {}
        out = copy.deepcopy(cur)
        for k, v in app.items():
            if v is None:
                continue
            ft = _child_type(t, k)
            lt = _strategy(t, k, SSA_LIST_TYPES)
            out[k] = _ssa_value(cur.get(k), v, ft, lt)
        return out
    if isinstance(app, list):
        if not isinstance(cur, list) or list_type in (None, "atomic"):
            return _strip_nulls(app)
        if list_type == "set":
            out_s = copy.deepcopy(cur)
            for x in app:
                if x not in out_s:
                    out_s.append(copy.deepcopy(x))
            return out_s
        elem_t = _elem_type(t)
        out_l = copy.deepcopy(cur)
        index = {_ssa_key(x, list_type): i for i, x in enumerate(out_l)}
        for x in app:
            k = _ssa_key(x, list_type)
            if k is not None and k in index:
                out_l[index[k]] = _ssa_value(out_l[index[k]], x, elem_t)
            else:
                out_l.append(_ssa_value(None, x, elem_t))
        return out_l
    return app


def _strip_nulls(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _strip_nulls(x) for k, x in v.items() if x is not None}
    if isinstance(v, list):
        return [_strip_nulls(x) for x in v]
    return v


def server_side_apply(current: dict | None, applied: dict) -> dict:
    """Merge an applied configuration into the live object (structured-merge-diff list-map
    keys: ServiceSpec.ports by [port, protocol], containers and env by name, ...; lists without
    a list type are atomic and replaced). Without managedFields tracking, fields that a manager
    stops applying are kept rather than removed, and conflicts are never reported."""
    if not isinstance(applied, dict):
        raise errors.bad_request("the body of an apply patch must be an object")
    t = root_type(str(applied.get("apiVersion", "")), str(applied.get("kind", "")))
    if current is None:
        return _ssa_value(None, applied, t)
    return _ssa_value(current, applied, t)


# ---------------------------------------------------------------------------
# entry point


def _go_json_error(text: str, e: json.JSONDecodeError) -> str:
    """Approximate Go's encoding/json syntax error text for a body Python could not parse."""
    rest = text[e.pos:]
    if not rest.strip() or e.pos >= len(text):
        return "unexpected end of JSON input"
    ch = rest[0]
    shown = ch if ch != "'" else "\\'"
    m = e.msg
    if m.startswith("Expecting value"):
        return f"invalid character '{shown}' looking for beginning of value"
    if m.startswith("Expecting property name"):
        return f"invalid character '{shown}' looking for beginning of object key string"
    if m.startswith("Expecting ':'"):
        return f"invalid character '{shown}' after object key"
    if m.startswith("Expecting ','"):
        depth_obj = text[:e.pos].count("{") - text[:e.pos].count("}")
        depth_arr = text[:e.pos].count("[") - text[:e.pos].count("]")
        last_open = max(text.rfind("{", 0, e.pos), text.rfind("[", 0, e.pos))
        in_obj = last_open >= 0 and text[last_open] == "{" and depth_obj > 0 or depth_arr <= 0
        return (f"invalid character '{shown}' after object key:value pair" if in_obj
                else f"invalid character '{shown}' after array element")
    if m.startswith("Extra data"):
        return f"invalid character '{shown}' after top-level value"
    return f"invalid character '{shown}' in string literal" if "control character" in m else m


def _decode(body: bytes | str) -> Any:
    text = body.decode("utf-8", errors="replace") if isinstance(body, (bytes, bytearray)) else body
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise errors.bad_request(_go_json_error(text, e)) from None


def _go_kind(v: Any) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    if v is None:
        return "null"
    return "object"


def _rejected(message: str) -> errors.ApiError:
    """NewGenericServerResponse(422, ...) as kube-apiserver returns for a json-patch that does not
    apply: the jsonpatch error text is not in the Status; kubectl prints
    "The request is invalid: the server rejected our request due to an error in our request"."""
    err = errors.ApiError(422, "Invalid", "the server rejected our request due to an error in our request", {})
    err.cause_text = message   # for logs only
    return err


def apply_json_patch(current: dict, body: bytes | str) -> dict:
    ops = _decode(body)
    if not isinstance(ops, list):
        raise errors.bad_request(f"json: cannot unmarshal {_go_kind(ops)} into Go value of type jsonpatch.Patch")
    for op in ops:
        if not isinstance(op, dict):
            raise errors.bad_request(
                f"json: cannot unmarshal {_go_kind(op)} into Go value of type jsonpatch.Operation")
    try:
        result = jsonpatch.JsonPatch(ops).apply(copy.deepcopy(current), in_place=False)
    except jsonpatch.JsonPatchTestFailed as e:
        raise _rejected(f"testing value failed: {e}") from None
    except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException, KeyError, IndexError,
            TypeError, ValueError) as e:
        raise _rejected(str(e)) from None
    if not isinstance(result, dict):
        raise errors.bad_request("the patched object is not a JSON object")
    return result


def apply_patch(current: dict, body: bytes | str, content_type: str) -> dict:
    """The patched object (a new dict; `current` is not modified)."""
    ctype = content_type.split(";", 1)[0].strip().lower()
    if ctype == JSON_PATCH:
        return apply_json_patch(current, body)
    if ctype == MERGE_PATCH:
        try:
            patch = _decode(body)
        except errors.ApiError:
            raise errors.bad_request("Invalid JSON Patch") from None
        if not isinstance(patch, dict):
            raise errors.bad_request("Invalid JSON Patch")
        return merge_patch(current, patch)
    if ctype == STRATEGIC_MERGE_PATCH:
        patch = _decode(body)
        if not isinstance(patch, dict):
            raise errors.bad_request(
                f"json: cannot unmarshal {_go_kind(patch)} into Go value of type map[string]interface {{}}")
        return strategic_merge(current, patch)
    if ctype == APPLY_PATCH:
        import yaml
        text = body.decode("utf-8") if isinstance(body, (bytes, bytearray)) else body
        try:
            applied = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise errors.bad_request(f"error decoding YAML: {e}") from None
        return server_side_apply(current, applied)
    raise errors.ApiError(
        415, "UnsupportedMediaType",
        "the body of the request was in an unknown format - accepted media types include: "
        + ", ".join(PATCH_TYPES), {})
