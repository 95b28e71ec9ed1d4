"""Shared fixtures: an API-server-only cluster (no root needed beyond a data dir) and helpers to
drive it with the real kubectl binaries."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

KUBECTL_DIR = Path("/usr/lib/google-cloud-sdk/bin")
KUBECTL_VERSIONS = ["1.27", "1.33"]


def kubectl_binary(version: str | None) -> str:
    if version is None:
        return shutil.which("kubectl") or "kubectl"
    return str(KUBECTL_DIR / f"kubectl.{version}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Kubectl:
    kubeconfig: Path
    binary: str
    cache_dir: str

    def __call__(self, *args: str, input: str | None = None, check: bool = False, timeout: float = 60,
                 env: dict | None = None) -> subprocess.CompletedProcess:
        e = dict(os.environ, KUBECONFIG=str(self.kubeconfig))
        if env:
            e.update(env)
        r = subprocess.run([self.binary, f"--cache-dir={self.cache_dir}", *args], input=input,
                           capture_output=True, text=True, timeout=timeout, env=e)
        if check and r.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
        return r

    def ok(self, *args: str, input: str | None = None, **kw) -> str:
        return self(*args, input=input, check=True, **kw).stdout


class ApiServer:
    """`tinykube apiserver` alone, on a free port, with its own data dir."""

    def __init__(self, root: Path):
        from tinykube.cli.lifecycle import write_kubeconfig
        from tinykube.cluster import ClusterConfig
        self.cluster = ClusterConfig(name=f"t{os.getpid()}", data_dir=root, api_port=free_port(),
                                     api_bind="127.0.0.1")
        self.cluster.save()
        self.kubeconfig = write_kubeconfig(self.cluster)
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        log = open(self.cluster.data_dir / "apiserver.log", "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "tinykube.cli.main", "apiserver", "--data-dir",
                                      str(self.cluster.data_dir)], stdout=log, stderr=subprocess.STDOUT)
        ready = self.cluster.run_dir / "apiserver.ready"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if ready.exists():
                return
            if self.proc.poll() is not None:
                raise RuntimeError((self.cluster.data_dir / "apiserver.log").read_text()[-3000:])
            time.sleep(0.05)
        raise RuntimeError("apiserver did not become ready")

    def stop(self, kill: bool = False) -> None:
        if self.proc and self.proc.poll() is None:
            (self.proc.kill if kill else self.proc.terminate)()
            self.proc.wait(10)
        self.cluster.clear_ready("apiserver")

    def log(self) -> str:
        return (self.cluster.data_dir / "apiserver.log").read_text()


@pytest.fixture(scope="session")
def apiserver(tmp_path_factory):
    srv = ApiServer(tmp_path_factory.mktemp("apiserver"))
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture(params=KUBECTL_VERSIONS + [None], ids=lambda v: f"kubectl-{v or 'default'}")
def kubectl(request, apiserver, tmp_path):
    return Kubectl(apiserver.kubeconfig, kubectl_binary(request.param), str(tmp_path / "cache"))
