"""exec, attach, logs and port-forward through the API server to the agent, with kubectl 1.27
(SPDY) and 1.33 (WebSocket), and the official Python client's exec stream."""
from __future__ import annotations

import json
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from tests.conftest import free_port

from .conftest import wait_for

MANIFESTS = Path(__file__).parent.parent / "manifests" / "pods"
VERSIONS = ["1.27", "1.33"]


@pytest.fixture(scope="module")
def sns(k):
    name = f"e2e-st-{uuid.uuid4().hex[:6]}"
    k.ok("create", "namespace", name)
    k.ok("apply", "-n", name, "-f", str(MANIFESTS / "streams.yaml"))
    for p in ("talker", "catter", "ticker", "web"):
        k.ok("wait", "--for=condition=Ready", f"pod/{p}", "-n", name, "--timeout=90s", timeout=100)
    k.ok("rollout", "status", "deployment/greeter", "-n", name, "--timeout=90s", timeout=100)
    yield name
    k("delete", "namespace", name, "--wait=false")


@pytest.fixture(params=VERSIONS, ids=lambda v: f"kubectl-{v}")
def kv(request, cluster):
    return cluster.kubectl(request.param)


def timed(kv, seconds: float, *args: str, input: str | None = None) -> subprocess.CompletedProcess:
    """kubectl under `timeout` (for commands that follow a stream forever)."""
    return subprocess.run(["timeout", str(seconds), kv.binary, f"--cache-dir={kv.cache_dir}",
                           f"--kubeconfig={kv.kubeconfig}", *args],
                          input=input, capture_output=True, text=True, timeout=seconds + 10)


def test_exec(kv, sns):
    assert kv.ok("exec", "-n", sns, "talker", "--", "echo", "hi") == "hi\n"
    assert kv.ok("exec", "-i", "-n", sns, "talker", "--", "cat", input="abc\n") == "abc\n"
    r = kv("exec", "-n", sns, "talker", "--", "sh", "-c", "echo out; echo err >&2; exit 3")
    assert (r.returncode, r.stdout) == (3, "out\n"), r
    assert r.stderr.splitlines() == ["err", "command terminated with exit code 3"], r
    r = kv("exec", "-n", sns, "talker", "--", "no-such-command")
    assert r.returncode != 0 and "no-such-command" in r.stderr


def test_exec_with_a_terminal(kv, sns):
    """`kubectl exec -it` under a real terminal (script(1)): the command sees a tty of its own
    container, the terminal's size, and its exit code comes back."""
    cmd = (f"stty cols 100 rows 30; {kv.binary} --cache-dir={kv.cache_dir} --kubeconfig={kv.kubeconfig} "
           f"exec -it -n {sns} talker -- sh -c 'tty; sleep 1; stty size; exit 4'")
    r = subprocess.run(["script", "-qec", cmd, "/dev/null"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 4, r
    assert "/dev/pts/" in r.stdout and "not a tty" not in r.stdout, r.stdout
    assert "30 100" in r.stdout, r.stdout


def test_logs(kv, sns):
    assert kv.ok("logs", "-n", sns, "talker") == "".join(f"line {i}\n" for i in range(1, 6))
    assert kv.ok("logs", "-n", sns, "talker", "--tail=2") == "line 4\nline 5\n"
    ts = kv.ok("logs", "-n", sns, "talker", "--timestamps", "--tail=1").split()
    assert ts[0].endswith("Z") and "T" in ts[0] and ts[1:] == ["line", "5"]
    r = timed(kv, 4, "logs", "-f", "-n", sns, "ticker")
    assert r.returncode == 124, r  # still following when the timeout ends it
    ticks = [l for l in r.stdout.splitlines() if l.startswith("tick ")]
    assert len(ticks) >= 3 and ticks[0] == "tick 1", r.stdout[:200]
    out = kv.ok("logs", "-n", sns, "deploy/greeter")
    assert out.startswith("hello from greeter-") and len(out.splitlines()) == 1
    lines = sorted(kv.ok("logs", "-n", sns, "-l", "app=greeter").splitlines())
    pods = sorted(p["metadata"]["name"] for p in json.loads(
        kv.ok("get", "pods", "-n", sns, "-l", "app=greeter", "-o", "json"))["items"])
    assert len(pods) == 2 and lines == [f"hello from {p}" for p in pods]
    r = kv("logs", "-n", sns, "talker", "--previous")
    assert r.returncode != 0 and "previous terminated container" in r.stderr


def test_logs_previous_after_a_restart(kv, sns):
    wait_for(lambda: kv.ok("get", "pod", "restarter", "-n", sns, "-o",
                           "jsonpath={.status.containerStatuses[0].restartCount}/{.status.phase}/"
                           "{.status.containerStatuses[0].ready}") == "1/Running/true",
             timeout=90, what="restarter restarted once")
    assert kv.ok("logs", "-n", sns, "restarter") == "run 2\n"
    assert kv.ok("logs", "-n", sns, "restarter", "--previous") == "run 1\n"
    assert kv.ok("logs", "-n", sns, "restarter", "-p", "-c", "main") == "run 1\n"


def test_attach(kv, sns):
    r = timed(kv, 3, "attach", "-n", sns, "ticker")
    assert r.returncode == 124 and "tick" in r.stdout, r
    word = f"w{uuid.uuid4().hex[:6]}"
    r = timed(kv, 3, "attach", "-i", "-n", sns, "catter", input=f"{word}\n")
    assert word in r.stdout.split(), r


def _port_forward(kv, sns: str, target: str, remote: int, pod_port: int) -> tuple[subprocess.Popen, int]:
    port = free_port()
    p = subprocess.Popen([kv.binary, f"--cache-dir={kv.cache_dir}", f"--kubeconfig={kv.kubeconfig}",
                          "port-forward", "-n", sns, target, f"{port}:{remote}"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = p.stdout.readline()
    # kubectl resolves a Service port to the pod's port and forwards to the pod
    assert line.startswith(f"Forwarding from 127.0.0.1:{port} -> {pod_port}"), (line, p.poll())
    return p, port


@pytest.mark.parametrize("target,remote", [("pod/web", 80), ("svc/web-svc", 8080)])
def test_port_forward(kv, sns, target, remote):
    p, port = _port_forward(kv, sns, target, remote, 80)
    try:
        for _ in range(3):  # several connections over one forward
            r = subprocess.run(["curl", "-s", "-m", "5", f"http://127.0.0.1:{port}/"], capture_output=True,
                               text=True, timeout=10)
            assert r.returncode == 0 and "Welcome to nginx!" in r.stdout, r
    finally:
        p.terminate()
        p.wait(10)


def test_python_client_exec_stream(cluster, sns):
    from kubernetes import client, config
    from kubernetes.stream import stream
    cfg = client.Configuration()
    config.load_kube_config(config_file=str(cluster.kubeconfig), client_configuration=cfg)
    api = client.CoreV1Api(client.ApiClient(cfg))
    out = stream(api.connect_get_namespaced_pod_exec, "talker", sns, command=["echo", "hi"],
                 stderr=True, stdin=False, stdout=True, tty=False)
    assert out == "hi\n"
    resp = stream(api.connect_get_namespaced_pod_exec, "talker", sns,
                  command=["sh", "-c", "read x; echo got $x; echo bad >&2; exit 3"],
                  stderr=True, stdin=True, stdout=True, tty=False, _preload_content=False)
    resp.write_stdin("abc\n")
    stdout, stderr = "", ""
    deadline = time.monotonic() + 30
    while resp.is_open() and time.monotonic() < deadline:
        resp.update(timeout=1)
        stdout += resp.read_stdout() if resp.peek_stdout() else ""
        stderr += resp.read_stderr() if resp.peek_stderr() else ""
    resp.close()
    assert (stdout, stderr) == ("got abc\n", "bad\n")
    assert resp.returncode == 3
