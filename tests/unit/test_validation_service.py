import copy


from tinykube.api import defaults, errors
from tinykube.api.resources import get
from tinykube.api.validation import validate

SVC = get("services")
DNS1035 = ("a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an "
           "alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', "
           "regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')")
DNS1123_LABEL = ("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and "
                 "must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex "
                 "used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')")


def svc(spec=None, name="web", **meta):
    s = {"apiVersion": "v1", "kind": "Service",
         "metadata": {"name": name, "namespace": "default", **meta},
         "spec": spec if spec is not None else {"selector": {"app": "web"}, "ports": [{"port": 80}]}}
    defaults.apply_defaults(SVC, s)
    return s


def msgs(obj, old=None):
    return [str(e) for e in validate(SVC, obj, old)]


def test_valid_service():
    assert msgs(svc()) == []


def test_name_dns1035():
    assert msgs(svc(name="1abc")) == [f'metadata.name: Invalid value: "1abc": {DNS1035}']


def test_name_required_and_generate_name():
    s = svc(name="")
    assert msgs(s) == ["metadata.name: Required value: name or generateName is required"]
    s["metadata"]["generateName"] = "web-"
    s["metadata"]["name"] = ""
    assert msgs(s) == ["metadata.name: Required value: name or generateName is required"]
    s["metadata"]["name"] = "web-abcde"
    assert msgs(s) == []


def test_namespace_required():
    s = svc()
    del s["metadata"]["namespace"]
    assert msgs(s) == ["metadata.namespace: Required value"]


def test_labels_validated():
    s = svc(labels={"bad key!": "ok", "k": "bad value"})
    out = msgs(s)
    assert out[0].startswith('metadata.labels: Invalid value: "bad key!": name part must consist of alphanumeric')
    assert out[1] == ('metadata.labels: Invalid value: "bad value": a valid label must be an empty string or '
                      "consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
                      "alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for "
                      "validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')")


def test_ports_required():
    assert msgs(svc({"selector": {"a": "b"}})) == ["spec.ports: Required value"]
    assert msgs(svc({"clusterIP": "None"})) == []
    assert msgs(svc({"type": "ExternalName", "externalName": "example.com"})) == []


def test_port_range_and_protocol():
    s = svc({"ports": [{"port": 70000, "protocol": "SCTPX", "targetPort": 80}]})
    assert msgs(s) == [
        "spec.ports[0].port: Invalid value: 70000: must be between 1 and 65535, inclusive",
        'spec.ports[0].protocol: Unsupported value: "SCTPX": supported values: "SCTP", "TCP", "UDP"']


def test_port_names_required_with_several_ports_and_unique():
    s = svc({"ports": [{"port": 80}, {"port": 81}]})
    assert msgs(s) == ["spec.ports[0].name: Required value", "spec.ports[1].name: Required value"]
    s = svc({"ports": [{"name": "http", "port": 80}, {"name": "http", "port": 81}]})
    assert msgs(s) == ['spec.ports[1].name: Duplicate value: "http"']
    s = svc({"ports": [{"name": "Http", "port": 80}]})
    assert msgs(s) == [f'spec.ports[0].name: Invalid value: "Http": {DNS1123_LABEL}']


def test_duplicate_port_protocol():
    s = svc({"ports": [{"name": "a", "port": 80}, {"name": "b", "port": 80}]})
    assert msgs(s) == [
        'spec.ports[1]: Duplicate value: core.ServicePort{Name:"", Protocol:"TCP", AppProtocol:(*string)(nil), '
        'Port:80, TargetPort:intstr.IntOrString{Type:0, IntVal:0, StrVal:""}, NodePort:0}']
    s = svc({"ports": [{"name": "a", "port": 53}, {"name": "b", "port": 53, "protocol": "UDP"}]})
    assert msgs(s) == []


def test_target_port_rules():
    s = svc({"ports": [{"port": 80, "targetPort": 0}]})  # defaulted to port
    assert s["spec"]["ports"][0]["targetPort"] == 80 and msgs(s) == []
    s = svc({"ports": [{"port": 80, "targetPort": 65536}]})
    assert msgs(s) == ["spec.ports[0].targetPort: Invalid value: 65536: must be between 1 and 65535, inclusive"]
    s = svc({"ports": [{"port": 80, "targetPort": "http-web-svc"}]})
    assert msgs(s) == []
    s = svc({"ports": [{"port": 80, "targetPort": "-Bad--name-too-long"}]})
    assert msgs(s) == [
        'spec.ports[0].targetPort: Invalid value: "-Bad--name-too-long": must be no more than 15 characters',
        'spec.ports[0].targetPort: Invalid value: "-Bad--name-too-long": must contain only alpha-numerics (a-z, 0-9), and hyphens (-)',
        'spec.ports[0].targetPort: Invalid value: "-Bad--name-too-long": must not contain consecutive hyphens',
        'spec.ports[0].targetPort: Invalid value: "-Bad--name-too-long": must not begin or end with a hyphen']
    s = svc({"ports": [{"port": 80, "targetPort": "8080"}]})
    assert msgs(s) == ['spec.ports[0].targetPort: Invalid value: "8080": must contain at least one letter (a-z)']


def test_node_port_forbidden_on_cluster_ip():
    s = svc({"ports": [{"port": 80, "nodePort": 30080}]})
    assert msgs(s) == ["spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'"]


def test_duplicate_node_port():
    s = svc({"type": "NodePort", "ports": [{"name": "a", "port": 80, "nodePort": 30080},
                                          {"name": "b", "port": 81, "nodePort": 30080}]})
    assert msgs(s) == ["spec.ports[1].nodePort: Duplicate value: 30080"]


def test_type_not_supported():
    s = svc({"type": "Foo", "ports": [{"port": 80}]})
    assert 'spec.type: Unsupported value: "Foo": supported values: "ClusterIP", "ExternalName", "LoadBalancer", "NodePort"' in msgs(s)


def test_headless_node_port_and_lb():
    s = svc({"type": "NodePort", "clusterIP": "None", "ports": [{"port": 80}]})
    assert msgs(s) == ["spec.clusterIPs[0]: Invalid value: \"None\": may not be set to 'None' for NodePort services"]
    s = svc({"type": "LoadBalancer", "clusterIP": "None", "ports": [{"port": 80}]})
    assert msgs(s) == ["spec.clusterIPs[0]: Invalid value: \"None\": may not be set to 'None' for LoadBalancer services"]


def test_external_name_rules():
    s = svc({"type": "ExternalName"})
    assert msgs(s) == ["spec.externalName: Required value"]
    s = svc({"type": "ExternalName", "externalName": "Bad_Name"})
    assert msgs(s)[0].startswith('spec.externalName: Invalid value: "Bad_Name": a lowercase RFC 1123 subdomain')
    s = svc({"type": "ExternalName", "externalName": "foo.example.com."})
    assert msgs(s) == []
    s = svc({"type": "ExternalName", "externalName": "x.com", "clusterIP": "10.96.0.9",
             "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack"})
    assert msgs(s) == ["spec.clusterIPs: Forbidden: may not be set for ExternalName services",
                       "spec.ipFamilies: Forbidden: may not be set for ExternalName services",
                       "spec.ipFamilyPolicy: Forbidden: may not be set for ExternalName services"]


def test_session_affinity():
    s = svc({"sessionAffinity": "Sticky", "ports": [{"port": 80}]})
    assert msgs(s) == ['spec.sessionAffinity: Unsupported value: "Sticky": supported values: "ClientIP", "None"']
    s = svc({"sessionAffinity": "ClientIP", "ports": [{"port": 80}]})
    assert s["spec"]["sessionAffinityConfig"] == {"clientIP": {"timeoutSeconds": 10800}}
    assert msgs(s) == []
    s = svc({"sessionAffinity": "ClientIP", "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 86401}},
             "ports": [{"port": 80}]})
    assert msgs(s) == ["spec.sessionAffinityConfig.clientIP.timeoutSeconds: Invalid value: 86401: "
                       "must be greater than 0 and less than 86400"]


def test_cluster_ip_values():
    s = svc({"clusterIP": "10.96.0.300", "ports": [{"port": 80}]})
    assert msgs(s) == ['spec.clusterIPs[0]: Invalid value: "10.96.0.300": must be a valid IP address, '
                       '(e.g. 10.9.8.7 or 2001:db8::ffff)']
    s = svc({"clusterIP": "10.96.0.3", "clusterIPs": ["10.96.0.4"], "ports": [{"port": 80}]})
    assert msgs(s) == ['spec.clusterIPs: Invalid value: []string{"10.96.0.4"}: first value must match `clusterIP`']
    s = svc({"clusterIPs": ["10.96.0.4"], "ports": [{"port": 80}]})
    assert msgs(s) == ['spec.clusterIPs: Invalid value: []string{"10.96.0.4"}: must be empty when `clusterIP` is not specified']
    s = svc({"clusterIP": "10.96.0.3", "clusterIPs": ["10.96.0.3", "10.96.0.4"], "ports": [{"port": 80}]})
    assert msgs(s) == ['spec.clusterIPs: Invalid value: []string{"10.96.0.3", "10.96.0.4"}: may specify no more than one IP for each IP family']
    s = svc({"clusterIP": "fd00::1", "ipFamilies": ["IPv4"], "ports": [{"port": 80}]})
    assert msgs(s) == ['spec.clusterIPs[0]: Invalid value: "fd00::1": expected an IPv4 value as indicated by `ipFamilies[0]`']
    s = svc({"clusterIP": "10.96.0.3", "ipFamilies": ["IPv5"], "ipFamilyPolicy": "Dual", "ports": [{"port": 80}]})
    assert msgs(s) == ['spec.ipFamilies[0]: Unsupported value: "IPv5": supported values: "IPv4", "IPv6"',
                       'spec.ipFamilyPolicy: Unsupported value: "Dual": supported values: "PreferDualStack", "RequireDualStack", "SingleStack"']


def test_external_ips():
    s = svc({"externalIPs": ["10.240.0.7", "127.0.0.1", "169.254.1.1", "nope"], "ports": [{"port": 80}]})
    assert s["spec"]["externalTrafficPolicy"] == "Cluster"
    assert msgs(s) == [
        'spec.externalIPs[1]: Invalid value: "127.0.0.1": may not be in the loopback range (127.0.0.0/8, ::1/128)',
        'spec.externalIPs[2]: Invalid value: "169.254.1.1": may not be in the link-local range (169.254.0.0/16, fe80::/10)',
        'spec.externalIPs[3]: Invalid value: "nope": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)']


def test_load_balancer_source_ranges():
    s = svc({"loadBalancerSourceRanges": ["10.0.0.0/8"], "ports": [{"port": 80}]})
    assert msgs(s) == ["spec.LoadBalancerSourceRanges: Forbidden: may only be used when `type` is 'LoadBalancer'"]
    s = svc({"type": "LoadBalancer", "loadBalancerSourceRanges": [" 10.0.0.0/8 ", "x"], "ports": [{"port": 80}]})
    assert msgs(s) == ['spec.LoadBalancerSourceRanges[1]: Invalid value: "x": must be a valid CIDR value, '
                       '(e.g. 10.9.8.0/24 or 2001:db8::/64)']


def test_traffic_policies():
    s = svc({"externalTrafficPolicy": "Local", "ports": [{"port": 80}]})
    assert msgs(s) == ['spec.externalTrafficPolicy: Invalid value: "Local": may only be set for externally-accessible services']
    s = svc({"type": "NodePort", "externalTrafficPolicy": "Foo", "ports": [{"port": 80}]})
    assert msgs(s) == ['spec.externalTrafficPolicy: Unsupported value: "Foo": supported values: "Cluster", "Local"']
    s = svc({"internalTrafficPolicy": "Foo", "ports": [{"port": 80}]})
    assert msgs(s) == ['spec.internalTrafficPolicy: Unsupported value: "Foo": supported values: "Cluster", "Local"']
    s = svc({"healthCheckNodePort": 30000, "type": "NodePort", "ports": [{"port": 80}]})
    assert msgs(s) == ["spec.healthCheckNodePort: Invalid value: 30000: may only be set when `type` is "
                       "'LoadBalancer' and `externalTrafficPolicy` is 'Local'"]


def test_allocate_lb_node_ports_and_lb_class():
    s = svc({"allocateLoadBalancerNodePorts": True, "ports": [{"port": 80}]})
    assert msgs(s) == ["spec.allocateLoadBalancerNodePorts: Forbidden: may only be used when `type` is 'LoadBalancer'"]
    s = svc({"loadBalancerClass": "example.com/x", "ports": [{"port": 80}]})
    assert msgs(s) == ["spec.loadBalancerClass: Forbidden: may only be used when service type is 'LoadBalancer'"]


def test_selector_labels():
    s = svc({"selector": {"app": "bad value"}, "ports": [{"port": 80}]})
    assert msgs(s)[0].startswith('spec.selector: Invalid value: "bad value": a valid label must be')


def test_update_immutables():
    old = svc({"selector": {"a": "b"}, "clusterIP": "10.96.0.20", "ports": [{"port": 80}]})
    old["spec"].update(ipFamilies=["IPv4"], ipFamilyPolicy="SingleStack")
    new = copy.deepcopy(old)
    new["metadata"]["name"] = "other"
    assert 'metadata.name: Invalid value: "other": field is immutable' in msgs(new, old)
    new = copy.deepcopy(old)
    new["spec"]["clusterIP"] = ""
    new["spec"]["clusterIPs"] = []
    assert msgs(new, old) == ['spec.clusterIPs[0]: Invalid value: []string{}: primary clusterIP can not be unset']
    # type change to ExternalName is exempt
    new = copy.deepcopy(old)
    new["spec"] = {"type": "ExternalName", "externalName": "x.example.com", "sessionAffinity": "None"}
    assert msgs(new, old) == []


def test_lb_class_immutable_on_update():
    old = svc({"type": "LoadBalancer", "loadBalancerClass": "example.com/a", "ports": [{"port": 80}]})
    new = copy.deepcopy(old)
    new["spec"]["loadBalancerClass"] = "example.com/b"
    assert msgs(new, old) == ['spec.loadBalancerClass: Invalid value: "example.com/b": may not change once set']


def test_invalid_status_message_format():
    s = svc({"type": "NodePort", "ports": [{"port": 80, "nodePort": 30080}, {"port": 80, "nodePort": 30080}]})
    err = errors.invalid("Service", "", "web", validate(SVC, s))
    assert err.code == 422
    assert err.message.startswith('Service "web" is invalid: [spec.ports[0].name: Required value, ')


def test_status_subresource():
    s = svc()
    s["status"] = {"loadBalancer": {"ingress": [{"ip": "203.0.113.1", "ipMode": "VIP"}]}}
    assert [str(e) for e in validate(SVC, s, s, subresource="status")] == [
        "status.loadBalancer.ingress[0]: Forbidden: may only be used when `spec.type` is 'LoadBalancer'"]
