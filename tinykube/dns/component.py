"""`tinykube dns`: the cluster DNS as the supervisor runs it.

Several server processes share one address with SO_REUSEPORT (one per CPU, at most 4), each
with its own informers, so one slow process never delays another's answers. Like a host-network
CoreDNS pod, they listen on the node's address on the pod bridge, and this process publishes
that address as the kube-dns Endpoints, so the proxy sends queries for 10.96.0.10 there."""
from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys

from tinykube.api.errors import ApiError
from tinykube.api.resources import get as get_resource
from tinykube.client import Client
from tinykube.cluster import ClusterConfig

log = logging.getLogger("tinykube.dns")


def _processes(cluster: ClusterConfig) -> int:
    return cluster.dns_processes or max(1, min(4, os.cpu_count() or 1))


def _metrics_socket(cluster: ClusterConfig, i: int) -> str:
    return str(cluster.run_dir / f"dns-{i}.metrics.sock")


async def _spawn(cluster: ClusterConfig, i: int, n: int) -> asyncio.subprocess.Process:
    ready = cluster.run_dir / f"dns-{i}.ready"
    ready.unlink(missing_ok=True)
    argv = [sys.executable, "-m", "tinykube.dns", "--kubeconfig", str(cluster.kubeconfig),
            "--listen", cluster.node_gateway, "--port", str(cluster.dns_port), "--dns-ip", cluster.dns_ip,
            "--cluster-domain", cluster.cluster_domain, "--ready-file", str(ready)]
    if i == 0:
        # the kernel spreads queries over the processes: the metrics port adds up all of them
        argv += ["--metrics-port", "9153"]
        for j in range(1, n):
            argv += ["--metrics-peer", _metrics_socket(cluster, j)]
    else:
        argv += ["--no-metrics", "--metrics-socket", _metrics_socket(cluster, i)]
    return await asyncio.create_subprocess_exec(*argv)


async def publish_endpoints(client: Client, cluster: ClusterConfig) -> None:
    """kube-dns has no selector in tinykube: its endpoint is the address the servers listen on."""
    eps = get_resource("endpoints")
    body = {"apiVersion": "v1", "kind": "Endpoints",
            "metadata": {"name": "kube-dns", "namespace": "kube-system",
                         "labels": {"k8s-app": "kube-dns", "kubernetes.io/name": "CoreDNS"}},
            "subsets": [{"addresses": [{"ip": cluster.node_gateway, "nodeName": cluster.node_name}],
                         "ports": [{"name": "dns", "port": cluster.dns_port, "protocol": "UDP"},
                                   {"name": "dns-tcp", "port": cluster.dns_port, "protocol": "TCP"},
                                   {"name": "metrics", "port": 9153, "protocol": "TCP"}]}]}
    for _ in range(50):
        try:
            try:
                cur = await client.get(eps, "kube-system", "kube-dns")
                if cur.get("subsets") == body["subsets"]:
                    return
                body["metadata"]["resourceVersion"] = cur["metadata"]["resourceVersion"]
                await client.update(eps, body)
            except ApiError as e:
                if e.code != 404:
                    raise
                await client.create(eps, body)
            return
        except ApiError as e:
            log.info("publishing kube-dns endpoints: %s", e.message)
            await asyncio.sleep(0.5)


async def _wait_for_address(ip: str) -> None:
    """The bridge (and its address) is made by the agent, which starts alongside."""
    while True:
        proc = await asyncio.create_subprocess_exec("ip", "-o", "-4", "addr", "show", stdout=asyncio.subprocess.PIPE)
        out, _ = await proc.communicate()
        if f" {ip}/".encode() in out:
            return
        await asyncio.sleep(0.2)


async def run(cluster: ClusterConfig) -> None:
    await _wait_for_address(cluster.node_gateway)
    n = _processes(cluster)
    procs = [await _spawn(cluster, i, n) for i in range(n)]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    client = Client.from_kubeconfig(str(cluster.kubeconfig), user_agent="tinykube-dns")
    try:
        while not all((cluster.run_dir / f"dns-{i}.ready").exists() for i in range(n)):
            if any(p.returncode is not None for p in procs):
                raise SystemExit("a DNS server process exited during start; see the log above")
            await asyncio.sleep(0.05)
        await publish_endpoints(client, cluster)
        cluster.mark_ready("dns")
        log.info("%d DNS server processes answering on %s:%d (kube-dns %s)", n, cluster.node_gateway,
                 cluster.dns_port, cluster.dns_ip)
        waiters = [asyncio.create_task(p.wait()) for p in procs]
        stopper = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait([*waiters, stopper], return_when=asyncio.FIRST_COMPLETED)
        if stopper not in done:
            raise SystemExit("a DNS server process exited; the supervisor restarts the component")
    finally:
        for p in procs:
            if p.returncode is None:
                p.terminate()
        for p in procs:
            try:
                await asyncio.wait_for(p.wait(), 5)
            except asyncio.TimeoutError:
                p.kill()
        await client.close()
