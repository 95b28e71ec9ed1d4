"""The first thing a user does: a Deployment behind a Service, reached from the host and by name
from a pod."""
from __future__ import annotations

from pathlib import Path

from .conftest import wait_for

EXAMPLE = Path(__file__).parent.parent.parent / "examples" / "hello.yaml"


def test_example_deployment_is_served(k, ns, cluster):
    k.ok("apply", "-n", ns, "-f", str(EXAMPLE))
    k.ok("rollout", "status", "deployment/hello", "-n", ns, "--timeout=120s", timeout=130)
    ip = k.ok("get", "svc", "hello", "-n", ns, "-o", "jsonpath={.spec.clusterIP}")
    import subprocess
    out = subprocess.run(["curl", "-s", "-m", "5", f"http://{ip}:8080/"], capture_output=True, text=True).stdout
    assert "Welcome to nginx!" in out
    dns = cluster.config.dns_ip
    ans = wait_for(lambda: subprocess.run(["dig", "+short", f"@{dns}", f"hello.{ns}.svc.cluster.local"],
                                          capture_output=True, text=True).stdout.strip(), what="DNS answer")
    assert ans == ip
    r = k("run", "smoke", "-n", ns, "--image=centos:6", "--restart=Never", "--rm", "-i", "--",
          "curl", "-s", "-m", "5", "http://hello:8080/", timeout=120)
    assert r.returncode == 0, r.stderr
    assert "Welcome to nginx!" in r.stdout
