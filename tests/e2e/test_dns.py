"""Cluster DNS through a real cluster, the way the study notes (chapter 6) use it: `dig` from a
throw-away pod (`kubectl run --image=centos:6 --restart=Never --rm -i`) and `dig @<kube-dns IP>`
from the host. Only names inside cluster.local (and the reverse of cluster addresses) are ever
asked: the cluster's forwarder reads the host's resolv.conf, so nothing here may leave the host.
The ExternalName target is in the reserved `.invalid` TLD and only its CNAME is queried."""
from __future__ import annotations

import re
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from .conftest import wait_for

MANIFESTS = Path(__file__).parent.parent / "manifests" / "dns"
DOMAIN = "cluster.local"
STS = "sample-statefulset-headless"


# ------------------------------------------------------------------------------------ helpers
def parse_dig(out: str) -> dict:
    """The parts of dig's default output the notes look at."""
    r = {"status": None, "flags": set(), "counts": {}, "answer": [], "additional": [], "server": ""}
    m = re.search(r"status: (\w+)", out)
    if m:
        r["status"] = m.group(1)
    m = re.search(r";; flags: ([^;]*);(.*)", out)
    if m:
        r["flags"] = set(m.group(1).split())
        r["counts"] = {k: int(v) for k, v in re.findall(r"(\w+): (\d+)", m.group(2))}
    m = re.search(r";; SERVER: (.*)", out)
    if m:
        r["server"] = m.group(1)
    section = None
    for line in out.splitlines():
        if line.startswith(";; ANSWER SECTION"):
            section = "answer"
        elif line.startswith(";; ADDITIONAL SECTION"):
            section = "additional"
        elif not line.strip():
            section = None
        elif section and not line.startswith(";"):
            r[section].append(tuple(line.split()))
    return r


def records(parsed: dict, section: str = "answer", rtype: str | None = None) -> list[tuple]:
    """(owner, ttl, type, rdata...) without the class."""
    out = []
    for rr in parsed[section]:
        owner, ttl, klass, typ, *rdata = rr
        assert klass == "IN", rr
        if rtype is None or typ == rtype:
            out.append((owner, int(ttl), typ, *rdata))
    return out


def run_in_pod(k, ns: str, *cmd: str) -> str:
    """`kubectl run --image=centos:6 --restart=Never --rm -i testpod-xxxx -- cmd...`: its stdout."""
    name = f"testpod-{uuid.uuid4().hex[:5]}"
    r = k("run", name, "-n", ns, "--image=centos:6", "--restart=Never", "--rm", "-i", "--", *cmd,
          timeout=120)
    assert r.returncode == 0, f"{cmd}: rc={r.returncode}\n{r.stdout}\n{r.stderr}"
    assert f'pod "{name}" deleted' in r.stdout, r.stdout
    return r.stdout


def dig_host(dns_ip: str, *args: str) -> str:
    r = subprocess.run(["dig", f"@{dns_ip}", "+time=2", "+tries=2", *args], capture_output=True,
                       text=True, timeout=20)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def short(dns_ip: str, *args: str) -> list[str]:
    return dig_host(dns_ip, "+short", *args).split()


# ------------------------------------------------------------------------------------ fixture
class Book:
    """The chapter 6 objects in one namespace, rolled out."""

    def __init__(self, k, cluster, ns: str):
        self.k, self.ns = k, ns
        self.dns = cluster.config.dns_ip

    def fqdn(self, svc: str) -> str:
        return f"{svc}.{self.ns}.svc.{DOMAIN}"

    def cluster_ip(self, svc: str) -> str:
        return self.k.ok("get", "svc", svc, "-n", self.ns, "-o", "jsonpath={.spec.clusterIP}")

    def sts_ips(self) -> dict[str, str]:
        return {f"{STS}-{i}": self.k.ok("get", "pod", f"{STS}-{i}", "-n", self.ns,
                                        "-o", "jsonpath={.status.podIP}") for i in range(3)}


@pytest.fixture(scope="module")
def book(k, cluster):
    ns = f"e2e-dns-{uuid.uuid4().hex[:6]}"
    k.ok("create", "namespace", ns)
    try:
        k.ok("apply", "-n", ns, "-f", str(MANIFESTS))
        k.ok("rollout", "status", "deployment/sample-deployment", "-n", ns, "--timeout=120s", timeout=130)
        k.ok("rollout", "status", f"statefulset/{STS}", "-n", ns, "--timeout=180s", timeout=190)
        b = Book(k, cluster, ns)
        # the answers the tests read are there (the zone follows the API asynchronously)
        wait_for(lambda: len(short(b.dns, b.fqdn("sample-headless"))) == 3, timeout=30,
                 what="three headless answers")
        wait_for(lambda: short(b.dns, b.fqdn("sample-clusterip-multi")) == [b.cluster_ip("sample-clusterip-multi")],
                 timeout=30, what="sample-clusterip-multi A")
        yield b
    finally:
        k("delete", "namespace", ns, "--wait=false")


# ------------------------------------------------------------------------------------ records
def test_service_a_record_from_pod(book, k):
    ip = book.cluster_ip("sample-clusterip")
    out = run_in_pod(k, book.ns, "dig", book.fqdn("sample-clusterip"))
    d = parse_dig(out)
    assert d["status"] == "NOERROR", out
    assert {"qr", "aa", "rd"} <= d["flags"], out
    assert d["counts"]["ANSWER"] == 1, out
    assert records(d) == [(book.fqdn("sample-clusterip") + ".", 30, "A", ip)], out
    assert d["server"].startswith(f"{book.dns}#53"), out


def test_service_a_record_from_host_udp_and_tcp(book):
    ip = book.cluster_ip("sample-clusterip")
    for proto in ("+notcp", "+tcp"):
        out = dig_host(book.dns, proto, book.fqdn("sample-clusterip"))
        d = parse_dig(out)
        assert d["status"] == "NOERROR" and {"qr", "aa"} <= d["flags"], out
        assert records(d) == [(book.fqdn("sample-clusterip") + ".", 30, "A", ip)], out
        assert d["server"].endswith("(TCP)" if proto == "+tcp" else "(UDP)"), out


def test_headless_service_returns_the_three_statefulset_pods(book, k):
    ips = book.sts_ips()
    out = run_in_pod(k, book.ns, "dig", book.fqdn("sample-headless"))
    d = parse_dig(out)
    assert d["status"] == "NOERROR", out
    assert d["flags"] == {"qr", "aa", "rd"}, out
    assert d["counts"]["ANSWER"] == 3, out
    got = records(d)
    assert sorted(rr[3] for rr in got) == sorted(ips.values()), out
    assert {rr[:3] for rr in got} == {(book.fqdn("sample-headless") + ".", 30, "A")}, out
    # the +short form of the second set of notes, and the same over TCP
    assert sorted(run_in_pod(k, book.ns, "dig", book.fqdn("sample-headless"), "+short").split()[:3]) \
        == sorted(ips.values())
    tcp = parse_dig(run_in_pod(k, book.ns, "dig", "+tcp", book.fqdn("sample-headless")))
    assert tcp["counts"]["ANSWER"] == 3 and tcp["server"].endswith("(TCP)"), tcp
    assert sorted(rr[3] for rr in records(tcp)) == sorted(ips.values())


def test_headless_service_answers_ready_endpoints_only(book, k):
    ips = book.sts_ips()
    pod = f"{STS}-1"
    html = "/usr/share/nginx/html"
    name = book.fqdn("sample-headless")
    k.ok("exec", "-n", book.ns, pod, "--", "mv", f"{html}/index.html", f"{html}/index.html.off")
    try:
        want = sorted(ip for p, ip in ips.items() if p != pod)
        wait_for(lambda: sorted(short(book.dns, name)) == want, timeout=30, what="unready pod leaves the answer")
        d = parse_dig(run_in_pod(k, book.ns, "dig", name))
        assert d["counts"]["ANSWER"] == 2 and sorted(rr[3] for rr in records(d)) == want, d
        # nor is the unready pod's own name published
        assert short(book.dns, f"{pod}.sample-headless.{book.ns}.svc.{DOMAIN}") == []
    finally:
        k.ok("exec", "-n", book.ns, pod, "--", "mv", f"{html}/index.html.off", f"{html}/index.html")
    wait_for(lambda: sorted(short(book.dns, name)) == sorted(ips.values()), timeout=30,
             what="ready again: three answers")


def test_statefulset_pod_names(book, k):
    ips = book.sts_ips()
    for pod, ip in ips.items():
        assert short(book.dns, f"{pod}.sample-headless.{book.ns}.svc.{DOMAIN}") == [ip]
    out = run_in_pod(k, book.ns, "dig", f"{STS}-0.sample-headless.{book.ns}.svc.{DOMAIN}", "+short")
    assert out.split()[0] == ips[f"{STS}-0"], out


def test_externalname_returns_the_cname(book, k):
    name = book.fqdn("sample-externalname")
    out = run_in_pod(k, book.ns, "dig", name, "CNAME")
    d = parse_dig(out)
    assert d["status"] == "NOERROR" and d["flags"] == {"qr", "aa", "rd"}, out
    assert d["counts"]["ANSWER"] == 1, out
    assert records(d) == [(name + ".", 30, "CNAME", "external.invalid.")], out
    assert short(book.dns, name, "CNAME") == ["external.invalid."]


def test_reverse_lookup_of_a_cluster_ip(book, k):
    ip = book.cluster_ip("sample-clusterip")
    rev = ".".join(reversed(ip.split("."))) + ".in-addr.arpa."
    out = run_in_pod(k, book.ns, "dig", "-x", ip)
    d = parse_dig(out)
    assert d["status"] == "NOERROR" and "aa" in d["flags"], out
    assert records(d) == [(rev, 30, "PTR", book.fqdn("sample-clusterip") + ".")], out


def test_srv_record_of_a_named_port(book, k):
    ip = book.cluster_ip("sample-clusterip-multi")
    target = book.fqdn("sample-clusterip-multi") + "."
    name = f"_https-port._tcp.{book.fqdn('sample-clusterip-multi')}"
    out = run_in_pod(k, book.ns, "dig", name, "SRV")
    d = parse_dig(out)
    assert d["status"] == "NOERROR" and d["flags"] == {"qr", "aa", "rd"}, out
    assert d["counts"]["ANSWER"] == 1, out
    assert records(d) == [(name + ".", 30, "SRV", "0", "100", "8443", target)], out
    assert records(d, "additional") == [(target, 30, "A", ip)], out
    assert short(book.dns, f"_http-port._tcp.{book.fqdn('sample-clusterip-multi')}", "SRV") \
        == ["0", "100", "8080", target]


def test_pod_a_record(book, k):
    ip = book.sts_ips()[f"{STS}-2"]
    name = f"{ip.replace('.', '-')}.{book.ns}.pod.{DOMAIN}"
    d = parse_dig(dig_host(book.dns, name))
    assert d["status"] == "NOERROR" and "aa" in d["flags"]
    assert records(d) == [(name + ".", 30, "A", ip)]
    out = run_in_pod(k, book.ns, "dig", name, "+short")
    assert out.split()[0] == ip, out


# ------------------------------------------------------------------------------------ pods
def test_pod_resolv_conf(book, k):
    out = run_in_pod(k, book.ns, "cat", "/etc/resolv.conf")
    lines = [l for l in out.splitlines() if l and not l.startswith("pod ")]
    assert lines[0] == f"nameserver {book.dns}", out
    search = lines[1].split()
    assert search[:4] == ["search", f"{book.ns}.svc.{DOMAIN}", f"svc.{DOMAIN}", DOMAIN], out
    assert lines[2] == "options ndots:5", out
    assert len(lines) == 3, out


def test_curl_by_search_path(book, k):
    # the names resolve in the zone before a pod relies on the search path
    assert short(book.dns, book.fqdn("sample-clusterip")) == [book.cluster_ip("sample-clusterip")]
    for host in ("sample-clusterip", f"sample-clusterip.{book.ns}"):
        out = run_in_pod(k, book.ns, "curl", "-s", "-m", "5", f"http://{host}:8080")
        assert "Welcome to nginx!" in out, (host, out)


# ------------------------------------------------------------------------------------ changes
def _until(predicate, what: str, deadline: float = 5.0) -> float:
    """Poll (no sleep beyond 20 ms) until predicate() holds; the delay it took."""
    t0 = time.monotonic()
    wait_for(predicate, timeout=deadline, interval=0.02, what=what)
    return time.monotonic() - t0


def test_service_changes_are_answered_promptly(book, k, record_property):
    ns, dns = book.ns, book.dns
    name = book.fqdn("sample-later")
    srv = f"_https-port._tcp.{name}"
    delays = {}
    ip = k.ok("create", "service", "clusterip", "sample-later", "-n", ns, "--tcp=8080:80",
              "-o", "jsonpath={.spec.clusterIP}")
    delays["create"] = _until(lambda: short(dns, name) == [ip], "created service's A")
    assert short(dns, srv, "SRV") == []
    k.ok("patch", "service", "sample-later", "-n", ns, "--type=json", "-p",
         '[{"op":"add","path":"/spec/ports/-","value":{"name":"https-port","port":8443,"targetPort":443}}]')
    delays["update"] = _until(lambda: short(dns, srv, "SRV") == ["0", "100", "8443", name + "."],
                              "SRV of the added port")
    k.ok("delete", "service", "sample-later", "-n", ns)
    delays["delete"] = _until(lambda: parse_dig(dig_host(dns, name))["status"] == "NXDOMAIN",
                              "NXDOMAIN after delete")
    # an ExternalName retargeted (what the conformance test does)
    k.ok("patch", "service", "sample-externalname", "-n", ns, "-p", '{"spec":{"externalName":"other.invalid"}}')
    try:
        delays["externalname"] = _until(
            lambda: short(dns, book.fqdn("sample-externalname"), "CNAME") == ["other.invalid."],
            "new CNAME")
    finally:
        k.ok("patch", "service", "sample-externalname", "-n", ns, "-p",
             '{"spec":{"externalName":"external.invalid"}}')
    for what, s in delays.items():
        record_property(f"dns_delay_{what}_s", round(s, 3))
    print("DNS change delays (s):", {w: round(s, 3) for w, s in delays.items()})


# ------------------------------------------------------------------------------------ metrics
def _requests_total(dns: str) -> int:
    r = subprocess.run(["curl", "-s", "-m", "5", f"http://{dns}:9153/metrics"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "# TYPE coredns_dns_requests_total counter" in r.stdout, r.stdout[:500]
    return sum(int(float(l.rsplit(" ", 1)[1])) for l in r.stdout.splitlines()
               if l.startswith("coredns_dns_requests_total{"))


def test_metrics_count_every_query(book):
    before = _requests_total(book.dns)
    n = 20
    for _ in range(n):      # each dig uses a new source port: the kernel spreads them over processes
        assert short(book.dns, book.fqdn("sample-clusterip"))
    after = _requests_total(book.dns)
    assert after - before >= n, (before, after)
