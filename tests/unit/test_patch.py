import copy
import json

import pytest
from hypothesis import given, strategies as st

from tinykube.api.errors import ApiError
from tinykube.api.patch import apply_patch, merge_patch, server_side_apply, strategic_merge

SMP = "application/strategic-merge-patch+json"
MERGE = "application/merge-patch+json"
JSONP = "application/json-patch+json"
APPLY = "application/apply-patch+yaml"


def smp(obj, patch):
    before = copy.deepcopy(obj)
    out = apply_patch(obj, json.dumps(patch).encode(), SMP)
    assert obj == before, "current object must not be modified"
    return out


SVC = {
    "apiVersion": "v1", "kind": "Service",
    "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web", "tier": "fe"},
                 "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"}},
    "spec": {"selector": {"app": "web"}, "type": "ClusterIP", "clusterIP": "10.96.0.13",
             "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080}]},
}

DEPLOY = {
    "apiVersion": "apps/v1", "kind": "Deployment",
    "metadata": {"name": "web", "namespace": "default", "finalizers": ["a", "b"]},
    "spec": {
        "replicas": 2,
        "selector": {"matchLabels": {"app": "web"}},
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
        "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [
                {"name": "nginx", "image": "nginx:1.25", "ports": [{"containerPort": 80, "protocol": "TCP"}],
                 "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                 "args": ["-x", "-y"]},
                {"name": "sidecar", "image": "busybox"},
            ]},
        },
    },
    "status": {"conditions": [{"type": "Available", "status": "True"},
                              {"type": "Progressing", "status": "True"}]},
}

POD = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
       "spec": {"containers": [{"name": "a", "image": "nginx"}, {"name": "b", "image": "busybox"}],
                "volumes": [{"name": "data", "emptyDir": {}}], "tolerations": [{"key": "x"}]},
       "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "True"}]}}


# ---- strategic merge: the patches kubectl really sends ----

def test_service_port_change_from_kubectl_apply():
    # recorded from kubectl 1.33 (kubectl-protocol.md §4.1)
    patch = {"metadata": {"annotations": {"kubectl.kubernetes.io/last-applied-configuration": "NEW"}},
             "spec": {"$setElementOrder/ports": [{"port": 81}],
                      "ports": [{"name": "http", "port": 81, "targetPort": 8080}, {"$patch": "delete", "port": 80}]}}
    out = smp(SVC, patch)
    assert out["spec"]["ports"] == [{"name": "http", "port": 81, "targetPort": 8080}]
    assert out["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"] == "NEW"
    assert out["spec"]["clusterIP"] == "10.96.0.13" and out["metadata"]["labels"] == SVC["metadata"]["labels"]


def test_service_ports_merge_by_port():
    svc = copy.deepcopy(SVC)
    svc["spec"]["ports"].append({"name": "https", "port": 443, "protocol": "TCP", "targetPort": 8443})
    out = smp(svc, {"spec": {"ports": [{"port": 443, "targetPort": 9443}]}})
    assert out["spec"]["ports"][1] == {"name": "https", "port": 443, "protocol": "TCP", "targetPort": 9443}
    assert out["spec"]["ports"][0] == SVC["spec"]["ports"][0]
    out = smp(svc, {"spec": {"ports": [{"port": 8000, "name": "alt"}]}})
    assert [p["port"] for p in out["spec"]["ports"]] == [80, 443, 8000]


def test_set_element_order_reorders():
    svc = copy.deepcopy(SVC)
    svc["spec"]["ports"].append({"name": "https", "port": 443})
    out = smp(svc, {"spec": {"$setElementOrder/ports": [{"port": 443}, {"port": 80}],
                             "ports": [{"port": 443, "targetPort": 1}]}})
    assert [p["port"] for p in out["spec"]["ports"]] == [443, 80]
    assert out["spec"]["ports"][0]["targetPort"] == 1


def test_set_element_order_keeps_server_only_items_in_place():
    svc = copy.deepcopy(SVC)
    svc["spec"]["ports"] = [{"port": 1}, {"port": 2}, {"port": 3}]
    out = smp(svc, {"spec": {"$setElementOrder/ports": [{"port": 3}, {"port": 1}]}})
    assert [p["port"] for p in out["spec"]["ports"]] == [3, 2, 1]


def test_label_removal_with_null():
    out = smp(SVC, {"metadata": {"labels": {"tier": None, "new": "x"}}})
    assert out["metadata"]["labels"] == {"app": "web", "new": "x"}
    out = apply_patch(SVC, b'{"metadata":{"labels":{"tier":null}}}', MERGE)
    assert out["metadata"]["labels"] == {"app": "web"}


def test_deployment_strategy_retain_keys():
    # kubectl apply switching RollingUpdate -> Recreate
    out = smp(DEPLOY, {"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": None, "type": "Recreate"}}})
    assert out["spec"]["strategy"] == {"type": "Recreate"}
    # and back, with retainKeys listing both
    out2 = smp(out, {"spec": {"strategy": {"$retainKeys": ["rollingUpdate", "type"], "type": "RollingUpdate",
                                           "rollingUpdate": {"maxSurge": 1}}}})
    assert out2["spec"]["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}


def test_retain_keys_drops_unlisted_keys_without_null():
    out = smp(DEPLOY, {"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}})
    assert out["spec"]["strategy"] == {"type": "Recreate"}


def test_container_image_change_kubectl_set_image():
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "nginx", "image": "nginx:1.27"}]}}}}
    out = smp(DEPLOY, patch)
    c = out["spec"]["template"]["spec"]["containers"]
    assert [x["name"] for x in c] == ["nginx", "sidecar"]
    assert c[0]["image"] == "nginx:1.27" and c[0]["env"] == DEPLOY["spec"]["template"]["spec"]["containers"][0]["env"]
    assert c[1] == {"name": "sidecar", "image": "busybox"}


def test_kubectl_apply_container_change_with_order():
    patch = {"spec": {"template": {"spec": {
        "$setElementOrder/containers": [{"name": "nginx"}, {"name": "sidecar"}],
        "containers": [{"$setElementOrder/env": [{"name": "A"}, {"name": "C"}],
                        "env": [{"name": "C", "value": "3"}, {"$patch": "delete", "name": "B"}],
                        "image": "nginx:1.26", "name": "nginx"}]}}}}
    out = smp(DEPLOY, patch)
    c0 = out["spec"]["template"]["spec"]["containers"][0]
    assert c0["env"] == [{"name": "A", "value": "1"}, {"name": "C", "value": "3"}]
    assert c0["image"] == "nginx:1.26"


def test_rollout_restart_annotation():
    out = smp(DEPLOY, {"spec": {"template": {"metadata": {"annotations": {
        "kubectl.kubernetes.io/restartedAt": "2024-01-01T00:00:00Z"}}}}})
    assert out["spec"]["template"]["metadata"] == {
        "labels": {"app": "web"}, "annotations": {"kubectl.kubernetes.io/restartedAt": "2024-01-01T00:00:00Z"}}


def test_set_env_merges_by_name():
    out = smp(DEPLOY, {"spec": {"template": {"spec": {"containers": [
        {"name": "nginx", "env": [{"name": "B", "value": "20"}, {"name": "Z", "value": "9"}]}]}}}})
    env = out["spec"]["template"]["spec"]["containers"][0]["env"]
    assert env == [{"name": "A", "value": "1"}, {"name": "B", "value": "20"}, {"name": "Z", "value": "9"}]


def test_lists_without_strategy_are_replaced():
    out = smp(DEPLOY, {"spec": {"template": {"spec": {"containers": [{"name": "nginx", "args": ["-z"]}]}}}})
    assert out["spec"]["template"]["spec"]["containers"][0]["args"] == ["-z"]
    out = smp(POD, {"spec": {"tolerations": [{"key": "y"}]}})
    assert out["spec"]["tolerations"] == [{"key": "y"}]


def test_container_ports_merge_by_container_port():
    out = smp(DEPLOY, {"spec": {"template": {"spec": {"containers": [
        {"name": "nginx", "ports": [{"containerPort": 80, "name": "http"}, {"containerPort": 443}]}]}}}})
    assert out["spec"]["template"]["spec"]["containers"][0]["ports"] == [
        {"containerPort": 80, "protocol": "TCP", "name": "http"}, {"containerPort": 443}]


def test_pod_container_delete_directive():
    out = smp(POD, {"spec": {"containers": [{"$patch": "delete", "name": "b"}]}})
    assert out["spec"]["containers"] == [{"name": "a", "image": "nginx"}]


def test_list_replace_directive():
    out = smp(POD, {"spec": {"containers": [{"name": "c", "image": "x"}, {"$patch": "replace"}]}})
    assert out["spec"]["containers"] == [{"name": "c", "image": "x"}]


def test_map_replace_and_delete_directives():
    out = smp(SVC, {"metadata": {"labels": {"$patch": "replace", "only": "this"}}})
    assert out["metadata"]["labels"] == {"only": "this"}
    out = smp(SVC, {"spec": {"selector": {"$patch": "delete"}}})
    assert "selector" not in out["spec"]
    out = smp(SVC, {"metadata": {"labels": {"$patch": "merge", "x": "y"}}})
    assert out["metadata"]["labels"] == {"app": "web", "tier": "fe", "x": "y"}


def test_volumes_merge_with_retain_keys():
    out = smp(POD, {"spec": {"volumes": [{"name": "data", "$retainKeys": ["configMap", "name"],
                                          "configMap": {"name": "cm"}}]}})
    assert out["spec"]["volumes"] == [{"name": "data", "configMap": {"name": "cm"}}]


def test_finalizers_are_a_set():
    out = smp(DEPLOY, {"metadata": {"finalizers": ["b", "c"]}})
    assert out["metadata"]["finalizers"] == ["a", "b", "c"]
    out = smp(DEPLOY, {"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}})
    assert out["metadata"]["finalizers"] == ["b"]
    out = smp(DEPLOY, {"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"], "finalizers": ["z"]}})
    assert out["metadata"]["finalizers"] == ["b", "z"]


def test_owner_references_by_uid():
    obj = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "ownerReferences": [
        {"uid": "1", "name": "rs1", "kind": "ReplicaSet", "apiVersion": "apps/v1"}]}}
    out = smp(obj, {"metadata": {"ownerReferences": [{"uid": "1", "controller": True},
                                                     {"uid": "2", "name": "x", "kind": "K", "apiVersion": "v1"}]}})
    assert out["metadata"]["ownerReferences"][0]["controller"] is True
    assert [o["uid"] for o in out["metadata"]["ownerReferences"]] == ["1", "2"]


def test_status_conditions_merge_by_type():
    out = smp(POD, {"status": {"conditions": [{"type": "Ready", "status": "False"}]}})
    assert out["status"]["conditions"] == [{"type": "PodScheduled", "status": "True"},
                                           {"type": "Ready", "status": "False"}]
    out = smp(DEPLOY, {"status": {"conditions": [{"type": "Available", "status": "False"}]}})
    assert out["status"]["conditions"][0] == {"type": "Available", "status": "False"}
    assert len(out["status"]["conditions"]) == 2


def test_endpoints_subsets_replaced():
    ep = {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "e"},
          "subsets": [{"addresses": [{"ip": "10.0.0.1"}], "ports": [{"port": 80}]}]}
    out = smp(ep, {"subsets": [{"addresses": [{"ip": "10.0.0.2"}]}]})
    assert out["subsets"] == [{"addresses": [{"ip": "10.0.0.2"}]}]


def test_new_nested_object_is_cleaned_of_directives_and_nulls():
    out = smp(POD, {"spec": {"containers": [{"name": "c", "image": "x", "env": [{"name": "A", "value": None}],
                                             "$setElementOrder/env": [{"name": "A"}]}]}})
    assert out["spec"]["containers"][2] == {"name": "c", "image": "x", "env": [{"name": "A"}]}


def test_unknown_kind_uses_plain_merge_semantics():
    obj = {"apiVersion": "example.com/v1", "kind": "Foo", "spec": {"items": [{"name": "a", "v": 1}]}}
    out = smp(obj, {"spec": {"items": [{"name": "a", "w": 2}]}})
    assert out["spec"]["items"] == [{"name": "a", "w": 2}]


def test_missing_merge_key_is_an_error():
    with pytest.raises(ApiError) as ei:
        smp(POD, {"spec": {"containers": [{"image": "x"}]}})
    assert ei.value.code == 500
    assert ei.value.message == "map: map[image:x] does not contain declared merge key: name"


def test_smp_bad_bodies():
    with pytest.raises(ApiError) as ei:
        apply_patch(SVC, b"{not json", SMP)
    assert ei.value.code == 400 and ei.value.reason == "BadRequest"
    assert ei.value.message == "invalid character 'n' looking for beginning of object key string"
    with pytest.raises(ApiError) as ei:
        apply_patch(SVC, b"[]", SMP)
    assert ei.value.message == "json: cannot unmarshal array into Go value of type map[string]interface {}"
    with pytest.raises(ApiError) as ei:
        apply_patch(SVC, b'{"a":', SMP)
    assert ei.value.message == "unexpected end of JSON input"
    with pytest.raises(ApiError) as ei:
        smp(SVC, {"metadata": {"$patch": "explode"}})
    assert ei.value.code == 400


# ---- merge patch ----

def test_merge_patch_replaces_lists_and_merges_maps():
    out = apply_patch(DEPLOY, json.dumps({"spec": {"replicas": 3, "template": {"spec": {"containers": [
        {"name": "only"}]}}}}).encode(), MERGE)
    assert out["spec"]["replicas"] == 3
    assert out["spec"]["template"]["spec"]["containers"] == [{"name": "only"}]
    assert out["spec"]["selector"] == DEPLOY["spec"]["selector"]


def test_kubectl_scale_patch():
    scale = {"kind": "Scale", "apiVersion": "autoscaling/v1", "metadata": {"name": "web"},
             "spec": {"replicas": 1}, "status": {"replicas": 1, "selector": "app=web"}}
    out = apply_patch(scale, b'{"spec":{"replicas":3}}', MERGE + "; charset=utf-8")
    assert out["spec"] == {"replicas": 3} and out["status"] == scale["status"]


def test_merge_patch_bad_body():
    for body in (b"nope", b"[1]"):
        with pytest.raises(ApiError) as ei:
            apply_patch(SVC, body, MERGE)
        assert (ei.value.code, ei.value.message) == (400, "Invalid JSON Patch")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=3),
    lambda ch: st.lists(ch, max_size=3) | st.dictionaries(st.text(max_size=2), ch, max_size=3),
    max_leaves=10)
json_objects = st.dictionaries(st.text(max_size=2), json_values, max_size=4)


def _no_nulls(v):
    if isinstance(v, dict):
        return all(x is not None and _no_nulls(x) for x in v.values())
    if isinstance(v, list):
        return all(_no_nulls(x) for x in v)
    return True


@given(json_objects, json_objects)
def test_merge_patch_properties(target, patch):
    out = merge_patch(target, patch)
    for k, v in patch.items():
        if v is None:
            assert k not in out
        elif not isinstance(v, dict):
            assert out[k] == v
    for k, v in target.items():
        if k not in patch:
            assert out[k] == v
    # idempotent
    assert merge_patch(out, patch) == out
    # a null-free patch applied to {} is the patch itself (top-level)
    if _no_nulls(patch):
        assert merge_patch({}, patch) == patch


@given(json_objects)
def test_merge_patch_empty_is_identity(target):
    assert merge_patch(target, {}) == target


@given(json_objects, json_objects)
def test_smp_equals_merge_patch_for_unknown_kinds_without_directives(target, patch):
    patch = {k.replace("$", "_"): v for k, v in patch.items()}

    def clean(v):
        if isinstance(v, dict):
            return {k.replace("$", "_"): clean(x) for k, x in v.items()}
        if isinstance(v, list):
            return [clean(x) for x in v]
        return v
    patch = clean(patch)
    assert strategic_merge(target, patch, "NoSuchType") == merge_patch(target, patch) or \
        _has_list_with_nulls(patch)


def _has_list_with_nulls(v):
    if isinstance(v, dict):
        return any(_has_list_with_nulls(x) for x in v.values())
    if isinstance(v, list):
        return not _no_nulls(v) or any(_has_list_with_nulls(x) for x in v)
    return False


# ---- json patch ----

def test_json_patch_ops():
    ops = [{"op": "replace", "path": "/spec/replicas", "value": 5},
           {"op": "add", "path": "/metadata/labels", "value": {"a": "b"}},
           {"op": "add", "path": "/spec/template/spec/containers/0/args/-", "value": "--v=2"},
           {"op": "remove", "path": "/status"},
           {"op": "test", "path": "/metadata/name", "value": "web"}]
    out = apply_patch(DEPLOY, json.dumps(ops).encode(), JSONP)
    assert out["spec"]["replicas"] == 5 and out["metadata"]["labels"] == {"a": "b"}
    assert out["spec"]["template"]["spec"]["containers"][0]["args"] == ["-x", "-y", "--v=2"]
    assert "status" not in out and "status" in DEPLOY


@pytest.mark.parametrize("ops", [
    [{"op": "test", "path": "/metadata/name", "value": "other"}],
    [{"op": "replace", "path": "/spec/nope/x", "value": 1}],
    [{"op": "remove", "path": "/metadata/labels/none"}],
    [{"op": "frobnicate", "path": "/x"}],
])
def test_json_patch_that_does_not_apply_is_422(ops):
    with pytest.raises(ApiError) as ei:
        apply_patch(DEPLOY, json.dumps(ops).encode(), JSONP)
    assert (ei.value.code, ei.value.reason) == (422, "Invalid")
    assert ei.value.message == "the server rejected our request due to an error in our request"


def test_json_patch_malformed_is_400():
    with pytest.raises(ApiError) as ei:
        apply_patch(DEPLOY, b'{"op":"add"}', JSONP)
    assert (ei.value.code, ei.value.message) == (
        400, "json: cannot unmarshal object into Go value of type jsonpatch.Patch")
    with pytest.raises(ApiError) as ei:
        apply_patch(DEPLOY, b"[", JSONP)
    assert ei.value.code == 400 and ei.value.message == "unexpected end of JSON input"


def test_unsupported_patch_type():
    with pytest.raises(ApiError) as ei:
        apply_patch(SVC, b"{}", "application/json")
    assert ei.value.code == 415 and ei.value.reason == "UnsupportedMediaType"


# ---- server-side apply ----

def test_ssa_create():
    applied = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "labels": None},
               "spec": {"ports": [{"port": 80}]}}
    assert server_side_apply(None, applied) == {"apiVersion": "v1", "kind": "Service",
                                                "metadata": {"name": "web"}, "spec": {"ports": [{"port": 80}]}}


def test_ssa_service_ports_keyed_by_port_and_protocol():
    svc = copy.deepcopy(SVC)
    applied = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "labels": {"new": "1"}},
               "spec": {"ports": [{"port": 80, "targetPort": 9090}, {"port": 80, "protocol": "UDP"}]}}
    out = server_side_apply(svc, applied)
    assert out["spec"]["ports"] == [
        {"name": "http", "port": 80, "protocol": "TCP", "targetPort": 9090},
        {"port": 80, "protocol": "UDP"}]
    assert out["metadata"]["labels"] == {"app": "web", "tier": "fe", "new": "1"}
    assert out["spec"]["clusterIP"] == "10.96.0.13"


def test_ssa_containers_and_env_by_name_atomic_args():
    applied = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
               "spec": {"replicas": 3, "template": {"spec": {"containers": [
                   {"name": "nginx", "image": "nginx:2", "env": [{"name": "B", "value": "x"}], "args": ["-n"]}]}}}}
    out = server_side_apply(copy.deepcopy(DEPLOY), applied)
    c = out["spec"]["template"]["spec"]["containers"]
    assert [x["name"] for x in c] == ["nginx", "sidecar"]
    assert c[0]["image"] == "nginx:2" and c[0]["args"] == ["-n"]
    assert c[0]["env"] == [{"name": "A", "value": "1"}, {"name": "B", "value": "x"}]
    assert out["spec"]["replicas"] == 3


def test_ssa_atomic_lists_replaced():
    ep = {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "e"},
          "subsets": [{"addresses": [{"ip": "10.0.0.1"}]}]}
    out = server_side_apply(ep, {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "e"},
                                 "subsets": [{"addresses": [{"ip": "10.0.0.2"}]}]})
    assert out["subsets"] == [{"addresses": [{"ip": "10.0.0.2"}]}]


def test_ssa_via_apply_patch_yaml():
    body = b"apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  type: NodePort\n"
    out = apply_patch(SVC, body, APPLY)
    assert out["spec"]["type"] == "NodePort" and out["spec"]["ports"] == SVC["spec"]["ports"]
    # kubectl sends JSON, which is YAML
    out = apply_patch(SVC, json.dumps({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
                                       "spec": {"selector": {"app": "x"}}}).encode(), APPLY)
    assert out["spec"]["selector"] == {"app": "x"}
