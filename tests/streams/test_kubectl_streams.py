"""Real kubectl binaries against tinykube's stream handlers (SPDY on 1.27, WebSocket on 1.33)."""
from __future__ import annotations

import re
import shlex
import subprocess

import pytest

VERSIONS = [27, 33]
ALL_VERSIONS = [27, 28, 29, 30, 31, 32, 33]


@pytest.mark.parametrize("minor", VERSIONS)
def test_exec_echo(cluster, minor):
    n = len(cluster.transports())
    r = cluster.kubectl(minor, "exec", "p1", "--", "echo", "hi")
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"hi\n"
    used = cluster.transports()[n:]
    if minor == 27:
        assert used == [("exec", "POST", "SPDY/3.1", "")]
    else:  # no fallback happened
        assert used == [("exec", "GET", "websocket", "v5.channel.k8s.io")]


@pytest.mark.parametrize("minor", VERSIONS)
def test_exec_stderr_is_separate(cluster, minor):
    r = cluster.kubectl(minor, "exec", "p1", "--", "sh", "-c", "echo out; echo err >&2")
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"out\n"
    assert b"err\n" in r.stderr


@pytest.mark.parametrize("minor", ALL_VERSIONS)
def test_exec_exit_code(cluster, minor):
    r = cluster.kubectl(minor, "exec", "p1", "--", "sh", "-c", "exit 3")
    assert r.returncode == 3
    assert b"command terminated with exit code 3" in r.stderr


@pytest.mark.parametrize("minor", VERSIONS)
def test_exec_stdin(cluster, minor):
    r = cluster.kubectl(minor, "exec", "-i", "p1", "--", "cat", input=b"abc\n")
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"abc\n"


@pytest.mark.parametrize("minor", VERSIONS)
def test_exec_large_output_and_input(cluster, minor):
    data = bytes(range(256)) * 4096  # 1 MiB
    r = cluster.kubectl(minor, "exec", "-i", "p1", "--", "cat", input=data)
    assert r.returncode == 0, r.stderr
    assert r.stdout == data


@pytest.mark.parametrize("minor", VERSIONS)
def test_exec_runtime_error_is_reported(cluster, minor):
    r = cluster.kubectl(minor, "exec", "gone", "--", "true")
    assert r.returncode != 0
    assert b'container "c1" not found' in r.stderr


@pytest.mark.parametrize("minor", VERSIONS)
def test_exec_tty(cluster, minor):
    cmd = shlex.join(cluster.kubectl_args(minor, "exec", "-it", "p1", "--", "sh", "-c",
                                          # the first resize may land just after the start: wait for it (no timing)
                                          'while [ "$(stty size)" = "0 0" ]; do sleep 0.05; done; '
                                          "stty size; tty >/dev/null && echo is-a-tty; exit 4"))
    r = subprocess.run(["script", "-qec", f"stty rows 33 cols 101; {cmd}", "/dev/null"],
                       capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
    out = r.stdout.replace(b"\r", b"")
    assert b"is-a-tty" in out, (out, r.stderr)
    assert b"33 101" in out
    assert r.returncode == 4


@pytest.mark.parametrize("minor", VERSIONS)
def test_attach_stdin(cluster, minor):
    r = cluster.kubectl(minor, "attach", "-i", "p1", "-c", "c1", input=b"typed\n")
    assert r.returncode == 0, r.stderr
    assert b"attached\n" in r.stdout and b"typed\n" in r.stdout


def _port_forward(cluster, minor, env=None):
    import os
    e = {k: v for k, v in os.environ.items() if not k.startswith("KUBECTL_")}
    e.update(env or {})
    p = subprocess.Popen(cluster.kubectl_args(minor, "port-forward", "pod/p1", f":{cluster.target_port}"),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=e)
    line = p.stdout.readline().decode()
    m = re.search(r"Forwarding from 127\.0\.0\.1:(\d+) ->", line)
    if not m:
        p.kill()
        raise AssertionError(f"no forwarding line: {line!r} {p.stderr.read()!r}")
    return p, int(m.group(1))


@pytest.mark.parametrize("minor,env", [(27, None), (33, None),
                                       (33, {"KUBECTL_PORT_FORWARD_WEBSOCKETS": "false"})])
def test_port_forward_curl(cluster, minor, env):
    n = len(cluster.transports())
    p, local = _port_forward(cluster, minor, env)
    try:
        used = cluster.transports()[n:]
        if minor == 33 and env is None:
            assert used == [("portforward", "GET", "websocket", "SPDY/3.1+portforward.k8s.io")]
        else:
            assert used == [("portforward", "POST", "SPDY/3.1", "")]
        for _ in range(3):  # several connections over the one upgraded session
            r = subprocess.run(["curl", "-s", "--max-time", "30", f"http://127.0.0.1:{local}/"],
                               capture_output=True, timeout=60)
            assert r.returncode == 0, r.stderr
            assert r.stdout == b"hello from the pod\n"
    finally:
        p.kill()
        p.wait()


@pytest.mark.parametrize("minor", VERSIONS)
def test_port_forward_half_close_echo(cluster, minor):
    import socket
    p, local = _port_forward(cluster, minor)
    try:
        payload = b"x" * 300000 + b"end"
        with socket.create_connection(("127.0.0.1", local), timeout=30) as s:
            s.sendall(payload)
            s.shutdown(socket.SHUT_WR)
            got = b""
            while chunk := s.recv(65536):
                got += chunk
        assert got == payload
    finally:
        p.kill()
        p.wait()


def test_spdy_fallback_on_133(cluster):
    r = cluster.kubectl(33, "exec", "p1", "--", "echo", "spdy",
                        env={"KUBECTL_REMOTE_COMMAND_WEBSOCKETS": "false"})
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"spdy\n"


def test_websocket_on_129(cluster):
    r = cluster.kubectl(29, "exec", "p1", "--", "sh", "-c", "echo ws; exit 2",
                        env={"KUBECTL_REMOTE_COMMAND_WEBSOCKETS": "true"})
    assert r.stdout == b"ws\n"
    assert r.returncode == 2


@pytest.mark.parametrize("minor", ALL_VERSIONS)
def test_port_forward_every_version(cluster, minor):
    p, local = _port_forward(cluster, minor)
    try:
        r = subprocess.run(["curl", "-s", "--max-time", "30", f"http://127.0.0.1:{local}/"],
                           capture_output=True, timeout=60)
        assert r.stdout == b"hello from the pod\n"
    finally:
        p.kill()
        p.wait()
