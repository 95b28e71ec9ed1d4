"""`tinykube up`, `down` and `status`."""
from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import click
import yaml
from rich.console import Console
from rich.table import Table

from tinykube.apiserver.pki import ensure_ca, ensure_leaf
from tinykube.cluster import ClusterConfig

from .supervisor import COMPONENTS

console = Console(stderr=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_kubeconfig(cluster: ClusterConfig) -> Path:
    pki = cluster.data_dir / "pki"
    ca = ensure_ca(pki)
    admin = ensure_leaf(pki, ca, "admin", "kubernetes-admin", orgs=("system:masters",))
    b64 = lambda p: base64.b64encode(Path(p).read_bytes()).decode()  # noqa: E731
    cfg = {
        "apiVersion": "v1", "kind": "Config", "preferences": {},
        "clusters": [{"name": cluster.name, "cluster": {
            "server": f"https://127.0.0.1:{cluster.api_port}", "certificate-authority-data": b64(ca.cert)}}],
        "users": [{"name": f"{cluster.name}-admin", "user": {
            "client-certificate-data": b64(admin.cert), "client-key-data": b64(admin.key)}}],
        "contexts": [{"name": cluster.name, "context": {"cluster": cluster.name, "user": f"{cluster.name}-admin",
                                                        "namespace": "default"}}],
        "current-context": cluster.name,
    }
    cluster.kubeconfig.write_text(yaml.safe_dump(cfg, sort_keys=False))
    os.chmod(cluster.kubeconfig, 0o600)
    return cluster.kubeconfig


def supervisor_pid(cluster: ClusterConfig) -> int | None:
    p = cluster.run_dir / "supervisor.pid"
    try:
        pid = int(p.read_text())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


def api_ready(cluster: ClusterConfig) -> bool:
    ctx = ssl.create_default_context(cafile=str(cluster.data_dir / "pki" / "ca.crt"))
    try:
        with urllib.request.urlopen(f"https://127.0.0.1:{cluster.api_port}/readyz", context=ctx, timeout=2) as r:
            return r.status == 200
    except (OSError, ValueError):
        return False


def prepare_host(cluster: ClusterConfig) -> None:
    """The guard first, then the local route for the service CIDR: from this moment no packet for
    a cluster range can leave through an interface tinykube did not make."""
    from tinykube.net import guard, routes
    check_no_overlap(cluster)
    guard.install_guard(cluster.name, cluster_ranges(cluster))
    routes.add_local_route(cluster.service_cidr)
    if cluster.lb_pool:  # LoadBalancer IPs are the node's, like ClusterIPs: DNAT'd, never routed out
        routes.add_local_route(cluster.lb_pool)


def check_no_overlap(cluster: ClusterConfig) -> None:
    """Two running clusters with overlapping ranges would steal each other's traffic; every
    running cluster's guard table lists its ranges."""
    import ipaddress
    ours = [ipaddress.ip_network(c, strict=False) for c in cluster_ranges(cluster)]
    mine = f"tinykube-{cluster.name}-guard"
    for line in _run("nft", "list", "tables", "inet").stdout.splitlines():
        table = line.split()[-1] if line.strip() else ""
        if not (table.startswith("tinykube-") and table.endswith("-guard")) or table == mine \
                or table == f"tinykube-{cluster.bridge}-guard":
            continue
        try:
            sets = json.loads(_run("nft", "-j", "list", "set", "inet", table, "ranges4").stdout)["nftables"]
        except (ValueError, KeyError):
            continue
        for item in sets:
            for el in item.get("set", {}).get("elem", []):
                p = el.get("prefix") if isinstance(el, dict) else None
                if not p:
                    continue
                theirs = ipaddress.ip_network(f'{p["addr"]}/{p["len"]}', strict=False)
                clash = next((n for n in ours if n.overlaps(theirs)), None)
                if clash:
                    other = table[len("tinykube-"):-len("-guard")]
                    raise click.ClickException(
                        f"{clash} overlaps {theirs} of the running cluster {other!r}; "
                        f"choose other ranges with --service-cidr / --pod-cidr / --lb-pool")


def cluster_ranges(cluster: ClusterConfig) -> list[str]:
    return [c for c in (cluster.pod_cidr, cluster.service_cidr, cluster.lb_pool) if c]


def up(wanted: ClusterConfig, timeout: int) -> None:
    if os.geteuid() != 0:
        raise click.ClickException("tinykube up needs root (it creates network namespaces and nftables rules)")
    if (wanted.data_dir / "cluster.json").exists():
        cluster = ClusterConfig.load(wanted.data_dir)
        _warn_if_settings_differ(cluster, wanted)
    else:
        cluster = wanted
        if cluster.api_port == 0:
            cluster.api_port = _free_port()
        check_no_overlap(cluster)  # before anything is written for the new cluster
        if cluster.store:
            _validate_store(cluster.store_url)
        cluster.save()
    kubeconfig = write_kubeconfig(cluster)
    if supervisor_pid(cluster) is None:
        prepare_host(cluster)
        logs = cluster.data_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        for c in COMPONENTS:
            cluster.clear_ready(c)
        with open(logs / "supervisor.log", "ab") as out:
            proc = subprocess.Popen([sys.executable, "-m", "tinykube.cli.main", "supervise", "--data-dir",
                              str(cluster.data_dir)], stdout=out, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, start_new_session=True, close_fds=True)
        cluster.run_dir.mkdir(parents=True, exist_ok=True)
        (cluster.run_dir / "supervisor.pid").write_text(str(proc.pid))
    _wait_ready(cluster, timeout)
    console.print(f"[green]cluster {cluster.name!r} is up[/green]")
    click.echo(str(kubeconfig))
    click.echo(f"Use it with: export KUBECONFIG={kubeconfig}; kubectl get pods -A   "
               f"(or: tinykube kubectl --name {cluster.name} get pods -A)")


def _warn_if_settings_differ(saved: ClusterConfig, wanted: ClusterConfig) -> None:
    defaults = ClusterConfig()
    differ = [f for f in ("service_cidr", "pod_cidr", "store", "lb_pool", "api_port")
              if getattr(wanted, f) != getattr(defaults, f) and getattr(wanted, f) != getattr(saved, f)]
    if differ:
        console.print(f"[yellow]cluster {saved.name!r} already exists: keeping its saved "
                      f"{', '.join(f.replace('_', '-') for f in differ)}; `tinykube down --purge` "
                      f"first to start over with new settings[/yellow]")


def _validate_store(url: str) -> None:
    from tinykube.store import open_store
    scheme = url.split("://", 1)[0] if "://" in url else "sqlite"
    if scheme not in ("sqlite", "etcd", "etcds"):
        raise click.ClickException(f"unsupported --store {url!r}: use sqlite:///path or etcd://host:port")
    if scheme.startswith("etcd"):
        try:
            import asyncio

            async def probe() -> None:
                s = open_store(url)
                try:
                    await s.current_revision()
                finally:
                    await s.close()
            asyncio.run(probe())
        except Exception as e:  # noqa: BLE001 - any failure means the API server could not start
            raise click.ClickException(f"cannot use --store {url}: {e}") from None


def _wait_ready(cluster: ClusterConfig, timeout: int) -> None:
    deadline = time.monotonic() + timeout
    done: set[str] = set()
    with console.status("starting components...") as st:
        while time.monotonic() < deadline:
            for c in COMPONENTS:
                if c not in done and (cluster.run_dir / f"{c}.ready").exists():
                    if c == "apiserver" and not api_ready(cluster):
                        continue
                    done.add(c)
                    console.print(f"  [green]✓[/green] {c}")
            if len(done) == len(COMPONENTS):
                return
            if supervisor_pid(cluster) is None:
                raise click.ClickException(
                    f"the supervisor exited; see {cluster.data_dir / 'logs' / 'supervisor.log'}")
            st.update(f"waiting for {', '.join(c for c in COMPONENTS if c not in done)}...")
            time.sleep(0.2)
    missing = [c for c in COMPONENTS if c not in done]
    raise click.ClickException(f"timed out waiting for {', '.join(missing)}; logs are in "
                               f"{cluster.data_dir / 'logs'}")


def down(name: str, data_dir: Path, purge: bool) -> None:
    cluster = ClusterConfig.load(data_dir) if (data_dir / "cluster.json").exists() else \
        ClusterConfig(name=name, data_dir=data_dir)
    pid = supervisor_pid(cluster)
    if pid:
        os.kill(pid, signal.SIGTERM)
        for _ in range(300):
            try:
                os.kill(pid, 0)
            except OSError:
                break
            time.sleep(0.1)
        else:
            os.kill(pid, signal.SIGKILL)
    remove_host_state(cluster)
    if purge and data_dir.exists():
        shutil.rmtree(data_dir)
    console.print(f"cluster {name!r} is down" + (" and its data removed" if purge else ""))


def _run(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True)


def remove_host_state(cluster: ClusterConfig) -> None:
    """Remove every process, netns, link, nftables table and route this cluster made; the guard last."""
    from tinykube.net import guard, routes
    # pod processes live in the pod network namespaces; kill them with their namespaces
    for line in _run("ip", "netns", "list").stdout.splitlines():
        ns = line.split()[0] if line.strip() else ""
        if ns.startswith(cluster.netns_prefix):
            for pid in _run("ip", "netns", "pids", ns).stdout.split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (OSError, ValueError):
                    pass
            _run("ip", "netns", "del", ns)
    try:
        links = json.loads(_run("ip", "-j", "link").stdout or "[]")
    except ValueError:
        links = []
    for link in links:
        if link["ifname"].startswith(cluster.link_prefix):
            _run("ip", "link", "del", link["ifname"])
    for line in _run("nft", "list", "tables").stdout.splitlines():
        parts = line.split()
        bridge_guard = f"tinykube-{cluster.bridge}-guard"  # the node's forwarding guard (kubelet)
        if len(parts) == 3 and (parts[2].startswith(cluster.nft_prefix) and not parts[2].endswith("-guard")
                                or parts[2] == bridge_guard):
            _run("nft", "delete", "table", parts[1], parts[2])
    _kill_leftovers(cluster)
    routes.remove_local_route(cluster.service_cidr)
    if cluster.lb_pool:
        routes.remove_local_route(cluster.lb_pool)
    guard.remove_guard(cluster.name)


def _kill_leftovers(cluster: ClusterConfig) -> None:
    """Component processes of this cluster that outlived the supervisor (kill -9 of it, say)."""
    marker = str(cluster.data_dir)
    for pid_dir in Path("/proc").iterdir():
        if not pid_dir.name.isdigit() or int(pid_dir.name) == os.getpid():
            continue
        try:
            argv = (pid_dir / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        try:
            cwd = os.readlink(pid_dir / "cwd")
        except OSError:
            cwd = ""
        ours = any(b"tinykube" in a for a in argv) and any(marker.encode() in a for a in argv)
        # the ingress nginx runs with its working directory in the data dir
        nginx_here = bool(argv) and b"nginx" in argv[0] and (cwd == marker or cwd.startswith(marker + "/"))
        if ours or nginx_here:
            try:
                os.kill(int(pid_dir.name), signal.SIGKILL)
            except OSError:
                pass


def status(cluster: ClusterConfig) -> int:
    pid = supervisor_pid(cluster)
    state = {}
    try:
        state = json.loads((cluster.run_dir / "supervisor.json").read_text())
    except (OSError, ValueError):
        pass
    comps = {c["name"]: c for c in state.get("components", [])}
    t = Table(title=f"tinykube cluster {cluster.name!r}")
    for col in ("COMPONENT", "PID", "HEALTH", "RESTARTS", "LAST EXIT"):
        t.add_column(col)
    t.add_row("supervisor", str(pid or "-"), "running" if pid else "stopped", "-", "-")
    healthy = bool(pid)
    for c in COMPONENTS:
        info = comps.get(c, {})
        ready = (cluster.run_dir / f"{c}.ready").exists() and bool(info.get("pid"))
        if c == "apiserver" and ready:
            ready = api_ready(cluster)
        healthy &= ready
        t.add_row(c, str(info.get("pid") or "-"), "[green]ready[/green]" if ready else "[red]not ready[/red]",
                  str(info.get("restarts", 0)), info.get("last_exit") or "-")
    Console().print(t)
    print(f"API server: https://127.0.0.1:{cluster.api_port}   kubeconfig: {cluster.kubeconfig}")
    return 0 if healthy else 1
