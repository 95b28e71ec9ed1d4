"""networking.k8s.io/v1 (Ingress, IngressClass), discovery.k8s.io/v1 (EndpointSlice) and
coordination.k8s.io/v1 (Lease) validation."""
from __future__ import annotations

from typing import Any

from tinykube.api.errors import FieldError

from .common import (
    Path, as_int, duplicate, forbidden, immutable, invalid, is_dns1123_label, is_dns1123_subdomain,
    is_dns1035_label, is_domain_prefixed_path, is_fully_qualified_domain_name,
    is_valid_path_segment_name, is_valid_port_name, is_valid_port_num,
    is_wildcard_dns1123_subdomain, name_is_dns_subdomain, not_supported, parse_ip, required,
    too_long, too_many, validate_dns1123_label, validate_ipv4, validate_ipv6,
    validate_non_special_ip, validate_object_meta, validate_object_meta_update,
    validate_qualified_name,
)
from .core import SUPPORTED_PROTOCOLS


def _d(x: Any) -> dict:
    return x if isinstance(x, dict) else {}


def _l(x: Any) -> list:
    return x if isinstance(x, list) else []


# ============================================================================================
# Ingress

PATH_TYPES = ["Exact", "ImplementationSpecific", "Prefix"]
INVALID_PATH_SEQUENCES = ["//", "/./", "/../", "%2f", "%2F"]
INVALID_PATH_SUFFIXES = ["/..", "/."]
INGRESS_CLASS_ANNOTATION = "kubernetes.io/ingress.class"


def _validate_typed_local_ref(ref: dict, path: Path) -> list[FieldError]:
    errs: list[FieldError] = []
    if ref.get("apiGroup") is not None:
        errs.extend(invalid(path.child("apiGroup"), ref["apiGroup"], m)
                    for m in is_dns1123_subdomain(str(ref["apiGroup"])))
    kind = ref.get("kind") or ""
    if not kind:
        errs.append(required(path.child("kind"), "kind is required"))
    else:
        errs.extend(invalid(path.child("kind"), kind, m) for m in is_valid_path_segment_name(kind))
    name = ref.get("name") or ""
    if not name:
        errs.append(required(path.child("name"), "name is required"))
    else:
        errs.extend(invalid(path.child("name"), name, m) for m in is_valid_path_segment_name(name))
    return errs


def _validate_backend(b: dict, path: Path) -> list[FieldError]:
    has_res = b.get("resource") is not None
    has_svc = b.get("service") is not None
    if has_res and has_svc:
        return [invalid(path, "", "cannot set both resource and service backends")]
    if has_res:
        return _validate_typed_local_ref(_d(b["resource"]), path.child("resource"))
    if not has_svc:
        return [invalid(path, "", "resource or service backend is required")]
    errs: list[FieldError] = []
    svc = _d(b["service"])
    name = svc.get("name") or ""
    if not name:
        errs.append(required(path.child("service", "name")))
    else:
        errs.extend(invalid(path.child("service", "name"), name, m) for m in is_dns1035_label(name))
    port = _d(svc.get("port"))
    pname = port.get("name") or ""
    pnum = as_int(port.get("number"))
    if pname and pnum:
        errs.append(invalid(path, "", "cannot set both port name & port number"))
    elif pname:
        errs.extend(invalid(path.child("service", "port", "name"), pname, m) for m in is_valid_port_name(pname))
    elif pnum:
        errs.extend(invalid(path.child("service", "port", "number"), pnum, m) for m in is_valid_port_num(pnum))
    else:
        errs.append(required(path, "port name or number is required"))
    return errs


def _validate_http_path(p: dict, path: Path) -> list[FieldError]:
    errs: list[FieldError] = []
    pt = p.get("pathType")
    if pt is None:
        return [required(path.child("pathType"), "pathType must be specified")]
    value = p.get("path") or ""
    if pt in ("Exact", "Prefix"):
        if not value.startswith("/"):
            errs.append(invalid(path.child("path"), value, "must be an absolute path"))
        if value:
            for seq in INVALID_PATH_SEQUENCES:
                if seq in value:
                    errs.append(invalid(path.child("path"), value, f"must not contain '{seq}'"))
            for suf in INVALID_PATH_SUFFIXES:
                if value.endswith(suf):
                    errs.append(invalid(path.child("path"), value, f"cannot end with '{suf}'"))
    elif pt == "ImplementationSpecific":
        if value and not value.startswith("/"):
            errs.append(invalid(path.child("path"), value, "must be an absolute path"))
    else:
        errs.append(not_supported(path.child("pathType"), pt, PATH_TYPES))
    errs.extend(_validate_backend(_d(p.get("backend")), path.child("backend")))
    return errs


def _validate_host(host: str, path: Path) -> list[FieldError]:
    if "*" in host:
        return [invalid(path, host, m) for m in is_wildcard_dns1123_subdomain(host)]
    return [invalid(path, host, m) for m in is_dns1123_subdomain(host)]


def validate_ingress_spec(spec: dict, path: Path) -> list[FieldError]:
    errs: list[FieldError] = []
    rules = _l(spec.get("rules"))
    if not rules and spec.get("defaultBackend") is None:
        errs.append(invalid(path, None, "either `defaultBackend` or `rules` must be specified"))
    if spec.get("defaultBackend") is not None:
        errs.extend(_validate_backend(_d(spec["defaultBackend"]), path.child("defaultBackend")))
    for i, r in enumerate(rules):
        r = _d(r)
        rp = path.child("rules").index(i)
        host = r.get("host") or ""
        if host:
            if parse_ip(host) is not None:
                errs.append(invalid(rp.child("host"), host, "must be a DNS name, not an IP address"))
            errs.extend(_validate_host(host, rp.child("host")))
        if r.get("http") is not None:
            http = _d(r["http"])
            hp = rp.child("http")
            paths = _l(http.get("paths"))
            if not paths:
                errs.append(required(hp.child("paths")))
            for j, p in enumerate(paths):
                errs.extend(_validate_http_path(_d(p), hp.child("paths").index(j)))
    for i, t in enumerate(_l(spec.get("tls"))):
        t = _d(t)
        tp = path.child("tls").index(i)
        for j, h in enumerate(_l(t.get("hosts"))):
            errs.extend(_validate_host(str(h), tp.child("hosts").index(j)))
        sn = t.get("secretName") or ""
        if sn:
            errs.extend(invalid(tp.child("secretName"), sn, m) for m in is_dns1123_subdomain(sn))
    if spec.get("ingressClassName") is not None:
        icn = str(spec["ingressClassName"])
        errs.extend(invalid(path.child("ingressClassName"), icn, m) for m in is_dns1123_subdomain(icn))
    return errs


def validate_ingress(ing: dict, create: bool = True) -> list[FieldError]:
    meta = _d(ing.get("metadata"))
    errs = validate_object_meta(meta, True, name_is_dns_subdomain)
    spec = _d(ing.get("spec"))
    errs.extend(validate_ingress_spec(spec, Path("spec")))
    ann = _d(meta.get("annotations"))
    if create and INGRESS_CLASS_ANNOTATION in ann and spec.get("ingressClassName") is not None \
            and ann[INGRESS_CLASS_ANNOTATION] != spec["ingressClassName"]:
        errs.append(invalid(Path("annotations").child(INGRESS_CLASS_ANNOTATION), ann[INGRESS_CLASS_ANNOTATION],
                            "must match `ingressClassName` when both are specified"))
    errs.extend(validate_ingress_status(ing))
    return errs


def validate_ingress_status(ing: dict) -> list[FieldError]:
    errs: list[FieldError] = []
    p = Path("status", "loadBalancer", "ingress")
    for i, e in enumerate(_l(_d(_d(ing.get("status")).get("loadBalancer")).get("ingress"))):
        e = _d(e)
        ip = p.index(i)
        if e.get("ip") and parse_ip(e["ip"]) is None:
            errs.append(invalid(ip.child("ip"), e["ip"], "must be a valid IP address"))
        if e.get("hostname"):
            errs.extend(invalid(ip.child("hostname"), e["hostname"], m) for m in is_dns1123_subdomain(e["hostname"]))
            if parse_ip(e["hostname"]) is not None:
                errs.append(invalid(ip.child("hostname"), e["hostname"], "must be a DNS name, not an IP address"))
    return errs


def validate_ingress_update(ing: dict, old: dict) -> list[FieldError]:
    errs = validate_object_meta_update(ing.get("metadata"), old.get("metadata"))
    errs.extend(validate_ingress(ing, create=False))
    return errs


# ---- IngressClass

def validate_ingress_class(ic: dict) -> list[FieldError]:
    errs = validate_object_meta(ic.get("metadata"), False, name_is_dns_subdomain)
    spec = _d(ic.get("spec"))
    sp = Path("spec")
    ctrl = spec.get("controller") or ""
    if len(ctrl) > 250:
        errs.append(too_long(sp.child("controller"), 250))
    errs.extend(is_domain_prefixed_path(sp.child("controller"), ctrl))
    params = spec.get("parameters")
    if params is not None:
        params = _d(params)
        pp = sp.child("parameters")
        errs.extend(_validate_typed_local_ref(params, pp))
        scope = params.get("scope")
        if scope is None:
            errs.append(required(pp.child("scope")))
        elif scope not in ("Cluster", "Namespace"):
            errs.append(not_supported(pp.child("scope"), scope, ["Cluster", "Namespace"]))
        else:
            ns = params.get("namespace")
            if scope == "Namespace":
                if ns is None:
                    errs.append(required(pp.child("namespace"), "`parameters.scope` is set to 'Namespace'"))
                else:
                    errs.extend(invalid(pp.child("namespace"), ns, m) for m in is_dns1123_label(str(ns)))
            if scope == "Cluster" and ns is not None:
                errs.append(forbidden(pp.child("namespace"), "`parameters.scope` is set to 'Cluster'"))
    return errs


def validate_ingress_class_update(ic: dict, old: dict) -> list[FieldError]:
    errs = validate_object_meta_update(ic.get("metadata"), old.get("metadata"))
    new_c = _d(ic.get("spec")).get("controller")
    if new_c != _d(old.get("spec")).get("controller"):
        errs.append(immutable(Path("spec", "controller"), new_c))
    errs.extend(validate_ingress_class(ic))
    return errs


# ============================================================================================
# EndpointSlice

ADDRESS_TYPES = ["FQDN", "IPv4", "IPv6"]
MAX_ENDPOINTS = 1000
MAX_ADDRESSES = 100
MAX_PORTS = 20000


def validate_endpoint_slice(es: dict) -> list[FieldError]:
    errs = validate_object_meta(es.get("metadata"), True, name_is_dns_subdomain)
    at = es.get("addressType") or ""
    if not at:
        errs.append(required(Path("addressType")))
    elif at not in ADDRESS_TYPES:
        errs.append(not_supported(Path("addressType"), at, ADDRESS_TYPES))
    eps = _l(es.get("endpoints"))
    if len(eps) > MAX_ENDPOINTS:
        errs.append(too_many(Path("endpoints"), len(eps), MAX_ENDPOINTS))
    else:
        for i, ep in enumerate(eps):
            ep = _d(ep)
            ip = Path("endpoints").index(i)
            ap = ip.child("addresses")
            addrs = _l(ep.get("addresses"))
            if not addrs:
                errs.append(required(ap, "must contain at least 1 address"))
            elif len(addrs) > MAX_ADDRESSES:
                errs.append(too_many(ap, len(addrs), MAX_ADDRESSES))
            for j, a in enumerate(addrs):
                if at == "IPv4":
                    e = validate_ipv4(ap.index(j), a)
                    errs.extend(e if e else validate_non_special_ip(ap.index(j), a))
                elif at == "IPv6":
                    e = validate_ipv6(ap.index(j), a)
                    errs.extend(e if e else validate_non_special_ip(ap.index(j), a))
                elif at == "FQDN":
                    errs.extend(is_fully_qualified_domain_name(ap.index(j), str(a)))
            if ep.get("nodeName") is not None:
                errs.extend(invalid(ip.child("nodeName"), ep["nodeName"], m)
                            for m in is_dns1123_subdomain(str(ep["nodeName"])))
            if ep.get("hostname") is not None:
                errs.extend(validate_dns1123_label(str(ep["hostname"]), ip.child("hostname")))
    ports = _l(es.get("ports"))
    if len(ports) > MAX_PORTS:
        errs.append(too_many(Path("ports"), len(ports), MAX_PORTS))
    else:
        names: set = set()
        for i, p in enumerate(ports):
            p = _d(p)
            pp = Path("ports").index(i)
            name = p.get("name") or ""
            if name:
                errs.extend(validate_dns1123_label(name, pp.child("name")))
            if name in names:
                errs.append(duplicate(pp.child("name"), name))
            names.add(name)
            proto = p.get("protocol")
            if proto is None:
                errs.append(required(pp.child("protocol")))
            elif proto not in SUPPORTED_PROTOCOLS:
                errs.append(not_supported(pp.child("protocol"), proto, SUPPORTED_PROTOCOLS))
            if p.get("port") is not None:
                errs.extend(invalid(pp.child("port"), p["port"], m) for m in is_valid_port_num(p["port"]))
            if p.get("appProtocol") is not None:
                errs.extend(validate_qualified_name(str(p["appProtocol"]), pp.child("appProtocol")))
    return errs


def validate_endpoint_slice_update(es: dict, old: dict) -> list[FieldError]:
    errs = validate_object_meta_update(es.get("metadata"), old.get("metadata"))
    errs.extend(validate_endpoint_slice(es))
    if (es.get("addressType") or "") != (old.get("addressType") or ""):
        errs.append(immutable(Path("addressType"), es.get("addressType") or ""))
    return errs


# ============================================================================================
# Lease

def validate_lease(lease: dict) -> list[FieldError]:
    errs = validate_object_meta(lease.get("metadata"), True, name_is_dns_subdomain)
    spec = _d(lease.get("spec"))
    sp = Path("spec")
    lds = spec.get("leaseDurationSeconds")
    if lds is not None and as_int(lds) <= 0:
        errs.append(invalid(sp.child("leaseDurationSeconds"), lds, "must be greater than 0"))
    lt = spec.get("leaseTransitions")
    if lt is not None and as_int(lt) < 0:
        errs.append(invalid(sp.child("leaseTransitions"), lt, "must be greater than or equal to 0"))
    return errs
