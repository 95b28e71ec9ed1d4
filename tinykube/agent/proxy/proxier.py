"""The proxy's sync loop: Services + EndpointSlices -> one nftables table.

Changes coalesce for `min_sync_period`, then only the changed services are rewritten (one
incremental transaction); the whole table is rewritten at start, after any failed
incremental transaction and every `full_sync_period` (an hour, as in kube-proxy's nftables
mode: a full sync of 10,000 Services takes seconds, and changes wait behind it). The rules
live in the kernel: stopping the proxier leaves them in place (connections keep working),
and a new proxier resyncs them.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any, Iterable

from . import nft
from .render import (CounterKey, IdAllocator, Present, ProxyConfig, ServiceKey, ServiceRules,
                     SERVICE_NAME_LABEL, affinity_map, parse_group, render_all, render_delete,
                     render_full, render_incremental, render_service, stale_affinity)

log = logging.getLogger(__name__)


def _key(obj: dict) -> tuple[str, str]:
    md = obj.get("metadata") or {}
    return md.get("namespace") or "default", md.get("name") or ""


def _svc_of_slice(sl: dict) -> ServiceKey | None:
    md = sl.get("metadata") or {}
    name = (md.get("labels") or {}).get(SERVICE_NAME_LABEL)
    return (md.get("namespace") or "default", name) if name else None


class Proxier:
    def __init__(self, client: Any, node_name: str, node_ips: Iterable[str],
                 cluster_cidrs: Iterable[str], table: str, *,
                 service_cidrs: Iterable[str] = (), netns: str | None = None,
                 min_sync_period: float = 0.05, full_sync_period: float = 3600.0,
                 guard_cluster: str | None = None, manage_local_route: bool = True,
                 family: str = "ip"):
        """`client` is a tinykube.client.Client (informers are started on it), or None when
        the caller feeds objects through the on_* handlers itself. `netns` runs every command
        in that network namespace. With `guard_cluster`, no rule is written before that
        cluster's guard table exists. With `manage_local_route`, the `local` route of each
        service CIDR is ensured before the first rule."""
        self.client = client
        self.cfg = ProxyConfig(table=table, node_name=node_name, node_ips=tuple(node_ips),
                               cluster_cidrs=tuple(cluster_cidrs),
                               service_cidrs=tuple(service_cidrs), family=family)
        self.netns = netns
        self.min_sync_period = min_sync_period
        self.full_sync_period = full_sync_period
        self.guard_cluster = guard_cluster
        self.manage_local_route = manage_local_route
        self._services: dict[ServiceKey, dict] = {}
        # EndpointSlices by the Service they belong to, then by (namespace, name)
        self._slices_of: dict[ServiceKey, dict[tuple[str, str], dict]] = {}
        self._applied: dict[ServiceKey, ServiceRules] = {}
        self._ids = IdAllocator()
        self._present = Present()
        self._dirty: set[ServiceKey] = set()
        self._need_full = True
        self._wake = asyncio.Event()
        self._changes = 0          # bumped by every handler call
        self._applied_changes = -1
        self._applied_cond = asyncio.Condition()
        self._task: asyncio.Task | None = None
        self._informers: list[Any] = []
        self.syncs = {"full": 0, "incremental": 0, "failed": 0}

    # ------------------------------------------------------------------ event handlers
    def _touch(self, keys: Iterable[ServiceKey | None]) -> None:
        for k in keys:
            if k is not None:
                self._dirty.add(k)
        self._changes += 1
        self._wake.set()

    def on_service_add(self, svc: dict) -> None:
        self._services[_key(svc)] = svc
        self._touch([_key(svc)])

    def on_service_update(self, old: dict, new: dict) -> None:
        self._services.pop(_key(old), None)
        self._services[_key(new)] = new
        self._touch([_key(old), _key(new)])

    def on_service_delete(self, svc: dict) -> None:
        self._services.pop(_key(svc), None)
        self._touch([_key(svc)])

    def _put_slice(self, sl: dict) -> None:
        svc = _svc_of_slice(sl)
        if svc is not None:
            self._slices_of.setdefault(svc, {})[_key(sl)] = sl

    def _drop_slice(self, sl: dict) -> None:
        svc = _svc_of_slice(sl)
        of = self._slices_of.get(svc) if svc is not None else None
        if of is not None:
            of.pop(_key(sl), None)
            if not of:
                del self._slices_of[svc]

    def on_slice_add(self, sl: dict) -> None:
        self._put_slice(sl)
        self._touch([_svc_of_slice(sl)])

    def on_slice_update(self, old: dict, new: dict) -> None:
        self._drop_slice(old)
        self._put_slice(new)
        self._touch([_svc_of_slice(old), _svc_of_slice(new)])

    def on_slice_delete(self, sl: dict) -> None:
        self._drop_slice(sl)
        self._touch([_svc_of_slice(sl)])

    def replace_all(self, services: Iterable[dict], slices: Iterable[dict]) -> None:
        """Set the whole state at once (a full resync follows)."""
        self._services = {_key(s): s for s in services}
        self._slices_of = {}
        for s in slices:
            self._put_slice(s)
        self._need_full = True
        self._touch([])

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        """Start informers (when there is a client), wait for their first list, make sure the
        guard and local routes are in place, write the full table, then keep it in sync."""
        if self.client is not None and not self._informers:
            from tinykube.api import resources
            from tinykube.client import Informer
            si = Informer(self.client, resources.get("services"))
            si.on_add(self.on_service_add)
            si.on_update(self.on_service_update)
            si.on_delete(self.on_service_delete)
            ei = Informer(self.client, resources.get("endpointslices", "discovery.k8s.io"))
            ei.on_add(self.on_slice_add)
            ei.on_update(self.on_slice_update)
            ei.on_delete(self.on_slice_delete)
            self._informers = [si, ei]
            for inf in self._informers:
                await inf.start()
            for inf in self._informers:
                await inf.wait_synced()
        await self._prepare()
        await self.sync(full=True)
        self._task = asyncio.create_task(self._loop(), name="proxier")

    async def _prepare(self) -> None:
        if self.guard_cluster:
            from tinykube.net.guard import async_guard_installed
            waited = False
            while not await async_guard_installed(self.guard_cluster, self.netns):
                if not waited:
                    log.error("proxy: guard table of cluster %s missing; waiting for it "
                              "before writing any rule", self.guard_cluster)
                    waited = True
                await asyncio.sleep(1.0)
        if self.manage_local_route:
            from tinykube.net.routes import async_add_local_route
            for cidr in self.cfg.service_cidrs:
                await async_add_local_route(cidr, self.netns)

    async def stop(self, delete_rules: bool = False) -> None:
        """Stop syncing. The rules stay in the kernel unless `delete_rules`."""
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
            self._task = None
        for inf in self._informers:
            await inf.stop()
        self._informers = []
        if delete_rules:
            await nft.apply(render_delete(self.cfg), self.netns)

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        next_full = loop.time() + self.full_sync_period
        while True:
            timeout = max(0.0, next_full - loop.time())
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except asyncio.TimeoutError:
                pass
            if self._wake.is_set():
                await asyncio.sleep(self.min_sync_period)   # coalesce a burst
            full = self._need_full or loop.time() >= next_full
            try:
                await self.sync(full=full)
            except Exception:
                log.exception("proxy sync failed")
                self._need_full = True
                await asyncio.sleep(1.0)
                continue
            if full:
                next_full = loop.time() + self.full_sync_period

    # ------------------------------------------------------------------ sync
    async def sync(self, full: bool = False) -> None:
        """Apply pending changes now (everything when `full`)."""
        self._wake.clear()
        changes = self._changes
        dirty, self._dirty = self._dirty, set()
        try:
            if full or self._need_full:
                new = await self._sync_full()
                changed = set(new) | set(self._applied)
            else:
                new = await self._sync_incremental(dirty)
                if new is None:                      # failed: the full sync is done
                    return await self.sync(full=True)
                changed = dirty
        except Exception:
            self._dirty |= dirty
            self._need_full = True
            raise
        old = self._applied
        self._applied = new
        self._need_full = False
        for k in changed:
            gone = set((old.get(k) or ServiceRules()).groups) - \
                set((new.get(k) or ServiceRules()).groups)
            for group in gone:
                self._ids.release(group)
        await self._flush_udp(old, new, changed)
        async with self._applied_cond:
            self._applied_changes = max(self._applied_changes, changes)
            self._applied_cond.notify_all()

    async def _sync_full(self) -> dict[ServiceKey, ServiceRules]:
        existing = await nft.existing(self.cfg.table, self.cfg.family, self.netns)
        if existing is not None and not self._applied:
            self._ids.restore(existing.ids)          # a restarted proxy keeps its ids
        slices = (sl for of in self._slices_of.values() for sl in of.values())
        new = render_all(self._services.values(), slices, self.cfg, self._ids)
        try:
            await nft.apply(render_full(new, self.cfg, existing), self.netns)
        except nft.NftError as e:
            if existing is None:
                raise
            # a table this code did not write (an older layout): start it afresh
            log.warning("full proxy sync failed, recreating the table: %s", e)
            await nft.apply(render_full(new, self.cfg, None), self.netns)
        self._present = Present.of(new)
        self.syncs["full"] += 1
        return new

    async def _sync_incremental(self, dirty: set[ServiceKey]) -> dict[ServiceKey, ServiceRules] | None:
        new = dict(self._applied)
        for k in dirty:
            svc = self._services.get(k)
            if svc is None:
                new.pop(k, None)
            else:
                slices = list((self._slices_of.get(k) or {}).values())
                new[k] = render_service(svc, slices, self.cfg, self._ids)
        present = Present(set(self._present.tiers), set(self._present.timeouts))
        try:
            stale = await self._stale_affinity(dirty, new)
            script = render_incremental(self._applied, new, dirty, self.cfg, present, stale)
            await nft.apply(script, self.netns)
        except nft.NftError as e:
            log.warning("incremental proxy sync failed, doing a full one: %s", e)
            self.syncs["failed"] += 1
            self._need_full = True
            self._dirty |= dirty
            return None
        self._present = present
        self.syncs["incremental"] += 1
        return new

    async def _stale_affinity(self, dirty: set[ServiceKey],
                              new: dict[ServiceKey, ServiceRules]) -> list[tuple[str, str]]:
        """Affinity records of the changed services that point at endpoints they lost (read
        from the kernel only when some affinity id lost an endpoint)."""
        live: dict[int, tuple[int, frozenset[str]]] = {}
        affected: set[int] = set()
        for k in dirty:
            n = (new.get(k) or ServiceRules()).affinity
            live.update(n)
            for i, (tm, eps) in (self._applied.get(k) or ServiceRules()).affinity.items():
                if i not in n or n[i][0] != tm or not eps <= n[i][1]:
                    affected.add(i)
        if not affected:
            return []
        entries = {}
        for tm in sorted(self._present.timeouts):
            m = affinity_map(tm)
            entries[m] = [(k, v) for k, v, _ in await nft.list_set(
                self.cfg.table, m, self.cfg.family, self.netns, "map")]
        return stale_affinity(entries, live, only=affected)

    async def _flush_udp(self, old: dict[ServiceKey, ServiceRules],
                         new: dict[ServiceKey, ServiceRules], keys: Iterable[ServiceKey]) -> None:
        """UDP has no connection end: drop conntrack entries that still point at endpoints
        (or service ports) that are gone, so the next datagram is balanced afresh."""
        stale: set[tuple[str, int, str]] = set()
        for k in keys:
            o = old.get(k)
            if o is None:
                continue
            n = new.get(k)
            stale |= o.udp_flows - (n.udp_flows if n else set())
        for front, port, ep in sorted(stale):
            args = ["-p", "udp", "--orig-port-dst", str(port), "--reply-src", ep]
            if front:
                args = ["--orig-dst", front] + args
            await nft.conntrack_delete(args, self.netns)

    async def wait_applied(self) -> None:
        """Wait until every change handed to the handlers so far is in the kernel."""
        target = self._changes
        async with self._applied_cond:
            await self._applied_cond.wait_for(lambda: self._applied_changes >= target)

    # ------------------------------------------------------------------ read back
    async def counters(self) -> dict[CounterKey, int]:
        """Packets (= new connections / UDP flows, NAT rules see the first packet only) sent
        to each endpoint: {(namespace, service, "80/TCP", "10.244.0.5:8080"): n}."""
        return await read_counters(self.cfg.table, self.netns, self.cfg.family)


async def read_counters(table: str, netns: str | None = None,
                        family: str = "ip") -> dict[CounterKey, int]:
    out: dict[CounterKey, int] = {}
    for group, ep, packets in await nft.counters(table, family, netns):
        svc = parse_group(group)
        if svc is not None:
            k = (*svc, ep.replace(" . ", ":"))
            out[k] = out.get(k, 0) + packets
    return out


async def delete_rules(table: str, netns: str | None = None, family: str = "ip") -> None:
    """Remove the proxy's table (for `tinykube down`); idempotent."""
    await nft.delete_table(table, family, netns)
