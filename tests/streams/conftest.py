"""Harness for the streaming protocols: a minimal API server (just what kubectl needs around
exec/attach/port-forward/logs) mounting tinykube.apiserver.streams, and the agent's stream app
backed by LocalRuntime, a test double that runs commands as local subprocesses and forwards
port-forward connections to 127.0.0.1. Plain http on 127.0.0.1 only.
"""
from __future__ import annotations

import asyncio
import fcntl
import os
import pty
import shutil
import struct
import subprocess
import termios
import threading
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from tinykube.agent.kubelet.streamserver import make_stream_app
from tinykube.apiserver import streams

KUBECTL_DIR = Path("/usr/lib/google-cloud-sdk/bin")


def kubectl_path(minor: int) -> str:
    p = KUBECTL_DIR / f"kubectl.1.{minor}"
    if not p.exists():
        pytest.skip(f"{p} not installed")
    return str(p)


# --------------------------------------------------------------------------- LocalRuntime

class LocalProcess:
    def __init__(self, proc: asyncio.subprocess.Process, master: int | None = None,
                 stdin=None, stdout=None) -> None:
        self._proc = proc
        self._master = master
        if master is None:
            self.stdin, self.stdout, self.stderr = proc.stdin, proc.stdout, proc.stderr
        else:
            self.stdin, self.stdout, self.stderr = stdin, stdout, None
        self.sizes: list[tuple[int, int]] = []

    async def wait(self) -> int:
        return await self._proc.wait()

    def resize(self, width: int, height: int) -> None:
        self.sizes.append((width, height))
        if self._master is not None:
            fcntl.ioctl(self._master, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))

    def kill(self) -> None:
        if self._proc.returncode is None:
            self._proc.kill()


class LocalRuntime:
    """Runs exec commands on this host; 'attach' runs the pod's main command afresh."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.attach_argv = ["sh", "-c", "echo attached; cat"]
        self.running: set[str] = set()
        self.last: LocalProcess | None = None

    async def exec(self, pod_key, container, argv, *, stdin, tty):
        if pod_key.split("/")[1] == "gone":
            raise LookupError(f'container "{container}" not found in pod "{pod_key}"')
        self.last = await self._spawn(argv, stdin, tty)
        return self.last

    async def attach(self, pod_key, container, *, stdin, tty):
        self.last = await self._spawn(self.attach_argv, stdin, tty)
        return self.last

    async def _spawn(self, argv, stdin, tty):
        loop = asyncio.get_running_loop()
        if not tty:
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            return LocalProcess(proc)
        master, slave = pty.openpty()
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
            preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0))
        os.close(slave)
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader),
                                     os.fdopen(os.dup(master), "rb", buffering=0))
        wt, wp = await loop.connect_write_pipe(asyncio.streams.FlowControlMixin,
                                               os.fdopen(os.dup(master), "wb", buffering=0))
        writer = asyncio.StreamWriter(wt, wp, None, loop)
        return LocalProcess(proc, master, writer if stdin else None, reader)

    def pod_ip(self, namespace, pod):
        return None if pod == "noip" else "127.0.0.1"

    def log_path(self, namespace, pod, container, previous=False):
        p = self.log_dir / f"{namespace}_{pod}_{container}{'.prev' if previous else ''}.log"
        return str(p) if p.exists() else None

    def container_running(self, namespace, pod, container):
        return f"{namespace}/{pod}/{container}" in self.running


# --------------------------------------------------------------------------- minimal API server

def pod_object(ns: str, name: str) -> dict:
    return {
        "kind": "Pod", "apiVersion": "v1",
        "metadata": {"name": name, "namespace": ns, "uid": f"uid-{name}", "resourceVersion": "1",
                     "creationTimestamp": "2024-01-01T00:00:00Z"},
        "spec": {"containers": [{"name": "c1", "image": "busybox"}]},
        "status": {"phase": "Running", "podIP": "127.0.0.1",
                   "conditions": [{"type": "Ready", "status": "True"}],
                   "containerStatuses": [{"name": "c1", "ready": True, "restartCount": 0, "image": "busybox",
                                          "imageID": "", "state": {"running": {"startedAt": "2024-01-01T00:00:00Z"}}}]},
    }


def make_api_app(agent_url: str, holder: dict) -> web.Application:
    @web.middleware
    async def record(request, handler):
        # which transport each stream request used: (kind, method, Upgrade, Sec-WebSocket-Protocol)
        kind = request.path.rsplit("/", 1)[-1]
        if kind in ("exec", "attach", "portforward"):
            holder.setdefault("log", []).append((kind, request.method, request.headers.get("Upgrade", ""),
                                                 request.headers.get("Sec-WebSocket-Protocol", "")))
        return await handler(request)

    app = web.Application(middlewares=[record])

    async def version(_):
        return web.json_response({"major": "1", "minor": "33", "gitVersion": "v1.33.1", "gitCommit": "x",
                                  "gitTreeState": "clean", "buildDate": "2024-01-01T00:00:00Z",
                                  "goVersion": "go1.24", "compiler": "gc", "platform": "linux/amd64"})

    async def api(_):
        return web.json_response({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [
            {"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]})

    async def apis(_):
        return web.json_response({"kind": "APIGroupList", "apiVersion": "v1", "groups": []})

    async def api_v1(_):
        verbs = ["create", "delete", "get", "list", "patch", "update", "watch"]
        return web.json_response({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "v1", "resources": [
            {"name": "pods", "singularName": "pod", "namespaced": True, "kind": "Pod", "verbs": verbs,
             "shortNames": ["po"], "categories": ["all"]},
            {"name": "pods/exec", "singularName": "", "namespaced": True, "kind": "PodExecOptions",
             "verbs": ["create", "get"]},
            {"name": "pods/attach", "singularName": "", "namespaced": True, "kind": "PodAttachOptions",
             "verbs": ["create", "get"]},
            {"name": "pods/portforward", "singularName": "", "namespaced": True, "kind": "PodPortForwardOptions",
             "verbs": ["create", "get"]},
            {"name": "pods/log", "singularName": "", "namespaced": True, "kind": "Pod", "verbs": ["get"]},
        ]})

    async def get_pod(request):
        return web.json_response(pod_object(request.match_info["namespace"], request.match_info["name"]))

    async def exec_(request):
        return await streams.handle_exec(request, agent_url, holder["session"])

    async def attach(request):
        return await streams.handle_attach(request, agent_url, holder["session"])

    async def portforward(request):
        return await streams.handle_portforward(request, agent_url, holder["session"])

    async def logs(request):
        return await streams.proxy_logs(request, agent_url, holder["session"])

    pods = "/api/v1/namespaces/{namespace}/pods/{name}"
    app.router.add_get("/version", version)
    app.router.add_get("/api", api)
    app.router.add_get("/apis", apis)
    app.router.add_get("/api/v1", api_v1)
    app.router.add_get(pods, get_pod)
    app.router.add_route("*", pods + "/exec", exec_)
    app.router.add_route("*", pods + "/attach", attach)
    app.router.add_route("*", pods + "/portforward", portforward)
    app.router.add_get(pods + "/log", logs)
    return app


async def _target_handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """The 'pod' port-forward reaches: a tiny HTTP/1.0 server, or echo for raw bytes."""
    try:
        try:
            first = await reader.readexactly(4)
        except asyncio.IncompleteReadError as e:
            first = e.partial
        if first == b"GET ":
            while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                pass
            body = b"hello from the pod\n"
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n"
                         b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        else:  # echo until EOF
            data = first
            while data:
                writer.write(data)
                await writer.drain()
                data = await reader.read(65536)
        await writer.drain()
    finally:
        writer.close()


class Cluster:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.runtime = LocalRuntime(tmp)
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.holder: dict = {}

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._start())
        self._ready.set()
        self.loop.run_forever()

    async def _start(self) -> None:
        self.agent_runner = web.AppRunner(make_stream_app(self.runtime))
        await self.agent_runner.setup()
        site = web.TCPSite(self.agent_runner, "127.0.0.1", 0)
        await site.start()
        self.agent_port = site._server.sockets[0].getsockname()[1]
        self.holder["session"] = aiohttp.ClientSession()
        self.api_runner = web.AppRunner(make_api_app(f"http://127.0.0.1:{self.agent_port}", self.holder))
        await self.api_runner.setup()
        site = web.TCPSite(self.api_runner, "127.0.0.1", 0)
        await site.start()
        self.api_port = site._server.sockets[0].getsockname()[1]
        self.target = await asyncio.start_server(_target_handler, "127.0.0.1", 0)
        self.target_port = self.target.sockets[0].getsockname()[1]

    def start(self) -> None:
        self._thread.start()
        self._ready.wait()
        self.kubeconfig = self.tmp / "kubeconfig"
        self.kubeconfig.write_text(
            "apiVersion: v1\nkind: Config\n"
            f"clusters:\n- name: t\n  cluster:\n    server: http://127.0.0.1:{self.api_port}\n"
            "users:\n- name: u\n  user: {}\n"
            "contexts:\n- name: t\n  context:\n    cluster: t\n    user: u\n    namespace: default\n"
            "current-context: t\n")
        self.cache = self.tmp / "cache"

    def call(self, coro, timeout: float = 60):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def _stop(self) -> None:
        self.target.close()
        await self.holder["session"].close()
        await self.api_runner.cleanup()
        await self.agent_runner.cleanup()

    def stop(self) -> None:
        self.call(self._stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)

    def transports(self) -> list[tuple[str, str, str, str]]:
        return list(self.holder.get("log", []))

    def kubectl_args(self, minor: int, *args: str) -> list[str]:
        return [kubectl_path(minor), f"--kubeconfig={self.kubeconfig}", f"--cache-dir={self.cache}", *args]

    def kubectl(self, minor: int, *args: str, input: bytes | None = None, env: dict | None = None,
                timeout: float = 60) -> subprocess.CompletedProcess:
        e = {k: v for k, v in os.environ.items() if not k.startswith("KUBECTL_")}
        e.update(env or {})
        return subprocess.run(self.kubectl_args(minor, *args), input=input, capture_output=True,
                              timeout=timeout, env=e)


@pytest.fixture(scope="session")
def cluster(tmp_path_factory):
    if not shutil.which("curl"):
        pytest.skip("curl needed")
    c = Cluster(tmp_path_factory.mktemp("streams"))
    c.start()
    yield c
    c.stop()
