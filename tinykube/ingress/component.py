"""`tinykube ingress`: the Ingress controller as the supervisor runs it.

Like a host-network ingress-nginx pod it listens on the node's address on the pod bridge
(cluster.node_gateway), ports 80 and 443: reachable from the host and from pods, one address per
cluster. See controller.py for the nginx it runs and render.py for the semantics."""
from __future__ import annotations

import asyncio
import logging
import signal

from tinykube.client import Client
from tinykube.cluster import ClusterConfig

from .controller import IngressController

log = logging.getLogger("tinykube.ingress")


async def _wait_for_address(ip: str) -> None:
    """The bridge (and its address) is made by the agent, which starts alongside."""
    while True:
        proc = await asyncio.create_subprocess_exec("ip", "-o", "-4", "addr", "show", stdout=asyncio.subprocess.PIPE)
        out, _ = await proc.communicate()
        if f" {ip}/".encode() in out:
            return
        await asyncio.sleep(0.2)


async def run(cluster: ClusterConfig) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await _wait_for_address(cluster.node_gateway)
    prefix = cluster.data_dir / "ingress"
    prefix.mkdir(parents=True, exist_ok=True)
    client = Client.from_kubeconfig(str(cluster.kubeconfig), user_agent="tinykube-ingress")
    ctl = IngressController(client, prefix, cluster.node_gateway)
    try:
        await ctl.start()
        cluster.mark_ready("ingress")
        log.info("ingress controller serving on %s:80 and :443", cluster.node_gateway)
        await ctl.loop(stop)
    finally:
        cluster.clear_ready("ingress")
        await ctl.close()
        await client.close()
