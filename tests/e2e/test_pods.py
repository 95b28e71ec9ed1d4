"""Pods that really run: `kubectl run --rm -i` (DNS config, hostname, exit codes, clean stderr),
isolation from the host and from each other, the failure paths users see in `kubectl get pods`
and `kubectl describe`, and an agent killed with -9 that adopts its running pods."""
from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

from .conftest import wait_for

MANIFESTS = Path(__file__).parent.parent / "manifests" / "pods"
# kubectl's own hint on an attach; anything else on stderr is a problem
PROMPT_HINT = "If you don't see a command prompt, try pressing enter."


def curl(url: str) -> subprocess.CompletedProcess:
    return subprocess.run(["curl", "-s", "-m", "5", url], capture_output=True, text=True, timeout=10)


def clean_stderr(err: str) -> list[str]:
    return [l for l in err.splitlines() if l.strip() and l.strip() != PROMPT_HINT]


def run_pod(k, ns: str, name: str, *cmd: str) -> subprocess.CompletedProcess:
    return k("run", name, "-n", ns, "--image=centos:6", "--restart=Never", "--rm", "-i", "--", *cmd,
             timeout=120)


def pod(k, ns: str, name: str) -> dict:
    return json.loads(k.ok("get", "pod", name, "-n", ns, "-o", "json"))


def get_row(k, ns: str, name: str) -> list[str]:
    return k.ok("get", "pod", name, "-n", ns, "--no-headers").split()


def wait_running(k, ns: str, name: str, timeout: float = 60) -> dict:
    return wait_for(lambda: (lambda p: p if p["status"].get("phase") == "Running" and all(
        c.get("ready") for c in p["status"].get("containerStatuses") or [{}]) else None)(pod(k, ns, name)),
        timeout=timeout, what=f"pod {name} running and ready")


# ---------------------------------------------------------------- kubectl run --rm -i

def test_run_resolv_conf_is_the_cluster_dns(k, ns, cluster):
    r = run_pod(k, ns, "testpod", "cat", "/etc/resolv.conf")
    assert r.returncode == 0, r.stderr
    lines = [l.strip() for l in r.stdout.splitlines() if l.strip()]
    assert f"search {ns}.svc.cluster.local svc.cluster.local cluster.local" in lines
    assert f"nameserver {cluster.config.dns_ip}" in lines
    assert "options ndots:5" in lines
    assert clean_stderr(r.stderr) == [], r.stderr
    assert 'pod "testpod" deleted' in r.stdout


def test_run_hostname_and_exit_codes(k, ns):
    r = run_pod(k, ns, "testpod", "hostname")
    assert r.returncode == 0 and r.stdout.splitlines()[0].strip() == "testpod", (r.stdout, r.stderr)
    assert clean_stderr(r.stderr) == [], r.stderr
    r = run_pod(k, ns, "exiter", "sh", "-c", "echo before; exit 3")
    assert r.returncode == 3, (r.stdout, r.stderr)
    assert r.stdout.splitlines()[0] == "before"
    assert clean_stderr(r.stderr) == [f"pod {ns}/exiter terminated (Error)"], r.stderr
    # stdin reaches the command (stdinOnce: closed when kubectl's input ends)
    r = k("run", "catter", "-n", ns, "--image=busybox", "--restart=Never", "--rm", "-i", "--", "cat",
          input="from stdin\n", timeout=120)
    assert r.returncode == 0 and r.stdout.splitlines()[0] == "from stdin", (r.stdout, r.stderr)
    assert clean_stderr(r.stderr) == [], r.stderr
    # --rm really removed them
    assert k.ok("get", "pods", "-n", ns, "-o", "name").strip() == ""


def test_run_with_kubectl_1_27_spdy_attach(cluster, ns):
    k27 = cluster.kubectl("1.27")
    r = run_pod(k27, ns, "oldpod", "sh", "-c", "hostname; exit 3")
    assert r.returncode == 3 and r.stdout.splitlines()[0] == "oldpod", (r.stdout, r.stderr)
    # kubectl's own report of a failed pod, as against any cluster
    assert clean_stderr(r.stderr) == [f"pod {ns}/oldpod terminated (Error)"], r.stderr


def test_stdin_once_container_starts_without_an_attach(k, ns):
    """The start gate of a stdinOnce container opens after a few seconds when nobody attaches."""
    manifest = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "lonely"},
                "spec": {"restartPolicy": "Never", "containers": [
                    {"name": "main", "image": "busybox", "stdin": True, "stdinOnce": True,
                     "command": ["sh", "-c", "echo started alone"]}]}}
    k.ok("apply", "-n", ns, "-f", "-", input=json.dumps(manifest))
    wait_for(lambda: get_row(k, ns, "lonely")[2] == "Completed", timeout=60, what="lonely completed")
    assert k.ok("logs", "-n", ns, "lonely") == "started alone\n"


# ---------------------------------------------------------------- isolation

@pytest.fixture(scope="module")
def two_pods(k):
    import uuid
    ns = f"e2e-iso-{uuid.uuid4().hex[:6]}"
    k.ok("create", "namespace", ns)
    for name in ("iso-a", "iso-b"):
        k.ok("run", name, "-n", ns, "--image=nginx:1.16", "--port=80")
    a, b = (wait_running(k, ns, n) for n in ("iso-a", "iso-b"))
    yield ns, a, b
    k("delete", "namespace", ns, "--wait=false")


def test_pod_cannot_write_the_host_filesystem(k, two_pods):
    ns, a, _ = two_pods
    r = k("exec", "-n", ns, "iso-a", "--", "touch", "/usr/tinykube-escape")
    assert r.returncode != 0 and "Read-only file system" in r.stderr, (r.returncode, r.stderr)
    assert not os.path.exists("/usr/tinykube-escape")
    r = k("exec", "-n", ns, "iso-a", "--", "sh", "-c", "echo x > /etc/tinykube-escape")
    assert r.returncode != 0 and "Read-only file system" in r.stderr
    assert not os.path.exists("/etc/tinykube-escape")
    # its own writable places work
    assert k.ok("exec", "-n", ns, "iso-a", "--", "sh", "-c", "echo ok > /tmp/f && cat /tmp/f").strip() == "ok"


def test_pod_sees_only_its_own_processes(k, two_pods):
    ns, _, _ = two_pods
    pids = k.ok("exec", "-n", ns, "iso-a", "--", "sh", "-c", "ls /proc | grep -E '^[0-9]+$'").split()
    comms = k.ok("exec", "-n", ns, "iso-a", "--", "sh", "-c", "cat /proc/[0-9]*/comm").split()
    assert "1" in pids and len(pids) < 20, pids
    assert "nginx" in comms
    for host_only in ("systemd", "init", "python3", "python", "sshd", "kubectl"):
        assert host_only not in comms, comms
    ps = k.ok("exec", "-n", ns, "iso-a", "--", "ps", "-e", "-o", "pid=,comm=")
    assert "nginx" in ps and len(ps.splitlines()) < 20


def test_pod_has_its_own_hostname_and_reaches_others_by_ip(k, two_pods):
    ns, a, b = two_pods
    assert k.ok("exec", "-n", ns, "iso-a", "--", "hostname").strip() == "iso-a"
    assert k.ok("exec", "-n", ns, "iso-b", "--", "hostname").strip() == "iso-b"
    assert subprocess.run(["hostname"], capture_output=True, text=True).stdout.strip() != "iso-a"
    k.ok("exec", "-n", ns, "iso-b", "--", "cp", "/etc/hostname", "/usr/share/nginx/html/index.html")
    out = k.ok("exec", "-n", ns, "iso-a", "--", "curl", "-s", "-m", "5", f"http://{b['status']['podIP']}/")
    assert out.strip() == "iso-b"
    assert a["status"]["podIP"] != b["status"]["podIP"]


# ---------------------------------------------------------------- failure paths

def test_failure_paths_show_like_kubernetes(k, ns):
    k.ok("apply", "-n", ns, "-f", str(MANIFESTS / "failing.yaml"))
    # a crashing container is restarted with back-off
    wait_for(lambda: (lambda row: row[2] == "CrashLoopBackOff" and int(row[3]) >= 1)(get_row(k, ns, "crasher")),
             timeout=90, what="CrashLoopBackOff")
    st = pod(k, ns, "crasher")["status"]["containerStatuses"][0]
    assert st["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    assert "back-off" in st["state"]["waiting"]["message"]
    assert st["lastState"]["terminated"]["exitCode"] == 1
    assert k.ok("logs", "-n", ns, "crasher").strip() == "crashing"
    events = k.ok("get", "events", "-n", ns, "--field-selector", "involvedObject.name=crasher")
    assert "BackOff" in events and "Back-off restarting failed container" in events
    # a failing readiness probe: Running but not Ready (checked after the probe has failed)
    desc = wait_for(lambda: (lambda d: d if "Readiness probe failed: HTTP probe failed with statuscode: 404"
                             in d else None)(k.ok("describe", "pod", "notready", "-n", ns)), what="Unhealthy event")
    assert "Unhealthy" in desc
    row = get_row(k, ns, "notready")
    assert row[1:3] == ["0/1", "Running"], row
    assert k.ok("get", "pod", "notready", "-n", ns, "-o",
                "jsonpath={.status.conditions[?(@.type=='Ready')].status}") == "False"
    # no Service would send it traffic: it is listed as not ready in its endpoints' terms
    assert pod(k, ns, "notready")["status"]["containerStatuses"][0]["ready"] is False
    # an image tinykube cannot run
    wait_for(lambda: get_row(k, ns, "badimage")[2] in ("ErrImagePull", "ImagePullBackOff"), what="ErrImagePull")
    desc = wait_for(lambda: (lambda d: d if "nginx" in d and "busybox" in d else None)(
        k.ok("describe", "pod", "badimage", "-n", ns)), what="pull event")
    assert "example.invalid/no-such-image:1.0" in desc
    assert "Failed" in desc and "ErrImagePull" in desc
    wait_for(lambda: get_row(k, ns, "badimage")[2] == "ImagePullBackOff", timeout=60, what="ImagePullBackOff")


# ---------------------------------------------------------------- agent restart

def _agent(cluster) -> dict:
    state = json.loads((cluster.data_dir / "run" / "supervisor.json").read_text())
    return next(c for c in state["components"] if c["name"] == "agent")


def test_killed_agent_leaves_pods_running_and_adopts_them(k, ns, cluster):
    k.ok("create", "deployment", "survivor", "-n", ns, "--image=nginx:1.16", "--replicas=2", "--port=80")
    k.ok("rollout", "status", "deployment/survivor", "-n", ns, "--timeout=120s", timeout=130)

    def snapshot():
        items = json.loads(k.ok("get", "pods", "-n", ns, "-l", "app=survivor", "-o", "json"))["items"]
        return {p["metadata"]["name"]: (p["metadata"]["uid"], p["status"]["podIP"],
                                        p["status"]["containerStatuses"][0]["restartCount"],
                                        p["status"]["containerStatuses"][0].get("containerID"))
                for p in items}
    before = snapshot()
    assert len(before) == 2
    masters = {n: k.ok("exec", "-n", ns, n, "--", "cat", "/run/nginx.pid").strip() for n in before}
    assert all(m.isdigit() for m in masters.values()), masters
    agent = _agent(cluster)
    os.kill(agent["pid"], signal.SIGKILL)
    # the data plane does not depend on the agent process
    for _, ip, _, _ in before.values():
        r = curl(f"http://{ip}/")
        assert r.returncode == 0 and "Welcome to nginx!" in r.stdout, r
    wait_for(lambda: _agent(cluster)["pid"] not in (0, agent["pid"])
             and (cluster.data_dir / "run" / "agent.ready").exists(), timeout=90, what="agent restarted")
    # streams work again through the new agent, and nothing was restarted or duplicated
    wait_for(lambda: k("exec", "-n", ns, next(iter(before)), "--", "true").returncode == 0,
             what="exec through the new agent")
    assert snapshot() == before
    for n, m in masters.items():
        assert k.ok("exec", "-n", ns, n, "--", "cat", "/run/nginx.pid").strip() == m
    # one nginx master per pod, not two
    for n in before:
        comms = k.ok("exec", "-n", ns, n, "--", "sh", "-c", "cat /proc/[0-9]*/cmdline | tr '\\0' ' '; echo")
        assert comms.count("nginx: master process") <= 1
    for _, ip, _, _ in before.values():
        assert "Welcome to nginx!" in curl(f"http://{ip}/").stdout
    # and the restarted agent still manages them: a new pod starts, deletion stops one
    k.ok("scale", "deployment/survivor", "-n", ns, "--replicas=3")
    k.ok("rollout", "status", "deployment/survivor", "-n", ns, "--timeout=120s", timeout=130)
