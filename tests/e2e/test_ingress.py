"""Ingress, as the book shows it: three nginx pods behind Services, an Ingress for
sample.example.com with two paths, a default backend and TLS, reached with curl at the address
`kubectl get ingresses` prints (the node's pod-bridge address, where tinykube's nginx listens).

sample.example.com is only a Host header / SNI name here (curl --resolve pins it to the
cluster's address); it is never looked up."""
from __future__ import annotations

import datetime
import os
import subprocess
from pathlib import Path

from .conftest import wait_for

MANIFESTS = Path(__file__).parent.parent / "manifests" / "ingress"
HOST = "sample.example.com"
APPS = ("sample-ingress-apps-1", "sample-ingress-apps-2", "sample-ingress-default")


def curl(*args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(["curl", "-s", "-m", "20", *args], capture_output=True, text=True, timeout=timeout)


def http(address: str, path: str) -> str:
    return curl(f"http://{address}{path}", "-H", f"Host: {HOST}").stdout.strip()


def eventually(address: str, path: str, want: str) -> None:
    wait_for(lambda: http(address, path) == want, what=f"{path} answered by {want}")


def status(address: str, path: str) -> str:
    return curl("-o", "/dev/null", "-w", "%{http_code}", f"http://{address}{path}", "-H", f"Host: {HOST}").stdout


def self_signed(tmp: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOST)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(HOST)]), critical=False)
            .sign(key, hashes.SHA256()))
    crt, pem = tmp / "tls.crt", tmp / "tls.key"
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                      serialization.NoEncryption()))
    return crt, pem


def test_ingress_routes_by_host_and_path_with_tls(k, ns, cluster, tmp_path):
    k.ok("apply", "-n", ns, "-f", str(MANIFESTS / "apps.yaml"))
    k.ok("wait", "-n", ns, "--for=condition=Ready", "pod", "--all", "--timeout=120s", timeout=130)
    # each pod answers with its own name, as in the book
    k.ok("exec", "-n", ns, APPS[0], "--", "mkdir", "/usr/share/nginx/html/path1")
    k.ok("exec", "-n", ns, APPS[0], "--", "/bin/sh", "-c", "hostname > /usr/share/nginx/html/path1/index.html")
    k.ok("exec", "-n", ns, APPS[1], "--", "mkdir", "/usr/share/nginx/html/path2")
    k.ok("exec", "-n", ns, APPS[1], "--", "/bin/sh", "-c", "hostname > /usr/share/nginx/html/path2/index.html")
    k.ok("exec", "-n", ns, APPS[2], "--", "/bin/sh", "-c", "hostname > /usr/share/nginx/html/index.html")

    crt, key = self_signed(tmp_path)
    k.ok("create", "secret", "tls", "tls-sample", "-n", ns, f"--cert={crt}", f"--key={key}")
    k.ok("apply", "-n", ns, "-f", str(MANIFESTS / "ingress.yaml"))

    gateway = cluster.config.node_gateway
    address = wait_for(lambda: k.ok("get", "ingress", "sample-ingress", "-n", ns, "-o",
                                    "jsonpath={.status.loadBalancer.ingress[0].ip}").strip(),
                       what="the Ingress address")
    assert address == gateway

    out = k.ok("get", "ingresses", "-n", ns)
    header, row = out.splitlines()[:2]
    assert header.split() == ["NAME", "CLASS", "HOSTS", "ADDRESS", "PORTS", "AGE"]
    assert row.split()[:4] == ["sample-ingress", "<none>", HOST, gateway]
    assert "80, 443" in row

    desc = k.ok("describe", "ingress", "sample-ingress", "-n", ns)
    assert f"Address:          {gateway}" in desc
    assert "Default backend:  sample-ingress-default:8888 (" in desc
    assert f"  tls-sample terminates {HOST}" in desc
    assert "Rules:" in desc
    assert "/path1   sample-ingress-svc-1:8888 (" in desc
    assert "/path2   sample-ingress-svc-2:8888 (" in desc

    # the book's three curls
    # (a reload's old workers may still take a connection or two: wait for each answer)
    eventually(address, "/path1/index.html", APPS[0])
    eventually(address, "/path2/index.html", APPS[1])
    eventually(address, "/index.html", APPS[2])
    assert http(address, "/path1x/index.html") != APPS[0]  # Prefix is element-wise
    # a host no rule names: no catch-all default backend -> 404 from the controller
    assert curl("-o", "/dev/null", "-w", "%{http_code}", f"http://{address}/index.html",
                "-H", "Host: other.example.com").stdout == "404"

    # https with the Secret's certificate (SNI sample.example.com pinned to the address)
    r = curl("-k", "--resolve", f"{HOST}:443:{address}", f"https://{HOST}/path1/index.html")
    assert r.stdout.strip() == APPS[0], r.stderr
    r = curl("-k", "-v", "--resolve", f"{HOST}:443:{address}", f"https://{HOST}/index.html")
    assert r.stdout.strip() == APPS[2]
    assert f"subject: CN={HOST}" in r.stderr

    # pods reach the ingress at the same address
    r = k("run", "ingress-client", "-n", ns, "--image=centos:6", "--restart=Never", "--rm", "-i", "--",
          "curl", "-s", "-m", "10", f"http://{address}/path2/index.html", "-H", f"Host: {HOST}", timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[0] == APPS[1]

    # an update (a longer path, a missing Service) while a download is in flight
    k.ok("exec", "-n", ns, APPS[0], "--", "/bin/sh", "-c",
         "head -c 3000000 /dev/zero > /usr/share/nginx/html/path1/big")
    k.ok("exec", "-n", ns, APPS[1], "--", "/bin/sh", "-c",
         "mkdir -p /usr/share/nginx/html/path1/extra && hostname > /usr/share/nginx/html/path1/extra/index.html")
    big = tmp_path / "big"
    slow = subprocess.Popen(["curl", "-s", "--limit-rate", "300k", "-o", str(big), "-w", "%{http_code} %{size_download}",
                             f"http://{address}/path1/big", "-H", f"Host: {HOST}"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: big.exists() and big.stat().st_size > 0, what="the download to start")
        k.ok("apply", "-n", ns, "-f", str(MANIFESTS / "ingress-updated.yaml"))
        eventually(address, "/path1/extra/index.html", APPS[1])
        eventually(address, "/path1/index.html", APPS[0])
        # until the old workers are gone one may still take a connection: wait, don't assert once
        wait_for(lambda: status(address, "/missing/x") == "503", what="503 for a missing Service")
        out, err = slow.communicate(timeout=120)
    finally:
        if slow.poll() is None:
            slow.kill()
    assert slow.returncode == 0, err
    assert out == "200 3000000"
    assert big.stat().st_size == 3000000


def test_ingress_only_default_backend_and_classes(k, ns, cluster):
    k.ok("apply", "-n", ns, "-f", str(MANIFESTS / "apps.yaml"))
    k.ok("wait", "-n", ns, "--for=condition=Ready", "pod", APPS[2], "--timeout=120s", timeout=130)
    k.ok("exec", "-n", ns, APPS[2], "--", "/bin/sh", "-c", "hostname > /usr/share/nginx/html/index.html")
    # the controller's class exists and is the default
    out = k.ok("get", "ingressclass", "nginx", "-o", "jsonpath={.spec.controller} {.metadata.annotations}")
    assert out.startswith("k8s.io/ingress-nginx ") and '"ingressclass.kubernetes.io/is-default-class":"true"' in out
    other = """apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: not-ours
spec:
  ingressClassName: someone-else
  defaultBackend:
    service:
      name: sample-ingress-default
      port:
        number: 8888
"""
    k.ok("apply", "-n", ns, "-f", "-", input=other)
    mine = other.replace("not-ours", "catch-all").replace("someone-else", "nginx")
    k.ok("apply", "-n", ns, "-f", "-", input=mine)
    gateway = cluster.config.node_gateway
    wait_for(lambda: k.ok("get", "ingress", "catch-all", "-n", ns, "-o",
                          "jsonpath={.status.loadBalancer.ingress[0].ip}").strip() == gateway, what="address")
    out = k.ok("get", "ingress", "-n", ns)
    rows = {l.split()[0]: l.split() for l in out.splitlines()[1:]}
    assert rows["catch-all"][:5] == ["catch-all", "nginx", "*", gateway, "80"]
    assert rows["not-ours"][:4] == ["not-ours", "someone-else", "*", "80"]  # no address: not served
    # any host, any path goes to the default backend
    wait_for(lambda: curl(f"http://{gateway}/index.html", "-H", "Host: anything.example").stdout.strip() == APPS[2],
             what="the catch-all default backend")
    # handed to another class: the address goes, and so does the route
    k.ok("patch", "ingress", "catch-all", "-n", ns, "--type=merge", "-p", '{"spec":{"ingressClassName":"other"}}')
    wait_for(lambda: k.ok("get", "ingress", "catch-all", "-n", ns, "-o",
                          "jsonpath={.status.loadBalancer.ingress}").strip() == "", what="the address cleared")
    wait_for(lambda: curl("-o", "/dev/null", "-w", "%{http_code}", f"http://{gateway}/index.html").stdout == "404",
             what="404 once the Ingress is another class's")
    k.ok("patch", "ingress", "catch-all", "-n", ns, "--type=merge", "-p", '{"spec":{"ingressClassName":"nginx"}}')
    wait_for(lambda: curl(f"http://{gateway}/index.html", "-H", "Host: anything.example").stdout.strip() == APPS[2],
             what="served again")
    k.ok("delete", "ingress", "catch-all", "-n", ns)
    wait_for(lambda: curl("-o", "/dev/null", "-w", "%{http_code}", f"http://{gateway}/index.html").stdout == "404",
             what="404 once the default backend is gone")


def test_ingress_nginx_dies_with_cluster_processes(cluster):
    """The controller's nginx runs under the cluster's ingress dir; nothing else's does."""
    prefix = str((cluster.data_dir / "ingress").resolve())
    mine = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            if (d / "comm").read_text().strip() == "nginx" and os.readlink(d / "cwd") == prefix:
                mine.append(int(d.name))
        except OSError:
            continue
    assert len(mine) >= 2  # a master and its workers
