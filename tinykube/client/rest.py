"""A small async REST client for the Kubernetes API, configured from a kubeconfig."""
from __future__ import annotations

import base64
import json
import os
import ssl
import tempfile
from typing import Any, AsyncIterator
from urllib.parse import quote

import aiohttp
import yaml

from tinykube.api.errors import ApiError
from tinykube.api.resources import Resource


def _materialise(data_b64: str | None, path: str | None, suffix: str) -> str | None:
    """ssl wants files; kubeconfigs may embed the PEM as base64 data."""
    if path:
        return path
    if not data_b64:
        return None
    fd, tmp = tempfile.mkstemp(suffix=suffix)
    with os.fdopen(fd, "wb") as f:
        f.write(base64.b64decode(data_b64))
    return tmp


def kubeconfig_ssl_context(cfg: dict) -> tuple[str, ssl.SSLContext | None]:
    """The server URL and TLS context of the current context of a parsed kubeconfig."""
    ctx_name = cfg.get("current-context")
    contexts = {c["name"]: c["context"] for c in cfg.get("contexts", [])}
    context = contexts.get(ctx_name) or next(iter(contexts.values()))
    cluster = {c["name"]: c["cluster"] for c in cfg["clusters"]}[context["cluster"]]
    user = {u["name"]: u.get("user", {}) for u in cfg.get("users", [])}.get(context.get("user"), {})
    server = cluster["server"].rstrip("/")
    if not server.startswith("https"):
        return server, None
    sslctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    if cluster.get("insecure-skip-tls-verify"):
        sslctx.check_hostname = False
        sslctx.verify_mode = ssl.CERT_NONE
    else:
        ca = cluster.get("certificate-authority-data")
        if ca:
            sslctx.load_verify_locations(cadata=base64.b64decode(ca).decode())
        elif cluster.get("certificate-authority"):
            sslctx.load_verify_locations(cafile=cluster["certificate-authority"])
    cert = _materialise(user.get("client-certificate-data"), user.get("client-certificate"), ".crt")
    key = _materialise(user.get("client-key-data"), user.get("client-key"), ".key")
    if cert and key:
        sslctx.load_cert_chain(cert, key)
    return server, sslctx


def resource_path(res: Resource, namespace: str | None = None, name: str | None = None,
                  subresource: str | None = None) -> str:
    base = "/api/v1" if not res.group else f"/apis/{res.group}/{res.version}"
    parts = [base]
    if res.namespaced and namespace:
        parts.append(f"namespaces/{quote(namespace)}")
    parts.append(res.plural)
    if name is not None:
        parts.append(quote(name))
        if subresource:
            parts.append(subresource)
    return "/".join(parts)


class Client:
    """REST calls against one API server. Errors come back as ApiError (from the Status body)."""

    def __init__(self, server: str, ssl_context: ssl.SSLContext | None = None, token: str | None = None,
                 user_agent: str = "tinykube"):
        self.server = server
        self.ssl_context = ssl_context
        self._headers = {"User-Agent": user_agent, "Accept": "application/json"}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    def from_kubeconfig(cls, path: str, user_agent: str = "tinykube") -> "Client":
        with open(path) as f:
            cfg = yaml.safe_load(f)
        server, sslctx = kubeconfig_ssl_context(cfg)
        return cls(server, sslctx, user_agent=user_agent)

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(ssl=self.ssl_context if self.ssl_context else False, limit=64)
            self._session = aiohttp.ClientSession(connector=connector, headers=self._headers,
                                                  timeout=aiohttp.ClientTimeout(total=None, sock_connect=10))
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def request(self, method: str, path: str, *, params: dict | None = None, body: Any = None,
                      content_type: str = "application/json", timeout: float | None = 30) -> Any:
        data = None
        headers = {}
        if body is not None:
            data = body if isinstance(body, (bytes, str)) else json.dumps(body)
            headers["Content-Type"] = content_type
        async with self.session.request(method, self.server + path, params=_clean(params), data=data,
                                        headers=headers,
                                        timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
            text = await resp.text()
            if resp.status >= 400:
                raise _error_from(resp.status, text)
            ctype = resp.headers.get("Content-Type", "")
            if "json" in ctype:
                return json.loads(text) if text else None
            return text

    # ---- typed helpers ----

    async def get(self, res: Resource, namespace: str | None, name: str, subresource: str | None = None) -> dict:
        return await self.request("GET", resource_path(res, namespace, name, subresource))

    async def list(self, res: Resource, namespace: str | None = None, label_selector: str | None = None,
                   field_selector: str | None = None) -> tuple[list[dict], str]:
        body = await self.request("GET", resource_path(res, namespace),
                                  params={"labelSelector": label_selector, "fieldSelector": field_selector})
        items = body.get("items") or []
        for it in items:  # lists omit kind/apiVersion on items; components want whole objects
            it.setdefault("kind", res.kind)
            it.setdefault("apiVersion", res.api_version)
        return items, body.get("metadata", {}).get("resourceVersion", "0")

    async def create(self, res: Resource, obj: dict, namespace: str | None = None) -> dict:
        ns = namespace or obj.get("metadata", {}).get("namespace")
        return await self.request("POST", resource_path(res, ns), body=obj)

    async def update(self, res: Resource, obj: dict, subresource: str | None = None) -> dict:
        md = obj["metadata"]
        return await self.request("PUT", resource_path(res, md.get("namespace"), md["name"], subresource), body=obj)

    async def update_status(self, res: Resource, obj: dict) -> dict:
        return await self.update(res, obj, "status")

    async def patch(self, res: Resource, namespace: str | None, name: str, patch: Any,
                    content_type: str = "application/merge-patch+json", subresource: str | None = None) -> dict:
        return await self.request("PATCH", resource_path(res, namespace, name, subresource), body=patch,
                                  content_type=content_type)

    async def delete(self, res: Resource, namespace: str | None, name: str, options: dict | None = None) -> Any:
        return await self.request("DELETE", resource_path(res, namespace, name), body=options or {})

    async def watch(self, res: Resource, namespace: str | None = None, resource_version: str = "",
                    label_selector: str | None = None, field_selector: str | None = None,
                    timeout_seconds: int | None = None) -> AsyncIterator[tuple[str, dict]]:
        """Yields (type, object) until the server closes the stream. ERROR events raise ApiError."""
        params = {"watch": "true", "resourceVersion": resource_version, "allowWatchBookmarks": "true",
                  "labelSelector": label_selector, "fieldSelector": field_selector,
                  "timeoutSeconds": timeout_seconds}
        async with self.session.get(self.server + resource_path(res, namespace), params=_clean(params),
                                    timeout=aiohttp.ClientTimeout(total=None, sock_read=None)) as resp:
            if resp.status >= 400:
                raise _error_from(resp.status, await resp.text())
            async for line in resp.content:
                if not line.strip():
                    continue
                ev = json.loads(line)
                if ev["type"] == "ERROR":
                    st = ev["object"]
                    raise ApiError(st.get("code", 500), st.get("reason", ""), st.get("message", ""),
                                   st.get("details"))
                yield ev["type"], ev["object"]


def _clean(params: dict | None) -> dict | None:
    if not params:
        return None
    return {k: str(v) for k, v in params.items() if v is not None and v != ""}


def _error_from(code: int, text: str) -> ApiError:
    try:
        st = json.loads(text)
        return ApiError(st.get("code", code), st.get("reason", ""), st.get("message", text), st.get("details"))
    except ValueError:
        return ApiError(code, "", text)
