"""core/v1 Events and events.k8s.io/v1 Events are one object in two shapes.

tinykube stores the core shape (what `kubectl describe` reads) and converts at the API edge,
field for field as Kubernetes' conversion functions map them."""
from __future__ import annotations

# (events.k8s.io field, core field)
_RENAMES = [("regarding", "involvedObject"), ("note", "message"),
            ("reportingController", "reportingComponent"), ("deprecatedSource", "source"),
            ("deprecatedFirstTimestamp", "firstTimestamp"), ("deprecatedLastTimestamp", "lastTimestamp"),
            ("deprecatedCount", "count")]
_SAME = ["metadata", "eventTime", "series", "reason", "type", "action", "related", "reportingInstance"]


def core_to_events(obj: dict) -> dict:
    out = {"kind": "Event", "apiVersion": "events.k8s.io/v1"}
    for k in _SAME:
        if k in obj:
            out[k] = obj[k]
    for new, old in _RENAMES:
        if old in obj:
            out[new] = obj[old]
    if not out.get("eventTime"):
        # events.k8s.io requires eventTime; old-style events only have the deprecated timestamps
        ts = obj.get("firstTimestamp") or obj.get("metadata", {}).get("creationTimestamp")
        if ts:
            out["eventTime"] = ts.replace("Z", ".000000Z") if "." not in ts else ts
    return out


def events_to_core(obj: dict) -> dict:
    out = {"kind": "Event", "apiVersion": "v1"}
    for k in _SAME:
        if k in obj:
            out[k] = obj[k]
    for new, old in _RENAMES:
        if new in obj:
            out[old] = obj[new]
    out.setdefault("involvedObject", {})
    return out
