#!/usr/bin/env python3
"""Generate tinykube/api/schema.json from the installed `kubernetes` Python client's models.

The API server must not import `kubernetes` at runtime; it reads the generated JSON only
(tinykube.api.fields and tinykube.api.patch). Run after changing the kinds in
tinykube/api/resources.py:

    .venv/bin/python tools/gen_schema.py

Format:
  {"kinds":  {"<apiVersion>/<Kind>": "<TypeName>", ...},
   "types":  {"<TypeName>": {"go": "<Go struct name>", "fields": {"<jsonName>": <type>, ...}}}}
  where <type> is a string:
    "string" "bool" "int32" "int64" "float64" "bytes" "time" "intstr" "quantity" "any"
    "[]<type>" (list)  "map[<type>]" (object with string keys)  or a <TypeName>.
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import kubernetes.client.models as models  # noqa: E402

from tinykube.api.resources import RESOURCES  # noqa: E402

EXTRA_KINDS = [("autoscaling/v1", "Scale"), ("v1", "DeleteOptions")]

# The Python client says only "int"; these JSON names are int64 in the Go types of the kinds we
# serve (everything else that is an integer is int32).
INT64_FIELDS = {
    "generation", "observedGeneration", "deletionGracePeriodSeconds", "activeDeadlineSeconds",
    "terminationGracePeriodSeconds", "runAsUser", "runAsGroup", "fsGroup", "supplementalGroups",
    "expirationSeconds", "gracePeriodSeconds", "revision", "tolerationSeconds", "remainingItemCount",
}
# Maps whose values are resource.Quantity (the client models them as str).
QUANTITY_MAPS = {
    ("V1ResourceRequirements", "limits"), ("V1ResourceRequirements", "requests"),
    ("V1VolumeResourceRequirements", "limits"), ("V1VolumeResourceRequirements", "requests"),
    ("V1PodSpec", "overhead"), ("V1NodeStatus", "capacity"), ("V1NodeStatus", "allocatable"),
    ("V1ContainerStatus", "allocatedResources"), ("V1PersistentVolumeClaimStatus", "capacity"),
    ("V1PersistentVolumeClaimStatus", "allocatedResources"), ("V1PersistentVolumeSpec", "capacity"),
}
QUANTITY_FIELDS = {("V1EmptyDirVolumeSource", "sizeLimit")}
# Times that are metav1.MicroTime rather than metav1.Time.
MICRO_TIMES = {("EventsV1Event", "eventTime"), ("CoreV1Event", "eventTime"),
               ("EventsV1EventSeries", "lastObservedTime"), ("CoreV1EventSeries", "lastObservedTime"),
               ("V1LeaseSpec", "acquireTime"), ("V1LeaseSpec", "renewTime")}

_PREFIX = re.compile(r"^(CoreV1|EventsV1|StorageV1|DiscoveryV1|AuthenticationV1|ResourceV1|"
                     r"V\d+(?:alpha\d+|beta\d+)?)(?=[A-Z])")


def go_name(type_name: str) -> str:
    return _PREFIX.sub("", type_name)


def class_for(api_version: str, kind: str) -> str:
    if kind == "Event":
        return "EventsV1Event" if api_version.startswith("events.k8s.io") else "CoreV1Event"
    version = api_version.split("/")[-1]
    return version[0].upper() + version[1:] + kind


def _is_intstr(annotation) -> bool:
    s = str(annotation)
    return "int" in s and "str" in s and "Union" in s and "Dict" not in s


def convert(owner: str, fname: str, t: str, annotation, todo: list[str]) -> str:
    t = t.strip()
    m = re.fullmatch(r"(?:List|list)\[(.*)\]", t)
    if m:
        inner = convert(owner, fname, m.group(1), None, todo)
        return "[]" + inner
    m = re.fullmatch(r"(?:Dict|dict)[\[(]\s*str\s*,\s*(.*)[\])]", t)
    if m:
        if (owner, fname) in QUANTITY_MAPS:
            return "map[quantity]"
        return "map[" + convert(owner, fname, m.group(1), None, todo) + "]"
    if t == "str":
        if (owner, fname) in QUANTITY_FIELDS:
            return "quantity"
        return "string"
    if t == "int":
        return "int64" if fname in INT64_FIELDS else "int32"
    if t == "float":
        return "float64"
    if t == "bool":
        return "bool"
    if t in ("bytes", "bytearray"):
        return "bytes"
    if t == "datetime":
        return "microtime" if (owner, fname) in MICRO_TIMES else "time"
    if t == "object":
        return "intstr" if annotation is not None and _is_intstr(annotation) else "any"
    if hasattr(models, t):
        todo.append(t)
        return t
    raise SystemExit(f"unknown type {t!r} at {owner}.{fname}")


def build() -> dict:
    kinds: dict[str, str] = {}
    wanted = [(r.api_version, r.kind) for r in RESOURCES] + EXTRA_KINDS
    todo: list[str] = []
    for api_version, kind in wanted:
        cls = class_for(api_version, kind)
        if not hasattr(models, cls):
            raise SystemExit(f"no model {cls} for {api_version} {kind}")
        kinds[f"{api_version}/{kind}"] = cls
        todo.append(cls)
    types: dict[str, dict] = {}
    while todo:
        name = todo.pop()
        if name in types:
            continue
        cls = getattr(models, name)
        fields: dict[str, str] = {}
        for attr, t in cls.openapi_types.items():
            json_name = cls.attribute_map[attr]
            annotation = cls.model_fields[attr].annotation if attr in cls.model_fields else None
            fields[json_name] = convert(name, json_name, t, annotation, todo)
        types[name] = {"go": go_name(name), "fields": fields}
    return {"kinds": kinds, "types": dict(sorted(types.items()))}


def main() -> None:
    out = ROOT / "tinykube" / "api" / "schema.json"
    data = build()
    out.write_text(json.dumps(data, indent=1, sort_keys=False) + "\n")
    print(f"wrote {out}: {len(data['kinds'])} kinds, {len(data['types'])} types")


if __name__ == "__main__":
    main()
