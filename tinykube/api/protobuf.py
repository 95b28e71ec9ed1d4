"""Decoding the protobuf request bodies kubectl 1.32+ sends from its typed generators
(`kubectl create namespace|configmap|secret|service|deployment|ingress`).

A body is the magic `k8s\\0` and a runtime.Unknown {typeMeta, raw, contentEncoding, contentType};
raw is the object in the Go types' protobuf encoding (field numbers from k8s.io/api
generated.proto). Only the messages those generators produce are described here; a body holding a
field or kind tinykube does not know is refused with 415 rather than half-decoded.

The result is what Kubernetes would get by decoding the body into the Go struct and encoding that
as JSON, i.e. exactly what kubectl 1.31 sends as JSON for the same command. So each field carries
its Go shape (see the field modes below): the protobuf encoder writes every non-pointer field even when empty, and
the JSON encoder drops empty omitempty scalars/collections but always writes struct values
(`resources: {}`, `status: {}`), zero times as `null`, and nil pointers/slices without omitempty
as `null`.
"""
from __future__ import annotations

import base64
import datetime
from typing import Any

from . import errors
from .resources import Resource

MAGIC = b"k8s\x00"

# Field modes (the Go field's shape and JSON tag):
#   o   value, `omitempty`: dropped when zero/empty (struct values are still always written)
#   v   value, no omitempty: always written, zero when absent
#   p   pointer, omitempty: written only when present in the body (even if zero)
#   pn  pointer, no omitempty: the value, or null when absent
#   r   repeated, omitempty: dropped when empty
#   rn  repeated, no omitempty: null when empty
#   in  an embedded struct whose JSON fields are inlined into the parent (IngressRule)
# Types: str, int32, int64, bool, bytes, ios (IntOrString), time (metav1.Time), qty (Quantity),
# map:str / map:bytes / map:qty (always omitempty), or a message name from SCHEMA.
# Fields are listed in Go declaration order, which is the JSON key order.
_F = tuple[int, str, str, str]  # (number, json name, type, mode)

SCHEMA: dict[str, tuple[_F, ...]] = {
    "Unknown": ((1, "typeMeta", "TypeMeta", "o"), (2, "raw", "bytes", "o"),
                (3, "contentEncoding", "str", "o"), (4, "contentType", "str", "o")),
    "TypeMeta": ((1, "apiVersion", "str", "o"), (2, "kind", "str", "o")),
    # meta/v1
    "ObjectMeta": ((1, "name", "str", "o"), (2, "generateName", "str", "o"), (3, "namespace", "str", "o"),
                   (4, "selfLink", "str", "o"), (5, "uid", "str", "o"), (6, "resourceVersion", "str", "o"),
                   (7, "generation", "int64", "o"), (8, "creationTimestamp", "time", "o"),
                   (9, "deletionTimestamp", "time", "p"), (10, "deletionGracePeriodSeconds", "int64", "p"),
                   (11, "labels", "map:str", "o"), (12, "annotations", "map:str", "o"),
                   (13, "ownerReferences", "OwnerReference", "r"), (14, "finalizers", "str", "r")),
    "OwnerReference": ((5, "apiVersion", "str", "v"), (1, "kind", "str", "v"), (3, "name", "str", "v"),
                       (4, "uid", "str", "v"), (6, "controller", "bool", "p"),
                       (7, "blockOwnerDeletion", "bool", "p")),
    "LabelSelector": ((1, "matchLabels", "map:str", "o"),
                      (2, "matchExpressions", "LabelSelectorRequirement", "r")),
    "LabelSelectorRequirement": ((1, "key", "str", "v"), (2, "operator", "str", "v"), (3, "values", "str", "r")),
    # core/v1
    "Namespace": ((1, "metadata", "ObjectMeta", "o"), (2, "spec", "NamespaceSpec", "o"),
                  (3, "status", "NamespaceStatus", "o")),
    "NamespaceSpec": ((1, "finalizers", "str", "r"),),
    "NamespaceStatus": ((1, "phase", "str", "o"),),
    "ConfigMap": ((1, "metadata", "ObjectMeta", "o"), (4, "immutable", "bool", "p"),
                  (2, "data", "map:str", "o"), (3, "binaryData", "map:bytes", "o")),
    "Secret": ((1, "metadata", "ObjectMeta", "o"), (5, "immutable", "bool", "p"), (2, "data", "map:bytes", "o"),
               (4, "stringData", "map:str", "o"), (3, "type", "str", "o")),
    "Service": ((1, "metadata", "ObjectMeta", "o"), (2, "spec", "ServiceSpec", "o"),
                (3, "status", "ServiceStatus", "o")),
    "ServiceSpec": ((1, "ports", "ServicePort", "r"), (2, "selector", "map:str", "o"), (3, "clusterIP", "str", "o"),
                    (18, "clusterIPs", "str", "r"), (4, "type", "str", "o"), (5, "externalIPs", "str", "r"),
                    (7, "sessionAffinity", "str", "o"), (8, "loadBalancerIP", "str", "o"),
                    (9, "loadBalancerSourceRanges", "str", "r"), (10, "externalName", "str", "o"),
                    (11, "externalTrafficPolicy", "str", "o"), (12, "healthCheckNodePort", "int32", "o"),
                    (13, "publishNotReadyAddresses", "bool", "o"), (19, "ipFamilies", "str", "r"),
                    (17, "ipFamilyPolicy", "str", "p"), (20, "allocateLoadBalancerNodePorts", "bool", "p"),
                    (21, "loadBalancerClass", "str", "p"), (22, "internalTrafficPolicy", "str", "p"),
                    (23, "trafficDistribution", "str", "p")),
    "ServicePort": ((1, "name", "str", "o"), (2, "protocol", "str", "o"), (6, "appProtocol", "str", "p"),
                    (3, "port", "int32", "v"), (4, "targetPort", "ios", "o"), (5, "nodePort", "int32", "o")),
    "ServiceStatus": ((1, "loadBalancer", "LoadBalancerStatus", "o"),),
    "LoadBalancerStatus": ((1, "ingress", "LoadBalancerIngress", "r"),),
    "LoadBalancerIngress": ((1, "ip", "str", "o"), (2, "hostname", "str", "o"), (3, "ipMode", "str", "p"),
                            (4, "ports", "PortStatus", "r")),
    "PortStatus": ((1, "port", "int32", "v"), (2, "protocol", "str", "v"), (3, "error", "str", "p")),
    "PodTemplateSpec": ((1, "metadata", "ObjectMeta", "o"), (2, "spec", "PodSpec", "o")),
    "PodSpec": ((20, "initContainers", "Container", "r"), (2, "containers", "Container", "rn"),
                (3, "restartPolicy", "str", "o"), (4, "terminationGracePeriodSeconds", "int64", "p"),
                (5, "activeDeadlineSeconds", "int64", "p"), (6, "dnsPolicy", "str", "o"),
                (7, "nodeSelector", "map:str", "o"), (8, "serviceAccountName", "str", "o"),
                (9, "serviceAccount", "str", "o"), (21, "automountServiceAccountToken", "bool", "p"),
                (10, "nodeName", "str", "o"), (11, "hostNetwork", "bool", "o"), (12, "hostPID", "bool", "o"),
                (13, "hostIPC", "bool", "o"), (27, "shareProcessNamespace", "bool", "p"),
                (16, "hostname", "str", "o"), (17, "subdomain", "str", "o"), (19, "schedulerName", "str", "o"),
                (24, "priorityClassName", "str", "o"), (25, "priority", "int32", "p"),
                (29, "runtimeClassName", "str", "p"), (30, "enableServiceLinks", "bool", "p"),
                (31, "preemptionPolicy", "str", "p"), (32, "overhead", "map:qty", "o"),
                (35, "setHostnameAsFQDN", "bool", "p"), (37, "hostUsers", "bool", "p")),
    "Container": ((1, "name", "str", "v"), (2, "image", "str", "o"), (3, "command", "str", "r"),
                  (4, "args", "str", "r"), (5, "workingDir", "str", "o"), (6, "ports", "ContainerPort", "r"),
                  (7, "env", "EnvVar", "r"), (8, "resources", "ResourceRequirements", "o"),
                  (24, "restartPolicy", "str", "p"), (13, "terminationMessagePath", "str", "o"),
                  (20, "terminationMessagePolicy", "str", "o"), (14, "imagePullPolicy", "str", "o"),
                  (16, "stdin", "bool", "o"), (17, "stdinOnce", "bool", "o"), (18, "tty", "bool", "o")),
    "ContainerPort": ((1, "name", "str", "o"), (2, "hostPort", "int32", "o"), (3, "containerPort", "int32", "v"),
                      (4, "protocol", "str", "o"), (5, "hostIP", "str", "o")),
    "EnvVar": ((1, "name", "str", "v"), (2, "value", "str", "o")),
    "ResourceRequirements": ((1, "limits", "map:qty", "o"), (2, "requests", "map:qty", "o")),
    # apps/v1
    "Deployment": ((1, "metadata", "ObjectMeta", "o"), (2, "spec", "DeploymentSpec", "o"),
                   (3, "status", "DeploymentStatus", "o")),
    "DeploymentSpec": ((1, "replicas", "int32", "p"), (2, "selector", "LabelSelector", "pn"),
                       (3, "template", "PodTemplateSpec", "v"), (4, "strategy", "DeploymentStrategy", "o"),
                       (5, "minReadySeconds", "int32", "o"), (6, "revisionHistoryLimit", "int32", "p"),
                       (7, "paused", "bool", "o"), (9, "progressDeadlineSeconds", "int32", "p")),
    "DeploymentStrategy": ((1, "type", "str", "o"), (2, "rollingUpdate", "RollingUpdateDeployment", "p")),
    "RollingUpdateDeployment": ((1, "maxUnavailable", "ios", "p"), (2, "maxSurge", "ios", "p")),
    "DeploymentStatus": ((1, "observedGeneration", "int64", "o"), (2, "replicas", "int32", "o"),
                         (3, "updatedReplicas", "int32", "o"), (7, "readyReplicas", "int32", "o"),
                         (4, "availableReplicas", "int32", "o"), (5, "unavailableReplicas", "int32", "o"),
                         (9, "terminatingReplicas", "int32", "p"), (8, "collisionCount", "int32", "p")),
    # networking.k8s.io/v1
    "Ingress": ((1, "metadata", "ObjectMeta", "o"), (2, "spec", "IngressSpec", "o"),
                (3, "status", "IngressStatus", "o")),
    "IngressSpec": ((4, "ingressClassName", "str", "p"), (1, "defaultBackend", "IngressBackend", "p"),
                    (2, "tls", "IngressTLS", "r"), (3, "rules", "IngressRule", "r")),
    "IngressTLS": ((1, "hosts", "str", "r"), (2, "secretName", "str", "o")),
    "IngressRule": ((1, "host", "str", "o"), (2, "", "IngressRuleValue", "in")),
    "IngressRuleValue": ((1, "http", "HTTPIngressRuleValue", "p"),),
    "HTTPIngressRuleValue": ((1, "paths", "HTTPIngressPath", "rn"),),
    "HTTPIngressPath": ((1, "path", "str", "o"), (3, "pathType", "str", "pn"), (2, "backend", "IngressBackend", "v")),
    "IngressBackend": ((4, "service", "IngressServiceBackend", "p"),),
    "IngressServiceBackend": ((1, "name", "str", "v"), (2, "port", "ServiceBackendPort", "o")),
    "ServiceBackendPort": ((1, "name", "str", "o"), (2, "number", "int32", "o")),
    "IngressStatus": ((1, "loadBalancer", "IngressLoadBalancerStatus", "o"),),
    "IngressLoadBalancerStatus": ((1, "ingress", "IngressLoadBalancerIngress", "r"),),
    "IngressLoadBalancerIngress": ((1, "ip", "str", "o"), (2, "hostname", "str", "o"),
                                   (4, "ports", "IngressPortStatus", "r")),
    "IngressPortStatus": ((1, "port", "int32", "v"), (2, "protocol", "str", "v"), (3, "error", "str", "p")),
}

# (apiVersion, kind) a body may carry -> its message.
KINDS = {("v1", "Namespace"): "Namespace", ("v1", "ConfigMap"): "ConfigMap", ("v1", "Secret"): "Secret",
         ("v1", "Service"): "Service", ("apps/v1", "Deployment"): "Deployment",
         ("networking.k8s.io/v1", "Ingress"): "Ingress"}

_BY_NUM = {name: {f[0]: f for f in fields} for name, fields in SCHEMA.items()}
_SCALARS = {"str", "int32", "int64", "bool", "bytes", "ios", "time", "qty"}
_VARINT_TYPES = {"int32", "int64", "bool"}
_WIRE_NAMES = {0: "varint", 1: "64-bit", 2: "length-delimited", 5: "32-bit"}
_ZERO_TIME_SECONDS = -62135596800  # Go's zero time.Time (0001-01-01) as Unix seconds


class DecodeError(Exception):
    pass


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        if i >= len(buf):
            raise DecodeError("truncated varint")
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result & 0xFFFFFFFFFFFFFFFF, i  # Go keeps the low 64 bits
        shift += 7
        if shift >= 70:
            raise DecodeError("varint longer than 10 bytes")


def _fields(buf: bytes, where: str):
    """(field number, wire type, value) triples; value is int for varints, bytes otherwise."""
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        num, wt = key >> 3, key & 7
        if num == 0 or num > 0x1FFFFFFF:
            raise DecodeError(f"invalid field number {num} in {where}")
        if wt == 0:
            v, i = _varint(buf, i)
        elif wt in (1, 2, 5):
            if wt == 2:
                n, i = _varint(buf, i)
            else:
                n = 8 if wt == 1 else 4
            if i + n > len(buf):
                raise DecodeError(f"truncated field {num} of {where}: {n} bytes announced, "
                                  f"{len(buf) - i} left")
            v, i = buf[i:i + n], i + n
        else:
            raise DecodeError(f"unsupported wire type {wt} (field {num} of {where})")
        yield num, wt, v


def _collect(name: str, buf: bytes) -> dict[int, list]:
    """The occurrences of each known field of message `name`, wire types checked."""
    fields = _BY_NUM[name]
    seen: dict[int, list] = {}
    for num, wt, v in _fields(buf, name):
        f = fields.get(num)
        if f is None:
            raise DecodeError(f"field {num} of {name} is not known to tinykube")
        typ = f[2]
        want = 0 if typ in _VARINT_TYPES else 2
        if wt != want:
            raise DecodeError(f"field {num} ({f[1] or typ}) of {name} has wire type {_WIRE_NAMES.get(wt, wt)}, "
                              f"expected {_WIRE_NAMES[want]}")
        seen.setdefault(num, []).append(v)
    return seen


def _str(v: bytes, where: str) -> str:
    try:
        return v.decode("utf-8")
    except UnicodeDecodeError:
        raise DecodeError(f"{where} is not valid UTF-8") from None


def _int(v: int, bits: int) -> int:
    v &= (1 << bits) - 1
    return v - (1 << bits) if v >> (bits - 1) else v


def _scalar(typ: str, v: Any, where: str) -> Any:
    if typ == "str":
        return _str(v, where)
    if typ == "int32":
        return _int(v, 32)
    if typ == "int64":
        return _int(v, 64)
    if typ == "bool":
        return v != 0
    if typ == "bytes":
        return bytes(v)
    if typ == "ios":
        # IntOrString {1: type int64, 2: intVal int32, 3: strVal string}
        f = _small({1: ("type", "int64"), 2: ("intVal", "int32"), 3: ("strVal", "str")}, v, f"{where} (IntOrString)")
        kind = f.get("type", 0)
        if kind == 0:
            return f.get("intVal", 0)
        if kind == 1:
            return f.get("strVal", "")
        raise DecodeError(f"{where}: impossible IntOrString type {kind}")
    if typ == "time":
        if not v:
            return None
        f = _small({1: ("seconds", "int64"), 2: ("nanos", "int32")}, v, f"{where} (Time)")
        seconds = f.get("seconds", 0)  # Kubernetes drops the nanoseconds
        if seconds == _ZERO_TIME_SECONDS:
            return None
        try:
            t = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc) + datetime.timedelta(seconds=seconds)
        except OverflowError:
            raise DecodeError(f"{where}: time out of range") from None
        return f"{t.year:04d}-{t.month:02d}-{t.day:02d}T{t.hour:02d}:{t.minute:02d}:{t.second:02d}Z"
    if typ == "qty":
        s = _small({1: ("string", "str")}, v, f"{where} (Quantity)").get("string", "")
        if not s:
            raise DecodeError(f"{where}: empty quantity")
        return s
    raise AssertionError(typ)


def _small(spec: dict[int, tuple[str, str]], buf: bytes, where: str) -> dict:
    """A small fixed message (IntOrString, Time, Quantity, map entries): last occurrence wins."""
    out: dict[str, Any] = {}
    for num, wt, v in _fields(buf, where):
        if num not in spec:
            raise DecodeError(f"field {num} of {where} is not known to tinykube")
        name, typ = spec[num]
        want = 0 if typ in _VARINT_TYPES else 2
        if wt != want:
            raise DecodeError(f"field {num} ({name}) of {where} has wire type {_WIRE_NAMES.get(wt, wt)}, "
                              f"expected {_WIRE_NAMES[want]}")
        out[name] = v
    for name, typ in spec.values():
        if name in out and typ != "bytes":
            out[name] = _scalar(typ, out[name], f"{where}.{name}")
    return out


def _map_value(vtype: str, v: Any, where: str) -> Any:
    if vtype == "str":
        return _str(v, where)
    if vtype == "bytes":
        return base64.b64encode(v).decode("ascii")
    return _scalar("qty", v, where)


def _render(name: str, buf: bytes, where: str) -> dict:
    """The JSON form of message `name` encoded in buf."""
    seen = _collect(name, buf)
    out: dict[str, Any] = {}
    for num, key, typ, mode in SCHEMA[name]:
        vals = seen.get(num)
        at = f"{where}.{key}" if key else where
        if typ.startswith("map:"):
            m: dict[str, Any] = {}
            for entry in vals or ():
                e = _small({1: ("key", "str"), 2: ("value", "bytes")}, entry, f"{at} entry")
                m[e.get("key", "")] = _map_value(typ[4:], e.get("value", b""), f"{at}[{e.get('key', '')!r}]")
            if m:
                out[key] = m
            continue
        if typ not in _SCALARS:  # a message
            if mode in ("r", "rn"):
                items = [_render(typ, v, f"{at}[{i}]") for i, v in enumerate(vals or ())]
                if items:
                    out[key] = items
                elif mode == "rn":
                    out[key] = None
                continue
            if vals is None and mode in ("p", "pn"):
                if mode == "pn":
                    out[key] = None
                continue
            # Repeated occurrences of a message field merge, like parsing their concatenation.
            val = _render(typ, b"".join(vals or ()), at)
            if mode == "in":
                out.update(val)
            else:
                out[key] = val
            continue
        if mode in ("r", "rn"):
            items = [_scalar(typ, v, f"{at}[{i}]") for i, v in enumerate(vals or ())]
            if items:
                out[key] = items
            elif mode == "rn":
                out[key] = None
            continue
        if vals is None:
            if mode == "pn":
                out[key] = None
            elif mode == "v" or (mode == "o" and typ in ("ios", "time")):
                out[key] = _scalar(typ, b"" if typ in ("str", "bytes", "ios", "time") else 0, at)
            continue
        val = _scalar(typ, vals[-1], at)  # the last occurrence of a scalar wins
        if mode == "o" and typ not in ("ios", "time") and val in ("", 0, b""):
            continue  # an empty omitempty value (0 == False, so false booleans too)
        out[key] = val
    return out


def _refuse(message: str) -> errors.ApiError:
    return errors.ApiError(415, "UnsupportedMediaType", message, {})


def supported_kinds() -> str:
    return ", ".join(f"{k} ({v})" for v, k in KINDS)


def decode(body: bytes, res: Resource | None) -> dict:
    """The object a kubectl protobuf body carries, as the JSON dict the API would take."""
    if not body.startswith(MAGIC):
        raise _refuse("the protobuf body does not start with the Kubernetes magic number k8s\\x00")
    try:
        seen = _collect("Unknown", body[len(MAGIC):])
        tm = _render("TypeMeta", b"".join(seen.get(1, ())), "typeMeta")
        api_version = tm.get("apiVersion") or (res.api_version if res else "")
        kind = tm.get("kind") or (res.kind if res else "")
        message = KINDS.get((api_version, kind))
        if message is None:
            raise _refuse(f"tinykube cannot decode protobuf bodies of kind {kind or '<none>'!r} "
                          f"(apiVersion {api_version or '<none>'!r}); it decodes only {supported_kinds()}. "
                          "Send the object as JSON instead (kubectl 1.31 or older, or `kubectl create -f`)")
        encoding = _str(seen[3][-1], "contentEncoding") if 3 in seen else ""
        if encoding:
            raise _refuse(f"tinykube cannot decode protobuf bodies with contentEncoding {encoding!r}; "
                          "send the object as JSON")
        raw = seen[2][-1] if 2 in seen else b""
        obj = _render(message, raw, kind)
    except DecodeError as e:
        raise _refuse(f"tinykube cannot decode this protobuf body: {e}. Send the object as JSON instead") from None
    return {"kind": kind, "apiVersion": api_version, **obj}
