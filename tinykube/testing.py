"""`tinykube apiserver` alone, for tests and benchmarks: a free loopback port, its own data dir
and kubeconfig, no root and no network set-up."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class StandaloneApiServer:
    def __init__(self, root: Path, name: str | None = None):
        from tinykube.cli.lifecycle import write_kubeconfig
        from tinykube.cluster import ClusterConfig
        self.cluster = ClusterConfig(name=name or f"t{os.getpid()}", data_dir=Path(root),
                                     api_port=free_port(), api_bind="127.0.0.1")
        self.cluster.save()
        self.kubeconfig = write_kubeconfig(self.cluster)
        self.proc: subprocess.Popen | None = None

    @property
    def log_path(self) -> Path:
        return self.cluster.data_dir / "apiserver.log"

    def start(self, timeout: float = 30) -> None:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "tinykube.cli.main", "apiserver", "--data-dir",
                                          str(self.cluster.data_dir)], stdout=log, stderr=subprocess.STDOUT)
        ready = self.cluster.run_dir / "apiserver.ready"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ready.exists():
                return
            if self.proc.poll() is not None:
                raise RuntimeError(self.log()[-3000:])
            time.sleep(0.05)
        raise RuntimeError("apiserver did not become ready")

    def stop(self, kill: bool = False) -> None:
        if self.proc and self.proc.poll() is None:
            (self.proc.kill if kill else self.proc.terminate)()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.cluster.clear_ready("apiserver")

    def log(self) -> str:
        return self.log_path.read_text()
