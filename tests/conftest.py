"""Shared fixtures: an API-server-only cluster (no root needed beyond a data dir) and helpers to
drive it with the real kubectl binaries."""
from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tinykube.testing import StandaloneApiServer, free_port  # noqa: F401 (re-exported)

KUBECTL_DIR = Path("/usr/lib/google-cloud-sdk/bin")
KUBECTL_VERSIONS = ["1.27", "1.33"]


def kubectl_binary(version: str | None) -> str:
    if version is None:
        return shutil.which("kubectl") or "kubectl"
    return str(KUBECTL_DIR / f"kubectl.{version}")


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


class ApiServer(StandaloneApiServer):
    """`tinykube apiserver` alone, on a free port, with its own data dir."""


@pytest.fixture(scope="session")
def apiserver(tmp_path_factory):
    srv = ApiServer(tmp_path_factory.mktemp("apiserver"))
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture(params=KUBECTL_VERSIONS + [None], ids=lambda v: f"kubectl-{v or 'default'}")
def kubectl(request, apiserver, tmp_path):
    return Kubectl(apiserver.kubeconfig, kubectl_binary(request.param), str(tmp_path / "cache"))
