import copy

from tinykube.api import defaults
from tinykube.api.resources import get
from tinykube.api.validation import validate


def v(plural, obj, old=None, group=""):
    res = get(plural, group)
    return [str(e) for e in validate(res, obj, old)]


def defaulted(plural, obj, group=""):
    defaults.apply_defaults(get(plural, group), obj)
    return obj


def pod(spec=None, name="p"):
    return defaulted("pods", {"metadata": {"name": name, "namespace": "default"},
                              "spec": spec or {"containers": [{"name": "c", "image": "nginx"}]}})


def deploy(labels=None, selector=None, **spec):
    d = {"metadata": {"name": "d", "namespace": "default"},
         "spec": {"selector": selector if selector is not None else {"matchLabels": {"app": "x"}},
                  "template": {"metadata": {"labels": labels if labels is not None else {"app": "x"}},
                               "spec": {"containers": [{"name": "c", "image": "nginx"}]}}, **spec}}
    return defaulted("deployments", d, "apps")


# ---- Pod

def test_pod_valid_and_containers_required():
    assert v("pods", pod()) == []
    assert v("pods", pod({"containers": []})) == ["spec.containers: Required value"]


def test_pod_container_rules():
    p = pod({"containers": [{"name": "Web", "image": ""}, {"name": "c", "image": "x"}, {"name": "c", "image": "x"}]})
    assert v("pods", p) == [
        "spec.containers[0].name: Invalid value: \"Web\": a lowercase RFC 1123 label must consist of lower case "
        "alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  "
        "or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
        "spec.containers[0].image: Required value",
        'spec.containers[2].name: Duplicate value: "c"']


def test_pod_ports_policies_hostname():
    p = pod({"containers": [{"name": "c", "image": "x", "ports": [{"containerPort": 70000, "protocol": "ICMP"}]}],
             "restartPolicy": "Sometimes", "dnsPolicy": "Foo", "hostname": "a.b"})
    assert v("pods", p) == [
        "spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive",
        'spec.containers[0].ports[0].protocol: Unsupported value: "ICMP": supported values: "SCTP", "TCP", "UDP"',
        'spec.restartPolicy: Unsupported value: "Sometimes": supported values: "Always", "OnFailure", "Never"',
        'spec.dnsPolicy: Unsupported value: "Foo": supported values: "ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"',
        'spec.hostname: Invalid value: "a.b": must not contain dots']


def test_pod_dns_none_needs_config():
    assert v("pods", pod({"containers": [{"name": "c", "image": "x"}], "dnsPolicy": "None"})) == [
        "spec.dnsConfig: Required value: must provide `dnsConfig` when `dnsPolicy` is None"]


def test_probe_handlers():
    p = pod({"containers": [{"name": "c", "image": "x", "livenessProbe": {},
                             "readinessProbe": {"exec": {"command": ["true"]}, "tcpSocket": {"port": 80}}}]})
    assert v("pods", p) == [
        "spec.containers[0].livenessProbe: Required value: must specify a handler type",
        "spec.containers[0].readinessProbe.tcpSocket: Forbidden: may not specify more than 1 handler type"]
    p = pod({"containers": [{"name": "c", "image": "x", "livenessProbe": {"httpGet": {"port": 80}, "successThreshold": 2}}]})
    assert v("pods", p) == ["spec.containers[0].livenessProbe.successThreshold: Invalid value: 2: must be 1"]


def test_pod_update_forbidden():
    old = pod()
    new = copy.deepcopy(old)
    new["spec"]["containers"][0]["image"] = "nginx:2"
    assert v("pods", new, old) == []
    new["spec"]["restartPolicy"] = "Never"
    assert v("pods", new, old)[-1].startswith("spec: Forbidden: pod updates may not change fields other than")


# ---- workloads

def test_deployment_selector_mismatch():
    d = deploy(labels={"app": "y"})
    assert v("deployments", d, group="apps") == [
        'spec.template.metadata.labels: Invalid value: map[string]string{"app":"y"}: `selector` does not match template `labels`']


def test_deployment_selector_required_and_empty():
    d = deploy()
    del d["spec"]["selector"]
    assert v("deployments", d, group="apps") == [
        "spec.selector: Required value",
        'spec.template.metadata.labels: Invalid value: map[string]string{"app":"x"}: `selector` does not match template `labels`']
    d = deploy(selector={})
    assert v("deployments", d, group="apps") == [
        "spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string(nil), "
        "MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: empty selector is invalid for deployment"]


def test_deployment_replicas_strategy_restart_policy():
    d = deploy(replicas=-1, strategy={"type": "Blue"})
    d["spec"]["template"]["spec"]["restartPolicy"] = "Never"
    assert v("deployments", d, group="apps") == [
        "spec.replicas: Invalid value: -1: must be greater than or equal to 0",
        'spec.template.spec.restartPolicy: Unsupported value: "Never": supported values: "Always"',
        'spec.strategy.type: Unsupported value: "Blue": supported values: "Recreate", "RollingUpdate"']
    d = deploy(strategy={"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 0}})
    assert v("deployments", d, group="apps") == [
        "spec.strategy.rollingUpdate.maxUnavailable: Invalid value: intstr.IntOrString{Type:0, IntVal:0, StrVal:\"\"}: "
        "may not be 0 when `maxSurge` is 0"]
    d = deploy(strategy={"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "x", "maxSurge": "150%"}})
    assert v("deployments", d, group="apps") == [
        "spec.strategy.rollingUpdate.maxUnavailable: Invalid value: intstr.IntOrString{Type:1, IntVal:0, StrVal:\"x\"}: "
        "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', "
        "regex used for validation is '[0-9]+%')"]


def test_deployment_selector_immutable():
    old = deploy()
    new = copy.deepcopy(old)
    new["spec"]["selector"] = {"matchLabels": {"app": "x", "tier": "web"}}
    new["spec"]["template"]["metadata"]["labels"]["tier"] = "web"
    assert v("deployments", new, old, group="apps") == [
        'spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{"app":"x", "tier":"web"}, '
        'MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable']


def test_replicaset_and_daemonset():
    rs = defaulted("replicasets", {"metadata": {"name": "r", "namespace": "default"},
                                   "spec": {"selector": {"matchLabels": {"a": "b"}},
                                            "template": {"metadata": {"labels": {"a": "c"}},
                                                         "spec": {"containers": [{"name": "c", "image": "x"}]}}}}, "apps")
    assert v("replicasets", rs, group="apps") == [
        'spec.template.metadata.labels: Invalid value: map[string]string{"a":"c"}: `selector` does not match template `labels`']
    ds = defaulted("daemonsets", {"metadata": {"name": "r", "namespace": "default"},
                                  "spec": {"selector": {"matchLabels": {"a": "b"}},
                                           "template": {"metadata": {"labels": {"a": "b"}},
                                                        "spec": {"containers": [{"name": "c", "image": "x"}]}}}}, "apps")
    assert v("daemonsets", ds, group="apps") == []


def test_statefulset_rules():
    sts = defaulted("statefulsets", {"metadata": {"name": "web", "namespace": "default"},
                                     "spec": {"serviceName": "nginx", "selector": {"matchLabels": {"a": "b"}},
                                              "template": {"metadata": {"labels": {"a": "b"}},
                                                           "spec": {"containers": [{"name": "c", "image": "x"}]}}}}, "apps")
    assert v("statefulsets", sts, group="apps") == []
    bad = copy.deepcopy(sts)
    bad["spec"]["podManagementPolicy"] = "Random"
    bad["spec"]["updateStrategy"]["rollingUpdate"]["partition"] = -1
    assert v("statefulsets", bad, group="apps") == [
        "spec.podManagementPolicy: Invalid value: \"Random\": must be 'OrderedReady' or 'Parallel'",
        "spec.updateStrategy.rollingUpdate.partition: Invalid value: -1: must be greater than or equal to 0"]
    upd = copy.deepcopy(sts)
    upd["spec"]["serviceName"] = "other"
    assert v("statefulsets", upd, sts, group="apps") == [
        "spec: Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', "
        "'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden"]
    upd = copy.deepcopy(sts)
    upd["spec"]["replicas"] = 5
    assert v("statefulsets", upd, sts, group="apps") == []


# ---- Endpoints / EndpointSlice

def test_endpoints():
    ep = defaulted("endpoints", {"metadata": {"name": "e", "namespace": "default"},
                                 "subsets": [{"addresses": [{"ip": "192.168.1.1"}, {"ip": "127.0.0.1"}],
                                              "ports": [{"port": 80}, {"port": 0, "name": "b"}]},
                                             {"ports": [{"port": 80}]}]})
    assert v("endpoints", ep) == [
        'subsets[0].addresses[1].ip: Invalid value: "127.0.0.1": may not be in the loopback range (127.0.0.0/8, ::1/128)',
        "subsets[0].ports[0].name: Required value",
        "subsets[0].ports[1].port: Invalid value: 0: must be between 1 and 65535, inclusive",
        "subsets[1]: Required value: must specify `addresses` or `notReadyAddresses`"]


def test_endpoint_slice():
    es = defaulted("endpointslices", {"metadata": {"name": "s-abc", "namespace": "default"}, "addressType": "IPv4",
                                      "endpoints": [{"addresses": ["10.244.0.5"]}, {"addresses": []},
                                                    {"addresses": ["fd00::1"]}],
                                      "ports": [{"name": "http", "port": 80}, {"name": "http", "port": 81}]},
                   "discovery.k8s.io")
    assert v("endpointslices", es, group="discovery.k8s.io") == [
        "endpoints[1].addresses: Required value: must contain at least 1 address",
        'endpoints[2].addresses[0]: Invalid value: "fd00::1": must be a valid IPv4 address',
        'ports[1].name: Duplicate value: "http"']
    es2 = {"metadata": {"name": "s", "namespace": "default"}, "addressType": "IPv5",
           "endpoints": [{"addresses": ["10.0.0.1"]}] * 1001}
    assert v("endpointslices", es2, group="discovery.k8s.io") == [
        'addressType: Unsupported value: "IPv5": supported values: "FQDN", "IPv4", "IPv6"',
        "endpoints: Too many: 1001: must have at most 1000 items"]
    upd = copy.deepcopy(es)
    upd["addressType"] = "IPv6"
    upd["endpoints"] = []
    upd["ports"] = upd["ports"][:1]
    assert v("endpointslices", upd, es, group="discovery.k8s.io") == [
        'addressType: Invalid value: "IPv6": field is immutable']


# ---- Ingress / IngressClass

def ing(spec, **ann):
    return {"metadata": {"name": "i", "namespace": "default", "annotations": ann}, "spec": spec}


def vi(obj, old=None):
    return v("ingresses", obj, old, group="networking.k8s.io")


BACKEND = {"service": {"name": "svc", "port": {"number": 80}}}


def test_ingress_needs_rules_or_default_backend():
    assert vi(ing({})) == ["spec: Invalid value: null: either `defaultBackend` or `rules` must be specified"]
    assert vi(ing({"defaultBackend": BACKEND})) == []


def test_ingress_path_type():
    i = ing({"rules": [{"host": "a.example.com", "http": {"paths": [{"path": "/", "backend": BACKEND}]}}]})
    assert vi(i) == ["spec.rules[0].http.paths[0].pathType: Required value: pathType must be specified"]
    i["spec"]["rules"][0]["http"]["paths"][0]["pathType"] = "Regex"
    assert vi(i) == ['spec.rules[0].http.paths[0].pathType: Unsupported value: "Regex": supported values: '
                     '"Exact", "ImplementationSpecific", "Prefix"']


def test_ingress_paths():
    i = ing({"rules": [{"http": {"paths": [
        {"path": "foo", "pathType": "Prefix", "backend": BACKEND},
        {"path": "/a//b/..", "pathType": "Exact", "backend": BACKEND},
        {"path": "", "pathType": "ImplementationSpecific", "backend": BACKEND}]}}]})
    assert vi(i) == [
        'spec.rules[0].http.paths[0].path: Invalid value: "foo": must be an absolute path',
        "spec.rules[0].http.paths[1].path: Invalid value: \"/a//b/..\": must not contain '//'",
        "spec.rules[0].http.paths[1].path: Invalid value: \"/a//b/..\": cannot end with '/..'"]


def test_ingress_backends_and_hosts():
    i = ing({"rules": [{"host": "10.0.0.1", "http": {"paths": [
        {"path": "/", "pathType": "Prefix", "backend": {}},
        {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "Svc", "port": {"name": "http", "number": 80}}}},
        {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "s", "port": {}}}},
        {"path": "/", "pathType": "Prefix", "backend": {**BACKEND, "resource": {"kind": "X", "name": "y"}}}]}},
        {"host": "*.*.example.com", "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": BACKEND}]}},
        {"host": "*.example.com", "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": BACKEND}]}},
        {"host": "x", "http": {}}]})
    out = vi(i)
    assert out[0] == 'spec.rules[0].host: Invalid value: "10.0.0.1": must be a DNS name, not an IP address'
    assert 'spec.rules[0].http.paths[0].backend: Invalid value: "": resource or service backend is required' in out
    assert any(m.startswith('spec.rules[0].http.paths[1].backend.service.name: Invalid value: "Svc": a DNS-1035 label') for m in out)
    assert 'spec.rules[0].http.paths[1].backend: Invalid value: "": cannot set both port name & port number' in out
    assert "spec.rules[0].http.paths[2].backend: Required value: port name or number is required" in out
    assert 'spec.rules[0].http.paths[3].backend: Invalid value: "": cannot set both resource and service backends' in out
    assert any(m.startswith('spec.rules[1].host: Invalid value: "*.*.example.com": a wildcard DNS-1123 subdomain must start with') for m in out)
    assert not any("rules[2]" in m for m in out)
    assert "spec.rules[3].http.paths: Required value" in out


def test_ingress_tls_and_class():
    i = ing({"defaultBackend": BACKEND, "ingressClassName": "nginx",
             "tls": [{"hosts": ["Bad"], "secretName": "tls_secret"}]}, **{"kubernetes.io/ingress.class": "other"})
    out = vi(i)
    assert out[0].startswith('spec.tls[0].hosts[0]: Invalid value: "Bad": a lowercase RFC 1123 subdomain')
    assert out[1].startswith('spec.tls[0].secretName: Invalid value: "tls_secret": a lowercase RFC 1123 subdomain')
    assert out[2] == ('annotations.kubernetes.io/ingress.class: Invalid value: "other": must match '
                      '`ingressClassName` when both are specified')


def test_ingress_class():
    ic = defaulted("ingressclasses", {"metadata": {"name": "nginx"},
                                      "spec": {"controller": "k8s.io/ingress-nginx",
                                               "parameters": {"kind": "Cfg", "name": "c"}}}, "networking.k8s.io")
    assert ic["spec"]["parameters"]["scope"] == "Cluster"
    assert v("ingressclasses", ic, group="networking.k8s.io") == []
    bad = copy.deepcopy(ic)
    bad["spec"]["controller"] = "nginx"
    assert v("ingressclasses", bad, ic, group="networking.k8s.io") == [
        'spec.controller: Invalid value: "nginx": field is immutable',
        'spec.controller: Invalid value: "nginx": must be a domain-prefixed path (such as "acme.io/foo")']
    ns = copy.deepcopy(ic)
    ns["spec"]["parameters"]["scope"] = "Namespace"
    assert v("ingressclasses", ns, group="networking.k8s.io") == [
        "spec.parameters.namespace: Required value: `parameters.scope` is set to 'Namespace'"]


# ---- others

def test_namespace_configmap_secret():
    ns = defaulted("namespaces", {"metadata": {"name": "My.NS"}})
    assert v("namespaces", ns)[0].startswith('metadata.name: Invalid value: "My.NS": a lowercase RFC 1123 label')
    cm = {"metadata": {"name": "c", "namespace": "default"}, "data": {"bad key": "v", "ok": "v"}, "binaryData": {"ok": ""}}
    assert v("configmaps", cm) == [
        "data[bad key]: Invalid value: \"bad key\": a valid config key must consist of alphanumeric characters, "
        "'-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')",
        'data[ok]: Invalid value: "ok": duplicate of key present in binaryData']
    sec = defaulted("secrets", {"metadata": {"name": "t", "namespace": "default"}, "type": "kubernetes.io/tls", "data": {}})
    assert v("secrets", sec) == ["data[tls.crt]: Required value", "data[tls.key]: Required value"]
    old = defaulted("secrets", {"metadata": {"name": "t", "namespace": "default"}, "stringData": {"a": "b"}})
    assert old["data"] == {"a": "Yg=="} and old["type"] == "Opaque"
    new = copy.deepcopy(old)
    new["type"] = "kubernetes.io/basic-auth"
    assert v("secrets", new, old)[0] == 'type: Invalid value: "kubernetes.io/basic-auth": field is immutable'


def test_event_namespace_rules():
    ev = {"metadata": {"name": "e.1", "namespace": "default"}, "involvedObject": {"kind": "Pod", "namespace": "other"}}
    assert v("events", ev) == ['involvedObject.namespace: Invalid value: "other": does not match event.namespace']
    ev["involvedObject"]["namespace"] = "default"
    assert v("events", ev) == []


def test_lease_node_and_unknown_kind():
    lease = {"metadata": {"name": "l", "namespace": "kube-system"}, "spec": {"leaseDurationSeconds": 0}}
    assert v("leases", lease, group="coordination.k8s.io") == [
        "spec.leaseDurationSeconds: Invalid value: 0: must be greater than 0"]
    node = {"metadata": {"name": "n1", "namespace": "x"}, "spec": {"podCIDR": "10.244.0.0/24", "podCIDRs": ["10.244.0.0/24"]}}
    assert v("nodes", node) == ["metadata.namespace: Forbidden: not allowed on this type"]
    from tinykube.api.resources import Resource
    assert validate(Resource("x.io", "v1", "widgets", "Widget"), {"metadata": {}}) == []
