"""Prometheus metrics of the DNS server (names as CoreDNS exports them), served by aiohttp.

Each process counts its own queries. With several processes on one address (SO_REUSEPORT)
the kernel spreads queries over them, so the process that serves the metrics port asks its
peers for their counters (JSON over a Unix socket each peer serves) and exports the sum."""
from __future__ import annotations

import asyncio
import bisect
import logging
import os

import aiohttp
from aiohttp import web

log = logging.getLogger("tinykube.dns")

from . import wire as W

# CoreDNS: prometheus.ExponentialBuckets(0.00025, 2, 16)
BUCKETS = tuple(0.00025 * 2 ** i for i in range(16))
TYPES = {W.A, W.AAAA, W.NS, W.PTR, W.SOA, W.CNAME, W.MX, W.TXT, W.SRV, W.AXFR, W.IXFR, W.ANY,
         W.HINFO}


def _type_label(qtype: int) -> str:
    return W.TYPE_NAMES[qtype] if qtype in TYPES else "other"


def _esc(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class Metrics:
    def __init__(self, server: str = "dns://:53") -> None:
        self.server = server
        self.requests: dict[tuple, int] = {}
        self.responses: dict[tuple, int] = {}
        self.durations: dict[tuple, list] = {}     # key -> [bucket counts..., sum, count]
        self.forward_requests = 0

    def observe(self, zone: str, proto: str, family: str, qtype: int, rcode: int,
                seconds: float) -> None:
        t = _type_label(qtype)
        k = (zone, proto, family, t)
        self.requests[k] = self.requests.get(k, 0) + 1
        k2 = (zone, W.RCODE_NAMES.get(rcode, str(rcode)))
        self.responses[k2] = self.responses.get(k2, 0) + 1
        k3 = (zone, t)
        h = self.durations.get(k3)
        if h is None:
            h = self.durations[k3] = [0] * len(BUCKETS) + [0.0, 0]
        i = bisect.bisect_left(BUCKETS, seconds)
        if i < len(BUCKETS):
            h[i] += 1
        h[-2] += seconds
        h[-1] += 1

    def snapshot(self) -> dict:
        """The counters as JSON-able data (what a peer sends to the metrics process)."""
        return {"requests": [[*k, v] for k, v in self.requests.items()],
                "responses": [[*k, v] for k, v in self.responses.items()],
                "durations": [[*k, h] for k, h in self.durations.items()],
                "forward": self.forward_requests}

    def merged(self, snapshots: list[dict]) -> "Metrics":
        """A new Metrics holding this one's counters plus those of `snapshots`."""
        out = Metrics(self.server)
        for snap in [self.snapshot(), *snapshots]:
            for *k, v in snap.get("requests", ()):
                out.requests[tuple(k)] = out.requests.get(tuple(k), 0) + v
            for *k, v in snap.get("responses", ()):
                out.responses[tuple(k)] = out.responses.get(tuple(k), 0) + v
            for *k, h in snap.get("durations", ()):
                cur = out.durations.get(tuple(k))
                if cur is None or len(cur) != len(h):
                    out.durations[tuple(k)] = list(h)
                else:
                    out.durations[tuple(k)] = [a + b for a, b in zip(cur, h)]
            out.forward_requests += snap.get("forward", 0)
        return out

    def render(self) -> str:
        s = _esc(self.server)
        out = ["# HELP coredns_dns_requests_total Counter of DNS requests made per zone, "
               "protocol and family.",
               "# TYPE coredns_dns_requests_total counter"]
        for (zone, proto, fam, t), v in sorted(self.requests.items()):
            out.append(f'coredns_dns_requests_total{{server="{s}",zone="{_esc(zone)}",'
                       f'proto="{proto}",family="{fam}",type="{t}"}} {v}')
        out += ["# HELP coredns_dns_responses_total Counter of response status codes.",
                "# TYPE coredns_dns_responses_total counter"]
        for (zone, rcode), v in sorted(self.responses.items()):
            out.append(f'coredns_dns_responses_total{{server="{s}",zone="{_esc(zone)}",'
                       f'rcode="{rcode}"}} {v}')
        out += ["# HELP coredns_dns_request_duration_seconds Histogram of the time (in "
                "seconds) each request took.",
                "# TYPE coredns_dns_request_duration_seconds histogram"]
        for (zone, t), h in sorted(self.durations.items()):
            lab = f'server="{s}",zone="{_esc(zone)}",type="{t}"'
            acc = 0
            for b, c in zip(BUCKETS, h):
                acc += c
                out.append(f'coredns_dns_request_duration_seconds_bucket{{{lab},le="{b:g}"}} '
                           f'{acc}')
            out.append(f'coredns_dns_request_duration_seconds_bucket{{{lab},le="+Inf"}} '
                       f'{h[-1]}')
            out.append(f"coredns_dns_request_duration_seconds_sum{{{lab}}} {h[-2]!r}")
            out.append(f"coredns_dns_request_duration_seconds_count{{{lab}}} {h[-1]}")
        out += ["# HELP coredns_forward_requests_total Counter of requests made per upstream.",
                "# TYPE coredns_forward_requests_total counter",
                f"coredns_forward_requests_total {self.forward_requests}"]
        return "\n".join(out) + "\n"


async def _peer_snapshot(path: str, timeout: float = 0.5) -> dict | None:
    try:
        async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=path),
                                         timeout=aiohttp.ClientTimeout(total=timeout)) as s:
            async with s.get("http://peer/snapshot") as r:
                return await r.json()
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError, ValueError) as e:
        log.debug("metrics peer %s: %s", path, e)
        return None


async def start_metrics_server(metrics: Metrics, host: str, port: int,
                               peers: list[str] = ()) -> web.AppRunner:
    """Serve /metrics on host:port; `peers` are Unix sockets of the other processes'
    snapshot servers, whose counters are added in."""
    async def handler(_request: web.Request) -> web.Response:
        m = metrics
        if peers:
            snaps = await asyncio.gather(*(_peer_snapshot(p) for p in peers))
            m = metrics.merged([s for s in snaps if s])
        return web.Response(text=m.render(),
                            content_type="text/plain", charset="utf-8",
                            headers={"X-Content-Type-Options": "nosniff"})

    app = web.Application()
    app.router.add_get("/metrics", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_port=True)
    await site.start()
    return runner


async def start_snapshot_server(metrics: Metrics, path: str) -> web.AppRunner:
    """Serve this process's counters as JSON on a Unix socket (for the metrics process)."""
    async def handler(_request: web.Request) -> web.Response:
        return web.json_response(metrics.snapshot())

    app = web.Application()
    app.router.add_get("/snapshot", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    await web.UnixSite(runner, path).start()
    return runner
