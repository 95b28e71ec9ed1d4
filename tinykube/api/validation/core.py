"""core/v1 validation (pkg/apis/core/validation): Service, Pod, Endpoints, ConfigMap, Secret,
Namespace, Node, Event, ServiceAccount."""
from __future__ import annotations

import base64
from typing import Any

from tinykube.api.errors import FieldError

from .common import (
    GoValue, Path, as_int, duplicate, forbidden, go_quote, go_string_slice, immutable, invalid,
    is_config_map_key, is_dns1123_subdomain, is_qualified_name,
    is_valid_port_name, is_valid_port_num, name_is_dns1035_label, name_is_dns_label,
    name_is_dns_subdomain, not_supported, parse_ip, required, too_long, validate_annotations,
    validate_cidr, validate_dns1123_label, validate_dns1123_subdomain, validate_finalizer_name,
    validate_ip, validate_labels, validate_nonnegative, validate_non_special_ip,
    validate_object_meta, validate_object_meta_update, validate_port_num_or_name,
    validate_qualified_name,
)

SUPPORTED_PROTOCOLS = ["SCTP", "TCP", "UDP"]
SERVICE_TYPES = ["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"]
SESSION_AFFINITY = ["ClientIP", "None"]
IP_FAMILIES = ["IPv4", "IPv6"]
IP_FAMILY_POLICIES = ["PreferDualStack", "RequireDualStack", "SingleStack"]
TRAFFIC_POLICIES = ["Cluster", "Local"]
TRAFFIC_DISTRIBUTIONS = ["PreferClose"]
MAX_CLIENT_IP_AFFINITY_SECONDS = 86400
LB_SOURCE_RANGES_ANNOTATION = "service.beta.kubernetes.io/load-balancer-source-ranges"
MAX_SECRET_SIZE = 1 * 1024 * 1024


def _d(x: Any) -> dict:
    return x if isinstance(x, dict) else {}


def _l(x: Any) -> list:
    return x if isinstance(x, list) else []


# ============================================================================================
# Service

def is_headless(svc: dict) -> bool:
    spec = _d(svc.get("spec"))
    ips = _l(spec.get("clusterIPs"))
    return len(ips) > 0 and ips[0] == "None"


def externally_accessible(svc: dict) -> bool:
    spec = _d(svc.get("spec"))
    t = spec.get("type")
    return t in ("LoadBalancer", "NodePort") or (t == "ClusterIP" and len(_l(spec.get("externalIPs"))) > 0)


def needs_health_check(svc: dict) -> bool:
    spec = _d(svc.get("spec"))
    return spec.get("type") == "LoadBalancer" and spec.get("externalTrafficPolicy") == "Local"


def go_service_port(protocol: str, port: int) -> GoValue:
    """%#v of the core.ServicePort key used in the duplicate-port error."""
    return GoValue(
        f"core.ServicePort{{Name:\"\", Protocol:{go_quote(protocol)}, AppProtocol:(*string)(nil), "
        f"Port:{port}, TargetPort:intstr.IntOrString{{Type:0, IntVal:0, StrVal:\"\"}}, NodePort:0}}")


def go_ip_families(fams: list | None) -> GoValue:
    if fams is None:
        return GoValue("[]core.IPFamily(nil)")
    return GoValue("[]core.IPFamily{" + ", ".join(go_quote(str(f)) for f in fams) + "}")


def _validate_service_port(sp: dict, require_name: bool, names: set, path: Path) -> list[FieldError]:
    errs: list[FieldError] = []
    name = sp.get("name") or ""
    if require_name and not name:
        errs.append(required(path.child("name")))
    elif name:
        errs.extend(validate_dns1123_label(name, path.child("name")))
        if name in names:
            errs.append(duplicate(path.child("name"), name))
        else:
            names.add(name)
    port = sp.get("port", 0)
    errs.extend(invalid(path.child("port"), port, m) for m in is_valid_port_num(port))
    proto = sp.get("protocol") or ""
    if not proto:
        errs.append(required(path.child("protocol")))
    elif proto not in SUPPORTED_PROTOCOLS:
        errs.append(not_supported(path.child("protocol"), proto, SUPPORTED_PROTOCOLS))
    tp = sp.get("targetPort", 0)
    errs.extend(validate_port_num_or_name(tp if tp is not None else 0, path.child("targetPort")))
    if sp.get("appProtocol") is not None:
        errs.extend(validate_qualified_name(str(sp["appProtocol"]), path.child("appProtocol")))
    return errs


def _validate_cluster_ips_related(svc: dict) -> list[FieldError]:
    spec = _d(svc.get("spec"))
    if spec.get("type") == "ExternalName":
        return []
    errs: list[FieldError] = []
    sp = Path("spec")
    ips_path = sp.child("clusterIPs")
    cip = spec.get("clusterIP") or ""
    ips = _l(spec.get("clusterIPs"))
    has_invalid = False
    if cip:
        if not ips:
            errs.append(required(ips_path))
        elif ips[0] != cip:
            errs.append(invalid(ips_path, go_string_slice(ips), "first value must match `clusterIP`"))
    elif ips:
        errs.append(invalid(ips_path, go_string_slice(ips), "must be empty when `clusterIP` is not specified"))
    fams = spec.get("ipFamilies")
    seen: set = set()
    for i, f in enumerate(_l(fams)):
        if f not in IP_FAMILIES:
            errs.append(not_supported(sp.child("ipFamilies").index(i), f, IP_FAMILIES))
        if f in seen:
            errs.append(duplicate(sp.child("ipFamilies").index(i), f))
        seen.add(f)
    pol = spec.get("ipFamilyPolicy")
    if pol is not None and pol not in IP_FAMILY_POLICIES:
        errs.append(not_supported(sp.child("ipFamilyPolicy"), pol, IP_FAMILY_POLICIES))
    for i, ip in enumerate(ips):
        if i == 0 and ip == "None":
            if len(ips) > 1:
                has_invalid = True
                errs.append(invalid(ips_path, go_string_slice(ips), "'None' must be the first and only value"))
            continue
        e = validate_ip(ips_path.index(i), ip)
        has_invalid = has_invalid or bool(e)
        errs.extend(e)
    if len(ips) > 2:
        has_invalid = True
        errs.append(invalid(ips_path, go_string_slice(ips), "may only hold up to 2 values"))
    if has_invalid:
        return errs
    if len(ips) > 1:
        versions = {parse_ip(ip).version for ip in ips}
        if len(versions) != 2:
            errs.append(invalid(ips_path, go_string_slice(ips), "may specify no more than one IP for each IP family"))
    fams_l = _l(fams)
    if not is_headless(svc) and ips and fams_l:
        for i, ip in enumerate(ips):
            if i > len(fams_l) - 1:
                break
            v6 = parse_ip(ip).version == 6
            if fams_l[i] == "IPv4" and v6:
                errs.append(invalid(ips_path.index(i), ip, f"expected an IPv4 value as indicated by `ipFamilies[{i}]`"))
            if fams_l[i] == "IPv6" and not v6:
                errs.append(invalid(ips_path.index(i), ip, f"expected an IPv6 value as indicated by `ipFamilies[{i}]`"))
    return errs


def _validate_lb_class(old: dict | None, svc: dict) -> list[FieldError]:
    errs: list[FieldError] = []
    spec = _d(svc.get("spec"))
    path = Path("spec", "loadBalancerClass")
    lbc = spec.get("loadBalancerClass")
    if old is not None:
        ospec = _d(old.get("spec"))
        if ospec.get("type") == "LoadBalancer" and spec.get("type") == "LoadBalancer":
            if ospec.get("loadBalancerClass") != lbc:
                errs.append(invalid(path, lbc, "may not change once set"))
    if lbc is not None:
        if spec.get("type") != "LoadBalancer":
            errs.append(forbidden(path, "may only be used when service type is 'LoadBalancer'"))
        else:
            errs.extend(validate_qualified_name(str(lbc), path))
    return errs


def _validate_external_traffic_policy(svc: dict) -> list[FieldError]:
    errs: list[FieldError] = []
    spec = _d(svc.get("spec"))
    sp = Path("spec")
    etp = spec.get("externalTrafficPolicy") or ""
    if not externally_accessible(svc):
        if etp:
            errs.append(invalid(sp.child("externalTrafficPolicy"), etp,
                                "may only be set for externally-accessible services"))
    else:
        if not etp:
            errs.append(required(sp.child("externalTrafficPolicy")))
        elif etp not in TRAFFIC_POLICIES:
            errs.append(not_supported(sp.child("externalTrafficPolicy"), etp, TRAFFIC_POLICIES))
    hc = as_int(spec.get("healthCheckNodePort"))
    if not needs_health_check(svc):
        if hc:
            errs.append(invalid(sp.child("healthCheckNodePort"), hc,
                                "may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'"))
    elif hc:
        # Kubernetes also requires the field here; tinykube validates before allocating,
        # so an unset value is left to the allocator.
        errs.extend(invalid(sp.child("healthCheckNodePort"), hc, m) for m in is_valid_port_num(hc))
    return errs


def validate_service(svc: dict) -> list[FieldError]:
    errs = validate_object_meta(svc.get("metadata"), True, name_is_dns1035_label)
    spec = _d(svc.get("spec"))
    sp = Path("spec")
    stype = spec.get("type") or ""
    ports = _l(spec.get("ports"))
    headless = is_headless(svc)
    if not ports and not headless and stype != "ExternalName":
        errs.append(required(sp.child("ports")))
    if stype == "LoadBalancer" and headless:
        errs.append(invalid(sp.child("clusterIPs").index(0), "None", "may not be set to 'None' for LoadBalancer services"))
    elif stype == "NodePort" and headless:
        errs.append(invalid(sp.child("clusterIPs").index(0), "None", "may not be set to 'None' for NodePort services"))
    elif stype == "ExternalName":
        if _l(spec.get("clusterIPs")):
            errs.append(forbidden(sp.child("clusterIPs"), "may not be set for ExternalName services"))
        if _l(spec.get("ipFamilies")):
            errs.append(forbidden(sp.child("ipFamilies"), "may not be set for ExternalName services"))
        if spec.get("ipFamilyPolicy") is not None:
            errs.append(forbidden(sp.child("ipFamilyPolicy"), "may not be set for ExternalName services"))
        cname = str(spec.get("externalName") or "").removesuffix(".")
        if cname:
            errs.extend(validate_dns1123_subdomain(cname, sp.child("externalName")))
        else:
            errs.append(required(sp.child("externalName")))

    names: set = set()
    for i, p in enumerate(ports):
        errs.extend(_validate_service_port(_d(p), len(ports) > 1, names, sp.child("ports").index(i)))

    if spec.get("selector") is not None:
        errs.extend(validate_labels(spec.get("selector"), sp.child("selector")))

    aff = spec.get("sessionAffinity") or ""
    if not aff:
        errs.append(required(sp.child("sessionAffinity")))
    elif aff not in SESSION_AFFINITY:
        errs.append(not_supported(sp.child("sessionAffinity"), aff, SESSION_AFFINITY))
    cfg_path = sp.child("sessionAffinityConfig")
    cfg = spec.get("sessionAffinityConfig")
    if aff == "ClientIP":
        when = "when session affinity type is ClientIP"
        if not isinstance(cfg, dict):
            errs.append(required(cfg_path, when))
        elif not isinstance(cfg.get("clientIP"), dict):
            errs.append(required(cfg_path.child("clientIP"), when))
        elif cfg["clientIP"].get("timeoutSeconds") is None:
            errs.append(required(cfg_path.child("clientIP", "timeoutSeconds"), when))
        else:
            t = cfg["clientIP"]["timeoutSeconds"]
            if not isinstance(t, int) or t <= 0 or t > MAX_CLIENT_IP_AFFINITY_SECONDS:
                errs.append(invalid(cfg_path.child("clientIP", "timeoutSeconds"), t,
                                    f"must be greater than 0 and less than {MAX_CLIENT_IP_AFFINITY_SECONDS}"))
    elif aff == "None" and cfg is not None:
        errs.append(forbidden(cfg_path, "must not be set when session affinity is None"))

    errs.extend(_validate_cluster_ips_related(svc))

    for i, ip in enumerate(_l(spec.get("externalIPs"))):
        p = sp.child("externalIPs").index(i)
        e = validate_ip(p, ip)
        errs.extend(e if e else validate_non_special_ip(p, ip))

    if not stype:
        errs.append(required(sp.child("type")))
    elif stype not in SERVICE_TYPES:
        errs.append(not_supported(sp.child("type"), stype, SERVICE_TYPES))

    if stype == "ClusterIP":
        for i, p in enumerate(ports):
            if as_int(_d(p).get("nodePort")):
                errs.append(forbidden(sp.child("ports").index(i).child("nodePort"),
                                      "may not be used when `type` is 'ClusterIP'"))

    seen_np: set = set()
    for i, p in enumerate(ports):
        p = _d(p)
        np = as_int(p.get("nodePort"))
        if not np:
            continue
        key = (p.get("protocol"), np)
        if key in seen_np:
            errs.append(duplicate(sp.child("ports").index(i).child("nodePort"), np))
        seen_np.add(key)
    seen_p: set = set()
    for i, p in enumerate(ports):
        p = _d(p)
        key = (p.get("protocol") or "", as_int(p.get("port")))
        if key in seen_p:
            errs.append(duplicate(sp.child("ports").index(i), go_service_port(*key)))
        seen_p.add(key)

    ann = _d(_d(svc.get("metadata")).get("annotations"))
    ranges = _l(spec.get("loadBalancerSourceRanges"))
    if ranges:
        fp = sp.child("LoadBalancerSourceRanges")
        if stype != "LoadBalancer":
            errs.append(forbidden(fp, "may only be used when `type` is 'LoadBalancer'"))
        for i, v in enumerate(ranges):
            errs.extend(validate_cidr(fp.index(i), str(v).strip()))
    elif LB_SOURCE_RANGES_ANNOTATION in ann:
        fp = Path("metadata", "annotations").key(LB_SOURCE_RANGES_ANNOTATION)
        if stype != "LoadBalancer":
            errs.append(forbidden(fp, "may only be used when `type` is 'LoadBalancer'"))
        val = str(ann[LB_SOURCE_RANGES_ANNOTATION] or "").strip()
        if val:
            for v in val.split(","):
                errs.extend(validate_cidr(fp, v.strip()))

    if spec.get("allocateLoadBalancerNodePorts") is not None and stype != "LoadBalancer":
        errs.append(forbidden(sp.child("allocateLoadBalancerNodePorts"),
                              "may only be used when `type` is 'LoadBalancer'"))
    if stype == "LoadBalancer" and spec.get("allocateLoadBalancerNodePorts") is None:
        # Kubernetes reports this one without the "spec." prefix.
        errs.append(required(Path("allocateLoadBalancerNodePorts")))

    errs.extend(_validate_lb_class(None, svc))
    errs.extend(_validate_external_traffic_policy(svc))

    itp = spec.get("internalTrafficPolicy")
    if itp is None:
        if stype in ("NodePort", "LoadBalancer", "ClusterIP"):
            errs.append(required(sp.child("internalTrafficPolicy")))
    elif itp not in TRAFFIC_POLICIES:
        errs.append(not_supported(sp.child("internalTrafficPolicy"), itp, TRAFFIC_POLICIES))
    td = spec.get("trafficDistribution")
    if td is not None and td not in TRAFFIC_DISTRIBUTIONS:
        errs.append(not_supported(sp.child("trafficDistribution"), td, TRAFFIC_DISTRIBUTIONS))
    return errs


def _validate_upgrade_downgrade_cluster_ips(old: dict, svc: dict) -> list[FieldError]:
    spec, ospec = _d(svc.get("spec")), _d(old.get("spec"))
    if spec.get("type") == "ExternalName" or ospec.get("type") == "ExternalName":
        return []
    if is_headless(old) and is_headless(svc):
        return []
    new_ips, old_ips = _l(spec.get("clusterIPs")), _l(ospec.get("clusterIPs"))
    p = Path("spec", "clusterIPs")
    v = go_string_slice(spec.get("clusterIPs"))
    errs: list[FieldError] = []
    if len(old_ips) == len(new_ips):
        for i, ip in enumerate(old_ips):
            if ip != new_ips[i]:
                errs.append(invalid(p.index(i), v, "may not change once set"))
    elif len(old_ips) > len(new_ips):
        if not new_ips:
            errs.append(invalid(p.index(0), v, "primary clusterIP can not be unset"))
        if old_ips and new_ips and new_ips[0] != old_ips[0]:
            errs.append(invalid(p.index(0), v, "may not change once set"))
        if len(new_ips) == 1 and spec.get("ipFamilyPolicy") != "SingleStack":
            errs.append(invalid(p.index(0), v,
                                "`ipFamilyPolicy` must be set to 'SingleStack' when releasing the secondary clusterIP"))
    else:
        if old_ips and new_ips[0] != old_ips[0]:
            errs.append(invalid(p.index(0), v, "may not change once set"))
    return errs


def _validate_upgrade_downgrade_ip_families(old: dict, svc: dict) -> list[FieldError]:
    spec, ospec = _d(svc.get("spec")), _d(old.get("spec"))
    if spec.get("type") == "ExternalName" or ospec.get("type") == "ExternalName":
        return []
    if is_headless(old) and is_headless(svc):
        return []
    new_f, old_f = _l(spec.get("ipFamilies")), _l(ospec.get("ipFamilies"))
    p = Path("spec", "ipFamilies")
    v = go_ip_families(spec.get("ipFamilies"))
    errs: list[FieldError] = []
    if len(old_f) == len(new_f):
        for i, f in enumerate(old_f):
            if f != new_f[i]:
                errs.append(invalid(p.index(0), v, "may not change once set"))
    elif len(old_f) > len(new_f):
        if not new_f:
            errs.append(invalid(p.index(0), v, "primary ipFamily can not be unset"))
        if old_f and new_f and new_f[0] != old_f[0]:
            errs.append(invalid(p.index(0), v, "may not change once set"))
        if len(new_f) == 1 and spec.get("ipFamilyPolicy") != "SingleStack":
            errs.append(invalid(p.index(0), v,
                                "`ipFamilyPolicy` must be set to 'SingleStack' when releasing the secondary ipFamily"))
    else:
        if old_f and new_f[0] != old_f[0]:
            errs.append(invalid(p.index(0), v, "may not change once set"))
    return errs


def validate_service_update(svc: dict, old: dict) -> list[FieldError]:
    errs = validate_object_meta_update(svc.get("metadata"), old.get("metadata"))
    errs.extend(_validate_upgrade_downgrade_cluster_ips(old, svc))
    errs.extend(_validate_upgrade_downgrade_ip_families(old, svc))
    ospec, spec = _d(old.get("spec")), _d(svc.get("spec"))
    if ospec.get("type") == "LoadBalancer" and spec.get("type") == "LoadBalancer" and \
            ospec.get("loadBalancerClass") != spec.get("loadBalancerClass"):
        errs.append(invalid(Path("spec", "loadBalancerClass"), spec.get("loadBalancerClass"),
                            "may not change once set"))
    if needs_health_check(old) and needs_health_check(svc):
        ohc = as_int(_d(old.get("spec")).get("healthCheckNodePort"))
        nhc = as_int(_d(svc.get("spec")).get("healthCheckNodePort"))
        if ohc != nhc:
            errs.append(immutable(Path("spec", "healthCheckNodePort"), nhc))
    errs.extend(validate_service(svc))
    return errs


def validate_service_status(svc: dict) -> list[FieldError]:
    errs: list[FieldError] = []
    spec = _d(svc.get("spec"))
    p = Path("status", "loadBalancer", "ingress")
    for i, ing in enumerate(_l(_d(_d(svc.get("status")).get("loadBalancer")).get("ingress"))):
        ing = _d(ing)
        ip = p.index(i)
        if spec.get("type") != "LoadBalancer":
            errs.append(forbidden(ip, "may only be used when `spec.type` is 'LoadBalancer'"))
        if ing.get("ip"):
            errs.extend(validate_ip(ip.child("ip"), ing["ip"]))
        if ing.get("ipMode") is not None:
            if not ing.get("ip"):
                errs.append(forbidden(ip.child("ipMode"), "may not be specified when `ip` is not"))
            elif ing["ipMode"] not in ("Proxy", "VIP"):
                errs.append(not_supported(ip.child("ipMode"), ing["ipMode"], ["Proxy", "VIP"]))
        elif ing.get("ip"):
            errs.append(required(ip.child("ipMode"), "must be specified when `ip` is set"))
        if ing.get("hostname"):
            errs.extend(validate_dns1123_subdomain(ing["hostname"], ip.child("hostname")))
            if parse_ip(ing["hostname"]) is not None:
                errs.append(invalid(ip.child("hostname"), ing["hostname"], "must be a DNS name, not an IP address"))
    return errs


# ============================================================================================
# Pod

RESTART_POLICIES = ["Always", "OnFailure", "Never"]
DNS_POLICIES = ["ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"]
PULL_POLICIES = ["Always", "IfNotPresent", "Never"]
TERMINATION_MESSAGE_POLICIES = ["File", "FallbackToLogsOnError"]
URI_SCHEMES = ["HTTP", "HTTPS"]
HANDLERS = ("exec", "httpGet", "tcpSocket", "grpc")


def _validate_handler(h: dict, path: Path, lifecycle: bool = False) -> list[FieldError]:
    errs: list[FieldError] = []
    n = 0
    kinds = HANDLERS + (("sleep",) if lifecycle else ())
    for k in kinds:
        if h.get(k) is None:
            continue
        if n > 0:
            errs.append(forbidden(path.child(k), "may not specify more than 1 handler type"))
            continue
        n += 1
        v = _d(h.get(k))
        kp = path.child(k)
        if k == "exec":
            if not _l(v.get("command")):
                errs.append(required(kp.child("command")))
        elif k == "httpGet":
            if not v.get("path"):
                errs.append(required(kp.child("path")))
            errs.extend(validate_port_num_or_name(v.get("port", 0), kp.child("port")))
            sch = v.get("scheme") or ""
            if sch not in URI_SCHEMES:
                errs.append(not_supported(kp.child("scheme"), sch, URI_SCHEMES))
        elif k == "tcpSocket":
            errs.extend(validate_port_num_or_name(v.get("port", 0), kp.child("port")))
        elif k == "grpc":
            port = v.get("port", 0)
            errs.extend(invalid(kp.child("port"), port, m) for m in is_valid_port_num(port))
    if n == 0:
        errs.append(required(path, "must specify a handler type"))
    return errs


def _validate_probe(probe: dict, path: Path) -> list[FieldError]:
    errs = _validate_handler(probe, path)
    for f in ("initialDelaySeconds", "timeoutSeconds", "periodSeconds", "successThreshold", "failureThreshold"):
        errs.extend(validate_nonnegative(probe.get(f, 0), path.child(f)))
    t = probe.get("terminationGracePeriodSeconds")
    if t is not None and as_int(t) <= 0:
        errs.append(invalid(path.child("terminationGracePeriodSeconds"), t, "must be greater than 0"))
    return errs


def _validate_container_ports(ports: list, path: Path) -> list[FieldError]:
    errs: list[FieldError] = []
    names: set = set()
    for i, p in enumerate(ports):
        p = _d(p)
        ip = path.index(i)
        name = p.get("name") or ""
        if name:
            errs.extend(invalid(ip.child("name"), name, m) for m in is_valid_port_name(name))
            if name in names:
                errs.append(duplicate(ip.child("name"), name))
            names.add(name)
        cp = p.get("containerPort", 0)
        if not cp:
            errs.append(required(ip.child("containerPort")))
        else:
            errs.extend(invalid(ip.child("containerPort"), cp, m) for m in is_valid_port_num(cp))
        hp = p.get("hostPort", 0)
        if hp:
            errs.extend(invalid(ip.child("hostPort"), hp, m) for m in is_valid_port_num(hp))
        proto = p.get("protocol") or ""
        if not proto:
            errs.append(required(ip.child("protocol")))
        elif proto not in SUPPORTED_PROTOCOLS:
            errs.append(not_supported(ip.child("protocol"), proto, SUPPORTED_PROTOCOLS))
    return errs


def _validate_containers(ctrs: list, path: Path, volumes: set, all_names: set, is_pod: bool,
                         init: bool = False) -> list[FieldError]:
    errs: list[FieldError] = []
    for i, c in enumerate(ctrs):
        c = _d(c)
        cp = path.index(i)
        name = c.get("name") or ""
        if not name:
            errs.append(required(cp.child("name")))
        else:
            errs.extend(validate_dns1123_label(name, cp.child("name")))
            if name in all_names:
                errs.append(duplicate(cp.child("name"), name))
            all_names.add(name)
        if is_pod and not c.get("image"):
            errs.append(required(cp.child("image")))
        ipp = c.get("imagePullPolicy") or ""
        if not ipp:
            errs.append(required(cp.child("imagePullPolicy")))
        elif ipp not in PULL_POLICIES:
            errs.append(not_supported(cp.child("imagePullPolicy"), ipp, PULL_POLICIES))
        tmp = c.get("terminationMessagePolicy") or ""
        if not tmp:
            errs.append(required(cp.child("terminationMessagePolicy")))
        elif tmp not in TERMINATION_MESSAGE_POLICIES:
            errs.append(not_supported(cp.child("terminationMessagePolicy"), tmp, TERMINATION_MESSAGE_POLICIES))
        errs.extend(_validate_container_ports(_l(c.get("ports")), cp.child("ports")))
        for j, e in enumerate(_l(c.get("env"))):
            if not _d(e).get("name"):
                errs.append(required(cp.child("env").index(j).child("name")))
        for j, m in enumerate(_l(c.get("volumeMounts"))):
            m = _d(m)
            mp = cp.child("volumeMounts").index(j)
            if not m.get("name"):
                errs.append(required(mp.child("name")))
            elif m["name"] not in volumes:
                errs.append(FieldError("NotFound", str(mp.child("name")), m["name"]))
            if not m.get("mountPath"):
                errs.append(required(mp.child("mountPath")))
        for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
            pr = c.get(probe)
            if pr is None:
                continue
            if init and c.get("restartPolicy") != "Always":
                errs.append(forbidden(cp.child(probe), "may not be set for init containers without restartPolicy=Always"))
                continue
            errs.extend(_validate_probe(_d(pr), cp.child(probe)))
            if probe in ("livenessProbe", "startupProbe") and as_int(_d(pr).get("successThreshold"), 1) != 1:
                errs.append(invalid(cp.child(probe, "successThreshold"), _d(pr).get("successThreshold"), "must be 1"))
        lc = _d(c.get("lifecycle"))
        for hook in ("postStart", "preStop"):
            if lc.get(hook) is not None:
                errs.extend(_validate_handler(_d(lc[hook]), cp.child("lifecycle", hook), lifecycle=True))
    return errs


def validate_pod_spec(spec: Any, path: Path, is_pod: bool = True) -> list[FieldError]:
    spec = _d(spec)
    errs: list[FieldError] = []
    volumes: set = set()
    for i, v in enumerate(_l(spec.get("volumes"))):
        vp = path.child("volumes").index(i)
        name = _d(v).get("name") or ""
        if not name:
            errs.append(required(vp.child("name")))
        else:
            errs.extend(validate_dns1123_label(name, vp.child("name")))
            if name in volumes:
                errs.append(duplicate(vp.child("name"), name))
            volumes.add(name)
    names: set = set()
    ctrs = _l(spec.get("containers"))
    errs.extend(_validate_containers(_l(spec.get("initContainers")), path.child("initContainers"),
                                     volumes, names, is_pod, init=True))
    if not ctrs:
        errs.append(required(path.child("containers")))
    errs.extend(_validate_containers(ctrs, path.child("containers"), volumes, names, is_pod))
    rp = spec.get("restartPolicy") or ""
    if not rp:
        errs.append(required(path.child("restartPolicy")))
    elif rp not in RESTART_POLICIES:
        errs.append(not_supported(path.child("restartPolicy"), rp, RESTART_POLICIES))
    dp = spec.get("dnsPolicy") or ""
    if not dp:
        errs.append(required(path.child("dnsPolicy")))
    elif dp not in DNS_POLICIES:
        errs.append(not_supported(path.child("dnsPolicy"), dp, DNS_POLICIES))
    dns_cfg = spec.get("dnsConfig")
    if dp == "None":
        if dns_cfg is None:
            errs.append(required(path.child("dnsConfig"), "must provide `dnsConfig` when `dnsPolicy` is None"))
        elif not _l(_d(dns_cfg).get("nameservers")):
            errs.append(required(path.child("dnsConfig", "nameservers"),
                                 "must provide at least one DNS nameserver when `dnsPolicy` is None"))
    if dns_cfg is not None:
        ns = _l(_d(dns_cfg).get("nameservers"))
        if len(ns) > 3:
            errs.append(invalid(path.child("dnsConfig", "nameservers"), go_string_slice(ns),
                                "must not have more than 3 nameservers"))
        for i, n in enumerate(ns):
            errs.extend(validate_ip(path.child("dnsConfig", "nameservers").index(i), n))
    for f in ("hostname", "subdomain"):
        if spec.get(f):
            errs.extend(validate_dns1123_label(spec[f], path.child(f)))
    if spec.get("nodeName"):
        errs.extend(invalid(path.child("nodeName"), spec["nodeName"], m)
                    for m in is_dns1123_subdomain(spec["nodeName"]))
    if spec.get("serviceAccountName"):
        errs.extend(invalid(path.child("serviceAccountName"), spec["serviceAccountName"], m)
                    for m in is_dns1123_subdomain(spec["serviceAccountName"]))
    ads = spec.get("activeDeadlineSeconds")
    if ads is not None and not 1 <= as_int(ads) <= 2147483647:
        errs.append(invalid(path.child("activeDeadlineSeconds"), ads, "must be between 1 and 2147483647, inclusive"))
    tg = spec.get("terminationGracePeriodSeconds")
    if tg is not None and not isinstance(tg, int):
        errs.append(invalid(path.child("terminationGracePeriodSeconds"), tg, "must be an integer"))
    errs.extend(validate_labels(spec.get("nodeSelector"), path.child("nodeSelector")))
    return errs


def validate_pod_template_spec(tmpl: Any, path: Path) -> list[FieldError]:
    tmpl = _d(tmpl)
    meta = _d(tmpl.get("metadata"))
    errs = validate_labels(meta.get("labels"), path.child("metadata", "labels"))
    errs.extend(validate_annotations(meta.get("annotations"), path.child("metadata", "annotations")))
    errs.extend(validate_pod_spec(tmpl.get("spec"), path.child("spec"), is_pod=False))
    return errs


POD_UPDATE_FORBIDDEN = (
    "pod updates may not change fields other than `spec.containers[*].image`,"
    "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` "
    "(only additions to existing tolerations),`spec.terminationGracePeriodSeconds` "
    "(allow it to be set to 1 if it was previously negative)")


def validate_pod(pod: dict) -> list[FieldError]:
    errs = validate_object_meta(pod.get("metadata"), True, name_is_dns_subdomain)
    errs.extend(validate_pod_spec(pod.get("spec"), Path("spec"), is_pod=True))
    return errs


def validate_pod_update(pod: dict, old: dict) -> list[FieldError]:
    errs = validate_object_meta_update(pod.get("metadata"), old.get("metadata"))
    errs.extend(validate_pod(pod))

    def mutable_stripped(spec: dict) -> dict:
        s = dict(_d(spec))
        for key in ("containers", "initContainers"):
            s[key] = [{k: v for k, v in _d(c).items() if k != "image"} for c in _l(s.get(key))]
        for key in ("activeDeadlineSeconds", "tolerations", "terminationGracePeriodSeconds"):
            s.pop(key, None)
        return s
    if mutable_stripped(pod.get("spec")) != mutable_stripped(old.get("spec")):
        errs.append(forbidden(Path("spec"), POD_UPDATE_FORBIDDEN))
    return errs


# ============================================================================================
# Endpoints

def _validate_endpoint_address(addr: dict, path: Path) -> list[FieldError]:
    ip = addr.get("ip", "")
    errs = validate_ip(path.child("ip"), ip)
    if addr.get("hostname"):
        errs.extend(validate_dns1123_label(addr["hostname"], path.child("hostname")))
    if addr.get("nodeName") is not None:
        errs.extend(invalid(path.child("nodeName"), addr["nodeName"], m)
                    for m in is_dns1123_subdomain(str(addr["nodeName"])))
    errs.extend(validate_non_special_ip(path.child("ip"), ip))
    return errs


def validate_endpoint_port(port: dict, require_name: bool, path: Path) -> list[FieldError]:
    errs: list[FieldError] = []
    name = port.get("name") or ""
    if require_name and not name:
        errs.append(required(path.child("name")))
    elif name:
        errs.extend(validate_dns1123_label(name, path.child("name")))
    pn = port.get("port", 0)
    errs.extend(invalid(path.child("port"), pn, m) for m in is_valid_port_num(pn))
    proto = port.get("protocol") or ""
    if not proto:
        errs.append(required(path.child("protocol")))
    elif proto not in SUPPORTED_PROTOCOLS:
        errs.append(not_supported(path.child("protocol"), proto, SUPPORTED_PROTOCOLS))
    if port.get("appProtocol") is not None:
        errs.extend(validate_qualified_name(str(port["appProtocol"]), path.child("appProtocol")))
    return errs


def validate_endpoints(ep: dict) -> list[FieldError]:
    errs = validate_object_meta(ep.get("metadata"), True, name_is_dns_subdomain)
    for i, ss in enumerate(_l(ep.get("subsets"))):
        ss = _d(ss)
        sp = Path("subsets").index(i)
        addrs, nr = _l(ss.get("addresses")), _l(ss.get("notReadyAddresses"))
        if not addrs and not nr:
            errs.append(required(sp, "must specify `addresses` or `notReadyAddresses`"))
        for j, a in enumerate(addrs):
            errs.extend(_validate_endpoint_address(_d(a), sp.child("addresses").index(j)))
        for j, a in enumerate(nr):
            errs.extend(_validate_endpoint_address(_d(a), sp.child("notReadyAddresses").index(j)))
        ports = _l(ss.get("ports"))
        for j, p in enumerate(ports):
            errs.extend(validate_endpoint_port(_d(p), len(ports) > 1, sp.child("ports").index(j)))
    return errs


# ============================================================================================
# ConfigMap, Secret

def _b64len(v: Any) -> int:
    try:
        return len(base64.b64decode(str(v or ""), validate=False))
    except Exception:
        return len(str(v or ""))


def validate_configmap(cm: dict) -> list[FieldError]:
    errs = validate_object_meta(cm.get("metadata"), True, name_is_dns_subdomain)
    data, bdata = _d(cm.get("data")), _d(cm.get("binaryData"))
    total = 0
    for k, v in data.items():
        errs.extend(invalid(Path("data").key(k), k, m) for m in is_config_map_key(k))
        if k in bdata:
            errs.append(invalid(Path("data").key(k), k, "duplicate of key present in binaryData"))
        total += len(str(v or "").encode())
    for k, v in bdata.items():
        errs.extend(invalid(Path("binaryData").key(k), k, m) for m in is_config_map_key(k))
        total += _b64len(v)
    if total > MAX_SECRET_SIZE:
        errs.append(too_long("", MAX_SECRET_SIZE))
    return errs


def _validate_immutable_data(new: dict, old: dict, keys: tuple[str, ...]) -> list[FieldError]:
    errs: list[FieldError] = []
    if old.get("immutable") is True:
        if new.get("immutable") is not True:
            errs.append(forbidden(Path("immutable"), "field is immutable when `immutable` is set"))
        for k in keys:
            if (new.get(k) or {}) != (old.get(k) or {}):
                errs.append(forbidden(Path(k), "field is immutable when `immutable` is set"))
    return errs


def validate_secret(sec: dict) -> list[FieldError]:
    errs = validate_object_meta(sec.get("metadata"), True, name_is_dns_subdomain)
    data = _d(sec.get("data"))
    dp = Path("data")
    total = 0
    for k, v in data.items():
        errs.extend(invalid(dp.key(k), k, m) for m in is_config_map_key(k))
        total += _b64len(v)
    if total > MAX_SECRET_SIZE:
        errs.append(too_long(dp, MAX_SECRET_SIZE))
    t = sec.get("type") or ""
    ann = _d(_d(sec.get("metadata")).get("annotations"))
    if t == "kubernetes.io/service-account-token":
        if not ann.get("kubernetes.io/service-account.name"):
            errs.append(required(Path("metadata", "annotations").key("kubernetes.io/service-account.name")))
    elif t == "kubernetes.io/dockercfg":
        if ".dockercfg" not in data:
            errs.append(required(dp.key(".dockercfg")))
    elif t == "kubernetes.io/dockerconfigjson":
        if ".dockerconfigjson" not in data:
            errs.append(required(dp.key(".dockerconfigjson")))
    elif t == "kubernetes.io/basic-auth":
        if "username" not in data and "password" not in data:
            errs.append(required(dp.key("username")))
            errs.append(required(dp.key("password")))
    elif t == "kubernetes.io/ssh-auth":
        if not data.get("ssh-privatekey"):
            errs.append(required(dp.key("ssh-privatekey")))
    elif t == "kubernetes.io/tls":
        if "tls.crt" not in data:
            errs.append(required(dp.key("tls.crt")))
        if "tls.key" not in data:
            errs.append(required(dp.key("tls.key")))
    return errs


def validate_secret_update(sec: dict, old: dict) -> list[FieldError]:
    errs = validate_object_meta_update(sec.get("metadata"), old.get("metadata"))
    if (sec.get("type") or "") != (old.get("type") or ""):
        errs.append(immutable(Path("type"), sec.get("type") or ""))
    errs.extend(_validate_immutable_data(sec, old, ("data",)))
    errs.extend(validate_secret(sec))
    return errs


def validate_configmap_update(cm: dict, old: dict) -> list[FieldError]:
    errs = validate_object_meta_update(cm.get("metadata"), old.get("metadata"))
    errs.extend(_validate_immutable_data(cm, old, ("data", "binaryData")))
    errs.extend(validate_configmap(cm))
    return errs


# ============================================================================================
# Namespace, Node, ServiceAccount, Event

def validate_namespace(ns: dict) -> list[FieldError]:
    errs = validate_object_meta(ns.get("metadata"), False, name_is_dns_label)
    for f in _l(_d(ns.get("spec")).get("finalizers")):
        errs.extend(validate_finalizer_name(str(f), Path("spec", "finalizers")))
    phase = _d(ns.get("status")).get("phase")
    if phase and phase not in ("Active", "Terminating"):
        errs.append(not_supported(Path("status", "phase"), phase, ["Active", "Terminating"]))
    return errs


def validate_node(node: dict) -> list[FieldError]:
    errs = validate_object_meta(node.get("metadata"), False, name_is_dns_subdomain)
    spec = _d(node.get("spec"))
    cidrs = _l(spec.get("podCIDRs"))
    if spec.get("podCIDR"):
        errs.extend(validate_cidr(Path("spec", "podCIDR"), spec["podCIDR"]))
    for i, c in enumerate(cidrs):
        errs.extend(validate_cidr(Path("spec", "podCIDRs").index(i), c))
    if spec.get("podCIDR") and cidrs and cidrs[0] != spec["podCIDR"]:
        errs.append(invalid(Path("spec", "podCIDRs"), go_string_slice(cidrs), "first value must match `podCIDR`"))
    effects = ["NoExecute", "NoSchedule", "PreferNoSchedule"]
    for i, t in enumerate(_l(spec.get("taints"))):
        t = _d(t)
        tp = Path("spec", "taints").index(i)
        errs.extend(invalid(tp.child("key"), t.get("key", ""), m) for m in is_qualified_name(str(t.get("key", ""))))
        if not t.get("effect"):
            errs.append(required(tp.child("effect")))
        elif t["effect"] not in effects:
            errs.append(not_supported(tp.child("effect"), t["effect"], effects))
    return errs


def validate_node_update(node: dict, old: dict) -> list[FieldError]:
    errs = validate_object_meta_update(node.get("metadata"), old.get("metadata"))
    ospec, spec = _d(old.get("spec")), _d(node.get("spec"))
    if ospec.get("podCIDR") and spec.get("podCIDR") != ospec.get("podCIDR"):
        errs.append(forbidden(Path("spec", "podCIDRs"), "node updates may not change podCIDR except from \"\" to valid"))
    errs.extend(validate_node(node))
    return errs


def validate_service_account(sa: dict) -> list[FieldError]:
    return validate_object_meta(sa.get("metadata"), True, name_is_dns_subdomain)


def validate_event(ev: dict, events_api: bool = False) -> list[FieldError]:
    """legacyValidateEvent; events.k8s.io objects are read through their v1 field names."""
    meta = _d(ev.get("metadata"))
    errs = validate_object_meta(meta, True, name_is_dns_subdomain)
    ns = meta.get("namespace") or ""
    if events_api:
        involved = _d(ev.get("regarding"))
        message = ev.get("note") or ""
    else:
        involved = _d(ev.get("involvedObject"))
        message = ev.get("message") or ""
    rc_name = "reportingController" if events_api else "reportingComponent"
    rc = ev.get("reportingController") if events_api else ev.get("reportingComponent")
    rc = rc or ""
    ins = involved.get("namespace") or ""
    if not ev.get("eventTime"):
        if not ins:
            if ns not in ("", "default"):
                errs.append(invalid(Path("involvedObject", "namespace"), ins, "does not match event.namespace"))
        elif ns != ins:
            errs.append(invalid(Path("involvedObject", "namespace"), ins, "does not match event.namespace"))
    else:
        if not ins and ns not in ("default", "kube-system"):
            errs.append(invalid(Path("involvedObject", "namespace"), ins, "does not match event.namespace"))
        if not rc:
            errs.append(required(Path(rc_name)))
        errs.extend(validate_qualified_name(rc, Path(rc_name)))
        ri = ev.get("reportingInstance") or ""
        if not ri:
            errs.append(required(Path("reportingInstance")))
        if len(ri) > 128:
            errs.append(invalid(Path("reportingInstance"), "", "can have at most 128 characters"))
        action = ev.get("action") or ""
        if not action:
            errs.append(required(Path("action")))
        if len(action) > 128:
            errs.append(invalid(Path("action"), "", "can have at most 128 characters"))
        reason = ev.get("reason") or ""
        if not reason:
            errs.append(required(Path("reason")))
        if len(reason) > 128:
            errs.append(invalid(Path("reason"), "", "can have at most 128 characters"))
        if len(message) > 1024:
            errs.append(invalid(Path("message"), "", "can have at most 1024 characters"))
    errs.extend(invalid(Path("namespace"), ns, m) for m in is_dns1123_subdomain(ns))
    return errs
