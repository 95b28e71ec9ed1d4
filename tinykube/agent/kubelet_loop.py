"""The kubelet's sync loop: watch the pods bound to this node, make the runtime run them, report
their status, and finish graceful deletions."""
from __future__ import annotations

import asyncio
import json
import logging

from tinykube.api.errors import ApiError
from tinykube.api.resources import get as get_resource
from tinykube.client import Client, Informer
from tinykube.cluster import ClusterConfig
from tinykube.controllers.events import Recorder

from .kubelet.runtime import PodRuntime

log = logging.getLogger("tinykube.kubelet")
PODS = get_resource("pods")
SERVICES = get_resource("services")
RESYNC = 10.0


class Kubelet:
    def __init__(self, client: Client, cluster: ClusterConfig, runtime: PodRuntime):
        self.client = client
        self.cluster = cluster
        self.runtime = runtime
        self.pods = Informer(client, PODS, field_selector=f"spec.nodeName={cluster.node_name}")
        self.services = Informer(client, SERVICES)
        self._queue: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
        self._queued: set[tuple[str, str]] = set()
        self._reported: dict[str, str] = {}
        self._busy: dict[tuple[str, str], asyncio.Task] = {}
        self.runtime.on_change = self._on_runtime_change
        self.runtime.on_event = self._on_runtime_event
        self.recorder = Recorder(client, host=cluster.node_name)
        self._event_tasks: set[asyncio.Task] = set()
        self._uid_to_key: dict[str, tuple[str, str]] = {}

    # ---- queueing
    def enqueue(self, pod: dict) -> None:
        md = pod["metadata"]
        key = (md.get("namespace", "default"), md["name"])
        self._uid_to_key[md["uid"]] = key
        if key not in self._queued:
            self._queued.add(key)
            self._queue.put_nowait(key)

    def _on_runtime_change(self, uid: str) -> None:
        key = self._uid_to_key.get(uid)
        if key and key not in self._queued:
            self._queued.add(key)
            self._queue.put_nowait(key)

    def _on_runtime_event(self, uid: str, type_: str, reason: str, message: str) -> None:
        """Record a container event (Pulled, Started, BackOff, Unhealthy, ...) on the pod."""
        key = self._uid_to_key.get(uid)
        pod = self.pods.get(*key) if key else None
        if pod is None:
            ps = self.runtime.pods.get(uid)
            pod = ps.pod if ps else None
        if pod is None:
            return
        obj = {"kind": "Pod", "apiVersion": "v1", "metadata": pod["metadata"]}
        t = asyncio.create_task(self.recorder.record(obj, type_, reason, message, "kubelet"))
        self._event_tasks.add(t)
        t.add_done_callback(self._event_tasks.discard)

    async def _on_delete(self, pod: dict) -> None:
        """A pod removed from the API (force delete): stop it and free its sandbox."""
        uid = pod["metadata"]["uid"]
        self._reported.pop(uid, None)
        try:
            await self.runtime.remove_pod(uid)
        except Exception:
            log.exception("removing pod %s", pod["metadata"]["name"])

    # ---- main
    async def start(self) -> None:
        await self.runtime.setup_node()
        self.pods.on_add(self.enqueue)
        self.pods.on_update(lambda old, new: self.enqueue(new))
        self.pods.on_delete(self._on_delete)
        await self.services.start()
        await self.services.wait_synced()
        await self.pods.start()
        await self.pods.wait_synced()
        await self._remove_orphans()
        for _ in range(4):
            asyncio.create_task(self._worker())
        asyncio.create_task(self._resync())

    async def _remove_orphans(self) -> None:
        """Sandboxes left by an earlier agent for pods the API no longer has."""
        known = {p["metadata"]["uid"] for p in self.pods.items()}
        for info in self.runtime.running_pods():
            if info["uid"] not in known:
                log.info("removing orphaned pod sandbox %s/%s", info.get("namespace"), info.get("name"))
                await self.runtime.remove_pod(info["uid"])

    async def _resync(self) -> None:
        while True:
            await asyncio.sleep(RESYNC)
            for p in self.pods.items():
                self.enqueue(p)

    async def _worker(self) -> None:
        while True:
            key = await self._queue.get()
            self._queued.discard(key)
            pod = self.pods.get(*key)
            if pod is None:
                continue
            try:
                await self.sync(pod)
            except ApiError as e:
                if e.code not in (404, 409):
                    log.warning("pod %s/%s: %s", key[0], key[1], e.message)
            except Exception:
                log.exception("syncing pod %s/%s", *key)

    def _env_services(self, ns: str) -> list[dict]:
        return [s for s in self.services.items()
                if s["metadata"].get("namespace") == ns
                or (s["metadata"].get("namespace") == "default" and s["metadata"]["name"] == "kubernetes")]

    async def _get_configmap(self, ns: str, name: str) -> dict | None:
        try:
            return await self.client.get(get_resource("configmaps"), ns, name)
        except ApiError:
            return None

    async def _get_secret(self, ns: str, name: str) -> dict | None:
        try:
            return await self.client.get(get_resource("secrets"), ns, name)
        except ApiError:
            return None

    async def sync(self, pod: dict) -> None:
        md = pod["metadata"]
        uid = md["uid"]
        if md.get("deletionTimestamp"):
            await self._terminate(pod)
            return
        phase = pod.get("status", {}).get("phase")
        if phase in ("Succeeded", "Failed") and uid not in self.runtime.pods:
            return  # finished before this agent started; nothing to run
        status = await self.runtime.sync_pod(pod, self._env_services(md.get("namespace", "default")),
                                             self._get_configmap, self._get_secret)
        await self._report(pod, status)

    async def _report(self, pod: dict, status: dict) -> None:
        uid = pod["metadata"]["uid"]
        text = json.dumps(status, sort_keys=True)
        if self._reported.get(uid) == text:
            return
        md = pod["metadata"]
        await self.client.patch(PODS, md.get("namespace"), md["name"], {"status": status},
                                subresource="status")
        self._reported[uid] = text

    async def _terminate(self, pod: dict) -> None:
        md = pod["metadata"]
        grace = md.get("deletionGracePeriodSeconds", 30)
        status = await self.runtime.kill_pod(pod, grace)
        try:
            await self._report(pod, status)
        except ApiError:
            pass
        await self.runtime.remove_pod(md["uid"])
        try:
            await self.client.delete(PODS, md.get("namespace"), md["name"],
                                     {"gracePeriodSeconds": 0, "preconditions": {"uid": md["uid"]}})
        except ApiError as e:
            if e.code not in (404, 409):
                raise
        self._reported.pop(md["uid"], None)
