"""exec with a tty, attach to stdin, env/service variables and volumes in a real pod."""

from __future__ import annotations

import asyncio
import os
import struct
import uuid

import pytest

from tinykube.agent.kubelet.runtime import PodRuntime
from tinykube.net import netns as nsmod

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")

CLUSTER = f"s{os.getpid() % 10000}"
BRIDGE = f"tkstrm{os.getpid() % 10000}"
CIDR = f"10.250.{os.getpid() % 40 + 210}.0/24"


@pytest.fixture
def rt_dir(tmp_path):
    yield tmp_path / "kubelet"

    async def cleanup():
        await PodRuntime(tmp_path / "kubelet", CLUSTER, BRIDGE, CIDR, "10.96.0.10"
                         ).teardown_node()
    asyncio.run(cleanup())
    assert not nsmod.list_netns(f"tk-{CLUSTER}-")
    assert not nsmod.link_exists(BRIDGE)


def mkpod(name, containers, **spec):
    return {"metadata": {"name": name, "namespace": "ns1", "uid": str(uuid.uuid4()),
                         "labels": {"app": "demo"}},
            "spec": {"containers": containers, **spec}}


async def read_until(reader, needle: bytes) -> bytes:
    data = b""
    while needle not in data:
        hdr = await asyncio.wait_for(reader.readexactly(5), 20)
        _, n = struct.unpack(">BI", hdr)
        data += await reader.readexactly(n)
    return data


def test_env_volumes_exec_tty_attach(rt_dir):
    async def main():
        rt = PodRuntime(rt_dir, CLUSTER, BRIDGE, CIDR, "10.96.0.10")
        await rt.setup_node()
        services = [
            {"metadata": {"name": "kubernetes", "namespace": "default"},
             "spec": {"clusterIP": "10.96.0.1", "ports": [{"name": "https", "port": 443}]}},
            {"metadata": {"name": "sample-clusterip", "namespace": "ns1"},
             "spec": {"clusterIP": "10.96.0.20", "ports": [{"port": 8080}]}}]
        cms = {"cfg": {"data": {"greeting": "hello", "app.conf": "x=1\n"}}}
        pod = mkpod("envpod", [
            {"name": "sh", "image": "busybox", "command": ["sh"], "stdin": True,
             "workingDir": "/app-dir-that-does-not-exist",
             "envFrom": [{"configMapRef": {"name": "cfg"}, "prefix": "CFG_"}],
             "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {
                 "fieldPath": "metadata.name"}}},
                 {"name": "URL", "value": "http://$(SAMPLE_CLUSTERIP_SERVICE_HOST)/"}],
             "volumeMounts": [{"name": "config", "mountPath": "/etc/config"},
                              {"name": "cache", "mountPath": "/cache"},
                              {"name": "info", "mountPath": "/podinfo", "readOnly": True}]}],
            volumes=[{"name": "config", "configMap": {"name": "cfg"}},
                     {"name": "cache", "emptyDir": {}},
                     {"name": "info", "downwardAPI": {"items": [
                         {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}}])
        uid = pod["metadata"]["uid"]
        st = await rt.sync_pod(pod, services, lambda ns, n: cms.get(n), lambda ns, n: None)
        assert st["phase"] == "Running", st

        async def sh(cmd):
            p = await rt.exec(uid, "sh", ["/bin/sh", "-c", cmd], stdin=False)
            out, err = await p.communicate()
            return out.decode() + err.decode()
        envout = await sh("env")
        env = dict(line.split("=", 1) for line in envout.splitlines() if "=" in line)
        assert "POD_NAME" in env, (envout, rt.log_path(uid, "sh").read_text(), rt.pod_status(uid)["containerStatuses"])
        assert env["POD_NAME"] == "envpod"
        assert env["URL"] == "http://10.96.0.20/"
        assert env["CFG_greeting"] == "hello"
        assert env["KUBERNETES_SERVICE_HOST"] == "10.96.0.1"
        assert env["SAMPLE_CLUSTERIP_PORT_8080_TCP"] == "tcp://10.96.0.20:8080"
        assert env["HOSTNAME"] == "envpod"
        assert (await sh("cat /etc/config/greeting")) == "hello"
        assert (await sh("cat /podinfo/labels")) == 'app="demo"'
        assert (await sh("pwd")).strip() == "/app-dir-that-does-not-exist"
        assert (await sh("echo ok > /cache/f && cat /cache/f")) == "ok\n"
        assert "Read-only file system" in await sh("touch /podinfo/x")
        assert "Read-only file system" in await sh("touch /etc/x")
        # exec with a tty
        t = await rt.exec(uid, "sh", ["sh", "-c", "test -t 0 && test -t 1 && echo on-a-tty"], tty=True)
        t.resize(100, 40)
        loop = asyncio.get_running_loop()
        out = b""
        while True:
            try:
                chunk = await loop.run_in_executor(None, os.read, t.master_fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
        assert await t.wait() == 0
        t.close()
        assert b"on-a-tty" in out
        # attach: write to the container's stdin and read its output
        r, w = await rt.attach(uid, "sh")
        w.write(b"echo attached-$((40+2))\n")
        await w.drain()
        assert b"attached-42" in await read_until(r, b"attached-42")
        w.close()
        assert "attached-42" in rt.log_path(uid, "sh").read_text()
        await rt.teardown_node()
    asyncio.run(main())
