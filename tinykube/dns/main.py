"""`tinykube dns`: the cluster DNS process. Informers over Namespaces, Services and
EndpointSlices (and Pods for `pods verified`) feed a Zone; a DnsServer answers from it."""
from __future__ import annotations

import asyncio
import json
import logging
import os
import signal

from tinykube.api import resources

from .forward import Forwarder
from .metrics import start_metrics_server, start_snapshot_server
from .server import DnsServer, Handler
from .zone import Zone

log = logging.getLogger("tinykube.dns")


def _ns_name(obj: dict) -> tuple[str, str]:
    md = obj.get("metadata") or {}
    return md.get("namespace") or "default", md.get("name", "")


def attach(zone: Zone, kind: str, informer) -> None:
    """Wire an informer's events to the zone's setters."""
    setter = getattr(zone, f"set_{kind}")
    deleter = getattr(zone, f"delete_{kind}")
    informer.on_add(setter)
    informer.on_update(lambda old, new: setter(new))
    if kind == "namespace":
        informer.on_delete(lambda obj: deleter(obj["metadata"]["name"]))
    else:
        informer.on_delete(lambda obj: deleter(*_ns_name(obj)))


async def _serve(zone: Zone, handler: Handler, listen: str, port: int, metrics_port: int | None,
                 ready_file: str | None, stop: asyncio.Event, metrics_socket: str | None = None,
                 metrics_peers: list[str] = ()) -> None:
    server = await DnsServer(handler).start(listen, port)
    if handler.forwarder is not None:
        handler.forwarder.exclude.add((listen, server.port))
    snapshot_runner = None
    if metrics_socket:
        try:
            snapshot_runner = await start_snapshot_server(handler.metrics, metrics_socket)
        except OSError as e:
            log.warning("metrics socket %s: %s; this process's counters are not exported",
                        metrics_socket, e)
    if metrics_port is not None:
        try:
            server.metrics_runner = await start_metrics_server(handler.metrics, listen,
                                                               metrics_port, list(metrics_peers))
        except OSError as e:
            log.warning("metrics port %s: %s; serving DNS without metrics", metrics_port, e)
    log.info("serving DNS for %s on %s:%d", zone.domain, listen, server.port)
    if ready_file:
        with open(ready_file, "w") as f:
            f.write(f"{server.port}\n")
    try:
        await stop.wait()
    finally:
        await server.close()
        if snapshot_runner is not None:
            await snapshot_runner.cleanup()


def _stop_event() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):
            pass
    return stop


async def run(kubeconfig: str, listen: str = "10.96.0.10", port: int = 53,
              metrics_port: int = 9153, resolv_conf: str = "/etc/resolv.conf",
              cluster_domain: str = "cluster.local", ready_file: str | None = None,
              dns_ip: str = "10.96.0.10", pods: str = "insecure",
              metrics_socket: str | None = None, metrics_peers: list[str] = ()) -> None:
    from tinykube.client import Client, Informer

    zone = Zone(cluster_domain, dns_ip=dns_ip, pods=pods)
    client = Client.from_kubeconfig(kubeconfig)
    kinds = [("namespace", resources.get("namespaces")),
             ("service", resources.get("services")),
             ("endpointslice", resources.get("endpointslices", "discovery.k8s.io"))]
    if pods == "verified":
        kinds.append(("pod", resources.get("pods")))
    informers = []
    for kind, res in kinds:
        inf = Informer(client, res)
        attach(zone, kind, inf)
        informers.append(inf)
    handler = Handler(zone, Forwarder(resolv_conf))
    stop = _stop_event()
    for inf in informers:
        await inf.start()

    async def mark_synced() -> None:
        for inf in informers:
            await inf.wait_synced()
        zone.synced = True
        log.info("zone synced with the API server")

    synced = asyncio.create_task(mark_synced())
    try:
        # serve at once: before sync, names that would be NXDOMAIN are SERVFAIL (as CoreDNS)
        await _serve(zone, handler, listen, port, metrics_port, ready_file, stop,
                     metrics_socket, metrics_peers)
    finally:
        synced.cancel()
        for inf in informers:
            await inf.stop()
        await client.close()


def load_objects(zone: Zone, path: str) -> None:
    """Feed a zone from a JSON file: a list of objects or a `{"items": [...]}` List."""
    with open(path) as f:
        data = json.load(f)
    items = data["items"] if isinstance(data, dict) else data
    order = {"Namespace": 0, "Service": 1, "EndpointSlice": 2, "Pod": 3}
    for obj in sorted(items, key=lambda o: order.get(o.get("kind"), 9)):
        kind = obj.get("kind")
        if kind == "Namespace":
            zone.set_namespace(obj)
        elif kind == "Service":
            zone.set_service(obj)
        elif kind == "EndpointSlice":
            zone.set_endpointslice(obj)
        elif kind == "Pod":
            zone.set_pod(obj)


async def run_static(objects: str, listen: str = "127.0.0.1", port: int = 53,
                     metrics_port: int | None = None, resolv_conf: str | None = None,
                     cluster_domain: str = "cluster.local", ready_file: str | None = None,
                     dns_ip: str = "10.96.0.10") -> None:
    """Serve a fixed set of objects from a JSON file (tests and benchmarks)."""
    zone = Zone(cluster_domain, dns_ip=dns_ip)
    load_objects(zone, objects)
    zone.synced = True
    fwd = Forwarder(resolv_conf) if resolv_conf and os.path.exists(resolv_conf) else None
    await _serve(zone, Handler(zone, fwd), listen, port, metrics_port, ready_file,
                 _stop_event())
