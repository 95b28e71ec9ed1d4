"""The controller's API side with a fake client: the IngressClass it creates and the status it
writes. (nginx itself is exercised in test_ingress_render.py and the e2e test.)"""
from __future__ import annotations

import asyncio
import shutil

import pytest

from tinykube.api.errors import ApiError
from tinykube.ingress import render as R
from tinykube.ingress.controller import IngressController


pytestmark = pytest.mark.skipif(shutil.which("nginx") is None and not shutil.os.path.exists("/usr/sbin/nginx"),
                                reason="the controller needs nginx installed")


class FakeInformer:
    def __init__(self, items):
        self._items = items

    def items(self):
        return list(self._items)


class FakeClient:
    def __init__(self, classes=()):
        self.classes = {c["metadata"]["name"]: c for c in classes}
        self.created, self.status_updates = [], []

    async def get(self, res, ns, name, subresource=None):
        if name in self.classes:
            return self.classes[name]
        raise ApiError(404, "NotFound", "not found")

    async def list(self, res, *a, **kw):
        return list(self.classes.values()), "1"

    async def create(self, res, body, namespace=None):
        self.created.append(body)
        self.classes[body["metadata"]["name"]] = body
        return body

    async def update_status(self, res, body):
        self.status_updates.append(body)
        return body


def controller(client, tmp_path) -> IngressController:
    async def make():
        return IngressController(client, tmp_path, "10.244.0.1")
    return asyncio.run(make())


def test_creates_default_class_when_none(tmp_path):
    c = FakeClient()
    asyncio.run(controller(c, tmp_path).ensure_class())
    (body,) = c.created
    assert body["metadata"]["name"] == "nginx" and body["spec"] == {"controller": "k8s.io/ingress-nginx"}
    assert body["metadata"]["annotations"] == {R.DEFAULT_CLASS_ANNOTATION: "true"}


def test_class_not_default_when_another_is(tmp_path):
    other = {"metadata": {"name": "traefik", "annotations": {R.DEFAULT_CLASS_ANNOTATION: "true"}},
             "spec": {"controller": "traefik.io/ingress-controller"}}
    c = FakeClient([other])
    asyncio.run(controller(c, tmp_path).ensure_class())
    (body,) = c.created
    assert "annotations" not in body["metadata"]


def test_existing_class_left_alone(tmp_path):
    mine = {"metadata": {"name": "nginx"}, "spec": {"controller": "k8s.io/ingress-nginx"}}
    c = FakeClient([mine])
    asyncio.run(controller(c, tmp_path).ensure_class())
    assert c.created == []


def _ing(name, ips=()):
    obj = {"metadata": {"name": name, "namespace": "d", "resourceVersion": "5"}, "spec": {}}
    if ips:
        obj["status"] = {"loadBalancer": {"ingress": [{"ip": ip} for ip in ips]}}
    return obj


def test_status_written_for_served_and_cleared_for_dropped(tmp_path):
    c = FakeClient()
    ctl = controller(c, tmp_path)
    ctl.informers["ingresses"] = FakeInformer([
        _ing("new"),                              # served, no status yet -> written
        _ing("done", ["10.244.0.1"]),             # served, already right -> untouched
        _ing("dropped", ["10.244.0.1"]),          # no longer ours -> cleared
        _ing("foreign", ["192.0.2.7"]),           # someone else's address -> untouched
    ])
    assert asyncio.run(ctl.update_status([("d", "new"), ("d", "done")]))
    by_name = {b["metadata"]["name"]: b for b in c.status_updates}
    assert set(by_name) == {"new", "dropped"}
    assert by_name["new"]["status"]["loadBalancer"] == {"ingress": [{"ip": "10.244.0.1"}]}
    assert by_name["new"]["metadata"]["resourceVersion"] == "5"
    assert by_name["dropped"]["status"]["loadBalancer"] == {}
