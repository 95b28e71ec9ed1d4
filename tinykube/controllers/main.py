"""`tinykube controller-manager`: every controller over one set of shared informers."""
from __future__ import annotations

import asyncio
import logging

from tinykube.client.rest import Client
from tinykube.cluster import ClusterConfig

from .base import Controller, SharedInformers
from .daemonset import DaemonSetController
from .deployment import DeploymentController
from .endpoints import EndpointsController
from .endpointslice import EndpointSliceController
from .events import Recorder
from .loadbalancer import LoadBalancerController
from .mirroring import KubernetesServiceController, MirroringController
from .replicaset import ReplicaSetController
from .scheduler import Scheduler
from .statefulset import StatefulSetController

log = logging.getLogger("tinykube.controller-manager")


def build(client: Client, cluster: ClusterConfig) -> tuple[SharedInformers, list[Controller]]:
    informers = SharedInformers(client)
    recorder = Recorder(client)
    controllers: list[Controller] = [
        Scheduler(client, informers, recorder),
        ReplicaSetController(client, informers, recorder),
        DeploymentController(client, informers, recorder),
        StatefulSetController(client, informers, recorder),
        DaemonSetController(client, informers, recorder),
        EndpointsController(client, informers),
        EndpointSliceController(client, informers),
        MirroringController(client, informers),
        KubernetesServiceController(client, informers, cluster),
        LoadBalancerController(client, informers, recorder, cluster.lb_pool),
    ]
    return informers, controllers


async def run(cluster: ClusterConfig) -> None:
    client = Client.from_kubeconfig(str(cluster.kubeconfig), user_agent="tinykube-controller-manager")
    informers, controllers = build(client, cluster)
    await informers.start()
    await informers.wait_synced()
    for c in controllers:
        await c.start()
    log.info("controller-manager: %d controllers running", len(controllers))
    cluster.mark_ready("controller-manager")
    try:
        await asyncio.Event().wait()
    finally:
        cluster.clear_ready("controller-manager")
        for c in controllers:
            await c.stop()
        await informers.stop()
        await client.close()
