"""A real tinykube cluster for the whole e2e session: `tinykube up`, then kubectl, dig and curl
against it, then `tinykube down --purge` and a check that nothing was left on the host."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.conftest import Kubectl, free_port, kubectl_binary

CLUSTER = f"e2e{os.getpid() % 100000}"
# Sessions that run side by side (developers, helpers) pick their own ranges; CI uses the defaults.
SERVICE_CIDR = os.environ.get("TINYKUBE_E2E_SERVICE_CIDR", "10.96.0.0/12")
POD_CIDR = os.environ.get("TINYKUBE_E2E_POD_CIDR", "10.244.0.0/16")
TINYKUBE = [sys.executable, "-m", "tinykube.cli.main"]


class Cluster:
    def __init__(self, data_dir: Path):
        self.name = CLUSTER
        self.data_dir = data_dir
        self.api_port = free_port()

    def tinykube(self, *args: str, check: bool = True, timeout: float = 180) -> subprocess.CompletedProcess:
        r = subprocess.run([*TINYKUBE, args[0], "--name", self.name, "--data-dir", str(self.data_dir), *args[1:]],
                           capture_output=True, text=True, timeout=timeout)
        if check and r.returncode != 0:
            raise AssertionError(f"tinykube {' '.join(args)} failed:\n{r.stdout}\n{r.stderr}\n{self.logs()}")
        return r

    @property
    def config(self):
        from tinykube.cluster import ClusterConfig
        return ClusterConfig.load(self.data_dir)

    @property
    def kubeconfig(self) -> Path:
        return self.data_dir / "kubeconfig"

    def kubectl(self, version: str | None = None, cache_dir: str | None = None) -> Kubectl:
        return Kubectl(self.kubeconfig, kubectl_binary(version),
                       cache_dir or str(self.data_dir / f"kcache-{version or 'default'}"))

    def logs(self, tail: int = 40) -> str:
        out = []
        for f in sorted((self.data_dir / "logs").glob("*.log")):
            lines = f.read_text(errors="replace").splitlines()[-tail:]
            out.append(f"--- {f.name}\n" + "\n".join(lines))
        return "\n".join(out)


def host_traces(cfg) -> dict:
    """Everything on the host that carries the cluster's names."""
    netns = [l.split()[0] for l in subprocess.run(["ip", "netns", "list"], capture_output=True,
                                                   text=True).stdout.splitlines() if l.strip()]
    links = [l["ifname"] for l in json.loads(subprocess.run(["ip", "-j", "link"], capture_output=True,
                                                            text=True).stdout or "[]")]
    tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout.split("\n")
    routes = "".join(subprocess.run(["ip", "route", "show", "table", "local", cidr], capture_output=True,
                                    text=True).stdout for cidr in (cfg.service_cidr, cfg.lb_pool) if cidr)
    return {"netns": [n for n in netns if n.startswith(cfg.netns_prefix)],
            "links": [l for l in links if l.startswith(cfg.link_prefix)],
            "tables": [t for t in tables if cfg.nft_prefix in t or f"tinykube-{cfg.bridge}-" in t],
            "routes": routes.strip()}


@pytest.fixture(scope="session")
def cluster(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("e2e tests need root")
    c = Cluster(tmp_path_factory.mktemp("cluster"))
    try:
        c.tinykube("up", "--api-port", str(c.api_port), "--service-cidr", SERVICE_CIDR, "--pod-cidr", POD_CIDR,
                   timeout=240)
        yield c
    finally:
        cfg = c.config if (c.data_dir / "cluster.json").exists() else None
        c.tinykube("down", "--purge", check=False)
        if cfg is not None:
            left = host_traces(cfg)
            assert not any(left.values()), f"tinykube down left traces on the host: {left}"


@pytest.fixture(scope="session")
def k(cluster) -> Kubectl:
    """kubectl (the default dispatcher) against the session cluster."""
    return cluster.kubectl()


@pytest.fixture
def ns(k):
    name = f"e2e-{uuid.uuid4().hex[:6]}"
    k.ok("create", "namespace", name)
    yield name
    k("delete", "namespace", name, "--wait=false")


def wait_for(predicate, timeout: float = 60, interval: float = 0.3, what: str = "condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")
