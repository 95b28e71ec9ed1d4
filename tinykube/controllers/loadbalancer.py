"""LoadBalancer IPs from the cluster's pool (what a bare-metal LB controller does)."""
from __future__ import annotations

import copy
import ipaddress
import logging
from typing import Iterator

from tinykube.api.errors import ApiError
from tinykube.api.resources import get as get_resource

from .base import Controller, SharedInformers
from .events import Recorder
from .util import meta, ns_name

log = logging.getLogger("tinykube.controllers.loadbalancer")

SERVICES = get_resource("services")
COMPONENT = "service-controller"


def pool_addresses(pool: str) -> list[str]:
    """`10.0.0.0/29`, `10.0.0.5-10.0.0.9`, single IPs, comma separated; CIDRs skip network/broadcast."""
    out: list[str] = []
    for part in (p.strip() for p in (pool or "").split(",")):
        if not part:
            continue
        if "-" in part:
            a, b = (ipaddress.ip_address(x.strip()) for x in part.split("-", 1))
            cur = a
            while cur <= b:
                out.append(str(cur))
                cur += 1
        elif "/" in part:
            net = ipaddress.ip_network(part, strict=False)
            hosts: Iterator = net.hosts() if net.num_addresses > 2 else iter(net)
            out.extend(str(h) for h in hosts)
        else:
            out.append(str(ipaddress.ip_address(part)))
    return list(dict.fromkeys(out))


def is_lb(svc: dict) -> bool:
    return (svc.get("spec") or {}).get("type") == "LoadBalancer"


def assigned_ips(svc: dict) -> list[str]:
    return [i.get("ip") for i in ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
            if i.get("ip")]


def pick_ip(svc: dict, pool: list[str], used: set[str]) -> str | None:
    want = (svc.get("spec") or {}).get("loadBalancerIP")
    if want:
        return want if want in pool and want not in used else None
    for ip in pool:
        if ip not in used:
            return ip
    return None


class LoadBalancerController(Controller):
    name = "loadbalancer-controller"
    workers = 1   # allocation decisions are serialised

    def __init__(self, client, informers: SharedInformers, recorder: Recorder, pool: str):
        super().__init__(client, informers)
        self.recorder = recorder
        self.pool = pool_addresses(pool)
        self.services = informers.get("services")
        self.services.on_add(lambda s: self.enqueue(ns_name(s)))
        self.services.on_update(self._updated)
        self.services.on_delete(lambda s: self._freed(s))
        self._claimed: dict[tuple[str, str], str] = {}   # our writes the cache may not show yet

    def _updated(self, old: dict, new: dict) -> None:
        self.enqueue(ns_name(new))
        if assigned_ips(old) and not assigned_ips(new):
            self._freed(new)

    def _freed(self, svc: dict) -> None:
        self._claimed.pop(ns_name(svc), None)
        # a released IP may let a pending service through
        for s in self.services.items():
            if is_lb(s) and not assigned_ips(s):
                self.enqueue(ns_name(s))

    async def on_synced(self) -> None:
        for s in self.services.items():
            if is_lb(s) or assigned_ips(s):
                self.enqueue(ns_name(s))

    def used(self, except_key: tuple[str, str]) -> set[str]:
        used = set()
        for s in self.services.items():
            if ns_name(s) != except_key and is_lb(s):
                used.update(assigned_ips(s))
        used.update(ip for k, ip in self._claimed.items() if k != except_key)
        return used

    async def reconcile(self, key: tuple[str, str]) -> None:
        ns, name = key
        svc = self.services.get(ns, name)
        if svc is None:
            self._claimed.pop(key, None)
            return
        have = assigned_ips(svc)
        if not is_lb(svc) or meta(svc).get("deletionTimestamp"):
            self._claimed.pop(key, None)
            if have:
                new = copy.deepcopy(svc)
                new.setdefault("status", {})["loadBalancer"] = {}
                await self.client.update_status(SERVICES, new)
                for s in self.services.items():
                    if is_lb(s) and not assigned_ips(s):
                        self.enqueue(ns_name(s))
            return
        used = self.used(key)
        if have and all(ip in self.pool and ip not in used for ip in have):
            want = (svc.get("spec") or {}).get("loadBalancerIP")
            if not want or want in have:
                self._claimed[key] = have[0]
                return
        ip = pick_ip(svc, self.pool, used)
        if ip is None:
            return   # stays <pending>
        new = copy.deepcopy(svc)
        new.setdefault("status", {})["loadBalancer"] = {"ingress": [{"ip": ip, "ipMode": "VIP"}]}
        self._claimed[key] = ip
        await self.recorder.record(svc, "Normal", "EnsuringLoadBalancer", "Ensuring load balancer", COMPONENT)
        try:
            await self.client.update_status(SERVICES, new)
        except ApiError:
            self._claimed.pop(key, None)
            raise
        await self.recorder.record(svc, "Normal", "EnsuredLoadBalancer", "Ensured load balancer", COMPONENT)
