"""The official Python client (kubernetes 37) against tinykube's stream handlers."""
from __future__ import annotations

import pytest

kubernetes = pytest.importorskip("kubernetes")
from kubernetes import client  # noqa: E402
from kubernetes.stream import portforward, stream  # noqa: E402


@pytest.fixture()
def v1(cluster):
    cfg = client.Configuration()
    cfg.host = f"http://127.0.0.1:{cluster.api_port}"
    with client.ApiClient(cfg) as api:
        yield client.CoreV1Api(api)


def test_exec_output(v1):
    out = stream(v1.connect_get_namespaced_pod_exec, "p1", "default", container="c1",
                 command=["echo", "hi"], stdout=True, stderr=True, stdin=False, tty=False)
    assert out == "hi\n"


def test_exec_returncode_and_channels(v1):
    ws = stream(v1.connect_get_namespaced_pod_exec, "p1", "default", container="c1",
                command=["sh", "-c", "echo out; echo err >&2; exit 5"], stdout=True, stderr=True,
                stdin=False, tty=False, _preload_content=False)
    ws.run_forever(timeout=30)
    assert ws.read_stdout() == "out\n"
    assert ws.read_stderr() == "err\n"
    assert ws.returncode == 5


def test_exec_success_returncode_zero(v1):
    ws = stream(v1.connect_get_namespaced_pod_exec, "p1", "default", container="c1",
                command=["true"], stdout=True, stderr=True, stdin=False, tty=False, _preload_content=False)
    ws.run_forever(timeout=30)
    assert ws.returncode == 0


def test_exec_stdin_and_v5_close(v1):
    ws = stream(v1.connect_get_namespaced_pod_exec, "p1", "default", container="c1",
                command=["cat"], stdout=True, stderr=True, stdin=True, tty=False, _preload_content=False)
    ws.write_stdin("abc\n")
    ws.close_channel(0)  # v5: [255, 0] = stdin EOF
    ws.run_forever(timeout=30)
    assert ws.read_stdout() == "abc\n"
    assert ws.returncode == 0


def test_portforward(v1, cluster):
    pf = portforward(v1.connect_get_namespaced_pod_portforward, "p1", "default",
                     ports=str(cluster.target_port))
    sock = pf.socket(cluster.target_port)
    sock.setblocking(True)
    sock.sendall(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
    got = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            break
        got += chunk
    sock.close()
    assert got.startswith(b"HTTP/1.1 200 OK")
    assert got.endswith(b"hello from the pod\n")
    assert pf.error(cluster.target_port) is None


def test_portforward_connect_error(v1, cluster):
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    free = s.getsockname()[1]
    s.close()  # nothing listens there now
    pf = portforward(v1.connect_get_namespaced_pod_portforward, "p1", "default", ports=str(free))
    sock = pf.socket(free)
    sock.setblocking(True)
    assert sock.recv(100) == b""
    assert "127.0.0.1" in pf.error(free)
