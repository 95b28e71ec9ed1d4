"""`tinykube agent`: the node. Registers the Node, runs pods (kubelet part), programs nftables
for Services (proxy part) and serves exec/attach/port-forward/logs to the API server."""
from __future__ import annotations

import asyncio
import logging
import signal
import ssl

from aiohttp import web

from tinykube.apiserver.pki import ensure_ca, ensure_leaf
from tinykube.client import Client
from tinykube.cluster import ClusterConfig

from . import node
from .kubelet.runtime import PodRuntime
from .kubelet.streamserver import make_stream_app
from .kubelet_loop import Kubelet
from .proxy.proxier import Proxier
from .streams import StreamRuntime

log = logging.getLogger("tinykube.agent")


def _agent_ssl(cluster: ClusterConfig) -> ssl.SSLContext:
    pki = cluster.data_dir / "pki"
    ca = ensure_ca(pki)
    ips = tuple(dict.fromkeys(["127.0.0.1", *cluster.node_ips()]))
    pair = ensure_leaf(pki, ca, f"agent-{cluster.node_name}", f"system:node:{cluster.node_name}",
                       orgs=("system:nodes",), dns=(cluster.node_name, "localhost"), ips=ips, server=True)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(pair.cert), str(pair.key))
    ctx.load_verify_locations(cafile=str(ca.cert))
    ctx.verify_mode = ssl.CERT_REQUIRED  # only the API server (a CA-signed client) may exec
    return ctx


async def run(cluster: ClusterConfig) -> None:
    client = Client.from_kubeconfig(str(cluster.kubeconfig), user_agent="tinykube-agent")
    node_ips = cluster.node_ips() or ["127.0.0.1"]
    runtime = PodRuntime(cluster.data_dir / "kubelet", cluster.name, cluster.bridge, cluster.node_pod_cidr,
                         cluster.dns_ip, cluster.cluster_domain, host_ip=node_ips[0])
    kubelet = Kubelet(client, cluster, runtime)

    app = make_stream_app(StreamRuntime(runtime, kubelet.pods.get))
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1)
    await runner.setup()
    site = web.TCPSite(runner, node_ips[0], cluster.agent_port, ssl_context=_agent_ssl(cluster),
                       reuse_address=True)
    await site.start()

    while True:
        try:
            await node.register(client, cluster, cluster.agent_port)
            break
        except Exception as e:
            log.info("waiting for the API server to register the node: %s", e)
            await asyncio.sleep(0.5)
    heartbeat = asyncio.create_task(node.heartbeat(client, cluster, cluster.agent_port))

    proxier = Proxier(client, cluster.node_name, node_ips, [cluster.pod_cidr], f"{cluster.nft_prefix}proxy",
                      service_cidrs=[cluster.service_cidr], guard_cluster=cluster.name)
    await proxier.start()
    await kubelet.start()
    await proxier.wait_applied()
    cluster.mark_ready("agent")
    log.info("node %s ready: pods on %s, agent on %s:%d", cluster.node_name, cluster.node_pod_cidr,
             node_ips[0], cluster.agent_port)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    # Leave pods and rules in the kernel: a restarted agent adopts them. `tinykube down`
    # removes everything the cluster made.
    heartbeat.cancel()
    await proxier.stop(delete_rules=False)
    await runner.cleanup()
    await client.close()
