"""The tinykube command: status, kubeconfig, kubectl, supervision, restart, two clusters."""
from __future__ import annotations

import ipaddress
import json
import os
import signal
import subprocess

from .conftest import TINYKUBE, Cluster, host_traces, wait_for

SECOND_SERVICE_CIDR = os.environ.get("TINYKUBE_E2E_SECOND_SERVICE_CIDR", "10.140.0.0/16")
SECOND_POD_CIDR = os.environ.get("TINYKUBE_E2E_SECOND_POD_CIDR", "10.210.0.0/16")
SECOND_LB_POOL = os.environ.get("TINYKUBE_E2E_SECOND_LB_POOL", "10.250.0.0/29")


def test_status_kubeconfig_and_kubectl(cluster):
    r = cluster.tinykube("status")
    for comp in ("apiserver", "controller-manager", "agent", "dns"):
        line = next(l for l in r.stdout.splitlines() if f" {comp} " in l)
        assert "ready" in line and "not ready" not in line, r.stdout
    assert cluster.tinykube("kubeconfig").stdout.strip() == str(cluster.kubeconfig)
    out = cluster.tinykube("kubectl", "get", "ns", "kube-system", "-o", "name").stdout
    assert out.strip() == "namespace/kube-system"


def _components(cluster) -> dict:
    state = json.loads((cluster.data_dir / "run" / "supervisor.json").read_text())
    return {c["name"]: c for c in state["components"]}


def test_supervisor_restarts_a_killed_component(cluster, k):
    before = _components(cluster)["controller-manager"]
    os.kill(before["pid"], signal.SIGKILL)
    after = wait_for(lambda: (c := _components(cluster)["controller-manager"])["pid"] not in (0, before["pid"])
                     and (cluster.data_dir / "run" / "controller-manager.ready").exists() and c,
                     timeout=60, what="controller-manager restarted")
    assert after["restarts"] == before["restarts"] + 1
    assert after["last_exit"] == "killed by SIGKILL"
    log = (cluster.data_dir / "logs" / "supervisor.log").read_text()
    assert "controller-manager killed by SIGKILL; restarting" in log
    # and it works again: a new Deployment gets its ReplicaSet
    k.ok("create", "deployment", "after-restart", "--image=nginx", "-n", "default")
    wait_for(lambda: k("get", "rs", "-l", "app=after-restart", "-o", "name").stdout.strip(), what="replicaset")
    k.ok("delete", "deployment", "after-restart")


def test_second_cluster_side_by_side_and_restart_keeps_objects(cluster, tmp_path):
    other = Cluster(tmp_path / "second")
    other.name = f"{cluster.name}b"
    try:
        other.tinykube("up", "--api-port", str(other.api_port), "--service-cidr", SECOND_SERVICE_CIDR,
                       "--pod-cidr", SECOND_POD_CIDR, "--lb-pool", SECOND_LB_POOL, timeout=240)
        k2 = other.kubectl()
        k2.ok("create", "configmap", "keep", "--from-literal=a=1")
        k2.ok("create", "service", "clusterip", "keepsvc", "--tcp=80:8080")
        ip = k2.ok("get", "svc", "keepsvc", "-o", "jsonpath={.spec.clusterIP}")
        assert ipaddress.ip_address(ip) in ipaddress.ip_network(SECOND_SERVICE_CIDR)
        # both clusters answer at the same time
        assert "kube-system" in cluster.kubectl().ok("get", "ns")
        # a LoadBalancer Service gets an address from the pool, and that address serves
        k2.ok("create", "deployment", "lbweb", "--image=nginx")
        k2.ok("expose", "deployment", "lbweb", "--type=LoadBalancer", "--port=8080", "--target-port=80")
        lb_ip = wait_for(lambda: k2.ok("get", "svc", "lbweb", "-o",
                                       "jsonpath={.status.loadBalancer.ingress[0].ip}").strip(),
                         what="LoadBalancer ingress IP")
        assert ipaddress.ip_address(lb_ip) in ipaddress.ip_network(SECOND_LB_POOL)
        row = k2.ok("get", "svc", "lbweb").splitlines()[1].split()
        assert row[1] == "LoadBalancer" and row[3] == lb_ip and row[4].startswith("8080:")
        k2.ok("rollout", "status", "deployment/lbweb", "--timeout=90s", timeout=100)
        page = wait_for(lambda: subprocess.run(["curl", "-s", "-m", "3", f"http://{lb_ip}:8080/"],
                                               capture_output=True, text=True).stdout, what="LB answer")
        assert "Welcome to nginx!" in page
        cfg = other.config
        other.tinykube("down")
        assert not any(host_traces(cfg).values()), host_traces(cfg)
        assert (other.data_dir / "store.db").exists()  # down keeps the data
        other.tinykube("up", timeout=240)
        assert k2.ok("get", "configmap", "keep", "-o", "jsonpath={.data.a}") == "1"
        assert k2.ok("get", "svc", "keepsvc", "-o", "jsonpath={.spec.clusterIP}") == ip
    finally:
        cfg = other.config if (other.data_dir / "cluster.json").exists() else None
        other.tinykube("down", "--purge", check=False)
    assert not other.data_dir.exists()
    if cfg:
        assert not any(host_traces(cfg).values())


def test_up_needs_no_second_call_when_running(cluster):
    # a second `up` of a running cluster just reports it ready
    r = subprocess.run([*TINYKUBE, "up", "--name", cluster.name, "--data-dir", str(cluster.data_dir)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert str(cluster.kubeconfig) in r.stdout


def test_overlapping_ranges_are_refused(cluster, tmp_path):
    r = subprocess.run([*TINYKUBE, "up", "--name", f"{cluster.name}x", "--data-dir", str(tmp_path / "x"),
                        "--api-port", "0", "--service-cidr", cluster.config.service_cidr,
                        "--pod-cidr", "10.213.0.0/16"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert f"overlaps {cluster.config.service_cidr} of the running cluster {cluster.name!r}" in r.stderr
    assert not (tmp_path / "x" / "cluster.json").exists()
