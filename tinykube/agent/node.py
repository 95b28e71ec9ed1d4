"""The Node object and its Lease heartbeat, as the kubelet keeps them."""
from __future__ import annotations

import asyncio
import datetime
import logging
import os
import platform

from tinykube.api.errors import ApiError
from tinykube.api.resources import get as get_resource
from tinykube.apiserver.app import KUBE_VERSION
from tinykube.cluster import ClusterConfig

log = logging.getLogger(__name__)
LEASE_SECONDS = 40
HEARTBEAT = 10


def _now(micro: bool = False) -> str:
    t = datetime.datetime.now(datetime.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ") if micro else t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _os_image() -> str:
    try:
        for line in open("/etc/os-release"):
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return "Linux"


def _memory_ki() -> int:
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def node_status(cluster: ClusterConfig, agent_port: int) -> dict:
    now = _now()
    ips = cluster.node_ips() or ["127.0.0.1"]
    capacity = {"cpu": str(os.cpu_count() or 1), "memory": f"{_memory_ki()}Ki", "pods": "110",
                "ephemeral-storage": "0"}
    cond = lambda t, s, reason, msg: {"type": t, "status": s, "lastHeartbeatTime": now,  # noqa: E731
                                      "lastTransitionTime": now, "reason": reason, "message": msg}
    return {
        "conditions": [
            cond("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
            cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
            cond("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
            cond("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
        ],
        "addresses": [{"type": "InternalIP", "address": ips[0]}, {"type": "Hostname", "address": cluster.node_name}],
        "capacity": capacity, "allocatable": dict(capacity),
        "daemonEndpoints": {"kubeletEndpoint": {"Port": agent_port}},
        "nodeInfo": {"machineID": _read("/etc/machine-id"), "systemUUID": _read("/etc/machine-id"),
                     "bootID": _read("/proc/sys/kernel/random/boot_id"), "kernelVersion": platform.release(),
                     "osImage": _os_image(), "containerRuntimeVersion": "tinykube://0.1.0",
                     "kubeletVersion": KUBE_VERSION, "kubeProxyVersion": KUBE_VERSION,
                     "operatingSystem": "linux", "architecture": "amd64"},
    }


def _read(path: str) -> str:
    try:
        return open(path).read().strip()
    except OSError:
        return ""


async def register(client, cluster: ClusterConfig, agent_port: int) -> dict:
    nodes = get_resource("nodes")
    name = cluster.node_name
    body = {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {
                "kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
                "beta.kubernetes.io/os": "linux", "beta.kubernetes.io/arch": "amd64",
                "node-role.kubernetes.io/control-plane": ""}},
            "spec": {"podCIDR": cluster.node_pod_cidr, "podCIDRs": [cluster.node_pod_cidr]},
            "status": node_status(cluster, agent_port)}
    try:
        node = await client.create(nodes, body)
    except ApiError as e:
        if e.code != 409:
            raise
        node = await client.get(nodes, None, name)
    node = await client.patch(nodes, None, name, {"status": node_status(cluster, agent_port)},
                              subresource="status")
    return node


async def heartbeat(client, cluster: ClusterConfig, agent_port: int) -> None:
    """Renew the Lease every 10 s and refresh the Ready condition, like the kubelet."""
    leases = get_resource("leases", "coordination.k8s.io")
    nodes = get_resource("nodes")
    name = cluster.node_name
    while True:
        try:
            lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                     "metadata": {"name": name, "namespace": "kube-node-lease"},
                     "spec": {"holderIdentity": name, "leaseDurationSeconds": LEASE_SECONDS,
                              "renewTime": _now(micro=True)}}
            try:
                await client.patch(leases, "kube-node-lease", name, {"spec": lease["spec"]})
            except ApiError as e:
                if e.code != 404:
                    raise
                await client.create(leases, lease)
            await client.patch(nodes, None, name, {"status": node_status(cluster, agent_port)},
                               subresource="status")
        except Exception as e:  # the API server may be restarting; the pods keep running
            log.info("heartbeat: %s", e)
        await asyncio.sleep(HEARTBEAT)
