"""python -m tinykube.dns [--kubeconfig PATH | --static OBJECTS.json] [options]"""
from __future__ import annotations

import argparse
import logging

import uvloop

from .main import run, run_static


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="tinykube dns")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--kubeconfig")
    src.add_argument("--static", help="serve the objects in this JSON file (no API server)")
    p.add_argument("--listen", default="10.96.0.10")
    p.add_argument("--port", type=int, default=53)
    p.add_argument("--metrics-port", type=int, default=9153)
    p.add_argument("--no-metrics", action="store_true")
    p.add_argument("--resolv-conf", default="/etc/resolv.conf")
    p.add_argument("--cluster-domain", default="cluster.local")
    p.add_argument("--dns-ip", default="10.96.0.10")
    p.add_argument("--pods", default="insecure", choices=["insecure", "verified", "disabled"])
    p.add_argument("--ready-file")
    p.add_argument("--metrics-socket", help="serve this process's counters (JSON) on this Unix socket")
    p.add_argument("--metrics-peer", action="append", default=[],
                   help="a peer's --metrics-socket whose counters /metrics adds in (repeatable)")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s dns %(levelname)s %(message)s")
    metrics_port = None if a.no_metrics else a.metrics_port
    if a.static:
        uvloop.run(run_static(a.static, a.listen, a.port, metrics_port, a.resolv_conf,
                              a.cluster_domain, a.ready_file, a.dns_ip))
    else:
        uvloop.run(run(a.kubeconfig, a.listen, a.port, metrics_port,
                       a.resolv_conf, a.cluster_domain, a.ready_file, a.dns_ip, a.pods,
                       a.metrics_socket, a.metrics_peer))


if __name__ == "__main__":
    main()
