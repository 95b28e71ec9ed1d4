"""The seeds' transcripts (study notes of chapter 6, /work/shared/seeds) that no other e2e test
reproduces, replayed command by command: the same kubectl/dig/curl invocation, the same object
names, and an assertion on the parts of the output that must match (columns, describe fields,
answers). The notes' foreign addresses are replaced by this cluster's own (node, pod, Service
addresses); example.com only ever appears as a Host header. Transcripts already reproduced
elsewhere are listed in the table of the helper's report and in SEEN_ELSEWHERE below."""
from __future__ import annotations

import ipaddress
import json
import random
import re
import subprocess
import uuid
from pathlib import Path

import pytest

from .conftest import wait_for

MANIFESTS = Path(__file__).parent.parent / "manifests" / "seeds"
APP = "app=sample-app"
STS = "sample-statefulset-headless"

# transcript -> the test that already reproduces it
SEEN_ELSEWHERE = {
    "dig sample-headless.default.svc.cluster.local (3 A)": "test_dns::test_headless_service_returns_the_three_statefulset_pods",
    "dig sample-externalname... CNAME": "test_dns::test_externalname_returns_the_cname",
    "dig sample-clusterip.default.svc.cluster.local": "test_dns::test_service_a_record_from_pod",
    "dig -x <ClusterIP>": "test_dns::test_reverse_lookup_of_a_cluster_ip",
    "dig _https-port._tcp.sample-clusterip-multi... SRV": "test_dns::test_srv_record_of_a_named_port",
    "cat /etc/resolv.conf": "test_dns::test_pod_resolv_conf, test_pods::test_run_resolv_conf_is_the_cluster_dns",
    "curl -s http://sample-clusterip-multi:8080": "test_dns::test_curl_by_search_path",
    "kd service sample-clusterip-multi": "test_services::test_multi_port",
    "kubectl get ingresses / describe ingress / curl -H Host": "test_ingress::test_ingress_routes_by_host_and_path_with_tls",
}


# ------------------------------------------------------------------------------------ helpers
def manifest(name: str, **subs) -> str:
    text = (MANIFESTS / name).read_text()
    for key, value in subs.items():
        text = text.replace("${" + key + "}", str(value)).replace("@" + key + "@", str(value))
    return text


def apply(k, ns: str, name: str, **subs) -> str:
    return k.ok("apply", "-n", ns, "-f", "-", input=manifest(name, **subs))


def run_testpod(k, ns: str, *cmd: str) -> str:
    """`kubectl run --image=centos:6 --restart=Never --rm -i testpod -- cmd`: its stdout, without
    kubectl's closing `pod "testpod" deleted`."""
    name = f"testpod-{uuid.uuid4().hex[:5]}"
    r = k("run", "-n", ns, "--image=centos:6", "--restart=Never", "--rm", "-i", name, "--", *cmd,
          input="", timeout=120)
    assert r.returncode == 0, f"{cmd}: rc={r.returncode}\n{r.stdout}\n{r.stderr}"
    lines = r.stdout.splitlines()
    assert f'pod "{name}" deleted' in lines[-1], r.stdout
    return "\n".join(lines[:-1])


def rows(out: str) -> list[list[str]]:
    return [l.split() for l in out.splitlines() if l.strip()]


def field(lines: list[str], key: str) -> list[str]:
    """Values of the describe lines `key:` (padding removed)."""
    return [l[len(key) + 1:].strip() for l in lines if l.startswith(key + ":")]


def keys(lines: list[str]) -> list[str]:
    return [l.split(":")[0] for l in lines if l and not l.startswith(" ")]


def in_order(got: list[str], want: list[str]) -> bool:
    """want is a subsequence of got (newer kubectl adds IP Families, IPs, ... in between)."""
    it = iter(got)
    return all(w in it for w in want)


def describe(k, ns: str, kind: str, name: str) -> list[str]:
    return k.ok("describe", kind, name, "-n", ns).splitlines()


def ready_pods(k, ns: str, selector: str) -> dict[str, str]:
    items = json.loads(k.ok("get", "pods", "-n", ns, "-l", selector, "-o", "json"))["items"]
    out = {}
    for p in items:
        conds = {c["type"]: c["status"] for c in p["status"].get("conditions") or []}
        if not p["metadata"].get("deletionTimestamp") and conds.get("Ready") == "True" and p["status"].get("podIP"):
            out[p["metadata"]["name"]] = p["status"]["podIP"]
    return out


def wait_pods(k, ns: str, selector: str, n: int) -> dict[str, str]:
    return wait_for(lambda: (lambda ps: ps if len(ps) == n else None)(ready_pods(k, ns, selector)),
                    timeout=120, what=f"{n} ready pods {selector}")


def write_hostname(k, ns: str, selector: str) -> list[str]:
    """The notes' loop: for PODNAME in $(kubectl get pods -l ... -o jsonpath='{.items[*].metadata.name}')."""
    names = k.ok("get", "pods", "-n", ns, "-l", selector, "-o", "jsonpath={.items[*].metadata.name}").split()
    for name in names:
        k.ok("exec", "-i", "-t", "-n", ns, name, "--", "cp", "/etc/hostname", "/usr/share/nginx/html/index.html",
             input="")
    return names


def host_curl(url: str, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(["curl", "-sS", "-m", "5", *extra, url], capture_output=True, text=True, timeout=20,
                          check=False)


def endpoints_field(lines: list[str]) -> set[str]:
    vals = field(lines, "Endpoints")
    return set(vals[0].split(",")) if vals and vals[0] else set()


@pytest.fixture(scope="module")
def node(k, cluster):
    """(name, InternalIP) of this cluster's node."""
    name, ip = k.ok("get", "nodes", "-o", "jsonpath={.items[0].metadata.name} "
                    "{.items[0].status.addresses[?(@.type==\"InternalIP\")].address}").split()[:2]
    assert ipaddress.ip_address(ip)
    return name, ip


@pytest.fixture(scope="module")
def sns(k):
    """The notes' `default` namespace: sample-deployment (nginx x3) and sample-clusterip."""
    name = f"e2e-seed-{uuid.uuid4().hex[:6]}"
    k.ok("create", "namespace", name)
    try:
        assert apply(k, name, "deployment.yaml").strip() == "deployment.apps/sample-deployment created"
        k.ok("rollout", "status", "deployment/sample-deployment", "-n", name, "--timeout=120s", timeout=130)
        assert apply(k, name, "clusterip.yaml").strip() == "service/sample-clusterip created"
        wait_pods(k, name, APP, 3)
        write_hostname(k, name, APP)
        yield name
    finally:
        k("delete", "namespace", name, "--wait=false")


# ------------------------------------------------------------- seed 004: labels, custom-columns
def test_pod_labels_jsonpath(k, sns):
    """kg pods sample-deployment-xxx -o jsonpath='{.metadata.labels}' (kubectl >= 1.18 prints the
    map as JSON; the notes' `map[app:sample-app pod-template-hash:...]` is the older Go form)."""
    pod = min(ready_pods(k, sns, APP))
    out = k.ok("get", "pods", pod, "-n", sns, "-o", "jsonpath={.metadata.labels}")
    labels = json.loads(out)
    pod_hash = pod.split("-")[-2]
    assert labels == {"app": "sample-app", "pod-template-hash": pod_hash}, out


def test_custom_columns_of_pods_and_nodes(k, sns, node, cluster):
    pods = ready_pods(k, sns, APP)
    out = k.ok("get", "pods", "-n", sns, "-l", APP, "-o", "custom-columns=NAME:{metadata.name},IP:{status.podIP}")
    r = rows(out)
    assert r[0] == ["NAME", "IP"], out
    assert sorted(map(tuple, r[1:])) == sorted(pods.items()), out
    pod_net = ipaddress.ip_network(cluster.config.pod_cidr)
    assert all(ipaddress.ip_address(ip) in pod_net for ip in pods.values())
    # the ExternalIP section's form, with leading dots and a PodIP header
    out = k.ok("get", "pods", "-n", sns, "-o", "custom-columns=NAME:{.metadata.name},PodIP:{.status.podIP}")
    r = rows(out)
    assert r[0] == ["NAME", "PodIP"] and sorted(map(tuple, r[1:])) == sorted(pods.items()), out
    # {status.addresses[].address}: the first address, the node's InternalIP
    out = k.ok("get", "nodes", "-o", "custom-columns=NAME:{metadata.name},IP:{status.addresses[].address}")
    assert rows(out) == [["NAME", "IP"], [node[0], node[1]]], out


# ------------------------------------------------------------- seed 002/004: ClusterIP Service
def test_clusterip_flow(k, sns, cluster):
    out = k.ok("get", "deployments", "-n", sns)
    assert rows(out)[0] == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    assert rows(out)[1][:4] == ["sample-deployment", "3/3", "3", "3"], out
    ip = k.ok("get", "svc", "sample-clusterip", "-n", sns, "-o", "jsonpath={.spec.clusterIP}")
    out = k.ok("get", "service", "sample-clusterip", "-n", sns)
    assert rows(out)[0] == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]
    assert rows(out)[1][:5] == ["sample-clusterip", "ClusterIP", ip, "<none>", "8080/TCP"], out
    pods = ready_pods(k, sns, APP)
    want = {f"{p}:80" for p in pods.values()}
    lines = wait_for(lambda: (lambda ls: ls if endpoints_field(ls) == want else None)(
        describe(k, sns, "service", "sample-clusterip")), what="describe Endpoints")
    assert field(lines, "Name") == ["sample-clusterip"] and field(lines, "Namespace") == [sns]
    assert field(lines, "Labels") == ["<none>"] and field(lines, "Selector") == [APP]
    assert field(lines, "Type") == ["ClusterIP"] and field(lines, "IP") == [ip]
    assert field(lines, "Port") == ["http-port  8080/TCP"] and field(lines, "TargetPort") == ["80/TCP"]
    assert field(lines, "Session Affinity") == ["None"] and field(lines, "Events") == ["<none>"]
    assert in_order(keys(lines), ["Name", "Namespace", "Labels", "Annotations", "Selector", "Type", "IP", "Port",
                                  "TargetPort", "Endpoints", "Session Affinity", "Events"]), lines
    # curl -s http://<ClusterIP>:8080 from throw-away pods: each answers with a pod's name
    for _ in range(3):
        assert run_testpod(k, sns, "curl", "-s", "-m", "5", f"http://{ip}:8080").strip() in pods

    # the Deployment deleted and applied again: new pods, same Service, new Endpoints
    out = k.ok("delete", "deployment", "sample-deployment", "-n", sns, timeout=120)
    assert out.strip() == 'deployment.apps "sample-deployment" deleted', out
    wait_for(lambda: not k.ok("get", "pods", "-n", sns, "-l", APP, "-o", "name").strip(), timeout=90,
             what="old pods gone")
    assert apply(k, sns, "deployment.yaml").strip() == "deployment.apps/sample-deployment created"
    new = wait_pods(k, sns, APP, 3)
    assert not set(new) & set(pods)
    out = k.ok("get", "pods", "-n", sns, "-l", APP, "-o", "custom-columns=NAME:{metadata.name},IP:{status.podIP}")
    assert sorted(map(tuple, rows(out)[1:])) == sorted(new.items()), out
    want = {f"{p}:80" for p in new.values()}
    wait_for(lambda: endpoints_field(describe(k, sns, "service", "sample-clusterip")) == want,
             what="Endpoints of the new pods")
    write_hostname(k, sns, APP)

    # kubectl exec -it <pod> printenv | grep SAMPLE_CLUSTERIP: the notes' form without `--`, which
    # kubectl accepted (deprecated) up to 1.30 and rejects since; run with kubectl 1.27
    pod = min(new)
    r = cluster.kubectl("1.27")("exec", "-it", "-n", sns, pod, "printenv", input="")
    assert r.returncode == 0, r.stderr
    assert "is DEPRECATED" in r.stderr
    env = sorted(l for l in r.stdout.splitlines() if "SAMPLE_CLUSTERIP" in l)
    assert env == sorted([
        f"SAMPLE_CLUSTERIP_PORT=tcp://{ip}:8080", "SAMPLE_CLUSTERIP_PORT_8080_TCP_PORT=8080",
        f"SAMPLE_CLUSTERIP_SERVICE_HOST={ip}", "SAMPLE_CLUSTERIP_SERVICE_PORT=8080",
        f"SAMPLE_CLUSTERIP_PORT_8080_TCP_ADDR={ip}", "SAMPLE_CLUSTERIP_SERVICE_PORT_HTTP_PORT=8080",
        f"SAMPLE_CLUSTERIP_PORT_8080_TCP=tcp://{ip}:8080", "SAMPLE_CLUSTERIP_PORT_8080_TCP_PROTO=tcp"]), r.stdout

    # kubectl get all: the Ingress section's listing shape (pods, then Services, ...)
    out = k.ok("get", "all", "-n", sns)
    blocks = [b.splitlines() for b in out.strip().split("\n\n")]
    assert blocks[0][0].split() == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert {l.split()[0] for l in blocks[0][1:]} == {f"pod/{p}" for p in new}
    assert blocks[1][0].split() == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]
    assert blocks[1][1].split()[:5] == ["service/sample-clusterip", "ClusterIP", ip, "<none>", "8080/TCP"]


# --------------------------------------------------------------------------- seed 003: expose
def test_expose_deployment_hostnames(k, sns):
    """kubectl expose deployment hostnames --port=80 --target-port=9376"""
    k.ok("create", "deployment", "hostnames", "-n", sns, "--replicas=2",
         "--image=registry.k8s.io/e2e-test-images/agnhost:2.53", "--", "/agnhost", "serve-hostname")
    out = k.ok("expose", "deployment", "hostnames", "-n", sns, "--port=80", "--target-port=9376")
    assert out.strip() == "service/hostnames exposed"
    pods = wait_pods(k, sns, "app=hostnames", 2)
    lines = wait_for(lambda: (lambda ls: ls if endpoints_field(ls) == {f"{p}:9376" for p in pods.values()}
                              else None)(describe(k, sns, "service", "hostnames")), what="hostnames endpoints")
    assert field(lines, "Selector") == ["app=hostnames"]
    assert field(lines, "Port") == ["<unset>  80/TCP"] and field(lines, "TargetPort") == ["9376/TCP"]
    ip = k.ok("get", "svc", "hostnames", "-n", sns, "-o", "jsonpath={.spec.clusterIP}")
    seen = wait_for(lambda: (lambda s: s if s == set(pods) else None)(
        {host_curl(f"http://{ip}:80/").stdout.strip() for _ in range(30)}), what="both hostnames pods answer")
    assert seen == set(pods)


# --------------------------------------------------------------------------- seed 002: ExternalIP
def test_externalip_service(k, sns, node):
    node_ip = node[1]
    # a port where nothing of this host answers, neither on the node address nor on loopback
    for _ in range(20):
        port = random.randint(20000, 29999)
        if all(host_curl(f"http://{a}:{port}/").returncode == 7 for a in (node_ip, "127.0.0.1")):
            break
    out = apply(k, sns, "externalip.yaml", EXTERNAL_IP=node_ip, PORT=port)
    assert out.strip() == "service/sample-externalip created"
    ip = k.ok("get", "svc", "sample-externalip", "-n", sns, "-o", "jsonpath={.spec.clusterIP}")
    out = k.ok("get", "services", "-n", sns, "sample-externalip")
    assert rows(out)[1][:5] == ["sample-externalip", "ClusterIP", ip, node_ip, f"{port}/TCP"], out
    pods = ready_pods(k, sns, APP)
    lines = wait_for(lambda: (lambda ls: ls if endpoints_field(ls) == {f"{p}:80" for p in pods.values()} else None)(
        describe(k, sns, "service", "sample-externalip")), what="describe Endpoints")
    assert field(lines, "External IPs") == [node_ip]
    assert field(lines, "Type") == ["ClusterIP"] and field(lines, "IP") == [ip]
    assert field(lines, "Port") == [f"http-port  {port}/TCP"] and field(lines, "TargetPort") == ["80/TCP"]
    assert in_order(keys(lines), ["Selector", "Type", "IP", "External IPs", "Port", "TargetPort", "Endpoints",
                                  "Session Affinity", "Events"]), lines
    # curl http://<listed node address>:<port> answers from every pod ...
    seen = wait_for(lambda: (lambda s: s if s == set(pods) else None)(
        {host_curl(f"http://{node_ip}:{port}").stdout.strip() for _ in range(30)}), what="externalIP answers")
    assert seen == set(pods)
    # ... an address not listed is refused (curl: (7) Failed to connect ...)
    r = host_curl(f"http://127.0.0.1:{port}")
    assert r.returncode == 7, (r.returncode, r.stderr)


# ----------------------------------------------------------------------------- seed 002: NodePort
def test_nodeport_service(k, sns, node):
    node_name, node_ip = node
    used = {int(p) for p in k.ok("get", "svc", "-A", "-o", "jsonpath={.items[*].spec.ports[*].nodePort}").split()}
    for _ in range(20):
        node_port = random.randint(30000, 32767)
        if node_port not in used and host_curl(f"http://{node_ip}:{node_port}/").returncode == 7:
            break
    assert apply(k, sns, "nodeport.yaml", NODE_PORT=node_port).strip() == "service/sample-nodeport created"
    ip = k.ok("get", "svc", "sample-nodeport", "-n", sns, "-o", "jsonpath={.spec.clusterIP}")
    out = k.ok("get", "services", "-n", sns, "sample-nodeport")
    assert rows(out)[1][:5] == ["sample-nodeport", "NodePort", ip, "<none>", f"8080:{node_port}/TCP"], out
    pods = ready_pods(k, sns, APP)
    lines = wait_for(lambda: (lambda ls: ls if endpoints_field(ls) == {f"{p}:80" for p in pods.values()} else None)(
        describe(k, sns, "service", "sample-nodeport")), what="describe Endpoints")
    assert field(lines, "Type") == ["NodePort"] and field(lines, "IP") == [ip]
    assert field(lines, "Port") == ["http-port  8080/TCP"] and field(lines, "TargetPort") == ["80/TCP"]
    assert field(lines, "NodePort") == [f"http-port  {node_port}/TCP"]
    assert field(lines, "External Traffic Policy") == ["Cluster"]
    assert in_order(keys(lines), ["Selector", "Type", "IP", "Port", "TargetPort", "NodePort", "Endpoints",
                                  "Session Affinity", "External Traffic Policy", "Events"]), lines
    # kubectl get nodes -o wide: the node's address to curl
    out = k.ok("get", "nodes", "-o", "wide")
    head = out.splitlines()[0]
    assert re.split(r"\s{2,}", head.strip()) == ["NAME", "STATUS", "ROLES", "AGE", "VERSION", "INTERNAL-IP",
                                                 "EXTERNAL-IP", "OS-IMAGE", "KERNEL-VERSION", "CONTAINER-RUNTIME"]
    row = rows(out)[1]
    assert row[0] == node_name and row[1] == "Ready" and row[5] == node_ip and row[6] == "<none>", out
    seen = wait_for(lambda: (lambda s: s if s == set(pods) else None)(
        {host_curl(f"http://{node_ip}:{node_port}").stdout.strip() for _ in range(30)}), what="NodePort answers")
    assert seen == set(pods)


# ------------------------------------------------------------------------- seed 002: LoadBalancer
def test_loadbalancer_service(k, sns, node, cluster):
    """Without a LoadBalancer pool (the session cluster has none) the Service stays <pending>, as on
    a cluster without a cloud provider; its ClusterIP and NodePort parts work."""
    node_ip = node[1]
    assert apply(k, sns, "lb.yaml").strip() == "service/sample-lb created"
    ip = k.ok("get", "svc", "sample-lb", "-n", sns, "-o", "jsonpath={.spec.clusterIP}")
    row = rows(k.ok("get", "services", "-n", sns, "sample-lb"))[1]
    assert row[:3] == ["sample-lb", "LoadBalancer", ip], row
    m = re.fullmatch(r"8080:(\d+)/TCP", row[4])
    assert m, row
    node_port = int(m.group(1))
    pods = ready_pods(k, sns, APP)
    lines = wait_for(lambda: (lambda ls: ls if endpoints_field(ls) == {f"{p}:80" for p in pods.values()} else None)(
        describe(k, sns, "service", "sample-lb")), what="describe Endpoints")
    assert field(lines, "Type") == ["LoadBalancer"] and field(lines, "IP") == [ip]
    assert field(lines, "NodePort") == [f"http-port  {node_port}/TCP"]
    assert field(lines, "External Traffic Policy") == ["Cluster"]
    if cluster.config.lb_pool:
        lb = wait_for(lambda: k.ok("get", "svc", "sample-lb", "-n", sns, "-o",
                                   "jsonpath={.status.loadBalancer.ingress[0].ip}"), what="an LB address")
        assert ipaddress.ip_address(lb) in ipaddress.ip_network(cluster.config.lb_pool)
        assert field(describe(k, sns, "service", "sample-lb"), "LoadBalancer Ingress")[0].startswith(lb)
    else:
        assert row[3] == "<pending>", row
        assert field(lines, "LoadBalancer Ingress") == []
    assert in_order(keys(lines), ["Selector", "Type", "IP", "Port", "TargetPort", "NodePort", "Endpoints",
                                  "Session Affinity", "External Traffic Policy", "Events"]), lines
    assert wait_for(lambda: host_curl(f"http://{ip}:8080").stdout.strip(), what="LB clusterIP") in pods
    assert wait_for(lambda: host_curl(f"http://{node_ip}:{node_port}").stdout.strip(), what="LB nodePort") in pods


# -------------------------------------------------------------------- seeds 000/002: Headless
def test_headless_service_and_statefulset(k, sns, cluster):
    dns = cluster.config.dns_ip
    fqdn = f"sample-headless.{sns}.svc.cluster.local"
    out = apply(k, sns, "headless.yaml")
    assert out.splitlines() == ["service/sample-headless created", f"statefulset.apps/{STS} created"], out
    k.ok("rollout", "status", f"statefulset/{STS}", "-n", sns, "--timeout=180s", timeout=190)
    pods = wait_pods(k, sns, "app=sample-sts-app", 3)
    assert sorted(pods) == [f"{STS}-{i}" for i in range(3)]
    out = k.ok("get", "pods", "-n", sns, "-l", "app=sample-sts-app",
               "-o", "custom-columns=NAME:{.metadata.name},PodIP:{.status.podIP}")
    assert rows(out) == [["NAME", "PodIP"]] + [[p, pods[p]] for p in sorted(pods)], out
    # kg pod -o wide (seed 000)
    out = k.ok("get", "pod", "-o", "wide", "-n", sns, "-l", "app=sample-sts-app")
    assert re.split(r"\s{2,}", out.splitlines()[0].strip()) == [
        "NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE", "NOMINATED NODE", "READINESS GATES"], out
    for r in rows(out)[1:]:
        assert r[1:4] == ["1/1", "Running", "0"] and r[5] == pods[r[0]] and r[7:] == ["<none>", "<none>"], r
    write_hostname(k, sns, "app=sample-sts-app")
    out = k.ok("get", "services", "-n", sns, "sample-headless")
    assert rows(out)[1][:5] == ["sample-headless", "ClusterIP", "None", "<none>", "80/TCP"], out
    want = {f"{p}:80" for p in pods.values()}
    lines = wait_for(lambda: (lambda ls: ls if endpoints_field(ls) == want else None)(
        describe(k, sns, "service", "sample-headless")), what="describe Endpoints")
    assert field(lines, "Selector") == ["app=sample-sts-app"] and field(lines, "Type") == ["ClusterIP"]
    assert field(lines, "IP") == ["None"] and field(lines, "Port") == ["http-port  80/TCP"]
    assert field(lines, "TargetPort") == ["80/TCP"] and field(lines, "Session Affinity") == ["None"]
    # the zone follows the API asynchronously: the answer is complete before pods ask
    wait_for(lambda: len(subprocess.run(["dig", f"@{dns}", "+short", "+time=2", fqdn], capture_output=True,
                                        text=True, check=False).stdout.split()) == 3, timeout=30, what="three answers")
    # dig sample-headless... +short: the three pod IPs
    assert sorted(run_testpod(k, sns, "dig", fqdn, "+short").split()) == sorted(pods.values())
    # curl -sSL sample-headless...: DNS round robin reaches the StatefulSet's pods
    for _ in range(3):
        assert run_testpod(k, sns, "curl", "-sSL", "-m", "5", fqdn).strip() in pods
    # dig <pod>.sample-headless... +short: one pod each
    for name, ip in sorted(pods.items()):
        assert run_testpod(k, sns, "dig", f"{name}.{fqdn}", "+short").split() == [ip]


# ---------------------------------------------------------------------- seed 002: ExternalName
def test_externalname_service(k, sns):
    target = f"sample-site.{sns}.svc.cluster.local"
    fqdn = f"sample-externalname.{sns}.svc.cluster.local"
    out = apply(k, sns, "externalname.yaml", NAMESPACE=sns)
    assert "service/sample-externalname created" in out.splitlines(), out
    k.ok("rollout", "status", "deployment/sample-site", "-n", sns, "--timeout=120s", timeout=130)
    out = k.ok("get", "services", "-n", sns, "sample-externalname")
    assert rows(out)[1][:5] == ["sample-externalname", "ExternalName", "<none>", target, "<none>"], out
    lines = describe(k, sns, "service", "sample-externalname")
    assert field(lines, "Selector") == ["<none>"] and field(lines, "Type") == ["ExternalName"]
    assert field(lines, "IP") == [""] and field(lines, "External Name") == [target]
    assert field(lines, "Session Affinity") == ["None"] and field(lines, "Events") == ["<none>"]
    assert in_order(keys(lines), ["Name", "Namespace", "Labels", "Annotations", "Selector", "Type", "IP",
                                  "External Name", "Session Affinity", "Events"]), lines
    # dig ... CNAME +short
    assert run_testpod(k, sns, "dig", fqdn, "CNAME", "+short").split() == [target + "."]
    wait_for(lambda: ready_pods(k, sns, "app=sample-site"), what="the site's pod")
    # curl through the name: the site behind it answers 404 to a Host it does not serve ...
    out = run_testpod(k, sns, "curl", "-I", "-sSL", "-m", "5", fqdn)
    assert out.splitlines()[0].strip() == "HTTP/1.1 404 Not Found", out
    # ... and 200 with the Host header it serves
    out = run_testpod(k, sns, "curl", "-I", "-sSL", "-m", "5", fqdn, "-H", "Host:example.com")
    assert out.splitlines()[0].strip() == "HTTP/1.1 200 OK", out
    assert "Content-Type: text/html" in out


# ------------------------------------------------------------------ seed 002: None-Selector
def test_none_selector_service(k, sns):
    pods = sorted(ready_pods(k, sns, APP).items())[:2]
    ips = [ip for _, ip in pods]
    out = apply(k, sns, "none-selector.yaml", IP1=ips[0], IP2=ips[1])
    assert out.splitlines() == ["service/sample-none-selector created", "endpoints/sample-none-selector created"]
    ip = k.ok("get", "svc", "sample-none-selector", "-n", sns, "-o", "jsonpath={.spec.clusterIP}")
    out = k.ok("get", "services", "sample-none-selector", "-n", sns)
    assert rows(out)[1][:5] == ["sample-none-selector", "ClusterIP", ip, "<none>", "8080/TCP"], out
    want = {f"{a}:80" for a in ips}
    lines = wait_for(lambda: (lambda ls: ls if endpoints_field(ls) == want else None)(
        describe(k, sns, "service", "sample-none-selector")), what="describe Endpoints")
    assert field(lines, "Selector") == ["<none>"] and field(lines, "Type") == ["ClusterIP"]
    assert field(lines, "Port") == ["<unset>  8080/TCP"] and field(lines, "TargetPort") == ["80/TCP"]
    out = k.ok("get", "endpoints", "sample-none-selector", "-n", sns)
    assert rows(out)[0] == ["NAME", "ENDPOINTS", "AGE"]
    assert rows(out)[1][0] == "sample-none-selector" and set(rows(out)[1][1].split(",")) == want, out
    lines = describe(k, sns, "endpoints", "sample-none-selector")
    assert field(lines, "Name") == ["sample-none-selector"] and field(lines, "Namespace") == [sns]
    i = lines.index("Subsets:")
    addrs = lines[i + 1]
    assert addrs.startswith("  Addresses:") and set(addrs.split()[1].split(",")) == set(ips), lines
    assert lines[i + 2].split() == ["NotReadyAddresses:", "<none>"], lines
    assert lines[i + 3].strip() == "Ports:" and lines[i + 4].split() == ["Name", "Port", "Protocol"]
    assert lines[i + 5].split() == ["----", "----", "--------"] and lines[i + 6].split() == ["<unset>", "80", "TCP"]
    assert field(lines, "Events") == ["<none>"]
    # curl -I -s <ClusterIP>:8080 from a throw-away pod reaches the listed addresses
    out = run_testpod(k, sns, "curl", "-I", "-s", "-m", "5", f"{ip}:8080")
    assert out.splitlines()[0].strip() == "HTTP/1.1 200 OK", out
    names = {n for n, _ in pods}
    seen = wait_for(lambda: (lambda s: s if s == names else None)(set(run_testpod(
        k, sns, "sh", "-c", f"for i in $(seq 20); do curl -s -m 5 {ip}:8080; echo; done").split())),
        what="both listed pods answer")
    assert seen == names


# -------------------------------------------------------------------- seed 001: hands-on
def test_handson_headless_podinfo(k, node):
    """kubectl apply -f headless-service.yaml (namespace handson inside), get po -o wide, curl
    <pod>.sample-headless/podinfo through `kubectl exec statefulset/...`, delete namespace handson."""
    node_ip = node[1]
    try:
        out = k.ok("apply", "-f", str(MANIFESTS / "handson.yaml"))
        assert out.splitlines() == ["namespace/handson created", "service/sample-headless created",
                                    f"statefulset.apps/{STS} created"], out
        k.ok("rollout", "status", f"statefulset/{STS}", "--namespace=handson", "--timeout=180s", timeout=190)
        pods = wait_pods(k, "handson", APP, 3)
        out = k.ok("get", "po", "-o", "wide", "--namespace=handson")
        r = rows(out)
        assert [x[0] for x in r[1:]] == [f"{STS}-{i}" for i in range(3)], out
        for x in r[1:]:
            assert x[1:4] == ["1/1", "Running", "0"] and x[5] == pods[x[0]], x
        client = pods[f"{STS}-0"]   # exec statefulset/NAME runs in its first pod
        for i in range(3):
            name = f"{STS}-{i}"
            res = k("exec", "-it", f"statefulset/{STS}", "--namespace=handson", "--",
                    "curl", f"{name}.sample-headless/podinfo", input="", timeout=60)
            assert res.returncode == 0, res.stderr
            assert res.stdout.startswith('{"pod_ip":"'), res.stdout
            assert json.loads(res.stdout) == {"pod_ip": pods[name], "node_ip": node_ip, "client_ip": client}
        # the overview's bare `curl sample-statefulset-headless-0`: inside that pod its own name is in
        # the kubelet-managed /etc/hosts (other pods use <pod>.sample-headless as above)
        res = k.ok("exec", "-n", "handson", f"{STS}-0", "--", "curl", "-s", f"{STS}-0/podinfo")
        assert json.loads(res)["pod_ip"] == client
        out = k.ok("delete", "namespace", "handson", timeout=180)
        assert out.strip() == 'namespace "handson" deleted'
        r = k("get", "namespace", "handson")
        assert r.returncode != 0 and 'namespaces "handson" not found' in r.stderr, (r.stdout, r.stderr)
    finally:
        k("delete", "namespace", "handson", "--wait=false", "--ignore-not-found")
