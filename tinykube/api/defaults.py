"""Defaulting as Kubernetes does it on create and update: the v1 SetDefaults_* functions plus
what the registry strategies (PrepareForCreate / PrepareForUpdate) fill in.

`apply_defaults(res, obj, old=None)` changes `obj` in place. Metadata (uid, resourceVersion,
timestamps) is the API server's. Service ClusterIPs, ipFamilies, ipFamilyPolicy, nodePorts and
healthCheckNodePort come from `allocators.allocate_service`.
"""
from __future__ import annotations

import base64
from typing import Any

from tinykube.api.resources import Resource

DEFAULT_CLIENT_IP_AFFINITY_SECONDS = 10800


def _d(obj: dict, key: str) -> dict:
    v = obj.get(key)
    if not isinstance(v, dict):
        v = {}
        obj[key] = v
    return v


def _dd(x: Any) -> dict:
    return x if isinstance(x, dict) else {}


def _l(x: Any) -> list:
    return x if isinstance(x, list) else []


# ============================================================================================
# Service


def externally_accessible(spec: dict) -> bool:
    t = spec.get("type")
    return t in ("LoadBalancer", "NodePort") or (t == "ClusterIP" and bool(_l(spec.get("externalIPs"))))


def default_service(svc: dict) -> None:
    """SetDefaults_Service."""
    spec = _d(svc, "spec")
    if not spec.get("sessionAffinity"):
        spec["sessionAffinity"] = "None"
    if spec["sessionAffinity"] == "None":
        spec.pop("sessionAffinityConfig", None)
    if not spec.get("type"):
        spec["type"] = "ClusterIP"
    for p in _l(spec.get("ports")):
        if not isinstance(p, dict):
            continue
        if not p.get("protocol"):
            p["protocol"] = "TCP"
        tp = p.get("targetPort")
        if tp in (None, 0, ""):
            p["targetPort"] = p.get("port", 0)
    if spec["sessionAffinity"] == "ClientIP":
        cfg = spec.get("sessionAffinityConfig")
        if not isinstance(cfg, dict) or not isinstance(cfg.get("clientIP"), dict) \
                or cfg["clientIP"].get("timeoutSeconds") is None:
            spec["sessionAffinityConfig"] = {"clientIP": {"timeoutSeconds": DEFAULT_CLIENT_IP_AFFINITY_SECONDS}}
    if externally_accessible(spec) and not spec.get("externalTrafficPolicy"):
        spec["externalTrafficPolicy"] = "Cluster"
    if spec.get("internalTrafficPolicy") is None and spec["type"] in ("NodePort", "LoadBalancer", "ClusterIP"):
        spec["internalTrafficPolicy"] = "Cluster"
    if spec["type"] == "LoadBalancer":
        if spec.get("allocateLoadBalancerNodePorts") is None:
            spec["allocateLoadBalancerNodePorts"] = True
        for ing in _l(_dd(_dd(svc.get("status")).get("loadBalancer")).get("ingress")):
            if isinstance(ing, dict) and ing.get("ip") and ing.get("ipMode") is None:
                ing["ipMode"] = "VIP"


def _same(a: Any, b: Any) -> bool:
    return (a or None) == (b or None)


def normalize_cluster_ips(svc: dict, old: dict | None) -> None:
    """NormalizeClusterIPs: keep clusterIP and clusterIPs in sync."""
    spec = _d(svc, "spec")
    cip = spec.get("clusterIP") or ""
    ips = _l(spec.get("clusterIPs"))
    if old is None:
        if cip and not ips:
            spec["clusterIPs"] = [cip]
        return
    ospec = _dd(old.get("spec"))
    ocip = ospec.get("clusterIP") or ""
    oips = _l(ospec.get("clusterIPs"))
    if oips and not ips and ocip == cip:
        spec["clusterIPs"] = list(oips)
    if ocip != cip:
        if ocip and not cip:
            if _same(oips, spec.get("clusterIPs")):
                spec.pop("clusterIPs", None)
        elif _same(oips, spec.get("clusterIPs")):
            spec["clusterIPs"] = [cip]


def _needs_cluster_ip(spec: dict) -> bool:
    return spec.get("type") != "ExternalName"


def _needs_node_port(spec: dict) -> bool:
    return spec.get("type") in ("NodePort", "LoadBalancer")


def _needs_hc(spec: dict) -> bool:
    return spec.get("type") == "LoadBalancer" and spec.get("externalTrafficPolicy") == "Local"


def patch_allocated_values(svc: dict, old: dict) -> None:
    """patchAllocatedValues: a client that omits allocated values keeps them on update."""
    spec, ospec = _d(svc, "spec"), _dd(old.get("spec"))
    if _needs_cluster_ip(ospec) and _needs_cluster_ip(spec):
        if not spec.get("clusterIP") and ospec.get("clusterIP"):
            spec["clusterIP"] = ospec["clusterIP"]
        if not _l(spec.get("clusterIPs")) and _l(ospec.get("clusterIPs")):
            spec["clusterIPs"] = list(ospec["clusterIPs"])
        # tinykube choice: an omitted ipFamilies/ipFamilyPolicy keeps the allocated values too
        # (Kubernetes does this in the allocator, after validation).
        if not _l(spec.get("ipFamilies")) and _l(ospec.get("ipFamilies")):
            spec["ipFamilies"] = list(ospec["ipFamilies"])
        if spec.get("ipFamilyPolicy") is None and ospec.get("ipFamilyPolicy") is not None:
            spec["ipFamilyPolicy"] = ospec["ipFamilyPolicy"]
    if _needs_node_port(ospec) and _needs_node_port(spec):
        def used(s: dict) -> set:
            return {p.get("nodePort") for p in _l(s.get("ports")) if isinstance(p, dict) and p.get("nodePort")}
        taken = used(ospec) & used(spec)
        by_name = {(p.get("name") or ""): p.get("nodePort") for p in _l(ospec.get("ports")) if isinstance(p, dict)}
        for p in _l(spec.get("ports")):
            if isinstance(p, dict) and not p.get("nodePort"):
                v = by_name.get(p.get("name") or "")
                if v and v not in taken:
                    p["nodePort"] = v
    if _needs_hc(ospec) and _needs_hc(spec):
        if not spec.get("healthCheckNodePort") and ospec.get("healthCheckNodePort"):
            spec["healthCheckNodePort"] = ospec["healthCheckNodePort"]


def drop_type_dependent_fields(svc: dict, old: dict) -> None:
    """dropTypeDependentFields: wipe what the new type no longer uses, unless the user changed it."""
    spec, ospec = _d(svc, "spec"), _dd(old.get("spec"))
    if _needs_cluster_ip(ospec) and not _needs_cluster_ip(spec):
        if _same(ospec.get("clusterIP"), spec.get("clusterIP")) and _same(ospec.get("clusterIPs"), spec.get("clusterIPs")):
            spec.pop("clusterIP", None)
            spec.pop("clusterIPs", None)
        if _same(ospec.get("ipFamilies"), spec.get("ipFamilies")):
            spec.pop("ipFamilies", None)
        if ospec.get("ipFamilyPolicy") == spec.get("ipFamilyPolicy"):
            spec.pop("ipFamilyPolicy", None)
    if _needs_node_port(ospec) and not _needs_node_port(spec):
        onps = [_dd(p).get("nodePort") or 0 for p in _l(ospec.get("ports"))]
        nnps = [_dd(p).get("nodePort") or 0 for p in _l(spec.get("ports"))]
        # sameNodePorts: every node port of the new object is one the old object had
        if all(n == 0 or n in onps for n in nnps):
            for p in _l(spec.get("ports")):
                if isinstance(p, dict):
                    p.pop("nodePort", None)
    if _needs_hc(ospec) and not _needs_hc(spec):
        if (ospec.get("healthCheckNodePort") or 0) == (spec.get("healthCheckNodePort") or 0):
            spec.pop("healthCheckNodePort", None)
    if ospec.get("type") == "LoadBalancer" and spec.get("type") != "LoadBalancer":
        if spec.get("allocateLoadBalancerNodePorts") is not None and \
                spec.get("allocateLoadBalancerNodePorts") == ospec.get("allocateLoadBalancerNodePorts"):
            spec.pop("allocateLoadBalancerNodePorts", None)
        if ospec.get("loadBalancerClass") == spec.get("loadBalancerClass"):
            spec.pop("loadBalancerClass", None)
    if externally_accessible(ospec) and not externally_accessible(spec):
        if ospec.get("externalTrafficPolicy") == spec.get("externalTrafficPolicy"):
            spec.pop("externalTrafficPolicy", None)
    if spec.get("type") != "LoadBalancer":
        st = svc.get("status")
        if isinstance(st, dict) and "loadBalancer" in st:
            st["loadBalancer"] = {}


def prepare_service(svc: dict, old: dict | None) -> None:
    """The Service strategy's PrepareForCreate/PrepareForUpdate (idempotent)."""
    if old is None:
        normalize_cluster_ips(svc, None)
        return
    patch_allocated_values(svc, old)
    normalize_cluster_ips(svc, old)
    drop_type_dependent_fields(svc, old)


# ============================================================================================
# Pods and templates


def image_pull_policy(image: str) -> str:
    """Always for `:latest` or no tag (and no digest), else IfNotPresent (parsers.ParseImageName)."""
    if "@" in image:
        return "IfNotPresent"
    last = image.rsplit("/", 1)[-1]
    tag = last.split(":", 1)[1] if ":" in last else "latest"
    return "Always" if tag == "latest" else "IfNotPresent"


def _default_probe(probe: Any) -> None:
    if not isinstance(probe, dict):
        return
    probe.setdefault("timeoutSeconds", 1)
    probe.setdefault("periodSeconds", 10)
    probe.setdefault("successThreshold", 1)
    probe.setdefault("failureThreshold", 3)
    _default_handler(probe)


def _default_handler(h: dict) -> None:
    hg = h.get("httpGet")
    if isinstance(hg, dict):
        if not hg.get("path"):
            hg["path"] = "/"
        if not hg.get("scheme"):
            hg["scheme"] = "HTTP"
    g = h.get("grpc")
    if isinstance(g, dict) and g.get("service") is None:
        g["service"] = ""


def _default_container(c: Any, host_network: bool) -> None:
    if not isinstance(c, dict):
        return
    if not c.get("imagePullPolicy"):
        c["imagePullPolicy"] = image_pull_policy(str(c.get("image") or ""))
    if not c.get("terminationMessagePath"):
        c["terminationMessagePath"] = "/dev/termination-log"
    if not c.get("terminationMessagePolicy"):
        c["terminationMessagePolicy"] = "File"
    if c.get("resources") is None:
        c["resources"] = {}
    for p in _l(c.get("ports")):
        if isinstance(p, dict):
            if not p.get("protocol"):
                p["protocol"] = "TCP"
            if host_network and not p.get("hostPort") and p.get("containerPort"):
                p["hostPort"] = p["containerPort"]
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        _default_probe(c.get(probe))
    lc = c.get("lifecycle")
    if isinstance(lc, dict):
        for hook in ("postStart", "preStop"):
            if isinstance(lc.get(hook), dict):
                _default_handler(lc[hook])
    for e in _l(c.get("env")):
        vf = _dd(_dd(e).get("valueFrom"))
        fr = vf.get("fieldRef")
        if isinstance(fr, dict) and not fr.get("apiVersion"):
            fr["apiVersion"] = "v1"


def _default_volume(v: Any) -> None:
    if not isinstance(v, dict):
        return
    sources = [k for k in v if k != "name"]
    if not sources:
        v["emptyDir"] = {}
    for k in ("configMap", "secret", "projected", "downwardAPI"):
        if isinstance(v.get(k), dict) and v[k].get("defaultMode") is None:
            v[k]["defaultMode"] = 420
    hp = v.get("hostPath")
    if isinstance(hp, dict) and hp.get("type") is None:
        hp["type"] = ""


def default_pod_spec(spec: dict) -> None:
    """SetDefaults_PodSpec (applies to Pods and to pod templates)."""
    if not spec.get("dnsPolicy"):
        spec["dnsPolicy"] = "ClusterFirst"
    if not spec.get("restartPolicy"):
        spec["restartPolicy"] = "Always"
    if spec.get("securityContext") is None:
        spec["securityContext"] = {}
    if spec.get("terminationGracePeriodSeconds") is None:
        spec["terminationGracePeriodSeconds"] = 30
    if not spec.get("schedulerName"):
        spec["schedulerName"] = "default-scheduler"
    host_network = bool(spec.get("hostNetwork"))
    for key in ("initContainers", "containers", "ephemeralContainers"):
        for c in _l(spec.get(key)):
            _default_container(c, host_network)
    for v in _l(spec.get("volumes")):
        _default_volume(v)


DEFAULT_TOLERATIONS = [
    {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
    {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
]


def default_pod(pod: dict, old: dict | None = None) -> None:
    """SetDefaults_Pod + SetDefaults_PodSpec + what admission (ServiceAccount, Priority,
    DefaultTolerationSeconds) and the Pod strategy's PrepareForCreate add."""
    spec = _d(pod, "spec")
    default_pod_spec(spec)
    for c in _l(spec.get("containers")) + _l(spec.get("initContainers")):
        res = _dd(_dd(c).get("resources"))
        lim = res.get("limits")
        if isinstance(lim, dict) and lim:
            req = res.setdefault("requests", {})
            for k, v in lim.items():
                req.setdefault(k, v)
    if spec.get("enableServiceLinks") is None:
        spec["enableServiceLinks"] = True
    if old is not None:
        return
    if not spec.get("serviceAccountName"):
        spec["serviceAccountName"] = spec.get("serviceAccount") or "default"
    spec["serviceAccount"] = spec["serviceAccountName"]
    if spec.get("priority") is None:
        spec["priority"] = 0
    if spec.get("preemptionPolicy") is None:
        spec["preemptionPolicy"] = "PreemptLowerPriority"
    tols = spec.setdefault("tolerations", [])
    if isinstance(tols, list):
        for t in DEFAULT_TOLERATIONS:
            if not any(isinstance(x, dict) and x.get("key") == t["key"] and x.get("effect") in (None, "", "NoExecute")
                       for x in tols):
                tols.append(dict(t))
    pod["status"] = {"phase": "Pending", "qosClass": qos_class(spec)}


def qos_class(spec: dict) -> str:
    """qos.GetPodQOS for cpu and memory."""
    requests: dict = {}
    limits: dict = {}
    guaranteed = True
    for c in _l(spec.get("containers")) + _l(spec.get("initContainers")):
        res = _dd(_dd(c).get("resources"))
        req, lim = _dd(res.get("requests")), _dd(res.get("limits"))
        for k in ("cpu", "memory"):
            if req.get(k) not in (None, "0", 0):
                requests[k] = True
            if lim.get(k) not in (None, "0", 0):
                limits[k] = True
            if lim.get(k) in (None, "0", 0):
                guaranteed = False
            elif req.get(k) is not None and str(req.get(k)) != str(lim.get(k)):
                guaranteed = False
    if not requests and not limits:
        return "BestEffort"
    if guaranteed and set(limits) == {"cpu", "memory"}:
        return "Guaranteed"
    return "Burstable"


def _default_template(obj: dict) -> None:
    tmpl = _d(_d(obj, "spec"), "template")
    default_pod_spec(_d(tmpl, "spec"))


# ============================================================================================
# apps/v1


def default_deployment(obj: dict) -> None:
    spec = _d(obj, "spec")
    if spec.get("replicas") is None:
        spec["replicas"] = 1
    st = _d(spec, "strategy")
    if not st.get("type"):
        st["type"] = "RollingUpdate"
    if st["type"] == "RollingUpdate":
        ru = _d(st, "rollingUpdate")
        if ru.get("maxUnavailable") is None:
            ru["maxUnavailable"] = "25%"
        if ru.get("maxSurge") is None:
            ru["maxSurge"] = "25%"
    if spec.get("revisionHistoryLimit") is None:
        spec["revisionHistoryLimit"] = 10
    if spec.get("progressDeadlineSeconds") is None:
        spec["progressDeadlineSeconds"] = 600
    _default_template(obj)


def default_replicaset(obj: dict) -> None:
    spec = _d(obj, "spec")
    if spec.get("replicas") is None:
        spec["replicas"] = 1
    _default_template(obj)


def default_statefulset(obj: dict) -> None:
    spec = _d(obj, "spec")
    if not spec.get("podManagementPolicy"):
        spec["podManagementPolicy"] = "OrderedReady"
    us = _d(spec, "updateStrategy")
    if not us.get("type"):
        us["type"] = "RollingUpdate"
    if us["type"] == "RollingUpdate":
        ru = _d(us, "rollingUpdate")
        if ru.get("partition") is None:
            ru["partition"] = 0
    pvc = _d(spec, "persistentVolumeClaimRetentionPolicy")
    if not pvc.get("whenDeleted"):
        pvc["whenDeleted"] = "Retain"
    if not pvc.get("whenScaled"):
        pvc["whenScaled"] = "Retain"
    if spec.get("replicas") is None:
        spec["replicas"] = 1
    if spec.get("revisionHistoryLimit") is None:
        spec["revisionHistoryLimit"] = 10
    _default_template(obj)


def default_daemonset(obj: dict) -> None:
    spec = _d(obj, "spec")
    us = _d(spec, "updateStrategy")
    if not us.get("type"):
        us["type"] = "RollingUpdate"
    if us["type"] == "RollingUpdate":
        ru = _d(us, "rollingUpdate")
        if ru.get("maxUnavailable") is None:
            ru["maxUnavailable"] = 1
        if ru.get("maxSurge") is None:
            ru["maxSurge"] = 0
    if spec.get("revisionHistoryLimit") is None:
        spec["revisionHistoryLimit"] = 10
    _default_template(obj)


# ============================================================================================
# others


def default_namespace(ns: dict, old: dict | None) -> None:
    meta = _d(ns, "metadata")
    name = meta.get("name")
    if name:
        _d(meta, "labels")["kubernetes.io/metadata.name"] = name
    if old is None:
        spec = _d(ns, "spec")
        if "kubernetes" not in _l(spec.get("finalizers")):
            spec["finalizers"] = _l(spec.get("finalizers")) + ["kubernetes"]
        ns["status"] = {"phase": "Active"}
    else:
        st = _d(ns, "status")
        if not st.get("phase"):
            st["phase"] = "Active"


def default_endpoints(ep: dict) -> None:
    for ss in _l(ep.get("subsets")):
        for p in _l(_dd(ss).get("ports")):
            if isinstance(p, dict) and not p.get("protocol"):
                p["protocol"] = "TCP"


def default_endpoint_slice(es: dict) -> None:
    for p in _l(es.get("ports")):
        if isinstance(p, dict):
            if p.get("name") is None:
                p["name"] = ""
            if p.get("protocol") is None:
                p["protocol"] = "TCP"


def default_secret(sec: dict) -> None:
    if not sec.get("type"):
        sec["type"] = "Opaque"
    sd = sec.pop("stringData", None)
    if isinstance(sd, dict) and sd:
        data = _d(sec, "data")
        for k, v in sd.items():
            data[k] = base64.b64encode(str(v).encode()).decode()


def default_ingress_class(ic: dict) -> None:
    params = _dd(_dd(ic.get("spec")).get("parameters"))
    if params and params.get("scope") is None:
        params["scope"] = "Cluster"


def default_node(node: dict) -> None:
    st = node.get("status")
    if isinstance(st, dict) and st.get("capacity") and not st.get("allocatable"):
        st["allocatable"] = dict(st["capacity"])


_GENERATION_KINDS = {("apps", "deployments"), ("apps", "replicasets"), ("apps", "statefulsets"),
                     ("apps", "daemonsets"), ("networking.k8s.io", "ingresses"),
                     ("networking.k8s.io", "ingressclasses")}


def _generation(res: Resource, obj: dict, old: dict | None) -> None:
    if (res.group, res.plural) not in _GENERATION_KINDS:
        return
    meta = _d(obj, "metadata")
    if old is None:
        meta["generation"] = 1
        return
    og = _dd(old.get("metadata")).get("generation") or 1
    meta["generation"] = og + 1 if obj.get("spec") != old.get("spec") else og


def apply_defaults(res: Resource, obj: dict, old: dict | None = None) -> None:
    """Default `obj` (a create when `old` is None, else an update of `old`) in place."""
    if not isinstance(obj, dict):
        return
    key = (res.group, res.plural)
    if key == ("", "services"):
        default_service(obj)
        prepare_service(obj, old)
        if old is None:
            obj.pop("status", None)
            obj["status"] = {"loadBalancer": {}}
    elif key == ("", "pods"):
        default_pod(obj, old)
    elif key == ("apps", "deployments"):
        default_deployment(obj)
    elif key == ("apps", "replicasets"):
        default_replicaset(obj)
    elif key == ("apps", "statefulsets"):
        default_statefulset(obj)
    elif key == ("apps", "daemonsets"):
        default_daemonset(obj)
    elif key == ("", "namespaces"):
        default_namespace(obj, old)
    elif key == ("", "endpoints"):
        default_endpoints(obj)
    elif key == ("discovery.k8s.io", "endpointslices"):
        default_endpoint_slice(obj)
    elif key == ("", "secrets"):
        default_secret(obj)
    elif key == ("networking.k8s.io", "ingressclasses"):
        default_ingress_class(obj)
    elif key == ("", "nodes"):
        default_node(obj)
    if old is None and key in _GENERATION_KINDS and key != ("networking.k8s.io", "ingressclasses"):
        obj["status"] = {} if key != ("networking.k8s.io", "ingresses") else {"loadBalancer": {}}
    _generation(res, obj, old)
