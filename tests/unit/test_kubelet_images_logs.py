"""Pure parts of the kubelet: image runners, log format, IPAM, volumes layout."""

import datetime

from tinykube.agent.kubelet import images, logs, volumes
from tinykube.agent.kubelet.runtime import go_duration
from tinykube.agent.kubelet.shim import rfc3339nano
from tinykube.net.ipam import IPAM


def test_image_kinds():
    assert images.kind_of("nginx") == "nginx"
    assert images.kind_of("nginx:1.12") == "nginx"
    assert images.kind_of("docker.io/library/nginx:1.16") == "nginx"
    assert images.kind_of("amsy810/echo-nginx:v2.0") == "echo-nginx"
    assert images.kind_of("registry.k8s.io/e2e-test-images/agnhost:2.47") == "agnhost"
    assert images.kind_of("centos:6") == "os"
    assert images.kind_of("amsy810/tools:v2.0") == "os"
    assert images.kind_of("python:3.11-slim") == "os"
    assert images.kind_of("example.com/private/app:1") is None
    assert images.kind_of("redis") is None
    assert "nginx" in images.pull_error_message("redis")


def test_image_names_and_commands():
    assert images.normalize("nginx") == "docker.io/library/nginx:latest"
    assert images.normalize("amsy810/tools:v2.0") == "docker.io/amsy810/tools:v2.0"
    assert images.normalize("registry.k8s.io/e2e-test-images/agnhost:2.47") == \
        "registry.k8s.io/e2e-test-images/agnhost:2.47"
    assert images.image_id("nginx").startswith("docker.io/library/nginx@sha256:")
    assert images.command_for("nginx", [], []) == ["nginx", "-g", "daemon off;"]
    assert images.command_for("busybox", [], ["sleep", "1"]) == ["sleep", "1"]
    assert images.command_for("amsy810/tools:v2.0", [], []) == ["sleep", "infinity"]
    assert images.command_for("centos:6", ["curl"], ["-s", "x"]) == ["curl", "-s", "x"]
    argv = images.command_for("agnhost", ["/agnhost"], ["netexec"])
    assert argv[1] == images.AGNHOST and argv[2:] == ["netexec"]
    assert images.command_for("agnhost", [], ["serve-hostname"])[2:] == ["serve-hostname"]


def test_log_lines_and_filters(tmp_path):
    ts = rfc3339nano(1700000000.123456789)
    assert ts.startswith("2023-11-14T22:13:20.123456") and ts.endswith("Z")
    assert rfc3339nano(1700000000.0) == "2023-11-14T22:13:20Z"
    p = tmp_path / "0.log"
    p.write_text("2023-11-14T22:13:20.1Z stdout F one\n"
                 "2023-11-14T22:13:21.5Z stderr F two\n"
                 "2023-11-14T22:13:22Z stdout F three\n")
    assert logs.read_log(p) == b"one\ntwo\nthree\n"
    assert logs.read_log(p, tail_lines=1) == b"three\n"
    assert logs.read_log(p, timestamps=True).splitlines()[0] == b"2023-11-14T22:13:20.1Z one"
    since = datetime.datetime(2023, 11, 14, 22, 13, 21, tzinfo=datetime.timezone.utc)
    assert logs.read_log(p, since=since) == b"two\nthree\n"
    assert logs.read_log(p, limit_bytes=5) == b"one\nt"
    assert logs.read_log(tmp_path / "missing.log") == b""


def test_go_duration():
    assert go_duration(10) == "10s"
    assert go_duration(80) == "1m20s"
    assert go_duration(300) == "5m0s"
    assert go_duration(0.5) == "500ms"


def test_ipam_round_robin_and_persistence(tmp_path):
    a = IPAM(tmp_path, "10.250.3.0/24")
    assert a.gateway == "10.250.3.1"
    ip1 = a.allocate("u1")
    ip2 = a.allocate("u2")
    assert (ip1, ip2) == ("10.250.3.2", "10.250.3.3")
    assert a.allocate("u1") == ip1
    a.release("u1")
    b = IPAM(tmp_path, "10.250.3.0/24")  # a restarted agent
    assert b.get("u2") == ip2
    assert b.allocate("u3") == "10.250.3.4"  # a released address is not reused at once


def test_configmap_volume_layout(tmp_path):
    pod = {"metadata": {"name": "p", "namespace": "ns", "labels": {"a": "b"}}, "spec": {}}
    vol = {"name": "v", "configMap": {"name": "cm", "items": [{"key": "k", "path": "d/f"}]}}
    path = volumes.prepare(pod, vol, tmp_path / "v", {"cm": {"data": {"k": "v1", "o": "x"}}},
                           {})
    assert (path / "d" / "f").read_text() == "v1"
    assert (path / "d").is_symlink() and (path / "..data").is_symlink()
    assert not (path / "o").exists()
    volumes.prepare(pod, vol, tmp_path / "v", {"cm": {"data": {"k": "v2"}}}, {})
    assert (path / "d" / "f").read_text() == "v2"
    dv = {"name": "d", "downwardAPI": {"items": [
        {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
        {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}}]}}
    path = volumes.prepare(pod, dv, tmp_path / "d", {}, {})
    assert (path / "labels").read_text() == 'a="b"'
    assert (path / "name").read_text() == "p"
    sv = {"name": "s", "secret": {"secretName": "s"}}
    path = volumes.prepare(pod, sv, tmp_path / "s", {}, {"s": {"data": {"pw": "aGk="}}})
    assert (path / "pw").read_text() == "hi"
