"""The Ingress renderer: classes, backends, path and host semantics — checked on the generated
config and, where nginx is installed, against a real nginx on loopback with loopback backends."""
from __future__ import annotations

import base64
import http.client
import http.server
import os
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tinykube.ingress import render as R

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
DEFAULT_CLASS = {"metadata": {"name": "nginx", "annotations": {R.DEFAULT_CLASS_ANNOTATION: "true"}},
                 "spec": {"controller": R.CONTROLLER}}


def svc(name, ip="127.0.0.1", ports=None, ns="d", **spec):
    return {"metadata": {"name": name, "namespace": ns},
            "spec": {"clusterIP": ip, "ports": ports if ports is not None else [{"port": 8888}], **spec}}


def backend(name, port=8888):
    return {"service": {"name": name, "port": {"name": port} if isinstance(port, str) else {"number": port}}}


def ing(name="i", rules=None, default=None, tls=None, ns="d", created="2024-01-01T00:00:00Z", cls=None,
        annotations=None):
    spec = {}
    if rules is not None:
        spec["rules"] = rules
    if default is not None:
        spec["defaultBackend"] = default
    if tls is not None:
        spec["tls"] = tls
    if cls is not None:
        spec["ingressClassName"] = cls
    md = {"name": name, "namespace": ns, "creationTimestamp": created}
    if annotations:
        md["annotations"] = annotations
    return {"metadata": md, "spec": spec}


def rule(host, *paths):
    r = {"http": {"paths": [{"path": p, "pathType": t, "backend": b} for p, t, b in paths]}}
    if host:
        r["host"] = host
    return r


# ---------------------------------------------------------------- classes

class TestClasses:
    def test_named_nginx_is_ours_even_without_class_object(self):
        assert R.is_ours(ing(cls="nginx"), [])

    def test_named_class_with_our_controller(self):
        c = {"metadata": {"name": "public"}, "spec": {"controller": R.CONTROLLER}}
        assert R.is_ours(ing(cls="public"), [c])

    def test_named_other_class(self):
        c = {"metadata": {"name": "traefik"}, "spec": {"controller": "traefik.io/ingress-controller"}}
        assert not R.is_ours(ing(cls="traefik"), [c])
        assert not R.is_ours(ing(cls="missing"), [DEFAULT_CLASS])

    def test_classless_needs_our_default_class(self):
        assert R.is_ours(ing(), [DEFAULT_CLASS])
        assert not R.is_ours(ing(), [])
        not_default = {"metadata": {"name": "nginx"}, "spec": {"controller": R.CONTROLLER}}
        assert not R.is_ours(ing(), [not_default])
        other_default = {"metadata": {"name": "x", "annotations": {R.DEFAULT_CLASS_ANNOTATION: "true"}},
                         "spec": {"controller": "example.com/other"}}
        assert not R.is_ours(ing(), [other_default, not_default])

    def test_legacy_annotation(self):
        assert R.is_ours(ing(annotations={R.LEGACY_CLASS_ANNOTATION: "nginx"}), [])
        assert not R.is_ours(ing(annotations={R.LEGACY_CLASS_ANNOTATION: "gce"}), [DEFAULT_CLASS])

    def test_foreign_ingresses_are_not_rendered(self):
        r = R.render([ing(cls="gce", default=backend("a"))], [svc("a", "127.0.0.9")], [], [DEFAULT_CLASS],
                     listen="127.0.0.1", prefix="/x")
        assert r.ingresses == [] and "127.0.0.9" not in r.conf


# ---------------------------------------------------------------- backends

class TestBackends:
    idx = {("d", "a"): svc("a", "10.96.0.5", [{"name": "http", "port": 8888}, {"name": "alt", "port": 9000}])}

    def test_port_by_number(self):
        assert R.backend_target(backend("a", 9000), "d", self.idx) == "proxy_pass http://10.96.0.5:9000;"

    def test_port_by_name(self):
        assert R.backend_target(backend("a", "http"), "d", self.idx) == "proxy_pass http://10.96.0.5:8888;"

    def test_missing_service_port_or_namespace_is_503(self):
        assert R.backend_target(backend("nope"), "d", self.idx) == "return 503;"
        assert R.backend_target(backend("a", 1234), "d", self.idx) == "return 503;"
        assert R.backend_target(backend("a", "nope"), "d", self.idx) == "return 503;"
        assert R.backend_target(backend("a", 8888), "other", self.idx) == "return 503;"

    def test_headless_externalname_and_resource_are_503(self):
        idx = {("d", "h"): svc("h", "None"), ("d", "e"): svc("e", "", type="ExternalName", externalName="x.y")}
        assert R.backend_target(backend("h"), "d", idx) == "return 503;"
        assert R.backend_target(backend("e"), "d", idx) == "return 503;"
        res = {"resource": {"apiGroup": "k8s.example.com", "kind": "StorageBucket", "name": "b"}}
        assert R.backend_target(res, "d", idx) == "return 503;"

    def test_ipv6_cluster_ip(self):
        idx = {("d", "a"): svc("a", "fd00::5")}
        assert R.backend_target(backend("a"), "d", idx) == "proxy_pass http://[fd00::5]:8888;"


# ---------------------------------------------------------------- structure

def test_normalize_prefix():
    assert R.normalize_prefix("/foo/") == "/foo"
    assert R.normalize_prefix("/foo//bar/") == "/foo/bar"
    assert R.normalize_prefix("/") == "/"
    assert R.normalize_prefix("") == "/"


def test_locations_for_each_path_type():
    r = R.render([ing(rules=[rule("a.com", ("/e", "Exact", backend("a")), ("/p/", "Prefix", backend("a")),
                                  ("/is", "ImplementationSpecific", backend("a")), ("/", "Prefix", backend("a")))])],
                 [svc("a", "10.96.0.5")], [], [DEFAULT_CLASS], listen="10.244.0.1", prefix="/x")
    c = r.conf
    assert 'location = "/e" {' in c
    assert 'location = "/p" {' in c and 'location ^~ "/p/" {' in c
    assert 'location = "/is" {' in c and 'location ^~ "/is/" {' in c
    assert 'location "/" {' in c
    assert "return 404;" in c  # only the catch-all server's: a.com's `/` is claimed
    assert c.count("location / {") == 1
    assert "listen 10.244.0.1:80;" in c and "listen 10.244.0.1:443 ssl;" in c
    assert "server_name a.com;" in c


def test_exact_beats_prefix_on_same_path_in_any_order():
    for paths in ([("/foo", "Prefix", backend("p")), ("/foo", "Exact", backend("e"))],
                  [("/foo", "Exact", backend("e")), ("/foo", "Prefix", backend("p"))]):
        servers, _, _ = R.build_servers([ing(rules=[rule("a.com", *paths)])],
                                        [svc("p", "10.96.0.1"), svc("e", "10.96.0.2")], [], [DEFAULT_CLASS])
        locs = servers["a.com"].locations
        assert locs[("=", "/foo")].target == "proxy_pass http://10.96.0.2:8888;"
        assert locs[("^~", "/foo/")].target == "proxy_pass http://10.96.0.1:8888;"


def test_oldest_ingress_keeps_a_contested_path():
    new = ing("new", rules=[rule("a.com", ("/x", "Prefix", backend("n")))], created="2024-02-01T00:00:00Z")
    old = ing("old", rules=[rule("a.com", ("/x/", "Prefix", backend("o")))], created="2024-01-01T00:00:00Z")
    servers, _, _ = R.build_servers([new, old], [svc("n", "10.96.0.1"), svc("o", "10.96.0.2")], [],
                                    [DEFAULT_CLASS])
    assert servers["a.com"].locations[("^~", "/x/")].target.endswith("10.96.0.2:8888;")
    assert servers["a.com"].locations[("=", "/x")].target.endswith("10.96.0.2:8888;")


def test_wildcard_host_is_a_one_label_regex():
    r = R.render([ing(rules=[rule("*.foo-bar.com", ("/", "Prefix", backend("a")))])], [svc("a")], [],
                 [DEFAULT_CLASS], listen="127.0.0.1", prefix="/x")
    assert "server_name ~^[^.]+\\.foo-bar\\.com$;" in r.conf


def test_default_backend_placement():
    only_default = ing("catch", default=backend("d1"), created="2024-01-02T00:00:00Z")
    with_rules = ing("host", default=backend("d2"), rules=[rule("a.com", ("/x", "Prefix", backend("d2")))])
    servers, _, _ = R.build_servers([only_default, with_rules], [svc("d1", "10.96.0.1"), svc("d2", "10.96.0.2")],
                                    [], [DEFAULT_CLASS])
    assert servers[""].default.endswith("10.96.0.1:8888;")      # the rule-less Ingress owns the catch-all
    assert servers["a.com"].default.endswith("10.96.0.2:8888;")  # a host's own Ingress' default


def test_default_backend_of_hostless_rules_feeds_catch_all():
    i = ing(default=backend("d1"), rules=[rule("", ("/x", "Prefix", backend("d1")))])
    servers, _, _ = R.build_servers([i], [svc("d1", "10.96.0.1")], [], [DEFAULT_CLASS])
    assert servers[""].default.endswith("10.96.0.1:8888;")
    assert ("^~", "/x/") in servers[""].locations


def _tls_secret(name="tls", ns="d", crt=b"-----BEGIN CERTIFICATE-----\nA\n-----END CERTIFICATE-----\n",
                key=b"-----BEGIN PRIVATE KEY-----\nB\n-----END PRIVATE KEY-----\n"):
    return {"metadata": {"name": name, "namespace": ns}, "type": "kubernetes.io/tls",
            "data": {"tls.crt": base64.b64encode(crt).decode(), "tls.key": base64.b64encode(key).decode()}}


def test_tls_files_and_certificates():
    i = ing(tls=[{"hosts": ["a.com"], "secretName": "tls"}], rules=[rule("a.com", ("/", "Prefix", backend("a")))])
    r = R.render([i], [svc("a")], [_tls_secret()], [DEFAULT_CLASS], listen="127.0.0.1", prefix="/x")
    (name, pem), = r.files.items()
    assert name.startswith("certs/d_tls_") and b"BEGIN CERTIFICATE" in pem and b"BEGIN PRIVATE KEY" in pem
    assert f'ssl_certificate "/x/{name}";' in r.conf
    assert 'ssl_certificate "/x/default.pem";' in r.conf  # the catch-all's
    assert "return 308" not in r.conf
    assert r.tls_ingresses == {("d", "i")}


def test_tls_missing_or_incomplete_secret_uses_default_certificate():
    i = ing(tls=[{"hosts": ["a.com"], "secretName": "tls"}], rules=[rule("a.com", ("/", "Prefix", backend("a")))])
    for secrets in ([], [_tls_secret(key=b"")], [_tls_secret(ns="other")]):
        r = R.render([i], [svc("a")], secrets, [DEFAULT_CLASS], listen="127.0.0.1", prefix="/x")
        assert r.files == {} and "certs/" not in r.conf


def test_ssl_redirect_annotation():
    i = ing(tls=[{"hosts": ["a.com"], "secretName": "tls"}], rules=[rule("a.com", ("/", "Prefix", backend("a")))],
            annotations={R.SSL_REDIRECT: "true"})
    r = R.render([i], [svc("a")], [_tls_secret()], [DEFAULT_CLASS], listen="127.0.0.1", prefix="/x")
    assert "return 308 https://$host$request_uri;" in r.conf


def test_paths_are_quoted():
    r = R.render([ing(rules=[rule("a.com", ('/we"ird\\', "ImplementationSpecific", backend("a")))])], [svc("a")],
                 [], [DEFAULT_CLASS], listen="127.0.0.1", prefix="/x")
    assert 'location = "/we\\"ird\\\\" {' in r.conf


def test_render_is_deterministic_regardless_of_input_order():
    a = ing("a", rules=[rule("a.com", ("/x", "Prefix", backend("s"))), rule("b.com", ("/y", "Exact", backend("s")))])
    b = ing("b", rules=[rule("c.com", ("/", "Prefix", backend("s")))], created="2024-03-01T00:00:00Z")
    one = R.render([a, b], [svc("s")], [], [DEFAULT_CLASS], listen="127.0.0.1", prefix="/x").conf
    two = R.render([b, a], [svc("s")], [], [DEFAULT_CLASS], listen="127.0.0.1", prefix="/x").conf
    assert one == two


# ---------------------------------------------------------------- against a real nginx

class _Backend(http.server.BaseHTTPRequestHandler):
    name = ""

    def do_GET(self):
        body = (f"{self.name} {self.path} host={self.headers.get('Host')} "
                f"xff={self.headers.get('X-Forwarded-For')} xri={self.headers.get('X-Real-IP')}\n").encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def backends():
    servers = {}
    for name in ("root", "aaa", "bbb", "exact", "prefix", "def", "wild", "other", "catch"):
        handler = type(f"H{name}", (_Backend,), {"name": name})
        srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers[name] = srv
    yield {n: s.server_address[1] for n, s in servers.items()}
    for s in servers.values():
        s.shutdown()


class Nginx:
    def __init__(self, prefix: Path):
        self.prefix = prefix
        self.http, self.https = _free_port(), _free_port()
        self.proc = None

    def write(self, r: R.Rendered) -> None:
        for name, data in r.files.items():
            (self.prefix / name).parent.mkdir(parents=True, exist_ok=True)
            (self.prefix / name).write_bytes(data)
        (self.prefix / "nginx.conf").write_text(r.conf)
        t = subprocess.run([NGINX, "-t", "-q", "-e", "stderr", "-c", str(self.prefix / "nginx.conf"), "-p",
                            str(self.prefix) + "/"], capture_output=True, text=True)
        assert t.returncode == 0, t.stderr + r.conf

    def start(self, r: R.Rendered) -> None:
        self.write(r)
        self.proc = subprocess.Popen([NGINX, "-e", "stderr", "-c", str(self.prefix / "nginx.conf"), "-p",
                                      str(self.prefix) + "/"])
        for _ in range(100):
            try:
                self.get("ready.invalid", "/")  # an answer: a worker runs, so the master handles signals
                return
            except OSError:
                time.sleep(0.05)
        raise AssertionError("nginx did not start")

    def workers(self) -> set[int]:
        pids = set()
        for d in Path("/proc").iterdir():
            try:
                if d.name.isdigit() and int((d / "stat").read_text().rsplit(")", 1)[1].split()[1]) == self.proc.pid:
                    pids.add(int(d.name))
            except (OSError, IndexError, ValueError):
                continue
        return pids

    def reload(self, r: R.Rendered) -> None:
        """Reload and wait for the old workers to go: until then one may still accept a connection."""
        self.write(r)
        old = self.workers()
        self.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 30
        while self.workers() & old and time.monotonic() < deadline:
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(10)

    def get(self, host: str, path: str) -> tuple[int, str]:
        c = http.client.HTTPConnection("127.0.0.1", self.http, timeout=5)
        c.request("GET", path, headers={"Host": host})
        resp = c.getresponse()
        body = resp.read().decode(errors="replace")
        c.close()
        return resp.status, body

    def who(self, host: str, path: str) -> str:
        status, body = self.get(host, path)
        return body.split()[0] if status == 200 else str(status)


def _prefix(tmp_path: Path) -> Path:
    for d in ("logs", "tmp", "certs"):
        (tmp_path / d).mkdir(parents=True, exist_ok=True)
    from tinykube.ingress.controller import ensure_default_cert
    ensure_default_cert(tmp_path / "default.pem")
    return tmp_path


def _render(nginx: Nginx, ingresses, services, secrets=()) -> R.Rendered:
    return R.render(ingresses, services, list(secrets), [DEFAULT_CLASS], listen="127.0.0.1",
                    prefix=str(nginx.prefix), worker_processes=1, http_port=nginx.http, https_port=nginx.https)


needs_nginx = pytest.mark.skipif(NGINX is None, reason="nginx is not installed")


@needs_nginx
def test_matching_semantics_on_real_nginx(tmp_path, backends):
    """The path table of the Ingress documentation, host wildcards and defaults, on nginx itself."""
    services = [svc(n, "127.0.0.1", [{"name": "http", "port": p}]) for n, p in backends.items()]
    B = lambda n: backend(n, backends[n])  # noqa: E731
    ings = [
        ing("paths", default=B("def"), rules=[
            rule("a.com", ("/", "Prefix", B("root")), ("/aaa", "Prefix", B("aaa")), ("/aaa/bbb/", "Prefix", B("bbb")),
                 ("/foo", "Exact", B("exact")), ("/foo", "Prefix", B("prefix")), ("/e/", "Exact", B("exact"))),
            rule("only.com", ("/aaa", "Prefix", B("aaa")), ("/api", "ImplementationSpecific", backend("bbb", "http"))),
            rule("*.wild.com", ("/", "Prefix", B("wild"))),
            rule("x.wild.com", ("/", "Prefix", B("other"))),
            rule("", ("/hostless", "Prefix", B("other"))),
        ]),
        ing("catch", default=B("catch"), created="2024-05-01T00:00:00Z"),
        ing("gone", rules=[rule("gone.com", ("/", "Prefix", backend("nonexistent")))]),
    ]
    nginx = Nginx(_prefix(tmp_path))
    nginx.start(_render(nginx, ings, services))
    try:
        cases = {
            ("a.com", "/"): "root", ("a.com", "/ccc"): "root", ("a.com", "/aaa"): "aaa", ("a.com", "/aaa/"): "aaa",
            ("a.com", "/aaa/ccc"): "aaa", ("a.com", "/aaa/bbb"): "bbb", ("a.com", "/aaa/bbb/"): "bbb",
            ("a.com", "/aaa/bbb/ccc"): "bbb", ("a.com", "/aaa/bbbxyz"): "aaa", ("a.com", "/aaaa"): "root",
            ("a.com", "/foo"): "exact", ("a.com", "/foo/"): "prefix", ("a.com", "/foo/x"): "prefix",
            ("a.com", "/e/"): "exact", ("a.com", "/e"): "root", ("A.COM", "/aaa"): "aaa", ("a.com:80", "/aaa"): "aaa",
            ("a.com", "/AAA"): "root",  # case-sensitive paths
            ("only.com", "/aaa/x"): "aaa", ("only.com", "/ccc"): "def", ("only.com", "/"): "def",
            ("only.com", "/api/v1"): "bbb", ("only.com", "/apix"): "def",
            ("b.wild.com", "/x"): "wild", ("x.wild.com", "/x"): "other", ("c.b.wild.com", "/x"): "catch",
            ("wild.com", "/x"): "catch",
            ("unknown.com", "/hostless/a"): "other", ("unknown.com", "/x"): "catch",
            ("gone.com", "/"): "503",
        }
        got = {k: nginx.who(*k) for k in cases}
        assert got == cases
        _, body = nginx.get("a.com", "/aaa/x?q=1")
        assert body.split()[1] == "/aaa/x?q=1"
        assert "host=a.com " in body and "xff=127.0.0.1 " in body and "xri=127.0.0.1" in body
    finally:
        nginx.stop()


@needs_nginx
def test_no_default_backend_is_404_and_reload_takes_effect(tmp_path, backends):
    services = [svc("aaa", "127.0.0.1", [{"port": backends["aaa"]}]), svc("bbb", "127.0.0.1", [{"port": backends["bbb"]}])]
    first = ing(rules=[rule("a.com", ("/aaa", "Prefix", backend("aaa", backends["aaa"])))])
    nginx = Nginx(_prefix(tmp_path))
    nginx.start(_render(nginx, [first], services))
    try:
        assert nginx.get("a.com", "/bbb")[0] == 404
        assert nginx.get("nothing.com", "/")[0] == 404
        second = ing(rules=[rule("a.com", ("/aaa", "Prefix", backend("aaa", backends["aaa"])),
                                 ("/bbb", "Prefix", backend("bbb", backends["bbb"])))])
        nginx.reload(_render(nginx, [second], services))
        assert nginx.who("a.com", "/bbb") == "bbb"
        assert nginx.who("a.com", "/aaa") == "aaa"
    finally:
        nginx.stop()


def _self_signed(host: str) -> tuple[bytes, bytes]:
    import datetime
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
            .sign(key, hashes.SHA256()))
    return (cert.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                              serialization.NoEncryption()))


def _peer_cn(port: int, sni: str) -> str:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), 5) as s, ctx.wrap_socket(s, server_hostname=sni) as t:
        der = t.getpeercert(binary_form=True)
    from cryptography import x509
    from cryptography.x509.oid import NameOID
    return x509.load_der_x509_certificate(der).subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value


@needs_nginx
def test_tls_sni_and_redirect_on_real_nginx(tmp_path, backends):
    crt, key = _self_signed("secure.com")
    services = [svc("aaa", "127.0.0.1", [{"port": backends["aaa"]}])]
    plain = ing("plain", tls=[{"hosts": ["secure.com"], "secretName": "tls"}],
                rules=[rule("secure.com", ("/", "Prefix", backend("aaa", backends["aaa"])))])
    redirecting = ing("redir", annotations={R.SSL_REDIRECT: "true"}, tls=[{"hosts": ["r.com"], "secretName": "tls"}],
                      rules=[rule("r.com", ("/", "Prefix", backend("aaa", backends["aaa"])))])
    nginx = Nginx(_prefix(tmp_path))
    nginx.start(_render(nginx, [plain, redirecting], services, [_tls_secret(crt=crt, key=key)]))
    try:
        assert _peer_cn(nginx.https, "secure.com") == "secure.com"
        assert _peer_cn(nginx.https, "elsewhere.com") == "Kubernetes Ingress Controller Fake Certificate"
        assert nginx.who("secure.com", "/x") == "aaa"  # no redirect by default
        c = http.client.HTTPConnection("127.0.0.1", nginx.http, timeout=5)
        c.request("GET", "/a?b=c", headers={"Host": "r.com"})
        resp = c.getresponse()
        assert resp.status == 308 and resp.getheader("Location") == f"https://r.com:{nginx.https}/a?b=c"
        ctx = ssl.create_default_context()
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        s = http.client.HTTPSConnection("127.0.0.1", nginx.https, timeout=5, context=ctx)
        s.request("GET", "/a", headers={"Host": "r.com"})
        r = s.getresponse()
        assert r.status == 200 and r.read().split()[0] == b"aaa"
    finally:
        nginx.stop()
