"""The `tinykube` command: cluster lifecycle (up, down, status, kubeconfig, kubectl) and the
entry points of the components the supervisor runs."""
from __future__ import annotations

import logging
import os
import shutil
import sys
from pathlib import Path

import click

from tinykube.cluster import DEFAULT_ROOT, ClusterConfig

COMPONENT_HELP = "Run one cluster component in the foreground (the supervisor does this for you)."


def _data_dir(name: str, data_dir: str | None) -> Path:
    return Path(data_dir) if data_dir else DEFAULT_ROOT / name


def _load(name: str, data_dir: str | None) -> ClusterConfig:
    d = _data_dir(name, data_dir)
    if not (d / "cluster.json").exists():
        raise click.ClickException(f'no cluster "{name}" at {d} (start one with: tinykube up --name {name})')
    return ClusterConfig.load(d)


def _run_component(coro_factory, data_dir: str) -> None:
    import uvloop
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    cluster = ClusterConfig.load(data_dir)
    try:
        uvloop.run(coro_factory(cluster))
    except KeyboardInterrupt:
        pass


@click.group()
def main() -> None:
    """tinykube: a Kubernetes-compatible cluster for learning and testing Service networking."""


_name = click.option("--name", default="tinykube", show_default=True, help="Cluster name.")
_dir = click.option("--data-dir", default=None, help="Data directory [default: /var/lib/tinykube/<name>].")


@main.command()
@_name
@_dir
@click.option("--api-port", default=6443, show_default=True, type=int, help="API server port (0 = any free port).")
@click.option("--service-cidr", default="10.96.0.0/12", show_default=True)
@click.option("--pod-cidr", default="10.244.0.0/16", show_default=True)
@click.option("--store", default="", help="Store URL [default: SQLite in the data dir].")
@click.option("--lb-pool", default="", help="LoadBalancer IP pool (CIDR); empty leaves LBs <pending>.")
@click.option("--timeout", default=120, show_default=True, type=int, help="Seconds to wait for readiness.")
def up(name, data_dir, api_port, service_cidr, pod_cidr, store, lb_pool, timeout) -> None:
    """Start a cluster (or bring a stopped one back) and wait until every component is ready."""
    from .lifecycle import up as do_up
    d = _data_dir(name, data_dir)
    do_up(ClusterConfig(name=name, data_dir=d, api_port=api_port, service_cidr=service_cidr,
                        pod_cidr=pod_cidr, store=store, lb_pool=lb_pool), timeout)


@main.command()
@_name
@_dir
@click.option("--purge", is_flag=True, help="Remove the cluster's data too.")
def down(name, data_dir, purge) -> None:
    """Stop every component and remove every trace on the host (data stays unless --purge)."""
    from .lifecycle import down as do_down
    d = _data_dir(name, data_dir)
    do_down(name, d, purge)


@main.command()
@_name
@_dir
def status(name, data_dir) -> None:
    """Show each component and its health."""
    from .lifecycle import status as do_status
    sys.exit(do_status(_load(name, data_dir)))


@main.command()
@_name
@_dir
def kubeconfig(name, data_dir) -> None:
    """Print the kubeconfig path."""
    click.echo(str(_load(name, data_dir).kubeconfig))


@main.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@_name
@_dir
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def kubectl(name, data_dir, args) -> None:
    """Run kubectl against the cluster."""
    cfg = _load(name, data_dir)
    exe = shutil.which("kubectl")
    if not exe:
        raise click.ClickException("kubectl is not installed")
    os.environ["KUBECONFIG"] = str(cfg.kubeconfig)
    os.execv(exe, [exe, *args])


# ---------------------------------------------------------------- components

_comp_dir = click.option("--data-dir", required=True, help="The cluster's data directory.")


@main.command(help=COMPONENT_HELP)
@_comp_dir
def supervise(data_dir) -> None:
    from .supervisor import run_supervisor
    run_supervisor(ClusterConfig.load(data_dir))


@main.command(help=COMPONENT_HELP)
@_comp_dir
def apiserver(data_dir) -> None:
    from tinykube.apiserver.main import serve
    _run_component(serve, data_dir)


@main.command("controller-manager", help=COMPONENT_HELP)
@_comp_dir
def controller_manager(data_dir) -> None:
    from tinykube.controllers.main import run
    _run_component(run, data_dir)


@main.command(help=COMPONENT_HELP)
@_comp_dir
def agent(data_dir) -> None:
    from tinykube.agent.main import run
    _run_component(run, data_dir)


@main.command(help=COMPONENT_HELP)
@_comp_dir
def dns(data_dir) -> None:
    from tinykube.dns.component import run
    _run_component(run, data_dir)


@main.command(help=COMPONENT_HELP)
@_comp_dir
def ingress(data_dir) -> None:
    from tinykube.ingress.component import run
    _run_component(run, data_dir)


if __name__ == "__main__":
    main()
