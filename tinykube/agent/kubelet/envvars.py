"""Container environment: Service variables, env/envFrom, $(VAR) expansion."""

from __future__ import annotations

import base64
import ipaddress
import os
import re
from typing import Any, Callable

_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")


class ConfigError(Exception):
    """The container cannot be configured (reason CreateContainerConfigError)."""


def _env_name(name: str) -> str:
    s = name.upper().replace("-", "_").replace(".", "_")
    if s and s[0].isdigit():
        s = "_" + s
    return s


def _has_cluster_ip(svc: dict) -> bool:
    ip = (svc.get("spec") or {}).get("clusterIP")
    return bool(ip) and ip != "None"


def _one_service_env(svc: dict) -> dict[str, str]:
    spec = svc.get("spec") or {}
    ip = spec["clusterIP"]
    name = _env_name(svc["metadata"]["name"])
    ports = spec.get("ports") or []
    url_ip = f"[{ip}]" if ipaddress.ip_address(ip).version == 6 else ip
    env: dict[str, str] = {f"{name}_SERVICE_HOST": ip}
    if not ports:
        return env
    p0 = ports[0]
    env[f"{name}_SERVICE_PORT"] = str(p0["port"])
    for p in ports:
        if p.get("name"):
            env[f"{name}_SERVICE_PORT_{p['name'].upper().replace('-', '_')}"] = str(p["port"])
    proto0 = (p0.get("protocol") or "TCP").lower()
    env[f"{name}_PORT"] = f"{proto0}://{url_ip}:{p0['port']}"
    for p in ports:
        proto = (p.get("protocol") or "TCP")
        prefix = f"{name}_PORT_{p['port']}_{proto.upper()}"
        env[prefix] = f"{proto.lower()}://{url_ip}:{p['port']}"
        env[prefix + "_PROTO"] = proto.lower()
        env[prefix + "_PORT"] = str(p["port"])
        env[prefix + "_ADDR"] = ip
    return env


def service_env(services: list[dict], namespace: str,
                enable_service_links: bool = True) -> dict[str, str]:
    """The Service environment variables Kubernetes gives a pod in ``namespace``."""
    chosen: dict[str, dict] = {}
    for svc in services:
        if not _has_cluster_ip(svc):
            continue
        md = svc.get("metadata") or {}
        sns, sname = md.get("namespace") or "default", md.get("name", "")
        if sns == namespace and enable_service_links:
            chosen[sname] = svc
    for svc in services:
        md = svc.get("metadata") or {}
        if (md.get("namespace") == "default" and md.get("name") == "kubernetes"
                and _has_cluster_ip(svc)):
            if namespace != "default" or "kubernetes" not in chosen:
                chosen["kubernetes"] = svc
    env: dict[str, str] = {}
    for name in sorted(chosen):
        env.update(_one_service_env(chosen[name]))
    return env


def expand(text: str, lookup: Callable[[str], str | None]) -> str:
    """Kubernetes' $(VAR) expansion: $$ escapes, unknown references stay as written."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c != "$" or i + 1 >= n:
            out.append(c)
            i += 1
            continue
        nxt = text[i + 1]
        if nxt == "$":
            out.append("$")
            i += 2
        elif nxt == "(":
            end = text.find(")", i + 2)
            if end < 0:
                out.append(text[i:])
                break
            name = text[i + 2:end]
            val = lookup(name)
            out.append(val if val is not None else text[i:end + 1])
            i = end + 1
        else:
            out.append("$")
            out.append(nxt)
            i += 2
    return "".join(out)


def _jsonpath_key(path: str, prefix: str) -> str | None:
    m = re.fullmatch(re.escape(prefix) + r"\[['\"](.+)['\"]\]", path)
    return m.group(1) if m else None


def field_ref(pod: dict, path: str) -> str:
    md = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    simple = {
        "metadata.name": md.get("name", ""),
        "metadata.namespace": md.get("namespace", "default"),
        "metadata.uid": md.get("uid", ""),
        "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", "default"),
        "status.hostIP": status.get("hostIP", ""),
        "status.podIP": status.get("podIP", ""),
        "status.hostIPs": ",".join(i.get("ip", "") for i in status.get("hostIPs") or []),
        "status.podIPs": ",".join(i.get("ip", "") for i in status.get("podIPs") or []),
    }
    if path in simple:
        return simple[path]
    if path == "metadata.labels":
        return "\n".join(f'{k}="{v}"' for k, v in sorted((md.get("labels") or {}).items()))
    if path == "metadata.annotations":
        return "\n".join(f'{k}="{v}"'
                         for k, v in sorted((md.get("annotations") or {}).items()))
    for prefix, src in (("metadata.labels", md.get("labels") or {}),
                        ("metadata.annotations", md.get("annotations") or {})):
        key = _jsonpath_key(path, prefix)
        if key is not None:
            return src.get(key, "")
    raise ConfigError(f"unsupported fieldPath: {path}")


def _quantity(q: Any) -> float:
    s = str(q)
    suffixes = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 1e3, "M": 1e6,
                "G": 1e9, "T": 1e12, "m": 1e-3}
    for suf, mul in suffixes.items():
        if s.endswith(suf):
            return float(s[: -len(suf)]) * mul
    return float(s)


def resource_field_ref(pod: dict, container: dict, ref: dict) -> str:
    import math
    res = container.get("resources") or {}
    resource = ref.get("resource", "")
    kind, _, what = resource.partition(".")
    values = res.get(kind) or {}
    if what in values:
        val = _quantity(values[what])
    elif kind == "requests" and what in (res.get("limits") or {}):
        val = _quantity(res["limits"][what])
    elif what == "cpu":
        val = float(os.cpu_count() or 1) if kind == "limits" else 0.0
    elif what == "memory":
        val = float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")) \
            if kind == "limits" else 0.0
    else:
        val = 0.0
    divisor = _quantity(ref.get("divisor") or "1") or 1
    return str(int(math.ceil(val / divisor)))


Lookup = Callable[[str, str], Any]


def _decode_secret(secret: dict) -> dict[str, str]:
    out = {k: base64.b64decode(v).decode(errors="replace")
           for k, v in (secret.get("data") or {}).items()}
    out.update(secret.get("stringData") or {})
    return out


def container_env(pod: dict, container: dict, svc_env: dict[str, str],
                  configmaps: dict[str, dict | None], secrets: dict[str, dict | None]
                  ) -> dict[str, str]:
    """The process environment of ``container``.

    ``configmaps``/``secrets`` map names to the objects (None when missing) the
    container refers to; see :func:`referenced_objects`."""
    env: dict[str, str] = dict(svc_env)
    for src in container.get("envFrom") or []:
        prefix = src.get("prefix", "")
        if "configMapRef" in src:
            ref = src["configMapRef"]
            obj = configmaps.get(ref.get("name", ""))
            if obj is None:
                if ref.get("optional"):
                    continue
                raise ConfigError(f'configmap "{ref.get("name")}" not found')
            data = dict(obj.get("data") or {})
        elif "secretRef" in src:
            ref = src["secretRef"]
            obj = secrets.get(ref.get("name", ""))
            if obj is None:
                if ref.get("optional"):
                    continue
                raise ConfigError(f'secret "{ref.get("name")}" not found')
            data = _decode_secret(obj)
        else:
            continue
        for k, v in data.items():
            name = prefix + k
            if _ENV_NAME.match(name):
                env[name] = v
    for e in container.get("env") or []:
        name = e["name"]
        if "valueFrom" in e:
            vf = e["valueFrom"]
            if "fieldRef" in vf:
                env[name] = field_ref(pod, vf["fieldRef"].get("fieldPath", ""))
            elif "resourceFieldRef" in vf:
                env[name] = resource_field_ref(pod, container, vf["resourceFieldRef"])
            elif "configMapKeyRef" in vf:
                ref = vf["configMapKeyRef"]
                obj = configmaps.get(ref.get("name", ""))
                data = (obj or {}).get("data") or {}
                if ref.get("key") in data:
                    env[name] = data[ref["key"]]
                elif not ref.get("optional"):
                    if obj is None:
                        raise ConfigError(f'configmap "{ref.get("name")}" not found')
                    raise ConfigError(f"couldn't find key {ref.get('key')} in ConfigMap "
                                      f"{pod['metadata'].get('namespace')}/{ref.get('name')}")
            elif "secretKeyRef" in vf:
                ref = vf["secretKeyRef"]
                obj = secrets.get(ref.get("name", ""))
                data = _decode_secret(obj) if obj else {}
                if ref.get("key") in data:
                    env[name] = data[ref["key"]]
                elif not ref.get("optional"):
                    if obj is None:
                        raise ConfigError(f'secret "{ref.get("name")}" not found')
                    raise ConfigError(f"couldn't find key {ref.get('key')} in Secret "
                                      f"{pod['metadata'].get('namespace')}/{ref.get('name')}")
        else:
            env[name] = expand(e.get("value", ""), env.get)
    return env


def expand_command(container: dict, env: dict[str, str]) -> tuple[list[str], list[str]]:
    cmd = [expand(c, env.get) for c in container.get("command") or []]
    args = [expand(a, env.get) for a in container.get("args") or []]
    return cmd, args


def referenced_objects(pod: dict) -> tuple[set[str], set[str]]:
    """Names of the ConfigMaps and Secrets the pod's containers and volumes use."""
    cms: set[str] = set()
    secs: set[str] = set()
    spec = pod.get("spec") or {}
    for c in (spec.get("initContainers") or []) + (spec.get("containers") or []):
        for src in c.get("envFrom") or []:
            if "configMapRef" in src:
                cms.add(src["configMapRef"].get("name", ""))
            if "secretRef" in src:
                secs.add(src["secretRef"].get("name", ""))
        for e in c.get("env") or []:
            vf = e.get("valueFrom") or {}
            if "configMapKeyRef" in vf:
                cms.add(vf["configMapKeyRef"].get("name", ""))
            if "secretKeyRef" in vf:
                secs.add(vf["secretKeyRef"].get("name", ""))
    for v in spec.get("volumes") or []:
        if "configMap" in v:
            cms.add(v["configMap"].get("name", ""))
        if "secret" in v:
            secs.add(v["secret"].get("secretName", ""))
        for s in (v.get("projected") or {}).get("sources") or []:
            if "configMap" in s:
                cms.add(s["configMap"].get("name", ""))
            if "secret" in s:
                secs.add(s["secret"].get("name", ""))
    return cms, secs
