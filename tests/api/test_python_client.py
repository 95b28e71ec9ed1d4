"""The official `kubernetes` Python client against a real `tinykube apiserver`."""
from __future__ import annotations

import threading
import uuid

import pytest
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException


@pytest.fixture(scope="module")
def api(apiserver):
    cfg = client.Configuration()
    config.load_kube_config(config_file=str(apiserver.kubeconfig), client_configuration=cfg)
    with client.ApiClient(cfg) as c:
        yield c


@pytest.fixture
def namespace(api):
    v1 = client.CoreV1Api(api)
    name = f"py-{uuid.uuid4().hex[:6]}"
    v1.create_namespace({"metadata": {"name": name}})
    yield name
    v1.delete_namespace(name)


def _svc(name: str, port: int = 80) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "labels": {"app": name}},
            "spec": {"selector": {"app": name}, "ports": [{"name": "http", "port": port, "targetPort": 8080}]}}


def test_create_list_read_delete(api, namespace):
    v1 = client.CoreV1Api(api)
    created = v1.create_namespaced_service(namespace, _svc("web"))
    assert created.spec.cluster_ip.startswith("10.")
    assert created.spec.ports[0].protocol == "TCP"
    names = [s.metadata.name for s in v1.list_namespaced_service(namespace).items]
    assert names == ["web"]
    assert v1.read_namespaced_service("web", namespace).spec.ports[0].target_port == 8080
    v1.delete_namespaced_service("web", namespace)
    with pytest.raises(ApiException) as e:
        v1.read_namespaced_service("web", namespace)
    assert e.value.status == 404
    assert '"reason":"NotFound"' in e.value.body.replace(" ", "")


def test_patch_types(api, namespace):
    v1 = client.CoreV1Api(api)
    v1.create_namespaced_service(namespace, _svc("p"))
    # a dict body is a strategic merge patch: ports merge by port
    v1.patch_namespaced_service("p", namespace, {"spec": {"ports": [{"name": "extra", "port": 81}]}})
    assert sorted(p.port for p in v1.read_namespaced_service("p", namespace).spec.ports) == [80, 81]
    # a list body is a JSON patch
    v1.patch_namespaced_service("p", namespace, [{"op": "replace", "path": "/metadata/labels/app", "value": "q"}])
    assert v1.read_namespaced_service("p", namespace).metadata.labels == {"app": "q"}
    # merge patch chosen explicitly replaces lists
    v1.patch_namespaced_service("p", namespace, {"metadata": {"labels": {"tier": "fe"}}},
                                _content_type="application/merge-patch+json")
    assert v1.read_namespaced_service("p", namespace).metadata.labels == {"app": "q", "tier": "fe"}


def test_watch_initial_then_changes_and_resume(api, namespace):
    v1 = client.CoreV1Api(api)
    v1.create_namespaced_service(namespace, _svc("w1"))
    w = watch.Watch()
    seen: list[tuple[str, str]] = []

    def mutate():
        v1.patch_namespaced_service("w1", namespace, {"metadata": {"labels": {"x": "1"}}})
        v1.delete_namespaced_service("w1", namespace)

    t = threading.Timer(0.5, mutate)
    t.start()
    for ev in w.stream(v1.list_namespaced_service, namespace, timeout_seconds=3):
        seen.append((ev["type"], ev["object"].metadata.name))
        if ev["type"] == "DELETED":
            w.stop()
    t.join()
    assert seen == [("ADDED", "w1"), ("MODIFIED", "w1"), ("DELETED", "w1")]

    # resume: a watch from a list's resourceVersion sees only what came after it
    rv = v1.list_namespaced_service(namespace).metadata.resource_version
    v1.create_namespaced_service(namespace, _svc("w2"))
    events = [(e["type"], e["object"].metadata.name)
              for e in watch.Watch().stream(v1.list_namespaced_service, namespace, resource_version=rv,
                                            timeout_seconds=1)]
    assert events == [("ADDED", "w2")]


def test_scale_deployment(api, namespace):
    apps = client.AppsV1Api(api)
    apps.create_namespaced_deployment(namespace, {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "d"}},
                 "template": {"metadata": {"labels": {"app": "d"}},
                              "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}})
    scale = apps.patch_namespaced_deployment_scale("d", namespace, {"spec": {"replicas": 4}})
    assert scale.spec.replicas == 4
    assert apps.read_namespaced_deployment_scale("d", namespace).status.selector == "app=d"
    assert apps.read_namespaced_deployment("d", namespace).spec.replicas == 4


def test_events_list_validates(api, namespace):
    v1 = client.CoreV1Api(api)
    v1.create_namespaced_event(namespace, {
        "metadata": {"name": "e1"}, "involvedObject": {"kind": "Pod", "name": "x", "namespace": namespace},
        "reason": "Test", "message": "hello", "type": "Normal"})
    evs = v1.list_namespaced_event(namespace).items
    assert [e.reason for e in evs] == ["Test"]
    ev2 = client.EventsV1Api(api).list_namespaced_event(namespace).items
    assert [e.note for e in ev2] == ["hello"]


def test_generate_name_and_delete_collection(api, namespace):
    v1 = client.CoreV1Api(api)
    made = [v1.create_namespaced_config_map(namespace, {"metadata": {"generateName": "cfg-", "labels": {"k": "v"}}})
            for _ in range(3)]
    names = [m.metadata.name for m in made]
    assert all(n.startswith("cfg-") and len(n) == 9 for n in names) and len(set(names)) == 3
    v1.create_namespaced_config_map(namespace, {"metadata": {"name": "other"}})
    v1.delete_collection_namespaced_config_map(namespace, label_selector="k=v")
    assert [c.metadata.name for c in v1.list_namespaced_config_map(namespace).items] == ["other"]


def test_label_and_field_selectors(api, namespace):
    v1 = client.CoreV1Api(api)
    for name, tier in (("a", "fe"), ("b", "be"), ("c", "fe")):
        v1.create_namespaced_config_map(namespace, {"metadata": {"name": name, "labels": {"tier": tier}}})
    sel = lambda **kw: sorted(c.metadata.name for c in v1.list_namespaced_config_map(namespace, **kw).items)  # noqa: E731
    assert sel(label_selector="tier=fe") == ["a", "c"]
    assert sel(label_selector="tier in (be),!missing") == ["b"]
    assert sel(field_selector="metadata.name!=a") == ["b", "c"]
    assert sel(label_selector="tier=fe", field_selector="metadata.name=c") == ["c"]


def test_namespace_deletion_removes_contents(api):
    v1 = client.CoreV1Api(api)
    v1.create_namespace({"metadata": {"name": "doomed"}})
    v1.create_namespaced_config_map("doomed", {"metadata": {"name": "x"}})
    v1.create_namespaced_service("doomed", _svc("s"))
    v1.delete_namespace("doomed")
    import time
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            st = v1.read_namespace("doomed")
            assert st.status.phase == "Terminating"
        except ApiException as e:
            assert e.status == 404
            break
        time.sleep(0.2)
    else:
        raise AssertionError("namespace was not removed")
    assert v1.list_namespaced_config_map("doomed").items == []
    assert v1.list_namespaced_service("doomed").items == []
    with pytest.raises(ApiException) as e:
        v1.create_namespaced_config_map("doomed", {"metadata": {"name": "y"}})
    assert e.value.status == 404


def test_system_namespaces_exist(api):
    names = {n.metadata.name for n in client.CoreV1Api(api).list_namespace().items}
    assert {"default", "kube-system", "kube-public", "kube-node-lease"} <= names
