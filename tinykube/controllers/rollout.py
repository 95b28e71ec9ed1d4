"""Deployment arithmetic (deployment util): surge/unavailable resolution and the rolling step."""
from __future__ import annotations

import math
from typing import Any


def scaled_value(v: Any, total: int, round_up: bool) -> int:
    """intstr.GetScaledValueFromIntOrPercent."""
    if v is None:
        return 0
    if isinstance(v, int):
        return v
    s = str(v)
    if s.endswith("%"):
        pct = int(s[:-1])
        x = pct * total / 100
        return int(math.ceil(x)) if round_up else int(math.floor(x))
    return int(s)


def resolve_fenceposts(max_surge: Any, max_unavailable: Any, desired: int) -> tuple[int, int]:
    surge = scaled_value(max_surge, desired, True)
    unavailable = scaled_value(max_unavailable, desired, False)
    if surge == 0 and unavailable == 0:
        unavailable = 1   # validation forbids both zero; a rollout must be able to progress
    return surge, unavailable


def _rolling(d: dict) -> dict | None:
    strat = (d.get("spec") or {}).get("strategy") or {}
    if (strat.get("type") or "RollingUpdate") != "RollingUpdate":
        return None
    ru = strat.get("rollingUpdate") or {}
    return {"maxSurge": ru.get("maxSurge", "25%"), "maxUnavailable": ru.get("maxUnavailable", "25%")}


def replicas_of(obj: dict) -> int:
    r = (obj.get("spec") or {}).get("replicas")
    return 1 if r is None else int(r)


def max_surge(d: dict) -> int:
    ru = _rolling(d)
    if ru is None:
        return 0
    return resolve_fenceposts(ru["maxSurge"], ru["maxUnavailable"], replicas_of(d))[0]


def max_unavailable(d: dict) -> int:
    ru = _rolling(d)
    n = replicas_of(d)
    if ru is None or n == 0:
        return 0
    return min(resolve_fenceposts(ru["maxSurge"], ru["maxUnavailable"], n)[1], n)


def new_rs_new_replicas(d: dict, all_rs_replicas: int, new_rs_replicas: int) -> int:
    """NewRSNewReplicas: how far the new ReplicaSet may scale up now."""
    want = replicas_of(d)
    if _rolling(d) is None:
        return want
    if new_rs_replicas == want:
        return new_rs_replicas
    max_total = want + max_surge(d)
    if all_rs_replicas >= max_total:
        return new_rs_replicas
    scale_up = max_total - all_rs_replicas
    scale_up = min(scale_up, want - new_rs_replicas)
    return new_rs_replicas + scale_up


def max_scaled_down(d: dict, all_rs_replicas: int, new_rs_replicas: int, new_rs_available: int) -> int:
    """How many old pods reconcileOldReplicaSets may remove now."""
    min_available = replicas_of(d) - max_unavailable(d)
    new_unavailable = new_rs_replicas - new_rs_available
    return all_rs_replicas - min_available - new_unavailable


def old_scale_down_budget(d: dict, total_available: int) -> int:
    """scaleDownOldReplicaSetsForRollingUpdate's totalScaleDownCount."""
    min_available = replicas_of(d) - max_unavailable(d)
    return max(0, total_available - min_available)
