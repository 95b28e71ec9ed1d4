"""A cluster's settings, written once by `tinykube up` to <data-dir>/cluster.json and read by
every component, plus the names of everything the cluster creates on the host."""
from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import socket
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path

DEFAULT_ROOT = Path("/var/lib/tinykube")


@dataclass
class ClusterConfig:
    name: str = "tinykube"
    data_dir: Path = DEFAULT_ROOT / "tinykube"
    api_port: int = 6443
    api_bind: str = "0.0.0.0"
    service_cidr: str = "10.96.0.0/12"
    pod_cidr: str = "10.244.0.0/16"
    store: str = ""                   # store URL; default SQLite in the data dir
    lb_pool: str = ""                 # LoadBalancer IP pool; empty: services stay <pending>
    cluster_domain: str = "cluster.local"
    node_name: str = field(default_factory=socket.gethostname)
    kubelet_port: int = 0             # 0: derived from the API port so two clusters never collide
    dns_port: int = 53
    dns_processes: int = 0            # 0: one per CPU, at most 4

    # ---- derived values
    @property
    def store_url(self) -> str:
        if not self.store:
            return f"sqlite:///{self.data_dir / 'store.db'}"
        if self.store.startswith(("etcd://", "etcds://")) and "prefix=" not in self.store:
            # several clusters may share one etcd: each keeps its keys under its own name
            return self.store + ("&" if "?" in self.store else "?") + f"prefix=/tinykube-{self.name}"
        return self.store

    @property
    def dns_ip(self) -> str:
        return str(ipaddress.ip_network(self.service_cidr, strict=False).network_address + 10)

    @property
    def kubeconfig(self) -> Path:
        return self.data_dir / "kubeconfig"

    @property
    def agent_port(self) -> int:
        return self.kubelet_port or (10250 + (self.api_port % 1000))

    @property
    def node_pod_cidr(self) -> str:
        """The single node's podCIDR: the first /24 of the pod CIDR."""
        net = ipaddress.ip_network(self.pod_cidr, strict=False)
        return str(next(net.subnets(new_prefix=24)) if net.prefixlen < 24 else net)

    @property
    def node_gateway(self) -> str:
        """The node's address on its pod bridge (.1 of the node's podCIDR)."""
        return str(ipaddress.ip_network(self.node_pod_cidr).network_address + 1)

    @property
    def short(self) -> str:
        """Five hex digits that identify the cluster in 15-character link names."""
        return hashlib.sha1(self.name.encode()).hexdigest()[:5]

    @property
    def link_prefix(self) -> str:
        return f"tk{self.short}"

    @property
    def bridge(self) -> str:
        return f"{self.link_prefix}br"

    @property
    def netns_prefix(self) -> str:
        return f"tk-{self.name}-"

    @property
    def nft_prefix(self) -> str:
        return f"tinykube-{self.name}-"

    def node_ips(self) -> list[str]:
        return host_ips()

    # ---- persistence
    def save(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        d = asdict(self)
        d["data_dir"] = str(self.data_dir)
        (self.data_dir / "cluster.json").write_text(json.dumps(d, indent=2) + "\n")

    @classmethod
    def load(cls, data_dir: str | Path) -> "ClusterConfig":
        d = json.loads((Path(data_dir) / "cluster.json").read_text())
        d["data_dir"] = Path(d["data_dir"])
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in d.items() if k in known})

    # ---- readiness handshake with the supervisor
    @property
    def run_dir(self) -> Path:
        return self.data_dir / "run"

    def mark_ready(self, component: str) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / f"{component}.ready").write_text(str(os.getpid()))

    def clear_ready(self, component: str) -> None:
        (self.run_dir / f"{component}.ready").unlink(missing_ok=True)


def host_ips() -> list[str]:
    """The host's global IPv4 addresses, the default-route interface's first."""
    try:
        out = json.loads(subprocess.run(["ip", "-j", "-4", "addr"], capture_output=True, text=True,
                                        check=True).stdout)
        route = json.loads(subprocess.run(["ip", "-j", "-4", "route", "show", "default"], capture_output=True,
                                          text=True, check=True).stdout)
    except (OSError, subprocess.CalledProcessError, ValueError):
        return []
    default_dev = route[0]["dev"] if route else None
    ips: list[tuple[int, str]] = []
    for link in out:
        if link.get("ifname") == "lo" or link["ifname"].startswith("tk"):
            continue
        for a in link.get("addr_info", []):
            if a.get("scope") == "global":
                ips.append((0 if link["ifname"] == default_dev else 1, a["local"]))
    return [ip for _, ip in sorted(ips)]
