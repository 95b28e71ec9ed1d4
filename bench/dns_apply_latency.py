"""Time from `kubectl apply` of a new Service to the cluster DNS's first correct answer for it.

    python bench/dns_apply_latency.py [--services 20] [--kubeconfig K]

For each new Service: start `kubectl apply -f -` (the real kubectl), then query the cluster DNS
(UDP, straight at the kube-dns address) every millisecond until the A record is the Service's
ClusterIP. Printed beside the anchor measured in the same run: how long `kubectl apply` itself
takes to return, i.e. the API round trip the DNS answer cannot be faster than.
"""
from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import dns.message  # noqa: E402
import dns.rdatatype  # noqa: E402

from bench._common import existing_or_new_cluster, pct  # noqa: E402


def _query(server: str, name: str, sock: socket.socket) -> str | None:
    q = dns.message.make_query(name, dns.rdatatype.A)
    sock.sendto(q.to_wire(), (server, 53))
    try:
        data, _ = sock.recvfrom(4096)
    except socket.timeout:
        return None
    r = dns.message.from_wire(data)
    for rrset in r.answer:
        for rd in rrset:
            return rd.address
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--services", type=int, default=20)
    ap.add_argument("--kubeconfig", default=None, help="use this running cluster")
    a = ap.parse_args()
    with existing_or_new_cluster(a.kubeconfig, f"bdns{os.getpid() % 10000}") as kubeconfig:
        from tinykube.cluster import ClusterConfig
        dns_ip = ClusterConfig.load(Path(kubeconfig).parent).dns_ip
        env = dict(os.environ, KUBECONFIG=str(kubeconfig))
        cache = f"/tmp/kcache-{uuid.uuid4().hex[:6]}"
        kubectl = ["kubectl", f"--cache-dir={cache}"]
        ns = f"bench-dns-{uuid.uuid4().hex[:5]}"
        subprocess.run([*kubectl, "create", "namespace", ns], env=env, check=True, capture_output=True)
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.settimeout(0.05)
        to_answer, apply_alone = [], []
        try:
            for i in range(a.services):
                name = f"s{i}"
                manifest = (f"apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: {ns}}}\n"
                            f"spec: {{ports: [{{port: 80}}], selector: {{app: {name}}}}}\n")
                fqdn = f"{name}.{ns}.svc.cluster.local."
                t0 = time.perf_counter()
                p = subprocess.Popen([*kubectl, "apply", "-f", "-"], env=env, stdin=subprocess.PIPE,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                p.stdin.write(manifest)
                p.stdin.close()
                answer = None
                while answer is None or p.poll() is None:
                    if answer is None:
                        answer = _query(dns_ip, fqdn, sock)
                        if answer is not None:
                            t_answer = time.perf_counter()
                    time.sleep(0.001)
                t_applied = time.perf_counter()
                p.wait()
                ip = subprocess.run([*kubectl, "get", "svc", name, "-n", ns, "-o", "jsonpath={.spec.clusterIP}"],
                                    env=env, capture_output=True, text=True).stdout
                assert answer == ip, (answer, ip)
                to_answer.append((t_answer - t0) * 1000)
                apply_alone.append((t_applied - t0) * 1000)
        finally:
            subprocess.run([*kubectl, "delete", "namespace", ns, "--wait=false"], env=env, capture_output=True)
        p50a, p50k = pct(to_answer, 50), pct(apply_alone, 50)
        print(f"{a.services} Services: kubectl apply -> first correct DNS answer: p50 {p50a:6.0f} ms, "
              f"p99 {pct(to_answer, 99):6.0f} ms")
        print(f"anchor: kubectl apply returning:                  p50 {p50k:6.0f} ms, "
              f"p99 {pct(apply_alone, 99):6.0f} ms")
        print(f"ratio answer/apply (p50): {p50a / p50k:.2f} (below 1: the answer is ready before kubectl returns)")


if __name__ == "__main__":
    main()
