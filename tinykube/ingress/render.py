"""Ingresses, Services, Secrets and IngressClasses in, an nginx.conf out. Pure: no I/O.

How Kubernetes' semantics map onto nginx:

- Hosts. One `server` per host. An exact host is an exact `server_name`, which nginx prefers to
  any wildcard or regex. A wildcard host `*.foo.com` matches exactly one extra label, which
  nginx's own `*.foo.com` does not (it matches any number), so it becomes the regex
  `~^[^.]+\\.foo\\.com$`. Rules without a host go to the catch-all `_` server (default_server).
- Paths. nginx picks an `=` location on exact equality, else the longest literal prefix location
  (`^~`: no regex can override it). Hence:
    Exact `/p`   -> `location = /p`
    Prefix `/p`  -> `location = /p` and `location ^~ /p/` (element-wise: `/p`, `/p/`, `/p/x`,
                    never `/px`); trailing slashes are dropped first, so `/p` and `/p/` are one
                    path; Prefix `/` -> `location /`.
  That gives "longest path wins" for free and "Exact beats Prefix on the same path" by letting
  the Exact path own the `= /p` location. ImplementationSpecific is treated as Prefix (a literal
  one: ingress-nginx would read it as a regex only with the use-regex annotation; an empty path
  is `/`).
- Conflicts. Ingresses are taken oldest first (creationTimestamp, then namespace/name), like
  ingress-nginx: the first Ingress to claim a host+path keeps it.
- Default backend. A host's unmatched requests go to the spec.defaultBackend of the (oldest)
  Ingress defining that host, if it has one; the catch-all server's to the defaultBackend of
  the oldest Ingress that has no rules (or else of one with host-less rules). Without any: 404
  from nginx itself, like ingress-nginx's built-in default backend.
- Backends. `proxy_pass http://<ClusterIP>:<service port>`; a port by name is resolved through
  the Service. A Service that does not exist, has no such port, is headless or ExternalName, or a
  `resource` backend: 503 (ingress-nginx answers 503 when a backend has no endpoints).
- TLS. Each spec.tls entry whose Secret has tls.crt and tls.key gives its hosts that
  certificate (SNI); other servers answer on 443 with the controller's self-signed default
  certificate, as ingress-nginx does. A missing or incomplete Secret: the default certificate.
- Redirect. tinykube does NOT redirect HTTP to HTTPS by default (ingress-nginx does, with 308;
  the book's cluster, GKE's load balancer, does not, and its transcript curls http:// on a TLS
  host). The ingress-nginx annotations `nginx.ingress.kubernetes.io/ssl-redirect: "true"` or
  `force-ssl-redirect: "true"` turn the 308 on for that Ingress's hosts.
- Classes. See `is_ours`.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

CONTROLLER = "k8s.io/ingress-nginx"
CLASS_NAME = "nginx"
DEFAULT_CLASS_ANNOTATION = "ingressclass.kubernetes.io/is-default-class"
LEGACY_CLASS_ANNOTATION = "kubernetes.io/ingress.class"
SSL_REDIRECT = "nginx.ingress.kubernetes.io/ssl-redirect"
FORCE_SSL_REDIRECT = "nginx.ingress.kubernetes.io/force-ssl-redirect"


# ---------------------------------------------------------------- classes

def _is_default(cls: dict) -> bool:
    ann = (cls.get("metadata") or {}).get("annotations") or {}
    return ann.get(DEFAULT_CLASS_ANNOTATION) == "true"


def _our_class_names(classes: list[dict]) -> set[str]:
    return {c["metadata"]["name"] for c in classes if (c.get("spec") or {}).get("controller") == CONTROLLER}


def is_ours(ing: dict, classes: list[dict]) -> bool:
    """Does this controller serve the Ingress?

    - spec.ingressClassName set: it is `nginx` or names an IngressClass whose controller is
      k8s.io/ingress-nginx;
    - else the deprecated annotation kubernetes.io/ingress.class, if set, is `nginx`;
    - else (no class at all, like the book's manifests) an IngressClass of ours is marked
      default (`ingressclass.kubernetes.io/is-default-class: "true"`)."""
    ours = _our_class_names(classes) | {CLASS_NAME}
    name = (ing.get("spec") or {}).get("ingressClassName")
    if name:
        return name in ours
    legacy = ((ing.get("metadata") or {}).get("annotations") or {}).get(LEGACY_CLASS_ANNOTATION)
    if legacy is not None:
        return legacy in ours
    return any(_is_default(c) and (c.get("spec") or {}).get("controller") == CONTROLLER for c in classes)


# ---------------------------------------------------------------- model

@dataclass
class Location:
    kind: str                  # "exact" | "prefix" | "root"
    path: str                  # the nginx location argument
    target: str                # rendered body lines (proxy_pass ... / return 503;)
    origin: str                # "<ns>/<ingress>" for comments


@dataclass
class Server:
    host: str                  # "" for the catch-all
    locations: dict[tuple[str, str], Location] = field(default_factory=dict)
    default: str | None = None  # body for `location /` when no Prefix `/` path claims it
    default_origin: str = ""
    cert: str | None = None    # relative path of a PEM (cert + key) file
    redirect: bool = False


def _quote(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _order(ing: dict) -> tuple:
    md = ing.get("metadata") or {}
    return (md.get("creationTimestamp") or "", md.get("namespace") or "", md.get("name") or "")


def _service_index(services: list[dict]) -> dict[tuple[str, str], dict]:
    return {((s.get("metadata") or {}).get("namespace", ""), s["metadata"]["name"]): s for s in services}


def backend_target(backend: dict | None, namespace: str, services: dict[tuple[str, str], dict]) -> str:
    """The body of a location that sends requests to this backend."""
    svc_ref = (backend or {}).get("service")
    if not svc_ref:
        return "return 503;"
    svc = services.get((namespace, svc_ref.get("name", "")))
    if svc is None:
        return "return 503;"
    spec = svc.get("spec") or {}
    ip = spec.get("clusterIP")
    if spec.get("type") == "ExternalName" or not ip or ip == "None":
        return "return 503;"
    want = svc_ref.get("port") or {}
    port = None
    for p in spec.get("ports") or []:
        if (p.get("protocol") or "TCP") != "TCP":
            continue
        if "number" in want and want["number"] is not None and p.get("port") == want["number"]:
            port = p["port"]
        elif want.get("name") and p.get("name") == want["name"]:
            port = p["port"]
        if port is not None:
            break
    if port is None:
        return "return 503;"
    host = f"[{ip}]" if ":" in ip else ip
    return f"proxy_pass http://{host}:{port};"


def normalize_prefix(path: str) -> str:
    """Kubernetes Prefix matching ignores empty elements: `/foo/` and `/foo//` are `/foo`."""
    elems = [e for e in path.split("/") if e]
    return "/" + "/".join(elems)


def _host_regex(host: str) -> str:
    """`*.foo.com` -> nginx regex server name matching exactly one leading label."""
    return "~^[^.]+" + re.escape(host[1:]).replace("\\-", "-") + "$"


def cert_file_name(namespace: str, secret: str, pem: bytes) -> str:
    digest = hashlib.sha256(pem).hexdigest()[:16]
    return f"certs/{namespace}_{secret}_{digest}.pem"


def _secret_pem(secret: dict | None) -> bytes | None:
    import base64
    data = (secret or {}).get("data") or {}
    crt, key = data.get("tls.crt"), data.get("tls.key")
    if not crt or not key:
        return None
    try:
        c, k = base64.b64decode(crt), base64.b64decode(key)
    except ValueError:
        return None
    if b"-----BEGIN" not in c or b"-----BEGIN" not in k:
        return None
    return c.rstrip(b"\n") + b"\n" + k.rstrip(b"\n") + b"\n"


def _truthy(v: str | None) -> bool:
    return (v or "").strip().lower() == "true"


# ---------------------------------------------------------------- build

@dataclass
class Rendered:
    conf: str
    files: dict[str, bytes]         # relative path (under the ingress dir) -> content
    ingresses: list[tuple[str, str]]  # (namespace, name) of the Ingresses served
    tls_ingresses: set[tuple[str, str]]


def build_servers(ingresses: list[dict], services: list[dict], secrets: list[dict],
                  classes: list[dict]) -> tuple[dict[str, Server], dict[str, bytes], list[dict]]:
    svc_index = _service_index(services)
    secret_index = {((s.get("metadata") or {}).get("namespace", ""), s["metadata"]["name"]): s for s in secrets}
    ours = sorted((i for i in ingresses if is_ours(i, classes)), key=_order)
    servers: dict[str, Server] = {"": Server("")}
    files: dict[str, bytes] = {}

    def server(host: str) -> Server:
        if host not in servers:
            servers[host] = Server(host)
        return servers[host]

    catch_all_default: tuple[str, str] | None = None   # from an Ingress without rules
    catch_all_fallback: tuple[str, str] | None = None  # from an Ingress with host-less rules
    for ing in ours:
        md, spec = ing.get("metadata") or {}, ing.get("spec") or {}
        ns, origin = md.get("namespace", ""), f"{md.get('namespace', '')}/{md.get('name', '')}"
        ann = md.get("annotations") or {}
        redirect = _truthy(ann.get(SSL_REDIRECT)) or _truthy(ann.get(FORCE_SSL_REDIRECT))
        default = spec.get("defaultBackend")
        default_target = backend_target(default, ns, svc_index) if default else None
        rules = spec.get("rules") or []
        if default_target and not rules and catch_all_default is None:
            catch_all_default = (default_target, origin)
        # TLS first: the hosts it names get certificates even when no rule names them
        tls_hosts: set[str] = set()
        for t in spec.get("tls") or []:
            pem = _secret_pem(secret_index.get((ns, t.get("secretName") or "")))
            for h in t.get("hosts") or []:
                tls_hosts.add(h)
                if pem is None:
                    continue
                s = server(h)
                if s.cert is None:
                    name = cert_file_name(ns, t["secretName"], pem)
                    files[name] = pem
                    s.cert = name
                    s.redirect = s.redirect or redirect
        for rule in rules:
            host = rule.get("host") or ""
            s = server(host)
            if host and default_target and s.default is None:
                s.default, s.default_origin = default_target, origin
            if not host and default_target and catch_all_fallback is None:
                catch_all_fallback = (default_target, origin)
            for p in ((rule.get("http") or {}).get("paths") or []):
                target = backend_target(p.get("backend"), ns, svc_index)
                ptype = p.get("pathType") or "ImplementationSpecific"
                path = p.get("path") or "/"
                if ptype == "Exact":
                    key = ("=", path)
                    # Exact beats Prefix on the same path: take the `=` location over
                    cur = s.locations.get(key)
                    if cur is None or cur.kind != "exact":
                        s.locations[key] = Location("exact", path, target, origin)
                    continue
                norm = normalize_prefix(path)
                if norm == "/":
                    s.locations.setdefault(("/", "/"), Location("root", "/", target, origin))
                    continue
                if ("^~", norm + "/") in s.locations:
                    continue  # an older Ingress (or an earlier path) has this prefix
                s.locations[("^~", norm + "/")] = Location("prefix", norm + "/", target, origin)
                s.locations.setdefault(("=", norm), Location("prefix", norm, target, origin))
    pick = catch_all_default or catch_all_fallback
    if pick:
        servers[""].default, servers[""].default_origin = pick
    for s in servers.values():
        _pin_slashless(s)
    return servers, files, ours


def _resolve(s: Server, path: str) -> str:
    """Where a request for `path` goes among the server's Prefix paths and default."""
    best, best_len = None, -1
    for (mod, p), loc in s.locations.items():
        if mod == "^~" and (path == p[:-1] or path.startswith(p)) and len(p) > best_len:
            best, best_len = loc.target, len(p)
    if best is not None:
        return best
    root = s.locations.get(("/", "/"))
    if root is not None:
        return root.target
    return s.default or "return 404;"


def _pin_slashless(s: Server) -> None:
    """nginx answers `/e` with a 301 to `/e/` when a proxying location is named `/e/` and nothing
    else matches `/e` exactly. Kubernetes routes `/e` like any other path (Exact `/e/` does not
    match it), so pin `= /e` to where it would go."""
    for (mod, p), loc in list(s.locations.items()):
        if mod == "=" and p.endswith("/") and len(p) > 1 and ("=", p[:-1]) not in s.locations:
            s.locations[("=", p[:-1])] = Location("exact", p[:-1], _resolve(s, p[:-1]),
                                                  f"{loc.origin} (pins {p[:-1]} next to {p})")


def _location_block(loc: Location) -> list[str]:
    if loc.kind == "root":
        mod = ""
    elif loc.kind == "prefix" and loc.path.endswith("/"):
        mod = "^~"
    else:
        mod = "="  # Exact, and the bare path of a Prefix
    head = f"location {mod} {_quote(loc.path)}" if mod else f"location {_quote(loc.path)}"
    return [f"        # {loc.origin}", f"        {head} {{", f"            {loc.target}", "        }"]


def render(ingresses: list[dict], services: list[dict], secrets: list[dict], classes: list[dict], *,
           listen: str, prefix: str, default_cert: str = "default.pem", worker_processes: int = 2,
           http_port: int = 80, https_port: int = 443) -> Rendered:
    """The whole nginx.conf. `prefix` is the ingress data dir (pid, logs, temp files, certs live
    there; relative file names in the result are relative to it), `listen` the address."""
    servers, files, ours = build_servers(ingresses, services, secrets, classes)
    addr = f"[{listen}]" if ":" in listen else listen
    p = prefix.rstrip("/")
    out = [
        "# Generated by tinykube ingress; do not edit.",
        "daemon off;",
        "master_process on;",
        f"worker_processes {worker_processes};",
        "user root root;",
        f"pid {_quote(p + '/nginx.pid')};",
        "error_log stderr warn;",
        f"working_directory {_quote(p)};",
        "worker_shutdown_timeout 240s;",
        "events {",
        "    worker_connections 4096;",
        "}",
        "http {",
        "    default_type application/octet-stream;",
        f"    access_log {_quote(p + '/logs/access.log')};",
        f"    client_body_temp_path {_quote(p + '/tmp/client_body')};",
        f"    proxy_temp_path {_quote(p + '/tmp/proxy')};",
        f"    fastcgi_temp_path {_quote(p + '/tmp/fastcgi')};",
        f"    uwsgi_temp_path {_quote(p + '/tmp/uwsgi')};",
        f"    scgi_temp_path {_quote(p + '/tmp/scgi')};",
        "    server_names_hash_bucket_size 256;",
        "    server_names_hash_max_size 4096;",
        "    sendfile on;",
        "    keepalive_timeout 75s;",
        "    client_max_body_size 1m;",
        "    ssl_protocols TLSv1.2 TLSv1.3;",
        "    ssl_session_cache shared:tinykube_ssl:10m;",
        "    map $http_host $tk_best_host {",
        "        \"\" $host;",
        "        default $http_host;",
        "    }",
        "    map $http_x_forwarded_proto $tk_pass_proto {",
        "        default $http_x_forwarded_proto;",
        "        \"\" $scheme;",
        "    }",
        "    proxy_http_version 1.1;",
        "    proxy_set_header Connection \"\";",
        "    proxy_set_header Host $tk_best_host;",
        "    proxy_set_header X-Real-IP $remote_addr;",
        "    proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
        "    proxy_set_header X-Forwarded-Host $tk_best_host;",
        "    proxy_set_header X-Forwarded-Port $server_port;",
        "    proxy_set_header X-Forwarded-Proto $tk_pass_proto;",
        "    proxy_set_header X-Forwarded-Scheme $scheme;",
        "    proxy_set_header X-Scheme $scheme;",
        "    proxy_connect_timeout 5s;",
        "    proxy_read_timeout 60s;",
        "    proxy_send_timeout 60s;",
        "    proxy_next_upstream error timeout;",
        "",
    ]
    order = sorted(servers, key=lambda h: (h != "", h))
    for host in order:
        s = servers[host]
        cert = s.cert or default_cert
        cert_path = _quote(p + "/" + cert)
        out.append(f"    server {{  # {host or 'catch-all'}")
        if host == "":
            out += [f"        listen {addr}:{http_port} default_server;",
                    f"        listen {addr}:{https_port} ssl default_server;",
                    "        server_name _;"]
        else:
            name = _host_regex(host) if host.startswith("*.") else host
            out += [f"        listen {addr}:{http_port};", f"        listen {addr}:{https_port} ssl;",
                    f"        server_name {name};"]  # a validated DNS name: nothing to quote
        out += [f"        ssl_certificate {cert_path};", f"        ssl_certificate_key {cert_path};"]
        if s.redirect and s.cert:
            out += ["        if ($scheme = http) {",
                    f"            return 308 https://$host{'' if https_port == 443 else ':' + str(https_port)}$request_uri;",
                    "        }"]
        locs = sorted(s.locations.values(), key=lambda l: (l.path, l.kind))
        for loc in locs:
            out += _location_block(loc)
        if ("/", "/") not in s.locations:
            if s.default:
                out += [f"        # default backend of {s.default_origin}", "        location / {",
                        f"            {s.default}", "        }"]
            else:
                out += ["        location / {", "            return 404;", "        }"]
        out.append("    }")
    out.append("}")
    tls = {((i["metadata"].get("namespace") or ""), i["metadata"]["name"]) for i in ours if (i.get("spec") or {}).get("tls")}
    return Rendered("\n".join(out) + "\n", files,
                    [((i["metadata"].get("namespace") or ""), i["metadata"]["name"]) for i in ours], tls)
