"""The kubectl compatibility matrix (kubectl-protocol.md §11, minus streams): every command runs
with kubectl 1.27, 1.33 and the default dispatcher against a real `tinykube apiserver`, and the
tests assert what kubectl prints and its exit code."""
from __future__ import annotations

import json
import re
import subprocess
import time
import uuid
from pathlib import Path

import pytest

M = Path(__file__).parent.parent / "manifests"


@pytest.fixture
def ns(kubectl):
    name = f"t-{uuid.uuid4().hex[:8]}"
    kubectl.ok("create", "namespace", name)
    yield name
    kubectl("delete", "namespace", name, "--wait=false")


def test_version_reports_server(kubectl):
    out = kubectl.ok("version")
    # 1.27 prints the Go struct, later versions the bare version
    assert "Server Version: v1.33" in out or 'Server Version: version.Info{Major:"1", Minor:"33"' in out


def test_api_resources_short_names(kubectl):
    out = kubectl.ok("api-resources")
    for short in ("svc", "ep", "po", "deploy", "sts", "ing", "ns", "cm", "sa", "rs", "ds", "no", "ev"):
        assert f" {short} " in out or f" {short}," in out or f",{short} " in out, short
    assert "endpointslices" in out and "discovery.k8s.io/v1" in out


def test_apply_create_configure_unchanged(kubectl, ns):
    assert kubectl.ok("apply", "-n", ns, "-f", str(M / "svc.yaml")).strip() == "service/web created"
    assert kubectl.ok("apply", "-n", ns, "-f", str(M / "svc.yaml")).strip() == "service/web unchanged"
    assert kubectl.ok("apply", "-n", ns, "-f", str(M / "svc-port81.yaml")).strip() == "service/web configured"
    ports = json.loads(kubectl.ok("get", "svc", "web", "-n", ns, "-o", "json"))["spec"]["ports"]
    assert [(p["port"], p["targetPort"]) for p in ports] == [(81, 8080)]


def test_apply_many_kinds(kubectl, ns):
    out = kubectl.ok("apply", "-n", ns, "-f", str(M / "deploy.yaml"), "-f", str(M / "sts.yaml"),
                     "-f", str(M / "ing.yaml"), "-f", str(M / "ep.yaml"))
    assert "deployment.apps/web created" in out
    assert "statefulset.apps/db created" in out
    assert "ingress.networking.k8s.io/ing1 created" in out
    assert "endpoints/manual created" in out


def test_server_side_apply_and_dry_run(kubectl, ns):
    out = kubectl.ok("apply", "--server-side", "-n", ns, "-f", str(M / "deploy.yaml"))
    assert out.strip() == "deployment.apps/web serverside-applied"
    kubectl.ok("apply", "-n", ns, "-f", str(M / "svc.yaml"))
    r = kubectl("apply", "-n", ns, "-f", str(M / "svc-port81.yaml"), "--dry-run=server")
    assert r.returncode == 0, r.stderr
    ports = json.loads(kubectl.ok("get", "svc", "web", "-n", ns, "-o", "json"))["spec"]["ports"]
    assert ports[0]["port"] == 80  # dry run stored nothing


def test_strict_validation_rejects_unknown_field(kubectl, ns):
    r = kubectl("apply", "-n", ns, "-f", str(M / "bad-unknown-field.yaml"))
    assert r.returncode == 1
    assert 'strict decoding error: unknown field "spec.portz"' in r.stderr
    r = kubectl("apply", "-n", ns, "--validate=warn", "-f", str(M / "bad-unknown-field.yaml"))
    assert r.returncode == 0, r.stderr
    assert 'unknown field "spec.portz"' in r.stderr


def test_invalid_port_message(kubectl, ns):
    r = kubectl("apply", "-n", ns, "-f", str(M / "bad-port.yaml"))
    assert r.returncode == 1
    assert ('The Service "bp" is invalid: spec.ports[0].port: Invalid value: 70000: '
            'must be between 1 and 65535, inclusive') in r.stderr


def test_create_twice_already_exists(kubectl, ns):
    kubectl.ok("create", "-n", ns, "-f", str(M / "svc.yaml"))
    r = kubectl("create", "-n", ns, "-f", str(M / "svc.yaml"))
    assert r.returncode == 1
    assert 'Error from server (AlreadyExists): error when creating' in r.stderr
    assert 'services "web" already exists' in r.stderr


def test_replace_stale_conflict(kubectl, ns):
    kubectl.ok("apply", "-n", ns, "-f", str(M / "svc.yaml"))
    live = json.loads(kubectl.ok("get", "svc", "web", "-n", ns, "-o", "json"))
    kubectl.ok("label", "svc", "web", "-n", ns, "bump=1")
    r = kubectl("replace", "-f", "-", input=json.dumps(live))
    assert r.returncode == 1
    assert 'Operation cannot be fulfilled on services "web": the object has been modified' in r.stderr


def test_diff_exit_code(kubectl, ns):
    kubectl.ok("apply", "-n", ns, "-f", str(M / "svc.yaml"))
    r = kubectl("diff", "-n", ns, "-f", str(M / "svc-port81.yaml"))
    assert r.returncode == 1, r.stderr
    assert "-  - name: http\n-    port: 80" in r.stdout.replace("  port", "    port") or "port: 81" in r.stdout


def test_generators(kubectl, ns):
    assert kubectl.ok("create", "deployment", "d1", "--image=nginx", "-n", ns).strip() == \
        "deployment.apps/d1 created"
    assert kubectl.ok("create", "service", "clusterip", "s1", "--tcp=80:8080", "-n", ns).strip() == \
        "service/s1 created"
    assert kubectl.ok("create", "configmap", "c1", "--from-literal=a=1", "-n", ns).strip() == "configmap/c1 created"
    svc = json.loads(kubectl.ok("get", "svc", "s1", "-n", ns, "-o", "json"))
    assert svc["spec"]["ports"][0]["targetPort"] == 8080
    assert svc["spec"]["clusterIP"].startswith("10.")


def test_get_table_columns(kubectl, ns):
    kubectl.ok("apply", "-n", ns, "-f", str(M / "svc.yaml"))
    out = kubectl.ok("get", "svc", "-n", ns)
    header = out.splitlines()[0].split()
    assert header == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]
    assert "80/TCP" in out and "ClusterIP" in out and "<none>" in out
    wide = kubectl.ok("get", "svc", "-n", ns, "-o", "wide").splitlines()
    assert wide[0].split()[-1] == "SELECTOR" and wide[1].split()[-1] == "app=web"


def test_get_variants(kubectl, ns):
    kubectl.ok("apply", "-n", ns, "-f", str(M / "svc.yaml"))
    assert kubectl.ok("get", "svc", "-n", ns, "-o", "name").strip() == "service/web"
    ip = kubectl.ok("get", "svc", "-n", ns, "-o", "jsonpath={.items[*].spec.clusterIP}")
    assert ip.startswith("10.")
    cc = kubectl.ok("get", "svc", "-n", ns, "-o", "custom-columns=N:.metadata.name,IP:.spec.clusterIP")
    assert cc.splitlines()[1].split() == ["web", ip]
    assert "web" in kubectl.ok("get", "svc", "-n", ns, "--sort-by=.metadata.name")
    assert "kind: Service" in kubectl.ok("get", "svc", "web", "-n", ns, "-o", "yaml")
    allns = kubectl.ok("get", "svc", "-A")
    assert allns.splitlines()[0].split()[0] == "NAMESPACE" and "kubernetes" in allns
    labels = kubectl.ok("get", "svc", "-n", ns, "--show-labels", "-L", "app")
    assert "app=web" in labels


def test_get_not_found(kubectl, ns):
    r = kubectl("get", "svc", "nope", "-n", ns)
    assert r.returncode == 1
    assert 'Error from server (NotFound): services "nope" not found' in r.stderr
    r = kubectl("get", "svc", "nope", "-n", ns, "--ignore-not-found")
    assert r.returncode == 0 and r.stdout == ""
    r = kubectl("get", "deploy", "nope", "-n", ns)
    assert 'deployments.apps "nope" not found' in r.stderr


def test_empty_list(kubectl, ns):
    r = kubectl("get", "pods", "-n", ns)
    assert r.returncode == 0
    assert f"No resources found in {ns} namespace." in r.stderr


def test_label_annotate_patch(kubectl, ns):
    kubectl.ok("apply", "-n", ns, "-f", str(M / "svc.yaml"))
    assert kubectl.ok("label", "svc", "web", "-n", ns, "tier=fe").strip() == "service/web labeled"
    assert kubectl.ok("label", "svc", "web", "-n", ns, "tier-").strip() == "service/web unlabeled"
    # kubectl 1.27 prints "annotate" (fixed in later releases)
    assert kubectl.ok("annotate", "svc", "web", "-n", ns, "note=hi").strip() in ("service/web annotated",
                                                                                "service/web annotate")
    assert kubectl.ok("patch", "svc", "web", "-n", ns, "-p", '{"spec":{"type":"NodePort"}}').strip() == \
        "service/web patched"
    svc = json.loads(kubectl.ok("get", "svc", "web", "-n", ns, "-o", "json"))
    assert svc["spec"]["type"] == "NodePort" and 30000 <= svc["spec"]["ports"][0]["nodePort"] <= 32767
    kubectl.ok("patch", "svc", "web", "-n", ns, "--type=merge", "-p", '{"spec":{"type":"ClusterIP"}}')
    svc = json.loads(kubectl.ok("get", "svc", "web", "-n", ns, "-o", "json"))
    assert "nodePort" not in svc["spec"]["ports"][0]
    kubectl.ok("patch", "svc", "web", "-n", ns, "--type=json",
               "-p", '[{"op":"replace","path":"/spec/ports/0/port","value":83}]')
    svc = json.loads(kubectl.ok("get", "svc", "web", "-n", ns, "-o", "json"))
    assert svc["spec"]["ports"][0]["port"] == 83
    assert svc["metadata"]["annotations"]["note"] == "hi" and "tier" not in svc["metadata"]["labels"]


def test_edit(kubectl, ns):
    kubectl.ok("apply", "-n", ns, "-f", str(M / "svc.yaml"))
    r = kubectl("edit", "svc", "web", "-n", ns, env={"EDITOR": "sed -i s/8080/9090/"})
    assert r.returncode == 0, r.stderr
    assert "service/web edited" in r.stdout
    svc = json.loads(kubectl.ok("get", "svc", "web", "-n", ns, "-o", "json"))
    assert svc["spec"]["ports"][0]["targetPort"] == 9090


def test_scale(kubectl, ns):
    kubectl.ok("apply", "-n", ns, "-f", str(M / "deploy.yaml"), "-f", str(M / "sts.yaml"))
    assert kubectl.ok("scale", "deploy", "web", "-n", ns, "--replicas=3").strip() == "deployment.apps/web scaled"
    assert kubectl.ok("scale", "sts", "db", "-n", ns, "--replicas=2").strip() == "statefulset.apps/db scaled"
    r = kubectl("scale", "deploy", "web", "-n", ns, "--replicas=4", "--current-replicas=3")
    assert r.returncode == 0, r.stderr
    d = json.loads(kubectl.ok("get", "deploy", "web", "-n", ns, "-o", "json"))
    assert d["spec"]["replicas"] == 4 and d["metadata"]["generation"] >= 3


def test_expose(kubectl, ns):
    kubectl.ok("apply", "-n", ns, "-f", str(M / "deploy.yaml"))
    out = kubectl.ok("expose", "deploy", "web", "-n", ns, "--port=80", "--target-port=8080", "--name=web-svc")
    assert out.strip() == "service/web-svc exposed"
    svc = json.loads(kubectl.ok("get", "svc", "web-svc", "-n", ns, "-o", "json"))
    assert svc["spec"]["selector"] == {"app": "web"}


def test_delete_variants(kubectl, ns):
    kubectl.ok("apply", "-n", ns, "-f", str(M / "svc.yaml"))
    assert kubectl.ok("delete", "svc", "web", "-n", ns).strip() == 'service "web" deleted'
    r = kubectl("delete", "svc", "web", "-n", ns)
    assert r.returncode == 1 and 'services "web" not found' in r.stderr
    kubectl.ok("apply", "-n", ns, "-f", str(M / "svc.yaml"))
    assert 'service "web" deleted' in kubectl.ok("delete", "svc", "-l", "app=web", "-n", ns)
    kubectl.ok("apply", "-n", ns, "-f", str(M / "deploy.yaml"))
    out = kubectl.ok("delete", "-n", ns, "-f", str(M / "deploy.yaml"))
    assert 'deployment.apps "web" deleted' in out


def test_describe_service(kubectl, ns):
    kubectl.ok("apply", "-n", ns, "-f", str(M / "svc.yaml"))
    out = kubectl.ok("describe", "svc", "web", "-n", ns)
    assert "Name:" in out and "web" in out
    assert "Selector:" in out and "app=web" in out
    assert "TargetPort:" in out and "8080/TCP" in out
    assert re.search(r"Session Affinity:\s+None", out)


def test_watch_prints_rows(kubectl, ns, apiserver):
    kubectl.ok("apply", "-n", ns, "-f", str(M / "svc.yaml"))
    p = subprocess.Popen([kubectl.binary, f"--cache-dir={kubectl.cache_dir}", "--kubeconfig",
                          str(kubectl.kubeconfig), "get", "svc", "-n", ns, "-w", "--output-watch-events"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.5)
    kubectl.ok("label", "svc", "web", "-n", ns, "x=y")
    kubectl.ok("delete", "svc", "web", "-n", ns)
    time.sleep(1.5)
    p.terminate()
    out, err = p.communicate(timeout=10)
    assert "ADDED" in out and "MODIFIED" in out and "DELETED" in out, (out, err)


def test_get_all_category(kubectl, ns):
    kubectl.ok("apply", "-n", ns, "-f", str(M / "svc.yaml"), "-f", str(M / "deploy.yaml"))
    out = kubectl.ok("get", "all", "-n", ns)
    assert "service/web" in out and "deployment.apps/web" in out


def test_unauthenticated_is_401(apiserver):
    import ssl
    import urllib.error
    import urllib.request
    ctx = ssl.create_default_context(cafile=str(apiserver.cluster.data_dir / "pki" / "ca.crt"))
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(f"https://127.0.0.1:{apiserver.cluster.api_port}/api/v1/namespaces", context=ctx)
    assert e.value.code == 401
    body = json.loads(e.value.read())
    assert body["kind"] == "Status" and body["reason"] == "Unauthorized"
