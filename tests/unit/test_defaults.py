import copy

import pytest

from tinykube.api import defaults
from tinykube.api.resources import get
from tinykube.api.validation import validate


def d(plural, obj, group="", old=None):
    defaults.apply_defaults(get(plural, group), obj, old)
    return obj


def test_service_defaults_cluster_ip():
    s = d("services", {"metadata": {"name": "s", "namespace": "default"},
                       "spec": {"ports": [{"port": 8080}], "status": None}})
    sp = s["spec"]
    assert sp["type"] == "ClusterIP" and sp["sessionAffinity"] == "None"
    assert sp["ports"][0] == {"port": 8080, "protocol": "TCP", "targetPort": 8080}
    assert sp["internalTrafficPolicy"] == "Cluster"
    assert "externalTrafficPolicy" not in sp and "allocateLoadBalancerNodePorts" not in sp
    assert s["status"] == {"loadBalancer": {}}


def test_service_defaults_lb_and_affinity():
    s = d("services", {"metadata": {"name": "s", "namespace": "default"},
                       "spec": {"type": "LoadBalancer", "sessionAffinity": "ClientIP",
                                "ports": [{"port": 80, "targetPort": "http"}]}})
    sp = s["spec"]
    assert sp["externalTrafficPolicy"] == "Cluster" and sp["allocateLoadBalancerNodePorts"] is True
    assert sp["sessionAffinityConfig"] == {"clientIP": {"timeoutSeconds": 10800}}
    assert sp["ports"][0]["targetPort"] == "http"


def test_service_none_affinity_drops_config_and_headless_syncs_cluster_ips():
    s = d("services", {"metadata": {"name": "s", "namespace": "default"},
                       "spec": {"clusterIP": "None", "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 5}}}})
    assert "sessionAffinityConfig" not in s["spec"]
    assert s["spec"]["clusterIPs"] == ["None"]


def test_external_name_gets_no_traffic_policies():
    s = d("services", {"metadata": {"name": "s", "namespace": "default"},
                       "spec": {"type": "ExternalName", "externalName": "x.example.com"}})
    assert "internalTrafficPolicy" not in s["spec"] and "externalTrafficPolicy" not in s["spec"]


@pytest.mark.parametrize("image,policy", [
    ("nginx", "Always"), ("nginx:latest", "Always"), ("nginx:1.16", "IfNotPresent"),
    ("localhost:5000/app", "Always"), ("localhost:5000/app:v1", "IfNotPresent"),
    ("busybox@sha256:" + "a" * 64, "IfNotPresent")])
def test_image_pull_policy(image, policy):
    assert defaults.image_pull_policy(image) == policy


def test_pod_defaults():
    p = d("pods", {"metadata": {"name": "p", "namespace": "default"},
                   "spec": {"containers": [{"name": "c", "image": "nginx:1.16", "ports": [{"containerPort": 80}],
                                            "readinessProbe": {"httpGet": {"port": 80}},
                                            "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}],
                            "volumes": [{"name": "v"}, {"name": "cm", "configMap": {"name": "x"}}]}})
    sp = p["spec"]
    assert sp["restartPolicy"] == "Always" and sp["dnsPolicy"] == "ClusterFirst"
    assert sp["terminationGracePeriodSeconds"] == 30 and sp["schedulerName"] == "default-scheduler"
    assert sp["enableServiceLinks"] is True and sp["securityContext"] == {}
    assert sp["serviceAccountName"] == "default" == sp["serviceAccount"]
    c = sp["containers"][0]
    assert c["imagePullPolicy"] == "IfNotPresent"
    assert c["terminationMessagePath"] == "/dev/termination-log" and c["terminationMessagePolicy"] == "File"
    assert c["ports"][0]["protocol"] == "TCP"
    assert c["readinessProbe"] == {"httpGet": {"port": 80, "path": "/", "scheme": "HTTP"}, "timeoutSeconds": 1,
                                   "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3}
    assert c["resources"]["requests"] == {"cpu": "1", "memory": "1Gi"}
    assert sp["volumes"][0]["emptyDir"] == {} and sp["volumes"][1]["configMap"]["defaultMode"] == 420
    assert p["status"] == {"phase": "Pending", "qosClass": "Guaranteed"}
    assert {t["key"] for t in sp["tolerations"]} == {"node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"}
    assert validate(get("pods"), p) == []


def test_host_network_pod_gets_host_ports():
    p = d("pods", {"metadata": {"name": "p", "namespace": "default"},
                   "spec": {"hostNetwork": True, "containers": [{"name": "c", "image": "x", "ports": [{"containerPort": 8080}]}]}})
    assert p["spec"]["containers"][0]["ports"][0]["hostPort"] == 8080


def test_deployment_defaults_and_generation():
    dep = d("deployments", {"metadata": {"name": "x", "namespace": "default"},
                            "spec": {"selector": {"matchLabels": {"a": "b"}},
                                     "template": {"metadata": {"labels": {"a": "b"}},
                                                  "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}, "apps")
    sp = dep["spec"]
    assert sp["replicas"] == 1 and sp["revisionHistoryLimit"] == 10 and sp["progressDeadlineSeconds"] == 600
    assert sp["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}}
    ts = sp["template"]["spec"]
    assert ts["restartPolicy"] == "Always" and ts["containers"][0]["imagePullPolicy"] == "Always"
    assert "enableServiceLinks" not in ts and "serviceAccountName" not in ts
    assert dep["metadata"]["generation"] == 1
    assert validate(get("deployments", "apps"), dep) == []
    new = copy.deepcopy(dep)
    new["spec"]["replicas"] = 3
    d("deployments", new, "apps", old=dep)
    assert new["metadata"]["generation"] == 2
    same = copy.deepcopy(new)
    d("deployments", same, "apps", old=new)
    assert same["metadata"]["generation"] == 2


def test_recreate_strategy_has_no_rolling_update():
    dep = d("deployments", {"metadata": {"name": "x", "namespace": "default"},
                            "spec": {"strategy": {"type": "Recreate"}, "template": {"spec": {"containers": []}}}}, "apps")
    assert dep["spec"]["strategy"] == {"type": "Recreate"}


def test_statefulset_daemonset_replicaset_defaults():
    sts = d("statefulsets", {"metadata": {"name": "w", "namespace": "default"}, "spec": {"template": {"spec": {}}}}, "apps")
    sp = sts["spec"]
    assert sp["replicas"] == 1 and sp["podManagementPolicy"] == "OrderedReady" and sp["revisionHistoryLimit"] == 10
    assert sp["updateStrategy"] == {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}
    assert sp["persistentVolumeClaimRetentionPolicy"] == {"whenDeleted": "Retain", "whenScaled": "Retain"}
    ds = d("daemonsets", {"metadata": {"name": "w", "namespace": "default"}, "spec": {"template": {"spec": {}}}}, "apps")
    assert ds["spec"]["updateStrategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}
    rs = d("replicasets", {"metadata": {"name": "w", "namespace": "default"}, "spec": {"template": {"spec": {}}}}, "apps")
    assert rs["spec"]["replicas"] == 1


def test_namespace_secret_endpoints_slices():
    ns = d("namespaces", {"metadata": {"name": "dev"}})
    assert ns["spec"] == {"finalizers": ["kubernetes"]} and ns["status"] == {"phase": "Active"}
    assert ns["metadata"]["labels"] == {"kubernetes.io/metadata.name": "dev"}
    sec = d("secrets", {"metadata": {"name": "s", "namespace": "default"}})
    assert sec["type"] == "Opaque"
    ep = d("endpoints", {"metadata": {"name": "e", "namespace": "default"},
                         "subsets": [{"addresses": [{"ip": "10.0.0.1"}], "ports": [{"port": 80}]}]})
    assert ep["subsets"][0]["ports"][0]["protocol"] == "TCP"
    es = d("endpointslices", {"metadata": {"name": "e", "namespace": "default"}, "addressType": "IPv4",
                              "ports": [{"port": 80}]}, "discovery.k8s.io")
    assert es["ports"][0] == {"port": 80, "name": "", "protocol": "TCP"}


def test_ingress_path_type_not_defaulted():
    i = d("ingresses", {"metadata": {"name": "i", "namespace": "default"},
                        "spec": {"rules": [{"http": {"paths": [{"path": "/", "backend": {}}]}}]}}, "networking.k8s.io")
    assert "pathType" not in i["spec"]["rules"][0]["http"]["paths"][0]
    assert i["metadata"]["generation"] == 1


def test_service_update_preparation_keeps_and_drops():
    old = {"metadata": {"name": "s", "namespace": "default"},
           "spec": {"type": "NodePort", "clusterIP": "10.96.5.5", "clusterIPs": ["10.96.5.5"],
                    "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack", "externalTrafficPolicy": "Cluster",
                    "internalTrafficPolicy": "Cluster", "sessionAffinity": "None",
                    "ports": [{"name": "h", "port": 80, "protocol": "TCP", "targetPort": 80, "nodePort": 30080}]}}
    new = {"metadata": {"name": "s", "namespace": "default"},
           "spec": {"type": "NodePort", "ports": [{"name": "h", "port": 80}]}}
    d("services", new, old=old)
    assert new["spec"]["clusterIPs"] == ["10.96.5.5"] and new["spec"]["ports"][0]["nodePort"] == 30080
    to_en = copy.deepcopy(old)
    to_en["spec"]["type"] = "ExternalName"
    to_en["spec"]["externalName"] = "a.example.com"
    d("services", to_en, old=old)
    assert not {"clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy", "externalTrafficPolicy"} & set(to_en["spec"])
    assert "nodePort" not in to_en["spec"]["ports"][0]
    assert validate(get("services"), to_en, old) == []
