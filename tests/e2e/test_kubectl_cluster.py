"""The kubectl commands of the compatibility matrix that need a running cluster (controllers and
a node): rollout, wait, describe of every kind, events, cascading and forced deletes."""
from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

import pytest

M = Path(__file__).parent.parent / "manifests"


@pytest.fixture(params=["1.27", "1.33"], ids=lambda v: f"kubectl-{v}")
def kv(request, cluster, tmp_path):
    return cluster.kubectl(request.param, cache_dir=str(tmp_path / "cache"))


@pytest.fixture
def kns(kv):
    name = f"kc-{uuid.uuid4().hex[:6]}"
    kv.ok("create", "namespace", name)
    yield name
    kv("delete", "namespace", name, "--wait=false")


def test_rollout_and_set_image(kv, kns):
    kv.ok("apply", "-n", kns, "-f", str(M / "deploy.yaml"))
    out = kv.ok("rollout", "status", "deploy/web", "-n", kns, "--timeout=90s", timeout=100)
    assert 'deployment "web" successfully rolled out' in out
    get = kv.ok("get", "deploy", "web", "-n", kns).splitlines()
    assert get[0].split() == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    assert get[1].split()[1:4] == ["2/2", "2", "2"]
    kv.ok("set", "image", "deploy/web", "web=nginx:1.28", "-n", kns)
    kv.ok("rollout", "status", "deploy/web", "-n", kns, "--timeout=90s", timeout=100)
    rs = json.loads(kv.ok("get", "rs", "-n", kns, "-o", "json"))["items"]
    assert len(rs) == 2
    assert sorted(r["spec"]["replicas"] for r in rs) == [0, 2]
    kv.ok("rollout", "restart", "deploy/web", "-n", kns)
    kv.ok("rollout", "status", "deploy/web", "-n", kns, "--timeout=90s", timeout=100)
    pods = kv.ok("get", "pods", "-n", kns, "-l", "app=web", "--field-selector=status.phase=Running", "-o", "name")
    assert len(pods.split()) >= 2
    desc = kv.ok("describe", "deploy", "web", "-n", kns)
    assert "NewReplicaSet:" in desc and "ScalingReplicaSet" in desc


def test_statefulset_rollout_and_describe(kv, kns):
    kv.ok("apply", "-n", kns, "-f", str(M / "sts.yaml"))
    out = kv.ok("rollout", "status", "sts/db", "-n", kns, "--timeout=90s", timeout=100)
    assert "roll out complete" in out
    desc = kv.ok("describe", "sts", "db", "-n", kns)
    assert re.search(r"Pods Status:\s+1 Running", desc)


def test_wait_describe_pod_and_events(kv, kns):
    kv.ok("run", "p1", "--image=nginx", "--labels=app=p1", "-n", kns)
    kv.ok("wait", "--for=condition=Ready", "pod/p1", "-n", kns, "--timeout=60s", timeout=70)
    desc = kv.ok("describe", "pod", "p1", "-n", kns)
    assert re.search(r"Status:\s+Running", desc)
    assert re.search(r"IP:\s+\d+\.\d+\.\d+\.\d+", desc)
    assert "Scheduled" in desc and "Successfully assigned" in desc
    ev = kv.ok("get", "ev", "-n", kns)
    assert ev.splitlines()[0].split()[:4] == ["LAST", "SEEN", "TYPE", "REASON"]
    assert "pod/p1" in ev
    out = kv.ok("expose", "pod", "p1", "--port=81", "--target-port=80", "--name=p1-svc", "-n", kns)
    assert out.strip() == "service/p1-svc exposed"
    kv.ok("delete", "pod", "p1", "-n", kns, "--grace-period=0", "--force", timeout=60)
    kv.ok("wait", "--for=delete", "pod/p1", "-n", kns, "--timeout=30s", timeout=40)


def test_describe_endpoints_ingress_node(kv, kns, cluster):
    kv.ok("apply", "-n", kns, "-f", str(M / "svc.yaml"), "-f", str(M / "ing.yaml"), "-f", str(M / "ep.yaml"))
    assert "Subsets:" in kv.ok("describe", "ep", "manual", "-n", kns)
    ing = kv.ok("describe", "ing", "ing1", "-n", kns)
    assert "web.test" in ing and "web:80" in ing
    node = cluster.config.node_name
    nd = kv.ok("describe", "node", node)
    assert re.search(r"Ready\s+True", nd) and "InternalIP:" in nd
    slices = kv.ok("get", "endpointslices", "-n", kns)
    assert slices.splitlines()[0].split() == ["NAME", "ADDRESSTYPE", "PORTS", "ENDPOINTS", "AGE"]
    multi = kv.ok("get", "svc,deploy,sts,ing,ep,po", "-n", kns)
    assert "service/web" in multi and "ingress.networking.k8s.io/ing1" in multi


def test_cascading_deletes(kv, kns):
    kv.ok("apply", "-n", kns, "-f", str(M / "deploy.yaml"))
    kv.ok("rollout", "status", "deploy/web", "-n", kns, "--timeout=90s", timeout=100)
    out = kv.ok("delete", "deploy", "web", "-n", kns, "--cascade=foreground", timeout=90)
    assert 'deployment.apps "web" deleted' in out
    assert kv.ok("get", "rs,pods", "-n", kns, "-o", "name", timeout=30).strip() == "" or \
        "web" not in kv.ok("get", "rs", "-n", kns, "-o", "name")


def test_replace_force(kv, kns):
    kv.ok("apply", "-n", kns, "-f", str(M / "svc.yaml"))
    r = kv("replace", "--force", "-n", kns, "-f", str(M / "svc-port81.yaml"), timeout=60)
    assert r.returncode == 0, r.stderr
    assert "service/web replaced" in r.stdout
