"""Bad input gets the Status Kubernetes would return, and the server keeps serving.

These drive the API server's HTTP app in-process (plain HTTP, no auth) over a real SQLite store."""
from __future__ import annotations

import asyncio
import json

import pytest
from aiohttp.test_utils import TestClient, TestServer

from tinykube.apiserver.app import make_app
from tinykube.apiserver.registry import Registry
from tinykube.store.sqlite import SqliteStore

SVC = "/api/v1/namespaces/default/services"


def run(tmp_path, scenario, keep_history: int = 100_000):
    async def main():
        store = SqliteStore(str(tmp_path / "s.db"), keep_history=keep_history)
        reg = Registry(store)
        await reg.ensure_system_objects()
        app = make_app(reg, "127.0.0.1:0", require_auth=False)
        async with TestClient(TestServer(app)) as c:
            await scenario(c)
            # whatever happened, the server still answers
            r = await c.get("/api/v1/namespaces")
            assert r.status == 200
        await store.close()
    asyncio.run(main())


async def status_of(r) -> dict:
    body = await r.json()
    assert body["kind"] == "Status" and body["status"] == "Failure"
    assert body["code"] == r.status
    return body


def test_malformed_json(tmp_path):
    async def s(c):
        r = await c.post(SVC, data=b'{"metadata": {', headers={"Content-Type": "application/json"})
        assert r.status == 400
        b = await status_of(r)
        assert b["reason"] == "BadRequest"
        assert b["message"].startswith('Service in version "v1" cannot be handled as a Service')
    run(tmp_path, s)


def test_malformed_yaml(tmp_path):
    async def s(c):
        r = await c.post(SVC, data=b"metadata: [unclosed", headers={"Content-Type": "application/yaml"})
        assert r.status == 400
        assert (await status_of(r))["reason"] == "BadRequest"
    run(tmp_path, s)


def test_wrong_field_type(tmp_path):
    async def s(c):
        body = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"},
                "spec": {"ports": [{"port": "eighty"}]}}
        r = await c.post(SVC + "?fieldValidation=Strict", json=body)
        assert r.status == 400
        msg = (await status_of(r))["message"]
        assert "cannot unmarshal string into Go struct field" in msg and "port" in msg
    run(tmp_path, s)


def test_unknown_field_strict_warn_ignore(tmp_path):
    async def s(c):
        body = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "u"},
                "spec": {"ports": [{"port": 80}], "bogus": 1}}
        r = await c.post(SVC + "?fieldValidation=Strict", json=body)
        assert r.status == 400
        assert 'strict decoding error: unknown field "spec.bogus"' in (await status_of(r))["message"]
        r = await c.post(SVC + "?fieldValidation=Warn", json=body)
        assert r.status == 201
        assert 'unknown field \\"spec.bogus\\"' in r.headers["Warning"]
        assert "bogus" not in (await r.json())["spec"]
    run(tmp_path, s)


def test_unknown_resource_and_version(tmp_path):
    async def s(c):
        r = await c.get("/api/v1/namespaces/default/widgets")
        assert r.status == 404 and (await status_of(r))["reason"] == "NotFound"
        r = await c.get("/apis/apps/v2/namespaces/default/deployments")
        assert r.status == 404
        r = await c.get("/apis/nope.example/v1")
        assert r.status == 404
    run(tmp_path, s)


def test_kind_mismatch(tmp_path):
    async def s(c):
        body = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "m"}}
        r = await c.post(SVC, json=body)
        assert r.status == 400
    run(tmp_path, s)


def test_body_too_large(tmp_path):
    async def s(c):
        big = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "big"}, "data": {"a": "x" * (4 << 20)}}
        r = await c.post("/api/v1/namespaces/default/configmaps", data=json.dumps(big),
                         headers={"Content-Type": "application/json"})
        assert r.status == 413
        assert (await status_of(r))["reason"] == "RequestEntityTooLarge"
    run(tmp_path, s)


@pytest.mark.parametrize("selector", ["app in (a", "a=b=c", "=x", "app notin"])
def test_bad_label_selector(tmp_path, selector):
    async def s(c):
        r = await c.get(SVC, params={"labelSelector": selector})
        assert r.status == 400
        assert (await status_of(r))["reason"] == "BadRequest"
    run(tmp_path, s)


def test_bad_field_selector(tmp_path):
    async def s(c):
        r = await c.get("/api/v1/pods", params={"fieldSelector": "spec.nope=1"})
        assert r.status == 400
        assert "field label not supported: spec.nope" in (await status_of(r))["message"]
    run(tmp_path, s)


def test_stale_update_conflict(tmp_path):
    async def s(c):
        body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"}, "data": {"a": "1"}}
        created = await (await c.post("/api/v1/namespaces/default/configmaps", json=body)).json()
        upd = dict(created, data={"a": "2"})
        assert (await c.put("/api/v1/namespaces/default/configmaps/cm", json=upd)).status == 200
        r = await c.put("/api/v1/namespaces/default/configmaps/cm", json=dict(created, data={"a": "3"}))
        assert r.status == 409
        b = await status_of(r)
        assert b["reason"] == "Conflict"
        assert b["message"] == ('Operation cannot be fulfilled on configmaps "cm": the object has been '
                                'modified; please apply your changes to the latest version and try again')
    run(tmp_path, s)


def test_watch_from_compacted_revision_is_410(tmp_path):
    async def s(c):
        for i in range(20):
            await c.post("/api/v1/namespaces/default/configmaps",
                         json={"metadata": {"name": f"c{i}"}, "data": {}})
        r = await c.get("/api/v1/namespaces/default/configmaps", params={"watch": "true", "resourceVersion": "2"})
        assert r.status == 200
        line = (await r.content.readline()).decode()
        ev = json.loads(line)
        assert ev["type"] == "ERROR"
        assert ev["object"]["code"] == 410 and ev["object"]["reason"] == "Expired"
    run(tmp_path, s, keep_history=5)


def test_watch_bookmarks_and_timeout(tmp_path):
    async def s(c):
        r = await c.get("/api/v1/namespaces/default/configmaps",
                        params={"watch": "true", "timeoutSeconds": "1", "allowWatchBookmarks": "true"})
        assert r.status == 200
        body = await r.read()  # the server ends the stream at the timeout
        assert body == b"" or all(json.loads(l)["type"] in ("BOOKMARK", "ADDED") for l in body.splitlines())
    run(tmp_path, s)


def test_protobuf_of_unknown_kind_is_415(tmp_path):
    async def s(c):
        r = await c.post(SVC, data=b"k8s\x00\x0a\x0c\x0a\x02v1\x12\x06Widget",
                         headers={"Content-Type": "application/vnd.kubernetes.protobuf"})
        assert r.status == 415
        assert (await status_of(r))["reason"] == "UnsupportedMediaType"
    run(tmp_path, s)


def test_duplicate_field_strict(tmp_path):
    async def s(c):
        body = b'{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"d","name":"e"},"data":{}}'
        r = await c.post("/api/v1/namespaces/default/configmaps?fieldValidation=Strict", data=body,
                         headers={"Content-Type": "application/json"})
        assert r.status == 400
        assert 'duplicate field "metadata.name"' in (await status_of(r))["message"]
        ok = b'{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"f"},"data":{"a":"1"}}'
        r = await c.post("/api/v1/namespaces/default/configmaps?fieldValidation=Strict", data=ok,
                         headers={"Content-Type": "application/json"})
        assert r.status == 201
    run(tmp_path, s)
