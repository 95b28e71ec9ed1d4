"""Pod sandboxes with real bwrap, netns, veth, bridge and nginx (root).

Traffic goes only to pod addresses these tests create on a private test bridge;
the bridge is guarded so nothing from it is forwarded to another interface."""

from __future__ import annotations

import asyncio
import os
import subprocess
import uuid
from pathlib import Path

import pytest

from tinykube.agent.kubelet.runtime import PodRuntime, alive
from tinykube.net import netns as nsmod

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")

CLUSTER = f"t{os.getpid() % 10000}"
BRIDGE = f"tktest{os.getpid() % 10000}"
CIDR = f"10.250.{os.getpid() % 200 + 10}.0/24"


def run(coro):
    return asyncio.run(coro)


def mkpod(name, containers, **spec):
    return {"metadata": {"name": name, "namespace": "default", "uid": str(uuid.uuid4())},
            "spec": {"containers": containers, **spec}}


def curl(url, *extra):
    r = subprocess.run(["curl", "-s", "-m", "5", *extra, url], capture_output=True, text=True)
    return r.stdout


async def wait_for(cond, timeout=30.0):
    """Poll a condition (a correctness wait, never a timing assertion)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while loop.time() < end:
        v = cond()
        if asyncio.iscoroutine(v):
            v = await v
        if v:
            return v
        await asyncio.sleep(0.1)
    raise AssertionError("condition not reached")


@pytest.fixture
def data_dir(tmp_path):
    yield tmp_path / "kubelet"
    # whatever a test left behind: processes, netns, links, bridge
    async def cleanup():
        rt = PodRuntime(tmp_path / "kubelet", CLUSTER, BRIDGE, CIDR, "10.96.0.10")
        await rt.teardown_node()
    run(cleanup())
    assert not nsmod.list_netns(f"tk-{CLUSTER}-")
    assert not nsmod.link_exists(BRIDGE)


async def execout(rt, uid, cont, argv):
    p = await rt.exec(uid, cont, argv, stdin=False)
    out, err = await p.communicate()
    return p.returncode, out.decode(), err.decode()


def cstatus(st, name):
    return next(c for c in st["containerStatuses"] if c["name"] == name)


def test_three_pods_nginx_exec_isolation_and_teardown(data_dir):
    async def main():
        rt = PodRuntime(data_dir, CLUSTER, BRIDGE, CIDR, "10.96.0.10")
        await rt.setup_node()
        await rt.setup_node()  # idempotent
        web = mkpod("web-0", [{"name": "nginx", "image": "nginx:1.12",
                               "ports": [{"containerPort": 80}]}])
        echo = mkpod("echo-1", [{"name": "echo", "image": "amsy810/echo-nginx:v2.0",
                                 "env": [{"name": "NGINX_PORT", "value": "8080"}]}])
        client = mkpod("client", [{"name": "tools", "image": "amsy810/tools:v2.0"}],
                       hostname="cli")
        sts = {}
        for p in (web, echo, client):
            sts[p["metadata"]["name"]] = await rt.sync_pod(p, [])
        for st in sts.values():
            assert st["phase"] == "Running"
            assert [c["type"] for c in st["conditions"] if c["status"] == "True"] == [
                "PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady",
                "PodScheduled"]
        ips = {n: s["podIP"] for n, s in sts.items()}
        assert len(set(ips.values())) == 3
        wuid = web["metadata"]["uid"]
        body = await wait_for(lambda: "Welcome to nginx!" in curl(f"http://{ips['web-0']}/"))
        assert body
        rc, _, _ = await execout(rt, wuid, "nginx",
                                 ["cp", "/etc/hostname", "/usr/share/nginx/html/index.html"])
        assert rc == 0
        assert curl(f"http://{ips['web-0']}/") == "web-0\n"
        # echo-nginx answers with the pod's hostname and the client's address
        line = await wait_for(lambda: curl(f"http://{ips['echo-1']}:8080/a/b?x=1"))
        assert line == (f"Host={ips['echo-1']}  Path=/a/b?x=1  From=echo-1  "
                        f"ClientIP={CIDR.rsplit('.', 1)[0]}.1  XFF=\n")
        # isolation inside the client pod
        cuid = client["metadata"]["uid"]
        rc, _, err = await execout(rt, cuid, "tools", ["touch", "/usr/x"])
        assert rc != 0 and "Read-only file system" in err
        rc, out, _ = await execout(rt, cuid, "tools", ["hostname"])
        assert out.strip() == "cli"
        rc, out, _ = await execout(rt, cuid, "tools", ["ps", "-e", "-o", "comm="])
        assert sorted(out.split()) == ["ps", "sleep"]
        rc, out, _ = await execout(rt, cuid, "tools", ["cat", "/etc/resolv.conf"])
        assert out == ("nameserver 10.96.0.10\nsearch default.svc.cluster.local "
                       "svc.cluster.local cluster.local\noptions ndots:5\n")
        rc, out, _ = await execout(rt, cuid, "tools", ["cat", "/etc/hosts"])
        assert out.endswith(f"{ips['client']}\tcli\n")
        # /tmp is writable and private to the pod
        name = f"/tmp/tk-test-{uuid.uuid4().hex}"
        rc, _, _ = await execout(rt, cuid, "tools", ["sh", "-c", f"echo hi > {name}"])
        assert rc == 0 and not Path(name).exists()
        rc, out, _ = await execout(rt, cuid, "tools", ["cat", name])
        assert out == "hi\n"
        # pods reach each other by IP (from inside the client pod)
        rc, out, _ = await execout(rt, cuid, "tools",
                                   ["curl", "-s", "-m", "5", f"http://{ips['web-0']}/"])
        assert out == "web-0\n"
        rc, out, _ = await execout(rt, cuid, "tools",
                                   ["curl", "-s", "-m", "5", f"http://{ips['echo-1']}:8080/"])
        assert f"ClientIP={ips['client']}" in out
        # hairpin is on for the bridge ports
        links = subprocess.run(["bridge", "-d", "link", "show"], capture_output=True,
                               text=True).stdout
        assert links.count("hairpin on") >= 3
        # logs with RFC3339Nano timestamps
        log = rt.log_path(wuid, "nginx").read_text()
        assert '"GET / HTTP/1.1" 200' in log and " stdout F " in log
        # deletion removes everything of a pod
        sb_netns = nsmod.pod_netns_name(CLUSTER, wuid)
        holder = rt.pods[wuid].sandbox["holderPid"]
        st = await rt.kill_pod(web, 5)
        assert cstatus(st, "nginx")["state"]["terminated"]["exitCode"] == 0
        await rt.remove_pod(wuid)
        assert not nsmod.exists(sb_netns) and not alive(holder)
        assert not (data_dir / "pods" / wuid).exists()
        assert ips["web-0"] not in rt.ipam.allocations()
        await rt.teardown_node()
    run(main())


def test_restart_backoff_crashloop_and_exit_codes(data_dir):
    async def main():
        rt = PodRuntime(data_dir, CLUSTER, BRIDGE, CIDR, "10.96.0.10", backoff_base=0.3,
                        backoff_max=2)
        await rt.setup_node()
        p = mkpod("crash", [{"name": "c", "image": "busybox",
                             "command": ["sh", "-c", "echo out-$(N); exit 3"],
                             "env": [{"name": "N", "value": "x"}]}])
        uid = p["metadata"]["uid"]
        await rt.sync_pod(p, [])

        def crashloop():
            c = cstatus(rt.pod_status(uid), "c")
            return c if c["restartCount"] >= 2 and "waiting" in c["state"] else None
        c = await wait_for(crashloop)
        assert c["state"]["waiting"]["reason"] == "CrashLoopBackOff"
        assert c["state"]["waiting"]["message"].startswith("back-off ")
        assert c["lastState"]["terminated"]["exitCode"] == 3
        assert c["lastState"]["terminated"]["reason"] == "Error"
        assert rt.pod_status(uid)["phase"] == "Running"
        assert rt.log_path(uid, "c", previous=True).read_text().endswith(" stdout F out-x\n")
        # restartPolicy Never: Failed with the exit code; OnFailure success: Succeeded
        never = mkpod("never", [{"name": "c", "image": "busybox",
                                 "command": ["sh", "-c", "exit 7"]}], restartPolicy="Never")
        ok = mkpod("ok", [{"name": "c", "image": "busybox", "command": ["true"]}],
                   restartPolicy="OnFailure")
        await rt.sync_pod(never, [])
        await rt.sync_pod(ok, [])
        st = await wait_for(lambda: (s := rt.pod_status(never["metadata"]["uid"]))["phase"]
                            == "Failed" and s)
        term = cstatus(st, "c")["state"]["terminated"]
        assert term["exitCode"] == 7 and term["reason"] == "Error"
        ready = next(c for c in st["conditions"] if c["type"] == "Ready")
        assert ready["reason"] == "PodCompleted"
        st = await wait_for(lambda: (s := rt.pod_status(ok["metadata"]["uid"]))["phase"]
                            == "Succeeded" and s)
        assert cstatus(st, "c")["state"]["terminated"]["reason"] == "Completed"
        # SIGTERM ignored by PID 1 without a handler: SIGKILL after the grace period
        sleeper = mkpod("sleeper", [{"name": "c", "image": "busybox",
                                     "command": ["sleep", "3600"]}])
        await rt.sync_pod(sleeper, [])
        st = await rt.kill_pod(sleeper, 0.5)
        assert cstatus(st, "c")["state"]["terminated"]["exitCode"] == 137
        await rt.teardown_node()
    run(main())


def test_probes_unknown_image_and_agnhost(data_dir):
    async def main():
        rt = PodRuntime(data_dir, CLUSTER, BRIDGE, CIDR, "10.96.0.10", backoff_base=0.3)
        await rt.setup_node()
        probe = {"periodSeconds": 1, "failureThreshold": 1}
        p = mkpod("probed", [
            {"name": "good", "image": "registry.k8s.io/e2e-test-images/agnhost:2.47",
             "args": ["netexec", "--http-port=8080", "--udp-port=-1"],
             "readinessProbe": {"httpGet": {"path": "/hostname", "port": 8080}, **probe}},
            {"name": "bad", "image": "busybox", "command": ["sleep", "3600"],
             "readinessProbe": {"tcpSocket": {"port": 9999}, **probe}},
            {"name": "ex", "image": "busybox", "command": ["sleep", "3600"],
             "readinessProbe": {"exec": {"command": ["test", "-f", "/tmp/ready"]}, **probe}},
        ])
        uid = p["metadata"]["uid"]
        st = await rt.sync_pod(p, [])
        ip = st["podIP"]
        await wait_for(lambda: cstatus(rt.pod_status(uid), "good")["ready"])
        await execout(rt, uid, "ex", ["touch", "/tmp/ready"])
        await wait_for(lambda: cstatus(rt.pod_status(uid), "ex")["ready"])
        st = rt.pod_status(uid)
        assert cstatus(st, "bad")["ready"] is False
        ready = next(c for c in st["conditions"] if c["type"] == "Ready")
        assert ready["status"] == "False" and ready["reason"] == "ContainersNotReady"
        assert ready["message"] == "containers with unready status: [bad]"
        assert curl(f"http://{ip}:8080/hostname") == "probed"
        assert curl(f"http://{ip}:8080/echo?msg=hi") == "hi"
        assert curl(f"http://{ip}:8080/clientip").startswith(CIDR.rsplit(".", 1)[0] + ".1:")
        # liveness failure restarts the container
        live = mkpod("live", [{"name": "c", "image": "busybox", "command": ["sleep", "3600"],
                               "livenessProbe": {"exec": {"command": ["false"]}, **probe}}],
                     terminationGracePeriodSeconds=0)
        await rt.sync_pod(live, [])
        await wait_for(lambda: cstatus(rt.pod_status(live["metadata"]["uid"]),
                                       "c")["restartCount"] >= 1)
        # an image tinykube cannot run
        bad = mkpod("badimg", [{"name": "c", "image": "example.com/private/app:1"}])
        st = await rt.sync_pod(bad, [])
        w = cstatus(st, "c")["state"]["waiting"]
        assert w["reason"] == "ErrImagePull" and "nginx" in w["message"]
        assert st["phase"] == "Pending"
        await wait_for(lambda: cstatus(rt.pod_status(bad["metadata"]["uid"]), "c")["state"]
                       ["waiting"]["reason"] == "ImagePullBackOff")
        await rt.teardown_node()
    run(main())


def test_adoption_by_a_new_runtime(data_dir):
    async def start():
        rt = PodRuntime(data_dir, CLUSTER, BRIDGE, CIDR, "10.96.0.10")
        await rt.setup_node()
        p = mkpod("adopt", [{"name": "nginx", "image": "nginx"}])
        st = await rt.sync_pod(p, [])
        return p, st, rt.pods[p["metadata"]["uid"]].containers["nginx"].pid
    pod, st, pid = run(start())   # the first runtime's loop is gone now
    uid = pod["metadata"]["uid"]

    async def adopt():
        rt = PodRuntime(data_dir, CLUSTER, BRIDGE, CIDR, "10.96.0.10")
        running = rt.running_pods()
        assert [r["uid"] for r in running] == [uid]
        assert running[0]["containers"]["nginx"]["pid"] == pid
        st2 = await rt.sync_pod(pod, [])
        c = cstatus(st2, "nginx")
        assert c["restartCount"] == 0 and "running" in c["state"]
        assert st2["podIP"] == st["podIP"]
        assert rt.pods[uid].containers["nginx"].pid == pid and alive(pid)
        await wait_for(lambda: "Welcome to nginx!" in curl(f"http://{st['podIP']}/"))
        out = subprocess.run(["ip", "netns", "pids", nsmod.pod_netns_name(CLUSTER, uid)],
                             capture_output=True, text=True).stdout.split()
        masters = [p for p in out if Path(f"/proc/{p}/cmdline").read_bytes()
                   .startswith(b"nginx: master")]
        assert masters == [str(pid)]
        # a new pod does not get the adopted pod's address
        other = mkpod("other", [{"name": "c", "image": "busybox",
                                 "command": ["sleep", "3600"]}])
        st3 = await rt.sync_pod(other, [])
        assert st3["podIP"] != st["podIP"]
        await rt.teardown_node()
    run(adopt())
