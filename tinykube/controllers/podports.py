"""Pod → endpoint facts shared by the Endpoints and EndpointSlice controllers
(endpointslice util: ShouldPodBeInEndpoints, FindPort, ShouldSetHostname)."""
from __future__ import annotations

import ipaddress

from .util import meta


def should_pod_be_in_endpoints(pod: dict, include_terminating: bool) -> bool:
    status = pod.get("status") or {}
    if status.get("phase") in ("Succeeded", "Failed"):
        return False
    if not status.get("podIP") and not status.get("podIPs"):
        return False
    if not include_terminating and meta(pod).get("deletionTimestamp"):
        return False
    return True


def service_families(svc: dict) -> list[str]:
    spec = svc.get("spec") or {}
    fams = spec.get("ipFamilies") or []
    if not fams:
        ips = spec.get("clusterIPs") or ([spec["clusterIP"]] if spec.get("clusterIP") else [])
        for ip in ips:
            if ip and ip != "None":
                fams.append("IPv6" if ":" in ip else "IPv4")
                break
    return list(fams) or ["IPv4"]


def pod_ip_for_family(pod: dict, family: str) -> str | None:
    status = pod.get("status") or {}
    ips = [p.get("ip") for p in status.get("podIPs") or [] if p.get("ip")]
    if not ips and status.get("podIP"):
        ips = [status["podIP"]]
    want6 = family == "IPv6"
    for ip in ips:
        try:
            if (ipaddress.ip_address(ip).version == 6) == want6:
                return ip
        except ValueError:
            continue
    return None


def _containers_for_ports(pod: dict) -> list[dict]:
    spec = pod.get("spec") or {}
    out = list(spec.get("containers") or [])
    # restartable init containers (sidecars) serve ports too
    out += [c for c in spec.get("initContainers") or [] if c.get("restartPolicy") == "Always"]
    return out


def find_port(pod: dict, service_port: dict) -> int | None:
    """podutil.FindPort: a numeric targetPort as is; a named one resolved per pod against a container
    port with the same name and protocol; None when the pod has no such port."""
    target = service_port.get("targetPort")
    if target is None or target == "" or target == 0:
        target = service_port.get("port")
    if isinstance(target, int):
        return target
    if isinstance(target, str) and target.isdigit():
        return int(target)
    proto = service_port.get("protocol") or "TCP"
    for c in _containers_for_ports(pod):
        for p in c.get("ports") or []:
            if p.get("name") == target and (p.get("protocol") or "TCP") == proto:
                return p.get("containerPort")
    return None


def should_set_hostname(pod: dict, svc: dict) -> bool:
    pspec = pod.get("spec") or {}
    return bool(pspec.get("hostname")) and pspec.get("subdomain") == meta(svc).get("name") \
        and meta(svc).get("namespace") == meta(pod).get("namespace")


def is_headless(svc: dict) -> bool:
    return (svc.get("spec") or {}).get("clusterIP") == "None"


def has_selector(svc: dict) -> bool:
    spec = svc.get("spec") or {}
    return spec.get("selector") is not None and spec.get("type") != "ExternalName"


def target_ref(pod: dict) -> dict:
    md = meta(pod)
    return {"kind": "Pod", "namespace": md.get("namespace", ""), "name": md.get("name", ""),
            "uid": md.get("uid", "")}


def pod_trigger_time(pod: dict) -> str | None:
    """The time the pod last changed in a way endpoints care about: its Ready transition, else creation."""
    for c in (pod.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready" and c.get("lastTransitionTime"):
            return c["lastTransitionTime"]
    return meta(pod).get("creationTimestamp")
