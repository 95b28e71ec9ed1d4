"""Pure parts of the kubelet: Service env vars, $(VAR) expansion, resolv.conf, hosts."""

from tinykube.agent.kubelet import dnsconfig, envvars


def svc(name, ns, ip, ports):
    return {"metadata": {"name": name, "namespace": ns},
            "spec": {"clusterIP": ip, "ports": ports}}


def test_service_env_worked_example():
    s = svc("abc-123", "default", "5.6.7.8",
            [{"name": "u-d-p", "port": 8081, "protocol": "UDP"},
             {"name": "t-c-p", "port": 8081, "protocol": "TCP"}])
    env = envvars.service_env([s], "default", True)
    assert env == {
        "ABC_123_SERVICE_HOST": "5.6.7.8",
        "ABC_123_SERVICE_PORT": "8081",
        "ABC_123_SERVICE_PORT_U_D_P": "8081",
        "ABC_123_SERVICE_PORT_T_C_P": "8081",
        "ABC_123_PORT": "udp://5.6.7.8:8081",
        "ABC_123_PORT_8081_UDP": "udp://5.6.7.8:8081",
        "ABC_123_PORT_8081_UDP_PROTO": "udp",
        "ABC_123_PORT_8081_UDP_PORT": "8081",
        "ABC_123_PORT_8081_UDP_ADDR": "5.6.7.8",
        "ABC_123_PORT_8081_TCP": "tcp://5.6.7.8:8081",
        "ABC_123_PORT_8081_TCP_PROTO": "tcp",
        "ABC_123_PORT_8081_TCP_PORT": "8081",
        "ABC_123_PORT_8081_TCP_ADDR": "5.6.7.8",
    }


def test_service_env_selection_and_kubernetes_always():
    k = svc("kubernetes", "default", "10.96.0.1", [{"name": "https", "port": 443}])
    other = svc("web", "other", "10.96.0.5", [{"port": 80}])
    mine = svc("sample-clusterip", "ns1", "10.96.0.6", [{"port": 8080, "name": "http-port"}])
    headless = svc("hl", "ns1", "None", [{"port": 80}])
    ext = {"metadata": {"name": "ext", "namespace": "ns1"},
           "spec": {"type": "ExternalName", "externalName": "x.example"}}
    all_ = [k, other, mine, headless, ext]
    env = envvars.service_env(all_, "ns1", True)
    assert env["KUBERNETES_SERVICE_HOST"] == "10.96.0.1"
    assert env["KUBERNETES_SERVICE_PORT_HTTPS"] == "443"
    assert env["KUBERNETES_PORT_443_TCP"] == "tcp://10.96.0.1:443"
    assert env["SAMPLE_CLUSTERIP_SERVICE_PORT_HTTP_PORT"] == "8080"
    assert not any(x.startswith(("WEB_", "HL_", "EXT_")) for x in env)
    env2 = envvars.service_env(all_, "ns1", False)
    assert set(x.split("_")[0] for x in env2) == {"KUBERNETES"}


def test_service_env_ipv6_and_digit_names():
    s = svc("8abc", "default", "2001:db8::1", [{"name": "8083", "port": 8083}])
    env = envvars.service_env([s], "default")
    assert env["_8ABC_SERVICE_HOST"] == "2001:db8::1"
    assert env["_8ABC_PORT"] == "tcp://[2001:db8::1]:8083"
    assert env["_8ABC_PORT_8083_TCP_ADDR"] == "2001:db8::1"
    assert env["_8ABC_SERVICE_PORT_8083"] == "8083"


def test_expand():
    look = {"A": "1", "B": "two"}.get
    assert envvars.expand("$(A)-$(B)", look) == "1-two"
    assert envvars.expand("$$(A)", look) == "$(A)"
    assert envvars.expand("$(C)", look) == "$(C)"
    assert envvars.expand("$A $", look) == "$A $"
    assert envvars.expand("$(A", look) == "$(A"


def test_container_env_precedence_and_refs():
    pod = {"metadata": {"name": "p", "namespace": "ns1", "uid": "u1",
                        "labels": {"app": "x"}},
           "spec": {"nodeName": "n1"}, "status": {"podIP": "10.0.0.2"}}
    c = {"name": "c",
         "envFrom": [{"configMapRef": {"name": "cm"}, "prefix": "CM_"},
                     {"secretRef": {"name": "sec"}}],
         "env": [{"name": "X_SERVICE_HOST", "value": "override"},
                 {"name": "URL", "value": "http://$(X_SERVICE_HOST):$(CM_port)"},
                 {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                 {"name": "APP", "valueFrom": {"fieldRef": {
                     "fieldPath": "metadata.labels['app']"}}},
                 {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                 {"name": "K", "valueFrom": {"configMapKeyRef": {"name": "cm",
                                                                 "key": "port"}}}],
         "command": ["echo", "$(POD)"], "args": ["$(URL)", "$$(POD)"]}
    cms = {"cm": {"data": {"port": "8080", "bad key": "x"}}}
    secs = {"sec": {"data": {"PASS": "czNjcjN0"}}}
    env = envvars.container_env(pod, c, {"X_SERVICE_HOST": "10.96.0.9"}, cms, secs)
    assert env["X_SERVICE_HOST"] == "override"
    assert env["URL"] == "http://override:8080"
    assert env["CM_port"] == "8080" and "CM_bad key" not in env
    assert env["PASS"] == "s3cr3t"
    assert env["POD"] == "p" and env["APP"] == "x" and env["IP"] == "10.0.0.2"
    assert env["K"] == "8080"
    assert envvars.expand_command(c, env) == (["echo", "p"], ["http://override:8080", "$(POD)"])


def test_container_env_missing_configmap():
    pod = {"metadata": {"name": "p", "namespace": "ns1"}, "spec": {}}
    c = {"name": "c", "envFrom": [{"configMapRef": {"name": "nope"}}]}
    try:
        envvars.container_env(pod, c, {}, {"nope": None}, {})
    except envvars.ConfigError as e:
        assert str(e) == 'configmap "nope" not found'
    else:
        raise AssertionError("expected ConfigError")
    c2 = {"name": "c", "envFrom": [{"configMapRef": {"name": "nope", "optional": True}}]}
    assert envvars.container_env(pod, c2, {}, {"nope": None}, {}) == {}


HOST = "nameserver 192.0.2.53\nsearch corp.example\noptions timeout:2\n"


def pod(**spec):
    return {"metadata": {"name": "web-0", "namespace": "ns1"}, "spec": spec}


def test_resolv_cluster_first():
    text = dnsconfig.resolv_conf(pod(), ["10.96.0.10"], "cluster.local", HOST)
    assert text == ("nameserver 10.96.0.10\n"
                    "search ns1.svc.cluster.local svc.cluster.local cluster.local corp.example\n"
                    "options ndots:5\n")
    text = dnsconfig.resolv_conf(pod(), ["10.96.0.10"], "cluster.local", "")
    assert text == ("nameserver 10.96.0.10\n"
                    "search ns1.svc.cluster.local svc.cluster.local cluster.local\n"
                    "options ndots:5\n")


def test_resolv_policies():
    assert dnsconfig.resolv_conf(pod(dnsPolicy="Default"), ["10.96.0.10"], "cluster.local",
                                 HOST) == ("nameserver 192.0.2.53\nsearch corp.example\n"
                                           "options timeout:2\n")
    # ClusterFirst with hostNetwork falls back to the node's
    assert "192.0.2.53" in dnsconfig.resolv_conf(pod(hostNetwork=True), ["10.96.0.10"],
                                                 "cluster.local", HOST)
    assert "10.96.0.10" in dnsconfig.resolv_conf(
        pod(hostNetwork=True, dnsPolicy="ClusterFirstWithHostNet"), ["10.96.0.10"],
        "cluster.local", HOST)
    custom = pod(dnsPolicy="None", dnsConfig={
        "nameservers": ["1.2.3.4"],
        "searches": ["ns1.svc.cluster-domain.example", "my.dns.search.suffix"],
        "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}]})
    assert dnsconfig.resolv_conf(custom, ["10.96.0.10"], "cluster.local", HOST) == (
        "nameserver 1.2.3.4\nsearch ns1.svc.cluster-domain.example my.dns.search.suffix\n"
        "options ndots:2 edns0\n")


def test_resolv_dnsconfig_merge_and_limits():
    p = pod(dnsConfig={"nameservers": ["10.96.0.10", "8.8.8.8", "1.1.1.1", "9.9.9.9"],
                       "searches": ["cluster.local", "extra.example"],
                       "options": [{"name": "ndots", "value": "2"}]})
    ns, search, opts, warn = dnsconfig.dns_settings(p, ["10.96.0.10"], "cluster.local", "")
    assert ns == ["10.96.0.10", "8.8.8.8", "1.1.1.1"]
    assert "DNSConfigForming" in warn
    assert search == ["ns1.svc.cluster.local", "svc.cluster.local", "cluster.local",
                      "extra.example"]
    assert opts == ["ndots:2"]


def test_hosts_file():
    text = dnsconfig.hosts_file(pod(), ["10.250.0.5"])
    assert text == ("# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n"
                    "::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\n"
                    "fe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n"
                    "10.250.0.5\tweb-0\n")
    p = pod(hostname="h", subdomain="sub", hostAliases=[{"ip": "1.2.3.4",
                                                          "hostnames": ["a", "b"]}])
    text = dnsconfig.hosts_file(p, ["10.250.0.5"])
    assert "10.250.0.5\th.sub.ns1.svc.cluster.local\th\n" in text
    assert text.endswith("\n# Entries added by HostAliases.\n1.2.3.4\ta\tb\n")
    assert dnsconfig.pod_hostname(p) == "h"
