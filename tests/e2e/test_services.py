"""Services through a real cluster, the way chapter 6 of the book (and the study notes in the
seeds) uses them: a 3-replica nginx Deployment whose pods serve their own name, reached through
ClusterIP, multi-port, named-port, UDP, selector-less, NodePort, externalIPs and LoadBalancer
Services; describe/get output, environment variables, session affinity, readiness, and the
data plane surviving restarts of the agent and the API server.

Traffic goes only to this cluster's addresses (ClusterIPs from the API, pod IPs, the node's own
address, loopback); the book's foreign addresses are replaced by them."""
from __future__ import annotations

import collections
import ipaddress
import json
import random
import re
import signal
import socket
import os
import string
import threading
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from .conftest import wait_for

MANIFESTS = Path(__file__).parent.parent / "manifests" / "services"
APP = "app=sample-app"


# ------------------------------------------------------------------------------------ helpers
def manifest(name: str, **subs) -> str:
    text = (MANIFESTS / name).read_text()
    return string.Template(text).substitute(**{k: str(v) for k, v in subs.items()}) if subs else text


def apply(k, ns: str, name: str, **subs) -> str:
    return k.ok("apply", "-n", ns, "-f", "-", input=manifest(name, **subs))


def cluster_ip(k, ns: str, svc: str) -> str:
    return wait_for(lambda: k.ok("get", "svc", svc, "-n", ns, "-o", "jsonpath={.spec.clusterIP}").strip(),
                    what=f"clusterIP of {svc}")


def ready_pods(k, ns: str, selector: str) -> dict[str, str]:
    """name -> pod IP of the Ready, not terminating pods."""
    items = json.loads(k.ok("get", "pods", "-n", ns, "-l", selector, "-o", "json"))["items"]
    out = {}
    for p in items:
        if p["metadata"].get("deletionTimestamp"):
            continue
        conds = {c["type"]: c["status"] for c in p.get("status", {}).get("conditions", [])}
        if conds.get("Ready") == "True" and p["status"].get("podIP"):
            out[p["metadata"]["name"]] = p["status"]["podIP"]
    return out


def wait_pods(k, ns: str, selector: str, n: int) -> dict[str, str]:
    return wait_for(lambda: (lambda ps: ps if len(ps) == n else None)(ready_pods(k, ns, selector)),
                    timeout=120, what=f"{n} ready pods {selector}")


def write_hostname(k, ns: str, pods) -> None:
    """The book's loop: every nginx pod serves its own name."""
    for name in pods:
        k.ok("exec", "-n", ns, name, "-c", "nginx-container", "--", "cp", "/etc/hostname",
             "/usr/share/nginx/html/index.html")


def curl(url: str, *extra: str, timeout: float = 5) -> subprocess.CompletedProcess:
    return subprocess.run(["curl", "-sS", "-m", str(timeout), *extra, url], capture_output=True, text=True,
                          timeout=timeout + 10)


def host_requests(ip: str, port: int, n: int, path: str = "/") -> list[str]:
    """n HTTP requests from the host, each on a new connection; the bodies, stripped (a failed
    request gives "<error ...>", so callers polling with wait_for simply try again)."""
    import http.client
    out = []
    for _ in range(n):
        c = http.client.HTTPConnection(ip, port, timeout=5)
        try:
            c.request("GET", path, headers={"Connection": "close"})
            out.append(c.getresponse().read().decode().strip())
        except (OSError, http.client.HTTPException) as e:
            out.append(f"<error {e!r}>")
        finally:
            c.close()
    return out


def pod_requests(k, ns: str, pod: str, url: str, n: int) -> list[str]:
    """n curl runs inside one pod (one kubectl exec running a shell loop)."""
    out = k.ok("exec", "-n", ns, pod, "--", "sh", "-c",
               f"for i in $(seq {n}); do curl -s -m 5 {url}; echo; done", timeout=180)
    return [l.strip() for l in out.splitlines() if l.strip()]


def spread_ok(bodies: list[str], names) -> None:
    c = collections.Counter(bodies)
    assert set(c) == set(names), c
    for name in names:
        share = c[name] / len(bodies)
        assert 0.20 <= share <= 0.47, (name, c)


def describe_lines(k, ns: str, svc: str) -> list[str]:
    return k.ok("describe", "service", svc, "-n", ns).splitlines()


def field(lines: list[str], key: str) -> list[str]:
    """Values of the describe lines `key:` (padding removed)."""
    return [l[len(key) + 1:].strip() for l in lines if l.startswith(key + ":")]


def refused(r: subprocess.CompletedProcess) -> bool:
    """curl -v failed at once with ECONNREFUSED (curl 7.88 says "Couldn't connect to server"
    without -v)."""
    return r.returncode == 7 and "Connection refused" in r.stderr


def udp_ask(ip: str, port: int, msg: bytes = b"hostname", timeout: float = 2) -> str | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(msg, (ip, port))
        try:
            return s.recv(2048).decode().strip()
        except socket.timeout:
            return None


def endpoints_of(k, ns: str, svc: str) -> set[str]:
    ep = json.loads(k.ok("get", "endpoints", svc, "-n", ns, "-o", "json"))
    return {f"{a['ip']}:{p['port']}" for s in ep.get("subsets") or [] for a in s.get("addresses") or []
            for p in s.get("ports") or []}


# ----------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def sns(k):
    name = f"e2e-svc-{uuid.uuid4().hex[:6]}"
    k.ok("create", "namespace", name)
    yield name
    k("delete", "namespace", name, "--wait=false")


@pytest.fixture(scope="module")
def app(k, sns):
    """The shared backend: 3 nginx pods serving their own names, the sample-clusterip Service and a
    client pod. Returns {pod name: pod IP}."""
    apply(k, sns, "deployment.yaml")
    apply(k, sns, "clusterip.yaml")
    apply(k, sns, "client.yaml")
    k.ok("rollout", "status", "deployment/sample-deployment", "-n", sns, "--timeout=120s", timeout=130)
    pods = wait_pods(k, sns, APP, 3)
    write_hostname(k, sns, pods)
    k.ok("wait", "--for=condition=Ready", "pod/client-pod", "-n", sns, "--timeout=120s", timeout=130)
    return pods


@pytest.fixture(scope="module")
def node_ip(k):
    ip = k.ok("get", "nodes", "-o", "jsonpath={.items[0].status.addresses[?(@.type==\"InternalIP\")].address}")
    ip = ip.split()[0]
    assert ipaddress.ip_address(ip)
    return ip


# ------------------------------------------------------------------------------ ClusterIP flow
def test_clusterip_describe_and_balancing(k, sns, app, cluster):
    ip = cluster_ip(k, sns, "sample-clusterip")
    assert ipaddress.ip_address(ip) in ipaddress.ip_network(cluster.config.service_cidr)
    want = {f"{pip}:80" for pip in app.values()}
    wait_for(lambda: endpoints_of(k, sns, "sample-clusterip") == want, what="3 endpoints")
    lines = wait_for(lambda: (lambda ls: ls if field(ls, "Endpoints") and set(field(ls, "Endpoints")[0].split(","))
                              == want else None)(describe_lines(k, sns, "sample-clusterip")),
                     what="describe Endpoints")
    w = 26   # tabwriter: longest key "Internal Traffic Policy:" (24) + padding 2
    expect = {"Name": "sample-clusterip", "Namespace": sns, "Labels": "<none>", "Selector": APP,
              "Type": "ClusterIP", "IP Family Policy": "SingleStack", "IP Families": "IPv4", "IP": ip,
              "IPs": ip, "Port": "http-port  8080/TCP", "TargetPort": "80/TCP",
              "Session Affinity": "None", "Internal Traffic Policy": "Cluster", "Events": "<none>"}
    for key, value in expect.items():
        assert f"{key + ':':<{w}}{value}" in lines, (key, lines)
    # kubectl before 1.29 took the Endpoints line from the Endpoints object
    old = cluster.kubectl("1.27")("describe", "service", "sample-clusterip", "-n", sns).stdout.splitlines()
    assert set(field(old, "Endpoints")[0].split(",")) == want, old
    order = [l.split(":")[0] for l in lines if l and not l.startswith(" ")]
    assert order[order.index("Selector"):] == ["Selector", "Type", "IP Family Policy", "IP Families", "IP", "IPs",
                                               "Port", "TargetPort", "Endpoints", "Session Affinity",
                                               "Internal Traffic Policy", "Events"], order
    # 300 requests from the host and 300 from a pod reach all three pods
    spread_ok(host_requests(ip, 8080, 300), app)
    spread_ok(pod_requests(k, sns, "client-pod", f"http://{ip}:8080/", 300), app)
    # by name from a throw-away pod, as in the notes
    r = k("run", "testpod", "-n", sns, "--image=centos:7", "--restart=Never", "--rm", "-i", "--",
          "curl", "-s", "-m", "5", "http://sample-clusterip:8080", timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0] in app


def test_get_svc_ep_endpointslices_columns(k, sns, app):
    ip = cluster_ip(k, sns, "sample-clusterip")
    out = k.ok("get", "svc", "sample-clusterip", "-n", sns).splitlines()
    assert out[0].split() == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]
    assert out[1].split()[:5] == ["sample-clusterip", "ClusterIP", ip, "<none>", "8080/TCP"]
    out = k.ok("get", "svc", "sample-clusterip", "-n", sns, "-o", "wide").splitlines()
    assert out[0].split() == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE", "SELECTOR"]
    row = out[1].split()
    assert row[:5] == ["sample-clusterip", "ClusterIP", ip, "<none>", "8080/TCP"] and row[6] == APP
    out = k.ok("get", "ep", "sample-clusterip", "-n", sns).splitlines()
    assert out[0].split() == ["NAME", "ENDPOINTS", "AGE"]
    assert out[1].split()[0] == "sample-clusterip"
    assert set(out[1].split()[1].split(",")) == {f"{p}:80" for p in app.values()}
    out = k.ok("get", "endpointslices", "-n", sns, "-l", "kubernetes.io/service-name=sample-clusterip").splitlines()
    assert out[0].split() == ["NAME", "ADDRESSTYPE", "PORTS", "ENDPOINTS", "AGE"]
    assert len(out) == 2, out
    row = out[1].split()
    assert re.fullmatch(r"sample-clusterip-[a-z0-9]{5}", row[0]) and row[1:3] == ["IPv4", "80"], row
    assert set(row[3].split(",")) == set(app.values())
    managed = k.ok("get", "endpointslices", "-n", sns, "-l", "kubernetes.io/service-name=sample-clusterip",
                   "-o", "jsonpath={.items[0].metadata.labels.endpointslice\\.kubernetes\\.io/managed-by}")
    assert managed == "endpointslice-controller.k8s.io"


def test_multi_port(k, sns, app):
    apply(k, sns, "clusterip-multi.yaml")
    ip = cluster_ip(k, sns, "sample-clusterip-multi")
    lines = wait_for(lambda: (lambda ls: ls if len([e for e in field(ls, "Endpoints") if e]) == 2 else None)(
        describe_lines(k, sns, "sample-clusterip-multi")), what="both ports' endpoints")
    assert field(lines, "Port") == ["http-port  8080/TCP", "https-port  8443/TCP"]
    assert field(lines, "TargetPort") == ["80/TCP", "443/TCP"]
    eps = field(lines, "Endpoints")
    assert set(eps[0].split(",")) == {f"{p}:80" for p in app.values()}
    assert set(eps[1].split(",")) == {f"{p}:443" for p in app.values()}
    # the Endpoints are in the API a moment before the proxy has programmed them (as with
    # kube-proxy): wait for the data plane, then every pod answers on both ports
    wait_for(lambda: set(host_requests(ip, 8080, 30)) == set(app), what="port 8080 reaching every pod")
    wait_for(lambda: set(host_requests(ip, 8443, 30, "/hostname")) == set(app),
             what="port 8443 reaching every pod")


def test_named_target_port_per_pod(k, sns):
    apply(k, sns, "named-port.yaml")
    pods = wait_pods(k, sns, "app=named-port-app", 2)
    ports = {}
    for name, pip in pods.items():
        ports[pip] = "80" if name.startswith("named-port-deployment1-") else "8080"
    want = {f"{pip}:{port}" for pip, port in ports.items()}
    wait_for(lambda: endpoints_of(k, sns, "sample-named-port-service") == want, what="per-pod ports")
    lines = describe_lines(k, sns, "sample-named-port-service")
    assert field(lines, "TargetPort") == ["http/TCP"]
    assert set(field(lines, "Endpoints")[0].split(",")) == want
    ip = cluster_ip(k, sns, "sample-named-port-service")
    # wait for the proxy to program the new endpoints, then both target ports answer
    bodies = wait_for(lambda: (lambda bs: bs if not any(b.startswith("<error") for b in bs) else None)(
        host_requests(ip, 8080, 40)), what="the data plane for the named-port Service")
    assert any("Welcome to nginx!" in b for b in bodies)      # nginx on 80
    assert any(b.startswith("NOW: ") for b in bodies)          # netexec on 8080


def test_udp_service(k, sns, app):
    apply(k, sns, "udp.yaml")
    ip = cluster_ip(k, sns, "sample-udp")
    want = {f"{p}:8081" for p in app.values()}
    wait_for(lambda: endpoints_of(k, sns, "sample-udp") == want, what="UDP endpoints")
    assert k.ok("get", "svc", "sample-udp", "-n", sns, "--no-headers").split()[4] == "9000/UDP"
    seen = set()

    def all_seen():
        for _ in range(20):
            a = udp_ask(ip, 9000)
            if a:
                seen.add(a)
        return seen == set(app)
    wait_for(all_seen, what=f"UDP answers from every pod (seen {seen})")
    assert seen == set(app)


def test_no_endpoints_rejects_at_once(k, sns, app):
    apply(k, sns, "no-endpoints.yaml")
    ip = cluster_ip(k, sns, "sample-no-endpoints")
    wait_for(lambda: k.ok("get", "endpointslices", "-n", sns, "-l",
                          "kubernetes.io/service-name=sample-no-endpoints", "-o", "name").strip(),
             what="placeholder slice")
    r = curl(f"http://{ip}:8080/", "-v", timeout=10)
    assert refused(r), (r.returncode, r.stderr)
    out = k("exec", "-n", sns, "client-pod", "--", "curl", "-sSv", "-m", "10", f"http://{ip}:8080/")
    assert refused(out), (out.returncode, out.stderr)
    assert k.ok("get", "ep", "sample-no-endpoints", "-n", sns, "--no-headers").split()[1] == "<none>"


def test_hairpin(k, sns, node_ip):
    apply(k, sns, "hairpin.yaml")
    wait_pods(k, sns, "app=hairpin-app", 1)
    write_hostname(k, sns, ["hairpin-pod"])
    ip = cluster_ip(k, sns, "hairpin-service")
    out = wait_for(lambda: k("exec", "-n", sns, "hairpin-pod", "--", "curl", "-s", "-m", "5",
                             f"http://{ip}:8080/").stdout.strip(), what="hairpin answer")
    assert out == "hairpin-pod"
    out = k.ok("exec", "-n", sns, "hairpin-pod", "--", "sh", "-c",
               "for i in 1 2 3 4 5; do curl -s -m 5 http://hairpin-service:8080/; done").split()
    assert out == ["hairpin-pod"] * 5
    # and through the node port on the node's address
    node_port = k.ok("get", "svc", "hairpin-service", "-n", sns, "-o", "jsonpath={.spec.ports[0].nodePort}")
    out = k.ok("exec", "-n", sns, "hairpin-pod", "--", "curl", "-s", "-m", "5", f"http://{node_ip}:{node_port}/")
    assert out.strip() == "hairpin-pod"


def test_readiness_removes_and_restores_endpoint(k, sns):
    apply(k, sns, "readiness.yaml")
    wait_for(lambda: k("exec", "-n", sns, "readiness-pod", "--", "touch", "/tmp/ready").returncode == 0,
             what="exec into readiness-pod")
    pip = wait_pods(k, sns, "app=readiness-app", 1)["readiness-pod"]
    write_hostname(k, sns, ["readiness-pod"])
    ip = cluster_ip(k, sns, "readiness-service")
    wait_for(lambda: endpoints_of(k, sns, "readiness-service") == {f"{pip}:80"}, what="endpoint")
    assert wait_for(lambda: curl(f"http://{ip}:8080/").stdout.strip(), what="answer") == "readiness-pod"
    k.ok("exec", "-n", sns, "readiness-pod", "--", "rm", "/tmp/ready")
    wait_for(lambda: endpoints_of(k, sns, "readiness-service") == set(), timeout=20, what="endpoint removed")
    ep = json.loads(k.ok("get", "endpoints", "readiness-service", "-n", sns, "-o", "json"))
    assert [a["ip"] for s in ep["subsets"] for a in s.get("notReadyAddresses", [])] == [pip]
    wait_for(lambda: refused(curl(f"http://{ip}:8080/", "-v")), timeout=20,
             what="service rejects without ready endpoints")
    k.ok("exec", "-n", sns, "readiness-pod", "--", "touch", "/tmp/ready")
    wait_for(lambda: endpoints_of(k, sns, "readiness-service") == {f"{pip}:80"}, timeout=20,
             what="endpoint back")
    assert wait_for(lambda: curl(f"http://{ip}:8080/").stdout.strip(), what="answer again") == "readiness-pod"


# ---------------------------------------------------------------------------- session affinity
def test_session_affinity_client_ip(k, sns, app, node_ip):
    apply(k, sns, "session-affinity.yaml")
    ip = cluster_ip(k, sns, "sample-session-affinity")
    spec = json.loads(k.ok("get", "svc", "sample-session-affinity", "-n", sns, "-o", "json"))["spec"]
    assert spec["sessionAffinity"] == "ClientIP"
    assert spec["sessionAffinityConfig"] == {"clientIP": {"timeoutSeconds": 5}}
    lines = describe_lines(k, sns, "sample-session-affinity")
    assert field(lines, "Session Affinity") == ["ClientIP"]
    wait_for(lambda: len(field(describe_lines(k, sns, "sample-session-affinity"), "Endpoints")[0].split(",")) == 3,
             what="3 endpoints")
    wait_for(lambda: not host_requests(ip, 8080, 1)[0].startswith("<error"), what="the data plane")
    first = host_requests(ip, 8080, 30)
    assert len(set(first)) == 1 and first[0] in app, collections.Counter(first)
    from_pod = pod_requests(k, sns, "client-pod", f"http://{ip}:8080/", 30)
    assert len(set(from_pod)) == 1 and from_pod[0] in app, collections.Counter(from_pod)
    # once the client has been idle for longer than timeoutSeconds, the choice is made afresh
    choices = [first[-1]]
    for _ in range(10):
        time.sleep(6)
        choices.append(host_requests(ip, 8080, 1)[0])
        if len(set(choices)) > 1:
            break
    assert len(set(choices)) > 1, choices
    # the same through a node port (type changed to NodePort: a port is allocated on update)
    k.ok("patch", "svc", "sample-session-affinity", "-n", sns, "--type=merge", "-p", '{"spec":{"type":"NodePort"}}')
    node_port = int(k.ok("get", "svc", "sample-session-affinity", "-n", sns, "-o",
                         "jsonpath={.spec.ports[0].nodePort}"))
    assert 30000 <= node_port <= 32767
    sticky = wait_for(lambda: (lambda b: b if len(b) == 30 else None)(host_requests(node_ip, node_port, 30)),
                      what="NodePort answers")
    assert len(set(sticky)) == 1 and sticky[0] in app, collections.Counter(sticky)
    # and None spreads again
    k.ok("patch", "svc", "sample-session-affinity", "-n", sns, "--type=merge",
         "-p", '{"spec":{"sessionAffinity":"None"}}')
    spread = wait_for(lambda: (lambda b: b if len(set(b)) == 3 else None)(host_requests(ip, 8080, 30)),
                      what="spread after None")
    assert set(spread) == set(app)


def test_session_affinity_timeout_validation(k, sns):
    bad = manifest("session-affinity.yaml").replace("timeoutSeconds: 5", "timeoutSeconds: 0") \
        .replace("sample-session-affinity", "bad-affinity")
    r = k("apply", "-n", sns, "-f", "-", input=bad)
    assert r.returncode != 0
    assert ('The Service "bad-affinity" is invalid: spec.sessionAffinityConfig.clientIP.timeoutSeconds: '
            'Invalid value: 0: must be greater than 0 and less than 86400') in r.stderr, r.stderr


# ------------------------------------------------------------------------ selector-less Service
def test_selectorless_service_with_own_endpoints(k, sns, app):
    pods = sorted(app.items())[:2]
    apply(k, sns, "none-selector.yaml", IP1=pods[0][1], IP2=pods[1][1])
    ip = cluster_ip(k, sns, "sample-none-selector")
    sel = k.ok("get", "svc", "sample-none-selector", "-n", sns, "-o", "wide", "--no-headers").split()
    assert sel[1] == "ClusterIP" and sel[6] == "<none>"
    slice_labels = wait_for(lambda: (lambda items: items[0]["metadata"]["labels"] if items else None)(
        json.loads(k.ok("get", "endpointslices", "-n", sns, "-l", "kubernetes.io/service-name=sample-none-selector",
                        "-o", "json"))["items"]), what="mirrored slice")
    assert slice_labels["endpointslice.kubernetes.io/managed-by"] == "endpointslicemirroring-controller.k8s.io"
    out = k.ok("get", "endpointslices", "-n", sns, "-l",
               "endpointslice.kubernetes.io/managed-by=endpointslicemirroring-controller.k8s.io").splitlines()
    assert len(out) == 2 and out[1].split()[1:3] == ["IPv4", "80"], out
    assert set(out[1].split()[3].split(",")) == {pods[0][1], pods[1][1]}
    bodies = wait_for(lambda: (lambda b: b if set(b) == {pods[0][0], pods[1][0]} else None)(
        host_requests(ip, 8080, 40)), what="traffic to the hand-made endpoints")
    assert set(bodies) == {pods[0][0], pods[1][0]}
    lines = describe_lines(k, sns, "sample-none-selector")
    assert field(lines, "Selector") == ["<none>"]
    assert field(lines, "TargetPort") == ["80/TCP"]


# ------------------------------------------------------------ NodePort, externalIPs, errors, LB
def test_nodeport(k, sns, app, node_ip):
    apply(k, sns, "nodeport.yaml")
    row = k.ok("get", "svc", "sample-nodeport", "-n", sns, "--no-headers").split()
    assert row[1] == "NodePort" and row[3] == "<none>"
    m = re.fullmatch(r"8080:(\d+)/TCP", row[4])
    assert m, row
    node_port = int(m.group(1))
    assert 30000 <= node_port <= 32767
    lines = describe_lines(k, sns, "sample-nodeport")
    assert field(lines, "NodePort") == [f"http-port  {node_port}/TCP"]
    assert field(lines, "External Traffic Policy") == ["Cluster"]
    bodies = wait_for(lambda: (lambda b: b if set(b) == set(app) else None)(host_requests(node_ip, node_port, 40)),
                      what="NodePort answers from every pod")
    assert set(bodies) == set(app)
    r = curl(f"http://{node_ip}:{node_port}/")
    assert r.returncode == 0 and r.stdout.strip() in app
    # from a pod, through the node's address
    out = k.ok("exec", "-n", sns, "client-pod", "--", "sh", "-c",
               f"for i in $(seq 20); do curl -s -m 5 http://{node_ip}:{node_port}/; done").split()
    assert len(out) == 20 and set(out) <= set(app), out
    # the same port again: already allocated
    r = k("apply", "-n", sns, "-f", "-", input=manifest("nodeport-dup.yaml", NODE_PORT=node_port))
    assert r.returncode != 0
    assert (f'The Service "sample-nodeport-fail2" is invalid: spec.ports[0].nodePort: Invalid value: {node_port}: '
            "provided port is already allocated") in r.stderr, r.stderr


def test_nodeport_out_of_range(k, sns):
    r = k("apply", "-n", sns, "-f", "-", input=manifest("nodeport-fail.yaml"))
    assert r.returncode != 0
    assert ('The Service "sample-nodeport-fail" is invalid: spec.ports[0].nodePort: Invalid value: 8888: '
            "provided port is not in the valid range. The range of valid ports is 30000-32767") in r.stderr, r.stderr


def test_external_ips_answer_only_on_listed_addresses(k, sns, app, node_ip):
    port = random.randint(20000, 29999)
    assert refused(curl(f"http://127.0.0.1:{port}/", "-v", timeout=3))    # nothing of ours there
    apply(k, sns, "externalip.yaml", EXTERNAL_IP=node_ip, PORT=port)
    row = k.ok("get", "svc", "sample-externalip", "-n", sns, "--no-headers").split()
    assert row[1] == "ClusterIP" and row[3] == node_ip and row[4] == f"{port}/TCP", row
    lines = describe_lines(k, sns, "sample-externalip")
    assert field(lines, "External IPs") == [node_ip]
    assert field(lines, "External Traffic Policy") == ["Cluster"]
    bodies = wait_for(lambda: (lambda b: b if set(b) == set(app) else None)(
        host_requests(node_ip, port, 40)), what="externalIP answers from every pod")
    assert set(bodies) == set(app)
    r = curl(f"http://127.0.0.1:{port}/", "-v", timeout=3)
    assert refused(r), r.stderr
    # from a pod too
    out = k.ok("exec", "-n", sns, "client-pod", "--", "curl", "-s", "-m", "5", f"http://{node_ip}:{port}/")
    assert out.strip() in app


def test_external_ip_inside_service_range_and_port_removal(k, sns, app, cluster):
    """An externalIP inside the service range (an address the cluster routes locally), and a port
    removed from a Service stops answering at once."""
    net = ipaddress.ip_network(cluster.config.service_cidr)
    used = set(k.ok("get", "svc", "-A", "-o", "jsonpath={.items[*].spec.clusterIP}").split())
    ext = next(str(a) for a in (net.network_address + 6000 + i for i in range(1000)) if str(a) not in used)
    svc = manifest("clusterip-multi.yaml").replace("sample-clusterip-multi", "sample-ext-multi").replace(
        "  type: ClusterIP\n", f"  type: ClusterIP\n  externalIPs:\n    - {ext}\n")
    k.ok("apply", "-n", sns, "-f", "-", input=svc)
    ip = cluster_ip(k, sns, "sample-ext-multi")
    for addr in (ip, ext):
        wait_for(lambda: set(host_requests(addr, 8443, 20, "/hostname")) == set(app), what=f"{addr}:8443")
    out = k.ok("exec", "-n", sns, "client-pod", "--", "curl", "-s", "-m", "5", f"http://{ext}:8080/")
    assert out.strip() in app
    k.ok("patch", "svc", "sample-ext-multi", "-n", sns, "--type=json",
         "-p", '[{"op":"remove","path":"/spec/ports/1"}]')
    for addr in (ip, ext):
        wait_for(lambda: refused(curl(f"http://{addr}:8443/", "-v")), timeout=20, what=f"{addr}:8443 refused")
        assert curl(f"http://{addr}:8080/").stdout.strip() in app


def test_fixed_cluster_ip(k, sns, app, cluster):
    net = ipaddress.ip_network(cluster.config.service_cidr)
    outside = ipaddress.ip_address("10.11.253.81")
    if outside in net:
        outside = net.broadcast_address + 81
    r = k("apply", "-n", sns, "-f", "-", input=manifest("clusterip-vip.yaml", NAME="sample-clusterip-vip",
                                                         CLUSTER_IP=outside))
    assert r.returncode != 0
    assert (f'The Service "sample-clusterip-vip" is invalid: spec.clusterIPs: Invalid value: []string{{"{outside}"}}: '
            f"failed to allocate IP {outside}: the provided IP ({outside}) is not in the valid range. "
            f"The range of valid IPs is {net}") in r.stderr, r.stderr
    used = set(k.ok("get", "svc", "-A", "-o", "jsonpath={.items[*].spec.clusterIP}").split())
    inside = next(str(a) for a in (net.network_address + 4000 + i for i in range(1000)) if str(a) not in used)
    apply(k, sns, "clusterip-vip.yaml", NAME="sample-clusterip-vip", CLUSTER_IP=inside)
    row = k.ok("get", "svc", "sample-clusterip-vip", "-n", sns, "--no-headers").split()
    assert row[:5] == ["sample-clusterip-vip", "ClusterIP", inside, "<none>", "8080/TCP"]
    bodies = wait_for(lambda: (lambda b: b if set(b) == set(app) else None)(host_requests(inside, 8080, 30)),
                      what="fixed clusterIP answers")
    assert set(bodies) == set(app)
    # the same address again: already allocated
    r = k("apply", "-n", sns, "-f", "-", input=manifest("clusterip-vip.yaml", NAME="sample-clusterip-vip2",
                                                         CLUSTER_IP=inside))
    assert r.returncode != 0
    assert (f'The Service "sample-clusterip-vip2" is invalid: spec.clusterIPs: Invalid value: []string{{"{inside}"}}: '
            f"failed to allocate IP {inside}: provided IP is already allocated") in r.stderr, r.stderr


def test_loadbalancer_stays_pending(k, sns, app, node_ip):
    apply(k, sns, "lb.yaml")
    row = k.ok("get", "svc", "sample-lb", "-n", sns, "--no-headers").split()
    assert row[1] == "LoadBalancer" and row[3] == "<pending>", row
    assert re.fullmatch(r"8080:3\d{4}/TCP", row[4]), row
    lines = describe_lines(k, sns, "sample-lb")
    assert field(lines, "Type") == ["LoadBalancer"] and field(lines, "LoadBalancer Ingress") == []
    assert field(lines, "External Traffic Policy") == ["Cluster"]
    # the ClusterIP and NodePort parts work
    node_port = int(row[4].split(":")[1].split("/")[0])
    ip = cluster_ip(k, sns, "sample-lb")
    assert wait_for(lambda: curl(f"http://{ip}:8080/").stdout.strip(), what="LB clusterIP") in app
    assert wait_for(lambda: curl(f"http://{node_ip}:{node_port}/").stdout.strip(), what="LB nodePort") in app
    assert k.ok("get", "svc", "sample-lb", "-n", sns, "--no-headers").split()[3] == "<pending>"


# --------------------------------------------------------------------------- environment vars
def test_service_environment_variables(k, sns, app):
    for m in ("clusterip-multi.yaml", "udp.yaml", "headless-externalname.yaml"):
        apply(k, sns, m)
    ip = cluster_ip(k, sns, "sample-clusterip")
    kip = k.ok("get", "svc", "kubernetes", "-n", "default", "-o", "jsonpath={.spec.clusterIP}")
    apply(k, sns, "env-pods.yaml")
    for p in ("env-links", "env-no-links"):
        k.ok("wait", "--for=condition=Ready", f"pod/{p}", "-n", sns, "--timeout=120s", timeout=130)
    env = k.ok("exec", "-n", sns, "env-links", "--", "printenv").splitlines()
    mine = sorted(l for l in env if re.match(r"SAMPLE_CLUSTERIP_(SERVICE_HOST|SERVICE_PORT|PORT)[_=]", l))
    assert mine == sorted([
        f"SAMPLE_CLUSTERIP_SERVICE_HOST={ip}",
        "SAMPLE_CLUSTERIP_SERVICE_PORT=8080",
        "SAMPLE_CLUSTERIP_SERVICE_PORT_HTTP_PORT=8080",
        f"SAMPLE_CLUSTERIP_PORT=tcp://{ip}:8080",
        f"SAMPLE_CLUSTERIP_PORT_8080_TCP=tcp://{ip}:8080",
        "SAMPLE_CLUSTERIP_PORT_8080_TCP_PROTO=tcp",
        "SAMPLE_CLUSTERIP_PORT_8080_TCP_PORT=8080",
        f"SAMPLE_CLUSTERIP_PORT_8080_TCP_ADDR={ip}",
    ])
    kube = sorted([
        f"KUBERNETES_SERVICE_HOST={kip}", "KUBERNETES_SERVICE_PORT=443", "KUBERNETES_SERVICE_PORT_HTTPS=443",
        f"KUBERNETES_PORT=tcp://{kip}:443", f"KUBERNETES_PORT_443_TCP=tcp://{kip}:443",
        "KUBERNETES_PORT_443_TCP_PROTO=tcp", "KUBERNETES_PORT_443_TCP_PORT=443", f"KUBERNETES_PORT_443_TCP_ADDR={kip}",
    ])
    assert sorted(l for l in env if l.startswith("KUBERNETES_")) == kube
    multi = cluster_ip(k, sns, "sample-clusterip-multi")
    assert "SAMPLE_CLUSTERIP_MULTI_SERVICE_PORT_HTTPS_PORT=8443" in env
    assert f"SAMPLE_CLUSTERIP_MULTI_PORT_8443_TCP=tcp://{multi}:8443" in env
    assert "SAMPLE_UDP_PORT=udp://" + cluster_ip(k, sns, "sample-udp") + ":9000" in env
    assert not [l for l in env if l.startswith(("SAMPLE_HEADLESS", "SAMPLE_EXTERNALNAME"))]
    # enableServiceLinks: false leaves only the master service
    env = k.ok("exec", "-n", sns, "env-no-links", "--", "printenv").splitlines()
    svc_vars = sorted(l for l in env if re.match(r"[A-Z0-9_]+_(SERVICE_HOST|SERVICE_PORT|PORT)(_|=)", l))
    assert svc_vars == kube


# ------------------------------------------------------------------------ replace the backend
class UdpPinger(threading.Thread):
    """Asks ip:port "hostname" twice a second from one fixed source port, so the flow's
    conntrack entry never expires on its own; records the answers."""

    def __init__(self, ip: str, port: int):
        super().__init__(daemon=True)
        self.dst = (ip, port)
        self.answers: list[str] = []
        self.stop = threading.Event()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("0.0.0.0", 0))
        self.sock.settimeout(0.5)

    def run(self) -> None:
        while not self.stop.is_set():
            try:   # ICMP errors of earlier datagrams surface on either call
                self.sock.sendto(b"hostname", self.dst)
                self.answers.append(self.sock.recv(2048).decode().strip())
            except OSError as e:
                self.answers.append(type(e).__name__)
            self.stop.wait(0.5)
        self.sock.close()


def test_replacing_the_deployment_keeps_the_service(k, sns, app):
    apply(k, sns, "udp.yaml")
    ip = cluster_ip(k, sns, "sample-clusterip")
    uip = cluster_ip(k, sns, "sample-udp")
    before = k.ok("get", "svc", "sample-clusterip", "-n", sns, "-o", "jsonpath={.metadata.resourceVersion}")
    pinger = UdpPinger(uip, 9000)
    pinger.start()
    try:
        wait_for(lambda: pinger.answers and pinger.answers[-1] in app, what="UDP flow to an old pod")
        k.ok("delete", "deployment", "sample-deployment", "-n", sns, "--wait=true", timeout=120)
        wait_for(lambda: not ready_pods(k, sns, APP), timeout=90, what="old pods gone")
        apply(k, sns, "deployment.yaml")
        new = wait_pods(k, sns, APP, 3)
        assert not set(new) & set(app)
        write_hostname(k, sns, new)
        wait_for(lambda: endpoints_of(k, sns, "sample-clusterip") == {f"{p}:80" for p in new.values()},
                 what="endpoints of the new pods")
        bodies = wait_for(lambda: (lambda b: b if set(b) == set(new) else None)(host_requests(ip, 8080, 60)),
                          what="traffic to the new pods")
        assert set(bodies) == set(new)
        # the long-lived UDP flow was moved off the deleted pod (its conntrack entry flushed)
        wait_for(lambda: pinger.answers[-3:] and all(a in new for a in pinger.answers[-3:]), timeout=20,
                 what=f"UDP flow on a new pod (last answers {pinger.answers[-5:]})")
    finally:
        pinger.stop.set()
        pinger.join(5)
    after = k.ok("get", "svc", "sample-clusterip", "-n", sns, "-o", "jsonpath={.metadata.resourceVersion}")
    assert after == before
    app.clear()
    app.update(new)


# ------------------------------------------------------------------------ restarts of components
def slow_download(ip: str, port: int, path: str, result: dict) -> None:
    import http.client
    c = http.client.HTTPConnection(ip, port, timeout=30)
    try:
        c.request("GET", path)
        r = c.getresponse()
        n = 0
        while chunk := r.read(65536):
            n += len(chunk)
            time.sleep(0.03)
        result.update(status=r.status, bytes=n)
    except Exception as e:   # reported by the assertion on `result`
        result.update(error=repr(e))
    finally:
        c.close()


def supervisor_pid(cluster, component: str) -> int:
    state = json.loads((cluster.data_dir / "run" / "supervisor.json").read_text())
    return next(c["pid"] for c in state["components"] if c["name"] == component)


@pytest.mark.parametrize("component", ["agent", "apiserver"])
def test_restart_keeps_connections_and_resyncs(k, sns, app, cluster, component):
    ip = cluster_ip(k, sns, "sample-clusterip")
    size = 16_000_000
    for pod in app:
        k.ok("exec", "-n", sns, pod, "-c", "nginx-container", "--", "sh", "-c",
             f"head -c {size} /dev/zero > /usr/share/nginx/html/big")
    # an established connection, read slowly (~8 s) so it spans the restart
    result: dict = {}
    dl = threading.Thread(target=slow_download, args=(ip, 8080, "/big", result), daemon=True)
    dl.start()
    time.sleep(1.5)
    assert dl.is_alive(), result
    old = supervisor_pid(cluster, component)
    os.kill(old, signal.SIGKILL)
    # new connections to the existing Service while the component is down / restarting
    for _ in range(5):
        r = curl(f"http://{ip}:8080/")
        assert r.returncode == 0 and r.stdout.strip() in app, (r.returncode, r.stderr)
    wait_for(lambda: supervisor_pid(cluster, component) not in (0, old), timeout=60, what=f"{component} restarted")
    dl.join(120)
    assert result == {"status": 200, "bytes": size}
    # the API and the proxy are back: a Service created now works
    name = f"after-{component}"
    svc = manifest("clusterip.yaml").replace("sample-clusterip", name)
    wait_for(lambda: k("apply", "-n", sns, "-f", "-", input=svc).returncode == 0, timeout=60, what="API back")
    nip = cluster_ip(k, sns, name)
    bodies = wait_for(lambda: (lambda r: r.stdout.strip() if r.returncode == 0 else None)(
        curl(f"http://{nip}:8080/")), timeout=60, what="new Service after restart")
    assert bodies in app
    assert set(host_requests(ip, 8080, 30)) == set(app)
