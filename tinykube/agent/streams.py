"""Adapts the pod runtime to the stream server's interface (tinykube.agent.kubelet.streamserver):
pods are named "namespace/name" there and by uid in the runtime; exec on a tty and attach to a
container's shim need small Process wrappers."""
from __future__ import annotations

import asyncio
import contextlib
import os
import struct
from typing import Any, Callable

from tinykube.agent.kubelet.runtime import ExecTTY, PodRuntime


class _FdWriter:
    """stdin of a pty session: writes go to the master side."""

    def __init__(self, fd: int):
        self.fd = fd

    def write(self, data: bytes) -> None:
        while data:
            try:
                n = os.write(self.fd, data)
            except BlockingIOError:
                continue
            data = data[n:]

    async def drain(self) -> None:
        return None

    def close(self) -> None:
        # EOF on a terminal is ^D, as a user typing in a shell would send it
        with contextlib.suppress(OSError):
            os.write(self.fd, b"\x04")


class TTYProcess:
    def __init__(self, tty: ExecTTY, want_stdin: bool):
        self._tty = tty
        loop = asyncio.get_running_loop()
        self.stdout = asyncio.StreamReader(limit=1 << 20)
        fd = os.dup(tty.master_fd)
        self._read_file = os.fdopen(fd, "rb", buffering=0)
        self._transport_ready = loop.create_task(
            loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(self.stdout), self._read_file))
        self.stderr = None
        self.stdin = _FdWriter(tty.master_fd) if want_stdin else None

    def resize(self, width: int, height: int) -> None:
        self._tty.resize(width, height)

    async def wait(self) -> int:
        code = await self._tty.wait()
        await asyncio.sleep(0.05)  # let the last output drain from the pty
        self._tty.close()
        return code

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self._tty.proc.kill()


class AttachProcess:
    """The container's main process as the shim exposes it: frames of stdout/stderr, stdin bytes."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, want_stdin: bool,
                 exit_code: Callable[[], Any]):
        self.stdout = asyncio.StreamReader()
        self.stderr = asyncio.StreamReader()
        self.stdin = _SocketStdin(writer) if want_stdin else None
        self._writer = writer
        self._exit_code = exit_code
        self._pump = asyncio.get_running_loop().create_task(self._demux(reader))

    async def _demux(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                head = await reader.readexactly(5)
                stream, n = head[0], struct.unpack(">I", head[1:])[0]
                data = await reader.readexactly(n)
                (self.stderr if stream == 2 else self.stdout).feed_data(data)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.stdout.feed_eof()
            self.stderr.feed_eof()

    def resize(self, width: int, height: int) -> None:
        return None

    async def wait(self) -> int:
        await self._pump
        with contextlib.suppress(Exception):
            self._writer.close()
        return await self._exit_code()

    def kill(self) -> None:
        with contextlib.suppress(Exception):
            self._writer.close()


class _SocketStdin:
    def __init__(self, writer: asyncio.StreamWriter):
        self.w = writer

    def write(self, data: bytes) -> None:
        self.w.write(data)

    async def drain(self) -> None:
        await self.w.drain()

    def close(self) -> None:
        with contextlib.suppress(OSError, RuntimeError):
            if self.w.can_write_eof():
                self.w.write_eof()


class StreamRuntime:
    """The ContainerRuntime protocol of the stream server, over a PodRuntime and the pod cache."""

    def __init__(self, runtime: PodRuntime, lookup_pod: Callable[[str, str], dict | None]):
        self.runtime = runtime
        self.lookup_pod = lookup_pod

    def _uid(self, pod_key: str) -> str:
        ns, name = pod_key.split("/", 1)
        pod = self.lookup_pod(ns, name)
        if pod is None:
            raise LookupError(f'pod "{name}" not found on this node')
        return pod["metadata"]["uid"]

    async def exec(self, pod_key: str, container: str, argv: list[str], *, stdin: bool, tty: bool):
        uid = self._uid(pod_key)
        proc = await self.runtime.exec(uid, container, argv, tty=tty, stdin=stdin)
        if isinstance(proc, ExecTTY):
            return TTYProcess(proc, stdin)
        if not hasattr(proc, "resize"):
            proc.resize = lambda w, h: None  # type: ignore[attr-defined]
        return proc

    async def attach(self, pod_key: str, container: str, *, stdin: bool, tty: bool):
        uid = self._uid(pod_key)
        reader, writer = await self.runtime.attach(uid, container)

        async def exit_code() -> int:
            for _ in range(100):
                st = self.runtime.pod_status(uid)
                for cs in st.get("containerStatuses", []):
                    if cs["name"] == container and "terminated" in cs.get("state", {}):
                        return cs["state"]["terminated"].get("exitCode", 0)
                await asyncio.sleep(0.05)
            return 0
        return AttachProcess(reader, writer, stdin, exit_code)

    def pod_ip(self, namespace: str, pod: str) -> str | None:
        p = self.lookup_pod(namespace, pod)
        return (p or {}).get("status", {}).get("podIP")

    def log_path(self, namespace: str, pod: str, container: str, previous: bool = False) -> str | None:
        p = self.lookup_pod(namespace, pod)
        if p is None:
            return None
        path = self.runtime.log_path(p["metadata"]["uid"], container, previous)
        return str(path) if path and os.path.exists(path) else None

    def container_running(self, namespace: str, pod: str, container: str) -> bool:
        p = self.lookup_pod(namespace, pod)
        if p is None:
            return False
        st = self.runtime.pod_status(p["metadata"]["uid"])
        return any(cs["name"] == container and "running" in cs.get("state", {})
                   for cs in st.get("containerStatuses", []))
