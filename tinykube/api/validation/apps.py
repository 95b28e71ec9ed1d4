"""apps/v1 validation (pkg/apis/apps/validation): Deployment, ReplicaSet, StatefulSet,
DaemonSet, ControllerRevision."""
from __future__ import annotations

import copy
from typing import Any

from tinykube.api.errors import FieldError

from .common import (
    Path, as_int, forbidden, go_int_or_string, go_label_selector, go_string_map, immutable, invalid,
    is_valid_percent, name_is_dns_subdomain, not_supported, required, selector_matches,
    validate_label_selector, validate_nonnegative, validate_object_meta,
    validate_object_meta_update,
)
from .core import validate_pod_template_spec


def _d(x: Any) -> dict:
    return x if isinstance(x, dict) else {}


def _selector_errors(spec: dict, path: Path, what: str, require: bool = True) -> list[FieldError]:
    errs: list[FieldError] = []
    sel = spec.get("selector")
    if sel is None:
        if require:
            errs.append(required(path.child("selector")))
    else:
        errs.extend(validate_label_selector(sel, path.child("selector")))
        if not _d(sel).get("matchLabels") and not _d(sel).get("matchExpressions"):
            errs.append(invalid(path.child("selector"), go_label_selector(sel), f"empty selector is invalid for {what}"))
    return errs


def _template_matches(spec: dict, path: Path) -> list[FieldError]:
    """`selector` vs template labels; a nil selector selects nothing, an empty one everything."""
    sel = spec.get("selector")
    labels = _d(_d(spec.get("template")).get("metadata")).get("labels")
    if sel is not None and not _d(sel).get("matchLabels") and not _d(sel).get("matchExpressions"):
        return []
    if sel is None or not selector_matches(_d(sel), _d(labels)):
        return [invalid(path.child("metadata", "labels"), go_string_map(labels),
                        "`selector` does not match template `labels`")]
    return []


def _template_for_controller(spec: dict, path: Path, kind: str, check_match: bool = True) -> list[FieldError]:
    tmpl = spec.get("template")
    if tmpl is None:
        return [required(path)]
    errs = _template_matches(spec, path) if check_match else []
    errs.extend(validate_pod_template_spec(tmpl, path))
    tspec = _d(_d(tmpl).get("spec"))
    rp = tspec.get("restartPolicy") or ""
    if rp != "Always":
        errs.append(not_supported(path.child("spec", "restartPolicy"), rp, ["Always"]))
    if tspec.get("activeDeadlineSeconds") is not None:
        if kind == "DaemonSet":
            errs.append(invalid(path.child("spec", "activeDeadlineSeconds"), tspec["activeDeadlineSeconds"],
                                "activeDeadlineSeconds in DaemonSet is not Supported"))
        else:
            errs.append(forbidden(path.child("spec", "activeDeadlineSeconds"),
                                  f"activeDeadlineSeconds in {kind} is not Supported"))
    return errs


def _int_or_percent_value(v: Any) -> tuple[int, bool]:
    if isinstance(v, str):
        if v.endswith("%") and v[:-1].isdigit():
            return int(v[:-1]), True
        return 0, False
    return as_int(v), False


def _validate_positive_int_or_percent(v: Any, path: Path) -> list[FieldError]:
    if v is None:
        return []
    if isinstance(v, str):
        return [invalid(path, go_int_or_string(v), m) for m in is_valid_percent(v)]
    if isinstance(v, int) and not isinstance(v, bool):
        return validate_nonnegative(v, path)
    return [invalid(path, v, "must be an integer or percentage (e.g '5%')")]


def _not_more_than_100(v: Any, path: Path) -> list[FieldError]:
    val, pct = _int_or_percent_value(v)
    if pct and val > 100:
        return [invalid(path, go_int_or_string(v), "must not be greater than 100%")]
    return []


def _validate_rolling(ru: dict, path: Path) -> list[FieldError]:
    mu, ms = ru.get("maxUnavailable"), ru.get("maxSurge")
    errs = _validate_positive_int_or_percent(mu, path.child("maxUnavailable"))
    errs.extend(_validate_positive_int_or_percent(ms, path.child("maxSurge")))
    if _int_or_percent_value(mu)[0] == 0 and _int_or_percent_value(ms)[0] == 0:
        errs.append(invalid(path.child("maxUnavailable"), go_int_or_string(mu if mu is not None else 0),
                            "may not be 0 when `maxSurge` is 0"))
    errs.extend(_not_more_than_100(mu, path.child("maxUnavailable")))
    return errs


# ---- Deployment / ReplicaSet

def validate_deployment(obj: dict) -> list[FieldError]:
    errs = validate_object_meta(obj.get("metadata"), True, name_is_dns_subdomain)
    spec = _d(obj.get("spec"))
    sp = Path("spec")
    errs.extend(validate_nonnegative(spec.get("replicas", 0), sp.child("replicas")))
    errs.extend(_selector_errors(spec, sp, "deployment"))
    errs.extend(_template_for_controller(spec, sp.child("template"), "ReplicaSet"))
    st = _d(spec.get("strategy"))
    stp = sp.child("strategy")
    t = st.get("type") or ""
    if t == "Recreate":
        if st.get("rollingUpdate") is not None:
            errs.append(forbidden(stp.child("rollingUpdate"), "may not be specified when strategy `type` is 'Recreate'"))
    elif t == "RollingUpdate":
        if st.get("rollingUpdate") is None:
            errs.append(required(stp.child("rollingUpdate"), "this should be defaulted and never be nil"))
        else:
            errs.extend(_validate_rolling(_d(st["rollingUpdate"]), stp.child("rollingUpdate")))
    else:
        errs.append(not_supported(stp.child("type"), t, ["Recreate", "RollingUpdate"]))
    mrs = as_int(spec.get("minReadySeconds"))
    errs.extend(validate_nonnegative(spec.get("minReadySeconds", 0), sp.child("minReadySeconds")))
    if spec.get("revisionHistoryLimit") is not None:
        errs.extend(validate_nonnegative(spec["revisionHistoryLimit"], sp.child("revisionHistoryLimit")))
    pds = spec.get("progressDeadlineSeconds")
    if pds is not None:
        errs.extend(validate_nonnegative(pds, sp.child("progressDeadlineSeconds")))
        if as_int(pds) <= mrs:
            errs.append(invalid(sp.child("progressDeadlineSeconds"), pds, "must be greater than minReadySeconds"))
    return errs


def validate_replicaset(obj: dict) -> list[FieldError]:
    errs = validate_object_meta(obj.get("metadata"), True, name_is_dns_subdomain)
    spec = _d(obj.get("spec"))
    sp = Path("spec")
    errs.extend(validate_nonnegative(spec.get("replicas", 0), sp.child("replicas")))
    errs.extend(validate_nonnegative(spec.get("minReadySeconds", 0), sp.child("minReadySeconds")))
    errs.extend(_selector_errors(spec, sp, "deployment"))
    errs.extend(_template_for_controller(spec, sp.child("template"), "ReplicaSet"))
    return errs


def _selector_immutable(obj: dict, old: dict) -> list[FieldError]:
    sel, osel = _d(obj.get("spec")).get("selector"), _d(old.get("spec")).get("selector")
    if sel != osel:
        return [immutable(Path("spec", "selector"), go_label_selector(sel))]
    return []


def validate_deployment_update(obj: dict, old: dict) -> list[FieldError]:
    errs = validate_object_meta_update(obj.get("metadata"), old.get("metadata"))
    errs.extend(validate_deployment(obj))
    errs.extend(_selector_immutable(obj, old))
    return errs


def validate_replicaset_update(obj: dict, old: dict) -> list[FieldError]:
    errs = validate_object_meta_update(obj.get("metadata"), old.get("metadata"))
    errs.extend(validate_replicaset(obj))
    errs.extend(_selector_immutable(obj, old))
    return errs


# ---- StatefulSet

def validate_statefulset(obj: dict) -> list[FieldError]:
    errs = validate_object_meta(obj.get("metadata"), True, name_is_dns_subdomain)
    spec = _d(obj.get("spec"))
    sp = Path("spec")
    pmp = spec.get("podManagementPolicy") or ""
    if not pmp:
        errs.append(required(sp.child("podManagementPolicy")))
    elif pmp not in ("OrderedReady", "Parallel"):
        errs.append(invalid(sp.child("podManagementPolicy"), pmp, "must be 'OrderedReady' or 'Parallel'"))
    us = _d(spec.get("updateStrategy"))
    ut = us.get("type") or ""
    if not ut:
        errs.append(required(sp.child("updateStrategy")))
    elif ut == "OnDelete":
        if us.get("rollingUpdate") is not None:
            errs.append(invalid(sp.child("updateStrategy", "rollingUpdate"), us["rollingUpdate"],
                                "only allowed for updateStrategy 'RollingUpdate'"))
    elif ut == "RollingUpdate":
        ru = us.get("rollingUpdate")
        if ru is not None:
            rp = sp.child("updateStrategy", "rollingUpdate")
            errs.extend(validate_nonnegative(_d(ru).get("partition", 0), rp.child("partition")))
            if _d(ru).get("maxUnavailable") is not None:
                mu = _d(ru)["maxUnavailable"]
                errs.extend(_validate_positive_int_or_percent(mu, rp.child("maxUnavailable")))
                if _int_or_percent_value(mu)[0] == 0:
                    errs.append(invalid(rp.child("maxUnavailable"), go_int_or_string(mu), "must be greater than 0"))
                errs.extend(_not_more_than_100(mu, rp.child("maxUnavailable")))
    else:
        errs.append(invalid(sp.child("updateStrategy"), us, "must be 'RollingUpdate' or 'OnDelete'"))
    pvc = spec.get("persistentVolumeClaimRetentionPolicy")
    if pvc is not None:
        for f in ("whenDeleted", "whenScaled"):
            v = _d(pvc).get(f) or ""
            if v not in ("Delete", "Retain"):
                errs.append(not_supported(sp.child("persistentVolumeClaimRetentionPolicy", f), v, ["Delete", "Retain"]))
    if spec.get("ordinals") is not None:
        errs.extend(validate_nonnegative(_d(spec["ordinals"]).get("start", 0), sp.child("ordinals", "start")))
    errs.extend(validate_nonnegative(spec.get("replicas", 0), sp.child("replicas")))
    errs.extend(validate_nonnegative(spec.get("minReadySeconds", 0), sp.child("minReadySeconds")))
    errs.extend(_selector_errors(spec, sp, "statefulset"))
    tmpl = spec.get("template")
    tp = sp.child("template")
    if tmpl is None:
        errs.append(required(tp))
    else:
        errs.extend(_template_matches(spec, tp))
        errs.extend(validate_pod_template_spec(tmpl, tp))
    tspec = _d(_d(tmpl).get("spec"))
    rp = tspec.get("restartPolicy") or ""
    if rp != "Always":
        errs.append(not_supported(tp.child("spec", "restartPolicy"), rp, ["Always"]))
    if tspec.get("activeDeadlineSeconds") is not None:
        errs.append(forbidden(tp.child("spec", "activeDeadlineSeconds"),
                              "activeDeadlineSeconds in StatefulSet is not Supported"))
    if spec.get("revisionHistoryLimit") is not None:
        errs.extend(validate_nonnegative(spec["revisionHistoryLimit"], sp.child("revisionHistoryLimit")))
    return errs


STS_UPDATE_FORBIDDEN = ("updates to statefulset spec for fields other than 'replicas', 'ordinals', "
                        "'template', 'updateStrategy', 'revisionHistoryLimit', "
                        "'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden")


def validate_statefulset_update(obj: dict, old: dict) -> list[FieldError]:
    errs = validate_object_meta_update(obj.get("metadata"), old.get("metadata"))
    errs.extend(validate_statefulset(obj))
    spec, ospec = copy.deepcopy(_d(obj.get("spec"))), _d(old.get("spec"))
    for f in ("replicas", "template", "updateStrategy", "minReadySeconds", "ordinals",
              "revisionHistoryLimit", "persistentVolumeClaimRetentionPolicy"):
        if f in ospec:
            spec[f] = ospec[f]
        else:
            spec.pop(f, None)
    if spec != ospec:
        errs.append(forbidden(Path("spec"), STS_UPDATE_FORBIDDEN))
    return errs


# ---- DaemonSet

def validate_daemonset(obj: dict) -> list[FieldError]:
    errs = validate_object_meta(obj.get("metadata"), True, name_is_dns_subdomain)
    spec = _d(obj.get("spec"))
    sp = Path("spec")
    sel = spec.get("selector")
    if sel is None:
        errs.append(required(sp.child("selector")))
    else:
        errs.extend(validate_label_selector(sel, sp.child("selector")))
    labels = _d(_d(spec.get("template")).get("metadata")).get("labels")
    if sel is None or not selector_matches(_d(sel), _d(labels)):
        errs.append(invalid(sp.child("template", "metadata", "labels"), go_string_map(labels),
                            "`selector` does not match template `labels`"))
    if sel is not None and not _d(sel).get("matchLabels") and not _d(sel).get("matchExpressions"):
        errs.append(invalid(sp.child("selector"), go_label_selector(sel), "empty selector is invalid for daemonset"))
    errs.extend(_template_for_controller(spec, sp.child("template"), "DaemonSet", check_match=False))
    errs.extend(validate_nonnegative(spec.get("minReadySeconds", 0), sp.child("minReadySeconds")))
    errs.extend(validate_nonnegative(spec.get("templateGeneration", 0), sp.child("templateGeneration")))
    us = _d(spec.get("updateStrategy"))
    up = sp.child("updateStrategy")
    t = us.get("type") or ""
    if t == "RollingUpdate":
        if us.get("rollingUpdate") is None:
            errs.append(required(up.child("rollingUpdate")))
        else:
            errs.extend(_validate_rolling(_d(us["rollingUpdate"]), up.child("rollingUpdate")))
    elif t != "OnDelete":
        errs.append(not_supported(up, t, ["RollingUpdate", "OnDelete"]))
    if spec.get("revisionHistoryLimit") is not None:
        errs.extend(validate_nonnegative(spec["revisionHistoryLimit"], sp.child("revisionHistoryLimit")))
    return errs


def validate_daemonset_update(obj: dict, old: dict) -> list[FieldError]:
    errs = validate_object_meta_update(obj.get("metadata"), old.get("metadata"))
    errs.extend(validate_daemonset(obj))
    errs.extend(_selector_immutable(obj, old))
    return errs


def validate_controller_revision(obj: dict) -> list[FieldError]:
    errs = validate_object_meta(obj.get("metadata"), True, name_is_dns_subdomain)
    errs.extend(validate_nonnegative(obj.get("revision", 0), Path("revision")))
    return errs


def validate_controller_revision_update(obj: dict, old: dict) -> list[FieldError]:
    errs = validate_object_meta_update(obj.get("metadata"), old.get("metadata"))
    errs.extend(validate_controller_revision(obj))
    if obj.get("data") != old.get("data"):
        errs.append(immutable(Path("data"), obj.get("data")))
    return errs
