"""tinykube.api.protobuf against what kubectl really sends.

kubectl 1.32/1.33 POST `kubectl create <generator>` objects as protobuf; 1.31 sends the same object
as JSON. A tiny fake API server (below) records both, and each case asserts that decoding the
1.33 body gives exactly the 1.31 JSON. The captured bodies are kept as fixtures under
tests/data/protobuf/ so the comparison runs without kubectl; `test_live_capture` re-captures when
the binaries are installed and checks the fixtures are still what kubectl sends.

Regenerate the fixtures with:  .venv/bin/python tests/unit/test_protobuf.py
"""
from __future__ import annotations

import asyncio
import base64
import datetime
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinykube.api import protobuf
from tinykube.api.errors import ApiError

KUBECTL_DIR = Path("/usr/lib/google-cloud-sdk/bin")
DATA = Path(__file__).resolve().parent.parent / "data" / "protobuf"

# name -> kubectl arguments (after `create`). "secret-tls" gets --cert/--key added at run time.
CASES: dict[str, list[str]] = {
    "namespace": ["namespace", "n1"],
    "configmap": ["configmap", "c1", "--from-literal=a=1", "--from-literal=b=two"],
    "secret-generic": ["secret", "generic", "s1", "--from-literal=k=v"],
    "secret-tls": ["secret", "tls", "t1"],
    "service-clusterip": ["service", "clusterip", "s1", "--tcp=80:8080", "--tcp=443:8443"],
    "service-nodeport": ["service", "nodeport", "np", "--tcp=80:8080", "--node-port=30080"],
    "service-externalname": ["service", "externalname", "en", "--external-name=example.invalid"],
    "service-loadbalancer": ["service", "loadbalancer", "lb", "--tcp=80"],
    "deployment-replicas": ["deployment", "d1", "--image=nginx", "--replicas=3", "--port=80"],
    "deployment-two-images": ["deployment", "d2", "--image=nginx", "--image=busybox"],
    "ingress": ["ingress", "i1", "--rule=foo.test/bar=svc1:8080", "--rule=tls.test/*=svc2:http,tls=my-cert",
                "--default-backend=defsvc:80", "--class=nginx"],
    # Jobs are not served by tinykube: decode() must refuse the body (see test_job_refused).
    "job": ["job", "j1", "--image=busybox", "--", "echo", "hi"],
}
DECODED = [c for c in CASES if c != "job"]


# --------------------------------------------------------------------------------------------
# Capture harness: a fake API server that serves just enough for `kubectl create <generator>`.

def _resource(name, kind, namespaced=True):
    return {"name": name, "singularName": kind.lower(), "namespaced": namespaced, "kind": kind,
            "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"]}


GROUPS = {
    "v1": [_resource("namespaces", "Namespace", False), _resource("configmaps", "ConfigMap"),
           _resource("secrets", "Secret"), _resource("services", "Service")],
    "apps/v1": [_resource("deployments", "Deployment")],
    "networking.k8s.io/v1": [_resource("ingresses", "Ingress")],
    "batch/v1": [_resource("jobs", "Job")],
}


class FakeApiServer:
    """aiohttp on 127.0.0.1 in its own thread; records (Content-Type, body) of every POST."""

    def __init__(self, minor: str):
        self.minor = minor
        self.posts: list[tuple[str, bytes]] = []
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.runner = None
        self.port = 0

    def _app(self):
        from aiohttp import web

        async def version(request):
            return web.json_response({"major": "1", "minor": self.minor, "gitVersion": f"v1.{self.minor}.0",
                                      "gitCommit": "0", "gitTreeState": "clean", "buildDate": "2025-01-01T00:00:00Z",
                                      "goVersion": "go1.23", "compiler": "gc", "platform": "linux/amd64"})

        async def api(request):
            return web.json_response({"kind": "APIVersions", "versions": ["v1"]})

        async def apis(request):
            groups = []
            for gv in GROUPS:
                if "/" in gv:
                    g, v = gv.split("/")
                    ver = {"groupVersion": gv, "version": v}
                    groups.append({"name": g, "versions": [ver], "preferredVersion": ver})
            return web.json_response({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})

        def resource_list(gv):
            async def handler(request):
                return web.json_response({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv,
                                          "resources": GROUPS[gv]})
            return handler

        async def openapi_v2(request):
            return web.Response(body=b"", content_type="application/octet-stream")

        async def post(request):
            body = await request.read()
            self.posts.append((request.headers.get("Content-Type", ""), body))
            parts = request.path.strip("/").split("/")
            ns = parts[parts.index("namespaces") + 1] if "namespaces" in parts[:-1] else None
            kind = {"namespaces": "Namespace", "configmaps": "ConfigMap", "secrets": "Secret",
                    "services": "Service", "deployments": "Deployment", "ingresses": "Ingress",
                    "jobs": "Job"}.get(parts[-1], "Unknown")
            gv = "v1" if parts[0] == "api" else f"{parts[1]}/{parts[2]}"
            meta = {"name": "captured"}
            if ns:
                meta["namespace"] = ns
            return web.json_response({"apiVersion": gv, "kind": kind, "metadata": meta}, status=201)

        async def fallback(request):
            return web.json_response({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                      "reason": "NotFound", "code": 404}, status=404)

        app = web.Application()
        app.router.add_get("/version", version)
        app.router.add_get("/api", api)
        app.router.add_get("/apis", apis)
        app.router.add_get("/api/v1", resource_list("v1"))
        for gv in GROUPS:
            if "/" in gv:
                app.router.add_get(f"/apis/{gv}", resource_list(gv))
        app.router.add_get("/openapi/v2", openapi_v2)
        app.router.add_post("/{tail:.*}", post)
        app.router.add_route("*", "/{tail:.*}", fallback)  # includes /openapi/v3 -> 404
        return app

    async def _start(self):
        from aiohttp import web
        self.runner = web.AppRunner(self._app(), access_log=None)
        await self.runner.setup()
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        site = web.TCPSite(self.runner, "127.0.0.1", self.port)
        await site.start()

    def __enter__(self):
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)
        return self

    def __exit__(self, *exc):
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def _throwaway_cert(tmp: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tinykube-test.invalid")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    crt, pem = tmp / "tls.crt", tmp / "tls.key"
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
    return crt, pem


def capture(version: str, args: list[str], tmp: Path) -> tuple[str, bytes]:
    """Run `kubectl.<version> create <args>` against a fresh fake server; the one POST it made."""
    minor = version.split(".")[1]
    with FakeApiServer(minor) as srv:
        kubeconfig = tmp / f"kubeconfig-{version}"
        kubeconfig.write_text(
            "apiVersion: v1\nkind: Config\ncurrent-context: fake\n"
            f"clusters: [{{name: fake, cluster: {{server: 'http://127.0.0.1:{srv.port}'}}}}]\n"
            "users: [{name: fake, user: {}}]\n"
            "contexts: [{name: fake, context: {cluster: fake, user: fake, namespace: default}}]\n")
        cache = tempfile.mkdtemp(dir=tmp)
        env = {k: v for k, v in os.environ.items() if not k.startswith("KUBE")}
        env["HOME"] = str(tmp)
        proc = subprocess.run([str(KUBECTL_DIR / f"kubectl.{version}"), "--kubeconfig", str(kubeconfig),
                               "--cache-dir", cache, "create", *args],
                              capture_output=True, text=True, timeout=60, env=env)
        assert proc.returncode == 0, (version, args, proc.stdout, proc.stderr)
        assert len(srv.posts) == 1, srv.posts
        return srv.posts[0]


def capture_case(name: str, tmp: Path, versions=("1.33", "1.31")) -> dict[str, tuple[str, bytes]]:
    args = list(CASES[name])
    if name == "secret-tls":
        # The same files for every version, so the bodies are comparable.
        crt, key = (tmp / "tls.crt", tmp / "tls.key")
        if not crt.exists():
            crt, key = _throwaway_cert(tmp)
        args += [f"--cert={crt}", f"--key={key}"]
    return {v: capture(v, args, tmp) for v in versions}


def have_kubectl(*versions: str) -> bool:
    return all(os.access(KUBECTL_DIR / f"kubectl.{v}", os.X_OK) for v in versions)


def write_fixtures() -> None:
    DATA.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as d:
        for name in CASES:
            got = capture_case(name, Path(d))
            ctype, pb = got["1.33"]
            assert ctype == "application/vnd.kubernetes.protobuf", ctype
            jctype, js = got["1.31"]
            assert jctype == "application/json", jctype
            (DATA / f"{name}.pb").write_bytes(pb)
            (DATA / f"{name}.json").write_bytes(js)
            print(name, len(pb), len(js))


def fixture(name: str) -> tuple[bytes, dict]:
    return (DATA / f"{name}.pb").read_bytes(), json.loads((DATA / f"{name}.json").read_bytes())


# --------------------------------------------------------------------------------------------
# The decoded protobuf equals what the JSON client sends.

@pytest.mark.parametrize("name", DECODED)
def test_fixture_decodes_to_json(name):
    # Nothing is normalised: the JSON 1.31 sends and the decoded 1.33 protobuf are the same object
    # (both generators build the same Go struct; for secret-tls the cert/key files are shared).
    pb, want = fixture(name)
    got = protobuf.decode(pb, None)
    assert got == want
    # Even the key order is Go's (struct declaration order): re-encoded compactly, it is the very
    # body kubectl 1.31 sent.
    raw = (DATA / f"{name}.json").read_bytes().rstrip(b"\n")
    assert json.dumps(got, separators=(",", ":")).encode() == raw


def test_job_refused():
    pb, _ = fixture("job")
    with pytest.raises(ApiError) as e:
        protobuf.decode(pb, None)
    assert e.value.code == 415 and e.value.reason == "UnsupportedMediaType"
    msg = e.value.message
    assert "'Job'" in msg and "JSON" in msg
    for kind in ("Namespace", "ConfigMap", "Secret", "Service", "Deployment", "Ingress"):
        assert kind in msg


def test_secret_data_is_base64_of_the_bytes():
    pb, _ = fixture("secret-generic")
    assert protobuf.decode(pb, None)["data"] == {"k": base64.b64encode(b"v").decode()}


@pytest.mark.skipif(not have_kubectl("1.33", "1.32", "1.31"), reason="kubectl 1.31-1.33 binaries not installed")
@pytest.mark.parametrize("name", list(CASES))
def test_live_capture(name, tmp_path):
    got = capture_case(name, tmp_path, versions=("1.33", "1.32", "1.31"))
    for v in ("1.33", "1.32"):
        ctype, pb = got[v]
        assert ctype == "application/vnd.kubernetes.protobuf"
        assert pb.startswith(b"k8s\x00")
    jctype, js = got["1.31"]
    assert jctype == "application/json"
    want = json.loads(js)
    for v in ("1.33", "1.32"):
        if name == "job":
            with pytest.raises(ApiError) as e:
                protobuf.decode(got[v][1], None)
            assert e.value.code == 415
        else:
            assert protobuf.decode(got[v][1], None) == want
    if name != "secret-tls":  # a fresh throwaway certificate each run
        pb_fix, want_fix = fixture(name)
        assert want == want_fix
        assert got["1.33"][1] == pb_fix


# --------------------------------------------------------------------------------------------
# Malformed input: always a 415 ApiError with a clear message, never another exception.

def _key(num: int, wt: int) -> bytes:
    return _uvarint(num << 3 | wt)


def _uvarint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _ld(num: int, payload: bytes) -> bytes:
    return _key(num, 2) + _uvarint(len(payload)) + payload


def _unknown(api_version: str, kind: str, raw: bytes) -> bytes:
    tm = _ld(1, api_version.encode()) + _ld(2, kind.encode())
    return protobuf.MAGIC + _ld(1, tm) + _ld(2, raw) + _ld(3, b"") + _ld(4, b"")


def _refused(body: bytes) -> str:
    with pytest.raises(ApiError) as e:
        protobuf.decode(body, None)
    assert e.value.code == 415 and e.value.reason == "UnsupportedMediaType"
    return e.value.message


def test_hand_built_body_decodes():
    meta = _ld(1, b"x")
    body = _unknown("v1", "ConfigMap", _ld(1, meta) + _ld(2, _ld(1, b"k") + _ld(2, b"v")))
    assert protobuf.decode(body, None) == {"apiVersion": "v1", "kind": "ConfigMap",
                                           "metadata": {"name": "x", "creationTimestamp": None},
                                           "data": {"k": "v"}}


def _meta(name: bytes = b"x") -> bytes:
    return _ld(1, _ld(1, name))


def test_empty_deployment_has_go_json_shape():
    # What Go's encoding/json writes for a zero apps/v1.Deployment: struct values always, zero time
    # null, nil pointer/slice without omitempty null (selector, containers).
    assert protobuf.decode(_unknown("apps/v1", "Deployment", b""), None) == {
        "kind": "Deployment", "apiVersion": "apps/v1", "metadata": {"creationTimestamp": None},
        "spec": {"selector": None, "template": {"metadata": {"creationTimestamp": None},
                                                "spec": {"containers": None}},
                 "strategy": {}},
        "status": {}}


def test_pointer_zero_is_kept_value_zero_is_dropped():
    spec = _ld(2, _key(1, 0) + b"\x00" + _key(5, 0) + b"\x00" + _key(7, 0) + b"\x00")
    got = protobuf.decode(_unknown("apps/v1", "Deployment", _meta() + spec), None)["spec"]
    assert got["replicas"] == 0  # *int32: present, so written
    assert "minReadySeconds" not in got and "paused" not in got  # int32/bool omitempty


def test_int_or_string_and_quantities():
    ios_str = _ld(2, _key(1, 0) + b"\x01" + _ld(3, b"25%"))
    ios_int = _ld(1, _key(2, 0) + b"\x02")
    strategy = _ld(4, _ld(1, b"RollingUpdate") + _ld(2, ios_str + ios_int))
    limits = _ld(1, _ld(1, b"cpu") + _ld(2, _ld(1, b"500m")))
    container = _ld(2, _ld(1, b"c") + _ld(8, limits))
    template = _ld(3, _ld(2, container))
    got = protobuf.decode(_unknown("apps/v1", "Deployment", _meta() + _ld(2, strategy + template)), None)
    assert got["spec"]["strategy"] == {"type": "RollingUpdate",
                                       "rollingUpdate": {"maxUnavailable": 2, "maxSurge": "25%"}}
    assert got["spec"]["template"]["spec"]["containers"] == [{"name": "c", "resources": {"limits": {"cpu": "500m"}}}]
    # ServicePort.targetPort is a non-pointer IntOrString: 0 when absent
    got = protobuf.decode(_unknown("v1", "Service", _ld(2, _ld(1, _key(3, 0) + b"\x50"))), None)
    assert got["spec"]["ports"] == [{"port": 80, "targetPort": 0}]
    bad = _ld(2, _ld(1, _ld(4, _key(1, 0) + b"\x07")))
    assert "IntOrString" in _refused(_unknown("v1", "Service", bad))
    requests = _ld(2, _ld(1, b"cpu") + _ld(2, b""))  # a Quantity with no string
    pod = _ld(2, _ld(2, _ld(1, b"c") + _ld(8, requests)))
    assert "empty quantity" in _refused(_unknown("apps/v1", "Deployment", _ld(2, _ld(3, pod))))


def test_times():
    def ts(payload):
        return protobuf.decode(_unknown("v1", "Namespace", _ld(1, _ld(8, payload))), None)["metadata"]
    assert ts(b"") == {"creationTimestamp": None}
    assert ts(_key(1, 0) + _uvarint(1_700_000_000) + _key(2, 0) + b"\x05") == {
        "creationTimestamp": "2023-11-14T22:13:20Z"}  # nanoseconds are dropped, as Kubernetes does
    assert ts(_key(1, 0) + b"\x00") == {"creationTimestamp": "1970-01-01T00:00:00Z"}
    assert ts(_key(1, 0) + _uvarint((-62135596800) & (2**64 - 1))) == {"creationTimestamp": None}
    assert "time out of range" in _refused(_unknown("v1", "Namespace", _ld(1, _ld(8, _key(1, 0) + _uvarint(2**62)))))


def test_integers_wrap_like_go():
    minus_one = _uvarint(2**64 - 1)
    svc = _ld(2, _ld(1, _key(3, 0) + minus_one) + _key(12, 0) + _uvarint(2**32 + 7))
    got = protobuf.decode(_unknown("v1", "Service", svc), None)["spec"]
    assert got["ports"][0]["port"] == -1 and got["healthCheckNodePort"] == 7
    got = protobuf.decode(_unknown("v1", "Namespace", _ld(1, _key(7, 0) + minus_one)), None)
    assert got["metadata"]["generation"] == -1


def test_byte_maps_and_merging():
    raw = (_meta(b"s") + _ld(2, _ld(1, b"bin") + _ld(2, b"\xff\x00\xfe")) + _ld(2, _ld(1, b"empty"))
           + _ld(3, b"Opaque") + _key(5, 0) + b"\x00" + _ld(1, _ld(11, _ld(1, b"a") + _ld(2, b"b"))))
    got = protobuf.decode(_unknown("v1", "Secret", raw), None)
    assert got == {"kind": "Secret", "apiVersion": "v1",
                   "metadata": {"name": "s", "creationTimestamp": None, "labels": {"a": "b"}},  # merged
                   "immutable": False, "data": {"bin": "/wD+", "empty": ""}, "type": "Opaque"}
    # a scalar given twice: the last one wins
    got = protobuf.decode(_unknown("v1", "ConfigMap", _meta(b"a") + _meta(b"b")), None)
    assert got["metadata"]["name"] == "b"


def test_type_meta_defaults_from_the_resource():
    from tinykube.api.resources import RESOURCES
    res = next(r for r in RESOURCES if r.kind == "ConfigMap")
    body = protobuf.MAGIC + _ld(1, b"") + _ld(2, _meta())
    assert protobuf.decode(body, res)["kind"] == "ConfigMap"
    assert "<none>" in _refused(body)


def test_content_encoding_refused():
    tm = _ld(1, b"v1") + _ld(2, b"ConfigMap")
    assert "gzip" in _refused(protobuf.MAGIC + _ld(1, tm) + _ld(2, b"") + _ld(3, b"gzip"))


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(min_size=1, max_size=20), st.text(max_size=50), max_size=5),
       st.dictionaries(st.text(min_size=1, max_size=20), st.binary(max_size=50), max_size=5))
def test_round_trip_maps(data, binary):
    def entries(num, m):
        return b"".join(_ld(num, _ld(1, k.encode()) + _ld(2, v)) for k, v in m.items())
    raw = _meta(b"c") + entries(2, {k: v.encode() for k, v in data.items()}) + entries(3, binary)
    got = protobuf.decode(_unknown("v1", "ConfigMap", raw), None)
    assert got.get("data", {}) == data
    assert got.get("binaryData", {}) == {k: base64.b64encode(v).decode() for k, v in binary.items()}


def test_wrong_magic():
    assert "magic" in _refused(b"k8s\x01" + b"\x0a\x00")
    assert "magic" in _refused(b"")
    assert "magic" in _refused(b'{"kind":"ConfigMap"}')


def test_truncated_varint():
    assert "truncated varint" in _refused(protobuf.MAGIC + b"\x08\x80\x80")


def test_truncated_field():
    body = _unknown("v1", "ConfigMap", _ld(1, _ld(1, b"name")))
    assert "truncated" in _refused(body[:-6])


def test_unknown_field_number():
    msg = _refused(_unknown("v1", "ConfigMap", _ld(1, _ld(1, b"x")) + _ld(9, b"?")))
    assert "field 9" in msg and "ConfigMap" in msg
    msg = _refused(_unknown("v1", "ConfigMap", _ld(1, _ld(1, b"x") + _key(99, 0) + b"\x01")))
    assert "field 99" in msg and "ObjectMeta" in msg


def test_wrong_wire_type():
    # metadata (a message) sent as a varint
    msg = _refused(_unknown("v1", "ConfigMap", _key(1, 0) + b"\x01"))
    assert "wire type" in msg


def test_unknown_kind():
    msg = _refused(_unknown("v1", "Pod", b""))
    assert "'Pod'" in msg and "JSON" in msg
    msg = _refused(_unknown("v1", "ObjectMeta", b""))  # a message, but not a top-level kind
    assert "'ObjectMeta'" in msg
    assert "<none>" in _refused(protobuf.MAGIC)


def test_wrong_api_version_for_kind():
    msg = _refused(_unknown("apps/v1", "ConfigMap", b""))
    assert "apps/v1" in msg


def test_invalid_utf8():
    assert "UTF-8" in _refused(_unknown("v1", "ConfigMap", _ld(1, _ld(1, b"\xff\xfe"))))


@settings(max_examples=2000, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_only_api_error(data):
    try:
        protobuf.decode(protobuf.MAGIC + data, None)
    except ApiError as e:
        assert e.code == 415
    # A valid decode of random bytes is fine too (e.g. an empty Unknown is refused above, though).


@settings(max_examples=2000, deadline=None)
@given(st.sampled_from(sorted(protobuf.KINDS)), st.binary(max_size=300))
def test_random_object_bytes_only_api_error(gvk, data):
    try:
        protobuf.decode(_unknown(*gvk, data), None)
    except ApiError as e:
        assert e.code == 415


@settings(max_examples=1000, deadline=None)
@given(st.sampled_from(DECODED), st.data())
def test_mutated_fixture_only_api_error(name, data):
    pb = bytearray(fixture(name)[0])
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(len(protobuf.MAGIC), len(pb) - 1))
        pb[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(len(protobuf.MAGIC), len(pb)))
    try:
        protobuf.decode(bytes(pb[:cut]), None)
    except ApiError as e:
        assert e.code == 415


if __name__ == "__main__":
    sys.exit(write_fixtures())
