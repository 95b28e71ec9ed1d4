"""DNS throughput: tinykube dns vs nsd on the same 10,000-Service zone, measured by dnsperf.

    python bench/dns_qps.py [--services 10000] [--seconds 10] [--procs N]

Both servers listen on 127.0.0.1 (ports picked free); tinykube runs N processes sharing the
address with SO_REUSEPORT. Needs `dnsperf` and `nsd` (Debian: apt-get install dnsperf nsd);
without nsd only tinykube's figure is printed. The query mix is A lookups of existing
services (80 %), NXDOMAIN names (10 %) and SRV lookups (10 %), in random case."""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port() -> int:
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u, socket.socket() as t:
            u.bind(("127.0.0.1", 0))
            port = u.getsockname()[1]
            try:
                t.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port


def objects(n: int) -> tuple[list[dict], list[tuple[str, str, str]]]:
    objs, svcs = [], []
    nss = [f"ns{i}" for i in range(max(1, n // 100))]
    for ns in nss:
        objs.append({"kind": "Namespace", "metadata": {"name": ns}})
    for i in range(n):
        ns = nss[i % len(nss)]
        ip = f"10.{96 + i // 65536}.{(i // 256) % 256}.{i % 256 or 1}"
        name = f"svc-{i}"
        objs.append({"kind": "Service", "metadata": {"namespace": ns, "name": name},
                     "spec": {"type": "ClusterIP", "clusterIP": ip, "clusterIPs": [ip],
                              "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}})
        svcs.append((ns, name, ip))
    return objs, svcs


def nsd_zone(svcs) -> str:
    lines = ["$ORIGIN cluster.local.", "$TTL 30",
             "@ IN SOA ns.dns.cluster.local. hostmaster.cluster.local. 1 7200 1800 86400 30",
             "@ IN NS ns.dns", "ns.dns IN A 10.96.0.10"]
    for ns, name, ip in svcs:
        lines.append(f"{name}.{ns}.svc IN A {ip}")
        lines.append(f"_http._tcp.{name}.{ns}.svc IN SRV 0 100 80 {name}.{ns}.svc")
    return "\n".join(lines) + "\n"


def query_file(svcs, count: int = 100000) -> str:
    rnd = random.Random(1)
    out = []
    for _ in range(count):
        ns, name, _ = rnd.choice(svcs)
        x = rnd.random()
        if x < 0.8:
            q = f"{name}.{ns}.svc.cluster.local A"
        elif x < 0.9:
            q = f"missing-{rnd.randrange(10**6)}.{ns}.svc.cluster.local A"
        else:
            q = f"_http._tcp.{name}.{ns}.svc.cluster.local SRV"
        q = "".join(c.upper() if rnd.random() < 0.3 else c for c in q[:-4]) + q[-4:]
        out.append(q)
    return "\n".join(out) + "\n"


def dnsperf(port: int, qfile: str, seconds: int) -> float:
    out = subprocess.run(["dnsperf", "-s", "127.0.0.1", "-p", str(port), "-d", qfile,
                          "-l", str(seconds), "-c", "20", "-T", "2", "-q", "500"],
                         capture_output=True, text=True, check=True).stdout
    m = re.search(r"Queries per second:\s+([\d.]+)", out)
    lost = re.search(r"Queries lost:\s+(\d+)", out)
    print("\n".join(ln for ln in out.splitlines()
                    if "Queries" in ln or "latency" in ln.lower()))
    if lost and int(lost.group(1)):
        print(f"  (lost {lost.group(1)} queries)")
    return float(m.group(1))


def wait_udp(port: int) -> None:
    import dns.message
    import dns.query
    for _ in range(300):
        try:
            dns.query.udp(dns.message.make_query("cluster.local.", "SOA"), "127.0.0.1",
                          port=port, timeout=0.2)
            return
        except Exception:
            time.sleep(0.1)
    raise RuntimeError(f"server on port {port} never answered")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--services", type=int, default=10000)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--procs", type=int, default=os.cpu_count() or 1)
    a = ap.parse_args()
    if not shutil.which("dnsperf"):
        sys.exit("dnsperf not installed (apt-get install dnsperf)")
    tmp = tempfile.mkdtemp(prefix="tk-dns-bench-")
    objs, svcs = objects(a.services)
    with open(f"{tmp}/objs.json", "w") as f:
        json.dump(objs, f)
    with open(f"{tmp}/queries", "w") as f:
        f.write(query_file(svcs))
    procs = []
    try:
        tport = free_port()
        for _ in range(a.procs):
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "tinykube.dns", "--static", f"{tmp}/objs.json",
                 "--listen", "127.0.0.1", "--port", str(tport), "--no-metrics",
                 "--resolv-conf", "/nonexistent"], cwd=ROOT,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_udp(tport)
        time.sleep(1.0)                 # let every process finish loading
        print(f"tinykube dns ({a.procs} processes, {a.services} services):")
        tk = dnsperf(tport, f"{tmp}/queries", a.seconds)
        anchor = None
        if shutil.which("nsd"):
            nport = free_port()
            with open(f"{tmp}/cluster.local.zone", "w") as f:
                f.write(nsd_zone(svcs))
            with open(f"{tmp}/nsd.conf", "w") as f:
                f.write(f"""server:
  ip-address: 127.0.0.1@{nport}
  server-count: {a.procs}
  username: ""
  chroot: ""
  zonesdir: "{tmp}"
  database: ""
  zonelistfile: "{tmp}/zone.list"
  pidfile: "{tmp}/nsd.pid"
  xfrdfile: "{tmp}/xfrd.state"
  xfrdir: "{tmp}"
  logfile: "{tmp}/nsd.log"
  verbosity: 0
  # Debian builds nsd with response rate limiting on; a benchmark anchor must not drop answers
  rrl-ratelimit: 0
remote-control:
  control-enable: no
zone:
  name: cluster.local
  zonefile: cluster.local.zone
""")
            procs.append(subprocess.Popen(["nsd", "-d", "-c", f"{tmp}/nsd.conf"],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            wait_udp(nport)
            print(f"nsd ({a.procs} servers):")
            anchor = dnsperf(nport, f"{tmp}/queries", a.seconds)
        print(f"tinykube: {tk:.0f} qps")
        if anchor:
            print(f"nsd:      {anchor:.0f} qps")
            print(f"ratio tinykube/nsd: {tk / anchor:.2f} (target >= 0.8)")
    finally:
        for p in procs:
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
