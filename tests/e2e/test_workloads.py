"""Workloads that really run: the book's nginx Deployment (names, exec, curl to pod IPs),
`kubectl get deploy` columns, rolling update, scale, cascading delete, and a StatefulSet
created in order."""
from __future__ import annotations

import json
import re
import subprocess
import uuid
from pathlib import Path

import pytest

from .conftest import wait_for

MANIFESTS = Path(__file__).parent.parent / "manifests" / "pods"
# Kubernetes' form: the pod-template-hash is a uint32 in decimal, each digit mapped into the
# alphabet below (rand.SafeEncodeString), so it is up to 10 characters (9 or 10 nearly always);
# the pod suffix is 5 characters of the same alphabet.
SAFE = "[bcdfghjklmnpqrstvwxz2456789]"
POD_NAME = re.compile(rf"^sample-deployment-{SAFE}{{9,10}}-{SAFE}{{5}}$")
RS_NAME = re.compile(rf"^sample-deployment-{SAFE}{{9,10}}$")


def curl(url: str) -> subprocess.CompletedProcess:
    return subprocess.run(["curl", "-s", "-m", "5", url], capture_output=True, text=True, timeout=10)


def pods(k, ns: str, selector: str) -> list[dict]:
    return json.loads(k.ok("get", "pods", "-n", ns, "-l", selector, "-o", "json"))["items"]


def ready(p: dict) -> bool:
    return p["status"].get("phase") == "Running" and not p["metadata"].get("deletionTimestamp") and any(
        c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions") or [])


@pytest.fixture(scope="module")
def wns(k):
    name = f"e2e-wl-{uuid.uuid4().hex[:6]}"
    k.ok("create", "namespace", name)
    yield name
    k("delete", "namespace", name, "--wait=false")


@pytest.fixture(scope="module")
def deploy(k, wns):
    k.ok("apply", "-n", wns, "-f", str(MANIFESTS / "nginx-deployment.yaml"))
    k.ok("rollout", "status", "deployment/sample-deployment", "-n", wns, "--timeout=120s", timeout=130)
    return "sample-deployment"


def test_deployment_pods_serve_their_own_name(k, wns, deploy):
    items = wait_for(lambda: [p for p in pods(k, wns, "app=sample-app") if ready(p)] if len(
        [p for p in pods(k, wns, "app=sample-app") if ready(p)]) == 3 else None, what="3 ready pods")
    out = k.ok("get", "pods", "-n", wns, "-l", "app=sample-app", "--no-headers")
    assert len(out.splitlines()) == 3
    for line in out.splitlines():
        name, rdy, status = line.split()[:3]
        assert POD_NAME.match(name), name
        assert (rdy, status) == ("1/1", "Running"), line
    for p in items:
        name = p["metadata"]["name"]
        k.ok("exec", "-n", wns, name, "--", "cp", "/etc/hostname", "/usr/share/nginx/html/index.html")
        r = curl(f"http://{p['status']['podIP']}/")
        assert r.returncode == 0 and r.stdout.strip() == name, (name, r.stdout, r.stderr)
    # the Service spreads over the three pods
    ip = k.ok("get", "svc", "sample-svc", "-n", wns, "-o", "jsonpath={.spec.clusterIP}")
    names = {p["metadata"]["name"] for p in items}
    seen = wait_for(lambda: (lambda s: s if s == names else None)(
        {curl(f"http://{ip}:8080/").stdout.strip() for _ in range(30)}), what="all pods behind the Service")
    assert seen == names


def test_get_deploy_columns(k, wns, deploy):
    out = k.ok("get", "deploy", deploy, "-n", wns)
    head, row = out.splitlines()
    assert head.split() == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    assert row.split()[:4] == [deploy, "3/3", "3", "3"]
    rs = k.ok("get", "rs", "-n", wns, "--no-headers").split()
    assert RS_NAME.match(rs[0]) and rs[1:4] == ["3", "3", "3"]


def test_rolling_update_and_scale(k, wns, deploy):
    k.ok("set", "image", f"deployment/{deploy}", "-n", wns, "nginx-container=nginx:1.17")
    k.ok("rollout", "status", f"deployment/{deploy}", "-n", wns, "--timeout=120s", timeout=130)
    items = wait_for(lambda: (lambda ps: ps if len(ps) == 3 and all(ready(p) for p in ps) else None)(
        [p for p in pods(k, wns, "app=sample-app") if not p["metadata"].get("deletionTimestamp")]),
        what="3 updated pods")
    assert {p["spec"]["containers"][0]["image"] for p in items} == {"nginx:1.17"}
    assert k.ok("get", "deploy", deploy, "-n", wns, "--no-headers").split()[1:4] == ["3/3", "3", "3"]
    rs = k.ok("get", "rs", "-n", wns, "--no-headers").splitlines()
    assert sorted(l.split()[1] for l in rs) == ["0", "3"], rs
    history = k.ok("rollout", "history", f"deployment/{deploy}", "-n", wns)
    assert re.search(r"^1\s", history, re.M) and re.search(r"^2\s", history, re.M)
    # a fresh pod of the new revision serves too
    r = curl(f"http://{items[0]['status']['podIP']}/")
    assert "Welcome to nginx!" in r.stdout

    k.ok("scale", f"deployment/{deploy}", "-n", wns, "--replicas=5")
    k.ok("rollout", "status", f"deployment/{deploy}", "-n", wns, "--timeout=120s", timeout=130)
    wait_for(lambda: k.ok("get", "deploy", deploy, "-n", wns, "--no-headers").split()[1:4] == ["5/5", "5", "5"],
             what="5/5")
    k.ok("scale", f"deployment/{deploy}", "-n", wns, "--replicas=2")
    wait_for(lambda: len(pods(k, wns, "app=sample-app")) == 2, what="scale down to 2 pods")
    assert k.ok("get", "deploy", deploy, "-n", wns, "--no-headers").split()[1:4] == ["2/2", "2", "2"]


def test_delete_deployment_removes_replicasets_and_pods(k, ns):
    k.ok("apply", "-n", ns, "-f", str(MANIFESTS / "nginx-deployment.yaml"))
    k.ok("rollout", "status", "deployment/sample-deployment", "-n", ns, "--timeout=120s", timeout=130)
    ips = [p["status"]["podIP"] for p in pods(k, ns, "app=sample-app")]
    k.ok("delete", "deployment", "sample-deployment", "-n", ns, timeout=90)
    wait_for(lambda: k.ok("get", "rs,pods", "-n", ns, "-o", "name").strip() == "", timeout=90,
             what="ReplicaSets and pods gone")
    for ip in ips:  # the processes are gone, not only the objects
        assert curl(f"http://{ip}/").returncode != 0


def test_statefulset_pods_in_order_with_stable_hostnames(k, ns):
    k.ok("apply", "-n", ns, "-f", str(MANIFESTS / "statefulset.yaml"))
    k.ok("rollout", "status", "statefulset/sample-statefulset", "-n", ns, "--timeout=120s", timeout=130)
    items = pods(k, ns, "app=sample-sts")
    names = [p["metadata"]["name"] for p in items]
    assert sorted(names) == [f"sample-statefulset-{i}" for i in range(3)]
    by = {p["metadata"]["name"]: p for p in items}
    ordered = [by[f"sample-statefulset-{i}"] for i in range(3)]
    # OrderedReady: each pod is created only after the one before is Running and Ready
    for prev, nxt in zip(ordered, ordered[1:]):
        prev_ready = next(c["lastTransitionTime"] for c in prev["status"]["conditions"] if c["type"] == "Ready")
        assert prev["metadata"]["creationTimestamp"] <= nxt["metadata"]["creationTimestamp"]
        assert prev_ready <= nxt["metadata"]["creationTimestamp"], (prev_ready, nxt["metadata"])
        assert prev["status"]["startTime"] <= nxt["status"]["startTime"]
    for p in ordered:
        name = p["metadata"]["name"]
        assert p["spec"]["hostname"] == name and p["spec"]["subdomain"] == "sample-sts"
        assert k.ok("exec", "-n", ns, name, "--", "hostname").strip() == name
        fqdn = k.ok("exec", "-n", ns, name, "--", "hostname", "-f").strip()
        assert fqdn == f"{name}.sample-sts.{ns}.svc.cluster.local"
