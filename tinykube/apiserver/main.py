"""`tinykube apiserver`: open the store, make sure the cluster's own objects exist, serve HTTPS."""
from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket

from aiohttp import web

from tinykube.api.errors import ApiError
from tinykube.api.resources import get as get_resource
from tinykube.cluster import ClusterConfig as Cluster
from tinykube.store import open_store

from .app import make_app, server_ssl_context
from .pki import ensure_ca, ensure_leaf
from .registry import ClusterConfig, Registry, WriteOptions

log = logging.getLogger("tinykube.apiserver")


def service_ip(cidr: str, index: int) -> str:
    return str(ipaddress.ip_network(cidr, strict=False).network_address + index)


async def ensure_cluster_services(registry: Registry, cluster: Cluster) -> None:
    """default/kubernetes and kube-system/kube-dns exist from the start, as kubeadm makes them."""
    svc = get_resource("services")
    wanted = [
        ("default", {"metadata": {"name": "kubernetes", "labels": {"component": "apiserver", "provider": "kubernetes"}},
                     "spec": {"clusterIP": service_ip(cluster.service_cidr, 1), "type": "ClusterIP",
                              "sessionAffinity": "None",
                              "ports": [{"name": "https", "port": 443, "protocol": "TCP",
                                         "targetPort": cluster.api_port}]}}),
        ("kube-system", {"metadata": {"name": "kube-dns", "labels": {
            "k8s-app": "kube-dns", "kubernetes.io/cluster-service": "true", "kubernetes.io/name": "CoreDNS"},
            "annotations": {"prometheus.io/port": "9153", "prometheus.io/scrape": "true"}},
            # no selector: the dns component publishes its own address as the Endpoints
            "spec": {"clusterIP": cluster.dns_ip,
                     "ports": [{"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                               {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
                               {"name": "metrics", "port": 9153, "protocol": "TCP", "targetPort": 9153}]}}),
    ]
    for ns, obj in wanted:
        try:
            await registry.get(svc, ns, obj["metadata"]["name"])
        except ApiError as e:
            if e.code != 404:
                raise
            await registry.create(svc, ns, obj, WriteOptions())


async def serve(cluster: Cluster) -> None:
    data = cluster.data_dir
    pki = data / "pki"
    ca = ensure_ca(pki)
    hostname = socket.gethostname()
    ips = ("127.0.0.1", service_ip(cluster.service_cidr, 1), *cluster.node_ips())
    server = ensure_leaf(pki, ca, "apiserver", "kube-apiserver", server=True,
                         dns=("localhost", hostname, "kubernetes", "kubernetes.default",
                              "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"),
                         ips=tuple(dict.fromkeys(ips)))
    store = open_store(cluster.store_url)
    registry = Registry(store, ClusterConfig(service_cidr=cluster.service_cidr, lb_pool=cluster.lb_pool))
    await registry.ensure_system_objects()
    await ensure_cluster_services(registry, cluster)

    from .streams_backend import AgentStreams
    streams = AgentStreams(registry, cluster)
    app = make_app(registry, f"127.0.0.1:{cluster.api_port}", stream_backend=streams)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1)
    await runner.setup()
    sslctx = server_ssl_context(str(server.cert), str(server.key), str(ca.cert))
    site = web.TCPSite(runner, cluster.api_bind, cluster.api_port, ssl_context=sslctx, reuse_address=True,
                       backlog=1024)
    await site.start()
    log.info("serving on https://%s:%d", cluster.api_bind, cluster.api_port)
    cluster.mark_ready("apiserver")
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
        await store.close()
