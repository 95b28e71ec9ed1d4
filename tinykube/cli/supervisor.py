"""The supervisor: runs the cluster's components as child processes, restarts any that exits or
is killed (with back-off, logging why), and stops them in reverse order on SIGTERM.

It writes run/supervisor.json so `tinykube status` can show pids, restarts and last exits."""
from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

from tinykube.cluster import ClusterConfig

COMPONENTS = ["apiserver", "controller-manager", "agent", "dns", "ingress"]
HEALTHY_AFTER = 60.0      # seconds of uptime that reset the back-off
MAX_BACKOFF = 30.0
STOP_GRACE = 10.0

log = logging.getLogger("tinykube.supervisor")


@dataclass
class Child:
    name: str
    pid: int = 0
    started: float = 0.0
    restarts: int = 0
    backoff: float = 1.0
    next_start: float = 0.0
    last_exit: str = ""
    proc: subprocess.Popen | None = field(default=None, repr=False)


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with code {code}"


class Supervisor:
    def __init__(self, cluster: ClusterConfig):
        self.cluster = cluster
        self.children = [Child(n) for n in COMPONENTS]
        self.stopping = False
        self.logs = cluster.data_dir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)

    def start(self, c: Child) -> None:
        self.cluster.clear_ready(c.name)
        out = open(self.logs / f"{c.name}.log", "ab")
        c.proc = subprocess.Popen([sys.executable, "-m", "tinykube.cli.main", c.name, "--data-dir",
                                   str(self.cluster.data_dir)], stdout=out, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL)
        out.close()
        c.pid, c.started = c.proc.pid, time.monotonic()
        log.info("started %s (pid %d)", c.name, c.pid)

    def reap(self) -> None:
        now = time.monotonic()
        for c in self.children:
            if c.proc is None:
                if not self.stopping and now >= c.next_start:
                    self.start(c)
                continue
            code = c.proc.poll()
            if code is None:
                if now - c.started > HEALTHY_AFTER:
                    c.backoff = 1.0
                continue
            c.last_exit = _describe_exit(code)
            c.proc, c.pid = None, 0
            self.cluster.clear_ready(c.name)
            if self.stopping:
                continue
            c.restarts += 1
            c.next_start = now + c.backoff
            log.warning("%s %s; restarting in %.0fs (restart #%d)", c.name, c.last_exit, c.backoff, c.restarts)
            c.backoff = min(c.backoff * 2, MAX_BACKOFF)

    def write_state(self) -> None:
        state = {"pid": os.getpid(), "components": [
            {"name": c.name, "pid": c.pid, "restarts": c.restarts, "last_exit": c.last_exit}
            for c in self.children]}
        tmp = self.cluster.run_dir / "supervisor.json.tmp"
        tmp.write_text(json.dumps(state))
        tmp.replace(self.cluster.run_dir / "supervisor.json")

    def stop_all(self) -> None:
        self.stopping = True
        for c in reversed(self.children):
            if c.proc and c.proc.poll() is None:
                c.proc.terminate()
                try:
                    c.proc.wait(STOP_GRACE)
                except subprocess.TimeoutExpired:
                    c.proc.kill()
                    c.proc.wait()
            self.cluster.clear_ready(c.name)

    def run(self) -> None:
        def on_term(signum, frame):
            self.stopping = True
        signal.signal(signal.SIGTERM, on_term)
        signal.signal(signal.SIGINT, on_term)
        self.cluster.run_dir.mkdir(parents=True, exist_ok=True)
        (self.cluster.run_dir / "supervisor.pid").write_text(str(os.getpid()))
        while not self.stopping:
            self.reap()
            self.write_state()
            time.sleep(0.2)
        self.stop_all()
        self.write_state()
        (self.cluster.run_dir / "supervisor.pid").unlink(missing_ok=True)


def run_supervisor(cluster: ClusterConfig) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    Supervisor(cluster).run()
