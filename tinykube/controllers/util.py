"""Small helpers shared by the controllers: time, pod state, owner references, expectations."""
from __future__ import annotations

import copy
import time
from datetime import datetime, timezone
from typing import Any

from tinykube.api.selectors import LabelSelector, selector_from_map, selector_from_spec


def now_rfc3339() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_rfc3339_nano() -> str:
    t = time.time_ns()
    secs, nanos = divmod(t, 1_000_000_000)
    base = datetime.fromtimestamp(secs, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    frac = f"{nanos:09d}".rstrip("0")
    return f"{base}.{frac}Z" if frac else f"{base}Z"


def parse_time(s: str | None) -> float | None:
    if not s:
        return None
    try:
        s2 = s.replace("Z", "+00:00")
        if "." in s2:  # Python wants at most 6 fractional digits
            head, rest = s2.split(".", 1)
            frac, _, tz = rest.partition("+")
            s2 = f"{head}.{frac[:6]}+{tz}" if tz else f"{head}.{frac[:6]}"
        return datetime.fromisoformat(s2).timestamp()
    except ValueError:
        return None


# ---------------------------------------------------------------- objects

def meta(obj: dict) -> dict:
    return obj.get("metadata") or {}


def ns_name(obj: dict) -> tuple[str, str]:
    md = meta(obj)
    return md.get("namespace", "") or "", md.get("name", "")


def controller_ref(obj: dict) -> dict | None:
    for ref in meta(obj).get("ownerReferences") or []:
        if ref.get("controller"):
            return ref
    return None


def owner_ref(owner: dict, kind: str, api_version: str) -> dict:
    md = meta(owner)
    return {"apiVersion": api_version, "kind": kind, "name": md["name"], "uid": md["uid"],
            "controller": True, "blockOwnerDeletion": True}


def is_controlled_by(obj: dict, owner: dict) -> bool:
    ref = controller_ref(obj)
    return ref is not None and ref.get("uid") == meta(owner).get("uid")


def label_selector(obj: dict) -> LabelSelector:
    """The workload's spec.selector as a selector (nil matches nothing)."""
    return selector_from_spec((obj.get("spec") or {}).get("selector"))


def service_selector(svc: dict) -> LabelSelector:
    return selector_from_map((svc.get("spec") or {}).get("selector"))


# ---------------------------------------------------------------- pods

def pod_condition(pod: dict, ctype: str) -> dict | None:
    for c in (pod.get("status") or {}).get("conditions") or []:
        if c.get("type") == ctype:
            return c
    return None


def is_pod_ready(pod: dict) -> bool:
    c = pod_condition(pod, "Ready")
    return c is not None and c.get("status") == "True"


def is_pod_available(pod: dict, min_ready_seconds: int = 0, now: float | None = None) -> bool:
    """podutil.IsPodAvailable: Ready for at least minReadySeconds."""
    if not is_pod_ready(pod):
        return False
    if not min_ready_seconds:
        return True
    c = pod_condition(pod, "Ready") or {}
    t = parse_time(c.get("lastTransitionTime"))
    if t is None:
        return False
    return t + min_ready_seconds <= (now if now is not None else time.time())


def available_in(pod: dict, min_ready_seconds: int, now: float | None = None) -> float | None:
    """Seconds until a ready pod becomes available (None when not ready or already available)."""
    if not min_ready_seconds or not is_pod_ready(pod):
        return None
    t = parse_time((pod_condition(pod, "Ready") or {}).get("lastTransitionTime"))
    if t is None:
        return None
    left = t + min_ready_seconds - (now if now is not None else time.time())
    return left if left > 0 else None


def is_terminal(pod: dict) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def is_active(pod: dict) -> bool:
    """controller.IsPodActive: not terminal and not being deleted."""
    return not is_terminal(pod) and not meta(pod).get("deletionTimestamp")


def is_running_and_ready(pod: dict) -> bool:
    return (pod.get("status") or {}).get("phase") == "Running" and is_pod_ready(pod)


def pod_from_template(template: dict, namespace: str, owner_reference: dict | None, *,
                      generate_name: str | None = None, name: str | None = None) -> dict:
    """controller.GetPodFromTemplate: labels, annotations, finalizers and spec from the template."""
    tmeta = template.get("metadata") or {}
    md: dict[str, Any] = {"namespace": namespace}
    if name:
        md["name"] = name
    elif generate_name:
        md["generateName"] = generate_name
    md["labels"] = dict(tmeta.get("labels") or {})
    if tmeta.get("annotations"):
        md["annotations"] = dict(tmeta["annotations"])
    if tmeta.get("finalizers"):
        md["finalizers"] = list(tmeta["finalizers"])
    if owner_reference:
        md["ownerReferences"] = [owner_reference]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": md,
            "spec": copy.deepcopy(template.get("spec") or {})}


# ---------------------------------------------------------------- expectations

class Expectations:
    """ControllerExpectations: after creating/deleting pods, wait until the informer has shown
    that many adds/deletes for the owner before counting again, so a lagging cache never causes
    extra creations or deletions. Entries expire (like upstream's 5 minutes)."""

    TTL = 300.0

    def __init__(self) -> None:
        self._adds: dict[Any, int] = {}
        self._dels: dict[Any, int] = {}
        self._since: dict[Any, float] = {}

    def expect(self, key: Any, adds: int = 0, dels: int = 0) -> None:
        self._adds[key] = self._adds.get(key, 0) + adds
        self._dels[key] = self._dels.get(key, 0) + dels
        self._since[key] = time.monotonic()

    def creation_observed(self, key: Any) -> None:
        if self._adds.get(key, 0) > 0:
            self._adds[key] -= 1

    def deletion_observed(self, key: Any) -> None:
        if self._dels.get(key, 0) > 0:
            self._dels[key] -= 1

    def satisfied(self, key: Any) -> bool:
        if self._adds.get(key, 0) <= 0 and self._dels.get(key, 0) <= 0:
            return True
        if time.monotonic() - self._since.get(key, 0) > self.TTL:
            self.clear(key)
            return True
        return False

    def clear(self, key: Any) -> None:
        self._adds.pop(key, None)
        self._dels.pop(key, None)
        self._since.pop(key, None)


BY_SERVICE = "service"     # informer index of EndpointSlices: "<namespace>/<service name>"


def slice_service(s: dict) -> list[str]:
    """The index value of an EndpointSlice: the Service its kubernetes.io/service-name label
    names, in the slice's namespace."""
    name = (meta(s).get("labels") or {}).get("kubernetes.io/service-name")
    return [f"{meta(s).get('namespace', '')}/{name}"] if name else []
