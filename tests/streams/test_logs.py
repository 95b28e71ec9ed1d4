"""kubectl logs through proxy_logs -> the agent's /logs (CRI log format files)."""
from __future__ import annotations

import subprocess

import pytest

from tinykube.agent.kubelet.streamserver import parse_cri_line

LINES = [
    "2024-01-01T00:00:01.000000001Z stdout F one",
    "2024-01-01T00:00:02.5Z stderr F two",
    "2024-01-01T00:00:03.000000000Z stdout P thr",
    "2024-01-01T00:00:03.100000000Z stdout F ee",
    "not a cri line",
]


@pytest.fixture()
def logfile(cluster):
    p = cluster.tmp / "default_lp_c1.log"
    p.write_text("\n".join(LINES) + "\n")
    yield p
    p.unlink(missing_ok=True)


def test_parse_cri_line():
    ts, text, partial = parse_cri_line(b"2024-01-01T00:00:03.123456789Z stdout P abc def\n")
    assert (ts.isoformat(), text, partial) == ("2024-01-01T00:00:03.123456+00:00", b"abc def", True)
    assert parse_cri_line(b"plain text\n") == (None, b"plain text", False)


@pytest.mark.parametrize("minor", [27, 33])
def test_logs_plain_and_tail(cluster, logfile, minor):
    r = cluster.kubectl(minor, "logs", "lp", "-c", "c1")
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"one\ntwo\nthree\nnot a cri line\n"
    r = cluster.kubectl(minor, "logs", "lp", "-c", "c1", "--tail=2")
    assert r.stdout == b"three\nnot a cri line\n"


def test_logs_timestamps_and_limit(cluster, logfile):
    r = cluster.kubectl(33, "logs", "lp", "-c", "c1", "--timestamps", "--tail=3")
    # timestamps are printed as stored; a joined partial line keeps its first timestamp
    assert r.stdout.splitlines() == [b"2024-01-01T00:00:02.5Z two",
                                     b"2024-01-01T00:00:03.000000000Z three", b"not a cri line"]
    r = cluster.kubectl(33, "logs", "lp", "-c", "c1", "--since=1h")  # all records are from 2024
    assert r.stdout == b"not a cri line\n"
    r = cluster.kubectl(33, "logs", "lp", "-c", "c1", "--since-time=2024-01-01T00:00:02Z")
    assert r.stdout == b"two\nthree\nnot a cri line\n"
    r = cluster.kubectl(33, "logs", "lp", "-c", "c1", "--limit-bytes=6")
    assert r.stdout == b"one\ntw"


def test_logs_missing_container_is_400(cluster):
    r = cluster.kubectl(33, "logs", "nolog", "-c", "c1")
    assert r.returncode == 1
    assert b"is waiting to start: ContainerCreating" in r.stderr
    r = cluster.kubectl(33, "logs", "nolog", "-c", "c1", "--previous")
    assert b'previous terminated container "c1" in pod "nolog" not found' in r.stderr


def test_logs_follow_streams_until_container_stops(cluster, logfile):
    key = "default/lp/c1"
    cluster.runtime.running.add(key)
    p = subprocess.Popen(cluster.kubectl_args(33, "logs", "-f", "lp", "-c", "c1"),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        for want in (b"one\n", b"two\n", b"three\n", b"not a cri line\n"):
            assert p.stdout.readline() == want
        with logfile.open("a") as f:
            f.write("2024-01-01T00:00:09Z stdout F later\n")
        assert p.stdout.readline() == b"later\n"
        cluster.runtime.running.discard(key)
        assert p.stdout.read() == b""
        assert p.wait(timeout=60) == 0
    finally:
        cluster.runtime.running.discard(key)
        if p.poll() is None:
            p.kill()
            p.wait()
