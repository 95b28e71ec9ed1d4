import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tinykube.api import fields
from tinykube.api.errors import ApiError
from tinykube.api.fields import strict_error, type_error, unknown_fields
from tinykube.api.resources import RESOURCES

DEPLOY = {
    "apiVersion": "apps/v1", "kind": "Deployment",
    "metadata": {"name": "web", "labels": {"app": "web", "anything.io/x": "y"},
                 "annotations": {"a": "b"}},
    "spec": {
        "replicas": 2,
        "selector": {"matchLabels": {"app": "web"}},
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 1}},
        "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "nginx", "image": "nginx",
                                     "ports": [{"containerPort": 80}],
                                     "resources": {"limits": {"cpu": "500m", "memory": 128}},
                                     "env": [{"name": "A", "value": "1"}]}],
                     "nodeSelector": {"disk": "ssd"}},
        },
    },
    "status": {"replicas": 2, "conditions": [{"type": "Available", "status": "True"}]},
}

SVC = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
       "spec": {"selector": {"app": "web"},
                "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]}}


def test_schema_has_every_kind():
    s = fields.schema()
    for r in RESOURCES:
        assert f"{r.api_version}/{r.kind}" in s["kinds"], r.kind
    assert "autoscaling/v1/Scale" in s["kinds"] and "v1/DeleteOptions" in s["kinds"]


def test_schema_is_generated_file_up_to_date(tmp_path):
    # regenerating gives the committed file (the generator is deterministic)
    root = Path(__file__).resolve().parents[2]
    before = (root / "tinykube/api/schema.json").read_text()
    subprocess.run([sys.executable, str(root / "tools/gen_schema.py")], check=True, capture_output=True)
    assert (root / "tinykube/api/schema.json").read_text() == before


def test_server_does_not_import_kubernetes():
    code = ("import sys; import tinykube.api.fields as f, tinykube.api.patch, tinykube.api.selectors;"
            "f.schema(); assert 'kubernetes' not in sys.modules")
    root = Path(__file__).resolve().parents[2]
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root)


def test_valid_objects_have_no_unknown_fields():
    assert unknown_fields("apps/v1", "Deployment", DEPLOY) == []
    assert unknown_fields("v1", "Service", SVC) == []
    assert type_error("apps/v1", "Deployment", DEPLOY) is None
    assert type_error("v1", "Service", SVC) is None


def test_unknown_field_paths():
    d = copy.deepcopy(DEPLOY)
    d["spec"]["replica"] = 3
    d["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    d["metadata"]["foo"] = 1
    # document order, as the decoder meets them
    assert unknown_fields("apps/v1", "Deployment", d) == [
        "metadata.foo", "spec.template.spec.containers[0].imagePullPolicyy", "spec.replica"]


def test_free_form_maps_not_checked():
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"anything": "x"}}
    assert unknown_fields("v1", "ConfigMap", cm) == []
    cr = {"apiVersion": "apps/v1", "kind": "ControllerRevision", "metadata": {"name": "c"},
          "data": {"spec": {"whatever": 1}}, "revision": 1}
    assert unknown_fields("apps/v1", "ControllerRevision", cr) == []


def test_unknown_kind_is_not_checked():
    assert unknown_fields("example.com/v1", "Foo", {"spec": {"x": 1}}) == []
    assert type_error("example.com/v1", "Foo", {"spec": 1}) is None


def test_strict_mode():
    d = copy.deepcopy(DEPLOY)
    d["spec"]["replica"] = 3
    err, warns = strict_error("apps/v1", "Deployment", d, "Strict")
    assert isinstance(err, ApiError) and err.code == 400 and err.reason == "BadRequest"
    assert err.message == ('Deployment in version "v1" cannot be handled as a Deployment: '
                           'strict decoding error: unknown field "spec.replica"')
    assert warns == []


def test_strict_mode_several_fields_joined():
    s = copy.deepcopy(SVC)
    s["spec"]["foo"] = 1
    s["spec"]["ports"][0]["bar"] = 2
    err, _ = strict_error("v1", "Service", s, "Strict")
    assert err.message == ('Service in version "v1" cannot be handled as a Service: strict decoding error: '
                           'unknown field "spec.ports[0].bar", unknown field "spec.foo"')


def test_warn_mode_drops_and_warns():
    s = copy.deepcopy(SVC)
    s["spec"]["foo"] = 1
    err, warns = strict_error("v1", "Service", s, "Warn")
    assert err is None and warns == ['unknown field "spec.foo"']
    assert "foo" not in s["spec"]


def test_default_mode_is_warn():
    s = copy.deepcopy(SVC)
    s["spec"]["foo"] = 1
    assert strict_error("v1", "Service", s, None) == (None, ['unknown field "spec.foo"'])


def test_ignore_mode_drops_silently():
    d = copy.deepcopy(DEPLOY)
    d["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    err, warns = strict_error("apps/v1", "Deployment", d, "Ignore")
    assert err is None and warns == []
    assert d == DEPLOY


def test_bad_mode():
    err, _ = strict_error("v1", "Service", copy.deepcopy(SVC), "Loose")
    assert err.code == 400


@pytest.mark.parametrize("mutate,msg", [
    (lambda s: s["spec"]["ports"][0].__setitem__("port", "80"),
     "json: cannot unmarshal string into Go struct field ServicePort.spec.ports.port of type int32"),
    (lambda s: s["spec"].__setitem__("ports", {"port": 80}),
     "json: cannot unmarshal object into Go struct field ServiceSpec.spec.ports of type []v1.ServicePort"),
    (lambda s: s.__setitem__("spec", "x"),
     "json: cannot unmarshal string into Go struct field Service.spec of type v1.ServiceSpec"),
    (lambda s: s["metadata"].__setitem__("labels", {"a": 1}),
     "json: cannot unmarshal number into Go struct field ObjectMeta.metadata.labels of type string"),
    (lambda s: s["metadata"].__setitem__("name", True),
     "json: cannot unmarshal bool into Go struct field ObjectMeta.metadata.name of type string"),
    (lambda s: s["spec"]["ports"][0].__setitem__("port", 1.5),
     "json: cannot unmarshal number 1.5 into Go struct field ServicePort.spec.ports.port of type int32"),
    (lambda s: s["spec"]["ports"][0].__setitem__("port", 1 << 40),
     "json: cannot unmarshal number 1099511627776 into Go struct field ServicePort.spec.ports.port of type int32"),
    (lambda s: s["spec"]["ports"][0].__setitem__("targetPort", True),
     "json: cannot unmarshal bool into Go struct field ServicePort.spec.ports.targetPort of type int32"),
    (lambda s: s["spec"].__setitem__("externalIPs", "1.2.3.4"),
     "json: cannot unmarshal string into Go struct field ServiceSpec.spec.externalIPs of type []string"),
])
def test_type_errors(mutate, msg):
    s = copy.deepcopy(SVC)
    mutate(s)
    assert type_error("v1", "Service", s) == msg
    err, _ = strict_error("v1", "Service", s, "Ignore")
    assert err.code == 400
    assert err.message == f'Service in version "v1" cannot be handled as a Service: {msg}'


def test_int_or_string_and_quantity_accept_both():
    d = copy.deepcopy(DEPLOY)
    d["spec"]["strategy"]["rollingUpdate"] = {"maxSurge": 1, "maxUnavailable": "50%"}
    d["spec"]["template"]["spec"]["containers"][0]["resources"] = {"requests": {"cpu": 1, "memory": "1Gi"}}
    assert type_error("apps/v1", "Deployment", d) is None
    d["spec"]["replicas"] = "3"
    assert type_error("apps/v1", "Deployment", d) == (
        "json: cannot unmarshal string into Go struct field DeploymentSpec.spec.replicas of type int32")


def test_int64_and_nested_list_paths():
    d = copy.deepcopy(DEPLOY)
    d["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = "30"
    assert type_error("apps/v1", "Deployment", d) == (
        "json: cannot unmarshal string into Go struct field PodSpec.spec.template.spec."
        "terminationGracePeriodSeconds of type int64")
    d = copy.deepcopy(DEPLOY)
    d["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "80"
    assert type_error("apps/v1", "Deployment", d) == (
        "json: cannot unmarshal string into Go struct field ContainerPort.spec.template.spec.containers."
        "ports.containerPort of type int32")


def test_null_is_accepted():
    s = copy.deepcopy(SVC)
    s["spec"]["ports"][0]["port"] = None
    s["metadata"]["labels"] = None
    assert type_error("v1", "Service", s) is None


def test_scale_and_delete_options():
    assert unknown_fields("autoscaling/v1", "Scale", {"spec": {"replicas": 1, "x": 1}}) == ["spec.x"]
    assert unknown_fields("v1", "DeleteOptions",
                          {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background",
                           "gracePeriodSeconds": 0}) == []


def test_duplicate_fields_from_raw_body():
    body = (b'{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"a","name":"b","unknownMeta":1},'
            b'"spec":{"unknown1":1,"paused":true,"paused":false,'
            b'"template":{"spec":{"containers":[{"name":"c","unknownNested":1,"image":"x","image":"y"}]}}}}')
    obj = json.loads(body)
    err, _ = strict_error("apps/v1", "Deployment", obj, "Strict", body=body)
    assert err.message == (
        'Deployment in version "v1" cannot be handled as a Deployment: strict decoding error: '
        'duplicate field "metadata.name", unknown field "metadata.unknownMeta", unknown field "spec.unknown1", '
        'duplicate field "spec.paused", unknown field "spec.template.spec.containers[0].unknownNested", '
        'duplicate field "spec.template.spec.containers[0].image"')
    obj = json.loads(body)
    err, warns = strict_error("apps/v1", "Deployment", obj, "Warn", body=body)
    assert err is None and warns[0] == 'duplicate field "metadata.name"' and len(warns) == 6
    assert "unknownMeta" not in obj["metadata"]
    assert fields.strict_problems("v1", "ConfigMap", b'{"data":{"a":"1","a":"2"}}') == ['duplicate field "data.a"']
