"""Fixtures for the store tests.

`store_factory` is the list of backends every backend-neutral test runs against. Calling it
opens a Store: `store_factory()` opens the test's default storage, `store_factory("other")`
a separate one; calling it again with the same name after close() reopens the same data
(that is how persistence is tested). A backend joins by adding one entry to BACKENDS.

etcd. The contract counts revisions from 0 for every fresh storage, and etcd has one revision
counter per cluster, so each storage name of a test gets its own real etcd process (started
on free loopback ports with its data in the test's tmp dir; starting one takes ~30 ms). It is
stopped when its store closes and started again on the same data dir when the name is
reopened, so persistence is tested across a real etcd restart. The session fixture
`etcd_servers` owns every process and kills whatever is left at the end of the session. The
etcd entries are skipped only if the `etcd` binary is absent (bootstrap.sh installs it).

Tests here may be `async def`: they run on a uvloop event loop (like the servers), with a
hang guard so a broken watch fails the test instead of stalling the suite.
"""
from __future__ import annotations

import asyncio
import inspect
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Callable

import pytest
import uvloop

from tinykube.store.base import Store
from tinykube.store.etcd import EtcdStore
from tinykube.store.sqlite import SqliteStore

HANG_GUARD_SECONDS = 60


def _sqlite_backend(tmp_path: Path) -> Callable[..., Store]:
    def factory(name: str = "default", **options) -> Store:
        return SqliteStore(tmp_path / f"{name}.db", **options)
    return factory


# ---------------------------------------------------------------- etcd processes

ETCD = shutil.which("etcd")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class EtcdServer:
    """One single-member etcd on loopback with its data in data_dir. stop() and start()
    again keep the data dir and the ports."""

    def __init__(self, data_dir: Path):
        self.data_dir = Path(data_dir)
        self.client_port = _free_port()
        self.peer_port = _free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.client_port}"

    def start(self, timeout: float = 20.0) -> "EtcdServer":
        assert self.proc is None, "already running"
        peer = f"http://127.0.0.1:{self.peer_port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("ETCD")}
        log = open(self.data_dir.parent / f"{self.data_dir.name}.log", "ab")
        self.proc = subprocess.Popen(
            [ETCD, "--name", "tk", "--data-dir", str(self.data_dir),
             "--listen-client-urls", self.url, "--advertise-client-urls", self.url,
             "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
             "--initial-cluster", f"tk={peer}", "--initial-cluster-state", "new",
             "--heartbeat-interval", "10", "--election-timeout", "100",
             "--logger", "zap", "--log-level", "error"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env)
        log.close()
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                code, self.proc = self.proc.returncode, None
                raise RuntimeError(f"etcd exited with {code}; see {log.name}")
            try:
                req = urllib.request.Request(self.url + "/v3/kv/range", method="POST",
                                             data=json.dumps({"key": "AA=="}).encode())
                with urllib.request.urlopen(req, timeout=1) as r:
                    json.load(r)
                return self
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"etcd did not answer within {timeout}s") from None
                time.sleep(0.01)

    def stop(self, kill: bool = False) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if kill:
            proc.kill()
        else:
            proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class EtcdServers:
    """Every etcd started in this session (the session fixture kills leftovers)."""

    def __init__(self) -> None:
        self.servers: list[EtcdServer] = []

    def new(self, data_dir: Path) -> EtcdServer:
        if ETCD is None:
            pytest.skip("etcd is not installed (apt-get install etcd-server)")
        server = EtcdServer(data_dir)
        self.servers.append(server)
        for attempt in range(3):
            try:
                return server.start()
            except RuntimeError:      # most likely a free port got taken meanwhile
                if attempt == 2:
                    raise
                shutil.rmtree(server.data_dir, ignore_errors=True)
                server.client_port, server.peer_port = _free_port(), _free_port()
        raise AssertionError("unreachable")

    def stop_all(self) -> None:
        for server in self.servers:
            server.stop(kill=True)
        self.servers.clear()


_SERVERS = EtcdServers()


@pytest.fixture(scope="session")
def etcd_servers():
    """Starts real etcd processes on demand (`etcd_servers.new(data_dir)`); kills every one
    still running at the end of the session."""
    try:
        yield _SERVERS
    finally:
        _SERVERS.stop_all()


class _TestEtcdStore(EtcdStore):
    """An EtcdStore that stops its own etcd when it closes (see the module docstring)."""

    server: EtcdServer

    async def close(self) -> None:
        await super().close()
        self.server.stop()


def _etcd_backend(tmp_path: Path) -> Callable[..., Store]:
    servers: dict[str, EtcdServer] = {}

    def factory(name: str = "default", **options) -> Store:
        server = servers.get(name)
        if server is None:
            server = servers[name] = _SERVERS.new(tmp_path / f"etcd-{name}")
        elif server.proc is None:
            server.start()
        store = _TestEtcdStore([server.url], prefix="/tinykube-test", **options)
        store.server = server
        return store

    def cleanup() -> None:
        for server in servers.values():
            server.stop(kill=True)
    factory.cleanup = cleanup  # type: ignore[attr-defined]
    return factory


BACKENDS: dict[str, Callable[[Path], Callable[..., Store]]] = {
    "sqlite": _sqlite_backend,
    "etcd": _etcd_backend,
}


@pytest.fixture(params=sorted(BACKENDS))
def store_factory(request, tmp_path, etcd_servers) -> Callable[..., Store]:
    if request.param == "etcd" and ETCD is None:
        pytest.skip("etcd is not installed (apt-get install etcd-server)")
    factory = BACKENDS[request.param](tmp_path)
    try:
        yield factory
    finally:
        cleanup = getattr(factory, "cleanup", None)
        if cleanup is not None:
            cleanup()


def run_async(coro_fn, *args, **kwargs):
    """Run an async test body on a fresh uvloop loop."""
    async def guarded():
        return await asyncio.wait_for(coro_fn(*args, **kwargs), HANG_GUARD_SECONDS)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(guarded())


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem):
    fn = pyfuncitem.obj
    if not inspect.iscoroutinefunction(fn):
        return None
    names = pyfuncitem._fixtureinfo.argnames
    kwargs = {name: pyfuncitem.funcargs[name] for name in names}
    run_async(fn, **kwargs)
    return True
