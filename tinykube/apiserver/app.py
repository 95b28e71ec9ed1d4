"""The HTTP face of the API server: routing, content negotiation, authentication, watch streams.

What each verb means lives in registry.py; this module only speaks HTTP the way kubectl and the
official Python client expect (see the kubectl protocol reference).
"""
from __future__ import annotations

import asyncio
import json
import logging
import ssl
import time
from typing import Any

import yaml
from aiohttp import web

from tinykube.api import errors
from tinykube.api.errors import ApiError
from tinykube.api.resources import Resource, get as get_resource, lookup
from tinykube.store.base import Expired

from . import discovery
from .registry import Registry, WriteOptions

log = logging.getLogger(__name__)

KUBE_MINOR = "33"
KUBE_VERSION = "v1.33.1"
MAX_BODY = 3 * 1024 * 1024
BOOKMARK_EVERY = 30.0
_ANONYMOUS_PATHS = {"/version", "/healthz", "/livez", "/readyz"}
REQUIRE_AUTH = web.AppKey("require_auth", bool)
TOKENS = web.AppKey("tokens", set)


def json_response(body: Any, status: int = 200, headers: dict | None = None) -> web.Response:
    return web.Response(body=json.dumps(body, separators=(",", ":")).encode(), status=status,
                        content_type="application/json", headers=headers)


def status_response(err: ApiError, headers: dict | None = None) -> web.Response:
    return json_response(err.status(), err.code, headers)


@web.middleware
async def error_middleware(request: web.Request, handler):
    try:
        return await handler(request)
    except ApiError as e:
        return status_response(e)
    except web.HTTPRequestEntityTooLarge:
        return status_response(errors.request_entity_too_large(
            f"Request entity too large: limit is {MAX_BODY}"))
    except web.HTTPException:
        raise
    except (ConnectionResetError, asyncio.CancelledError):
        raise
    except Exception as e:  # keep serving whatever one request did
        log.exception("internal error on %s %s", request.method, request.path)
        return status_response(errors.internal(str(e)))


@web.middleware
async def auth_middleware(request: web.Request, handler):
    if request.app[REQUIRE_AUTH] and request.path not in _ANONYMOUS_PATHS:
        peer = request.transport.get_extra_info("peercert") if request.transport else None
        if not peer:
            token = request.headers.get("Authorization", "")
            if not (token.startswith("Bearer ") and token[7:] in request.app[TOKENS]):
                return status_response(errors.unauthorized())
    return await handler(request)


# ------------------------------------------------------------------ request parsing

def _query_bool(request: web.Request, name: str) -> bool:
    return request.query.get(name, "").lower() in ("true", "1")


def write_options(request: web.Request) -> WriteOptions:
    dry = request.query.getall("dryRun", [])
    for d in dry:
        if d != "All":
            raise errors.bad_request(f'dryRun: Unsupported value: "{d}": supported values: "All"')
    fv = request.query.get("fieldValidation", "")
    if fv and fv not in ("Strict", "Warn", "Ignore"):
        raise errors.bad_request(f'fieldValidation: Unsupported value: "{fv}": supported values: "Ignore", "Strict", "Warn"')
    # no fieldValidation parameter: the API server's default is Warn
    return WriteOptions(dry_run=bool(dry), field_validation=fv or "Warn",
                        field_manager=request.query.get("fieldManager", ""))


async def read_body(request: web.Request, res: Resource | None) -> dict:
    return (await read_body_raw(request, res))[0]


async def read_body_raw(request: web.Request, res: Resource | None) -> tuple[dict, bytes | None]:
    """The decoded object and, for JSON bodies, the raw bytes (duplicate-field detection)."""
    raw = await request.read()
    # kubectl's scale client PUTs its JSON with no Content-Type at all
    ctype = request.headers.get("Content-Type", "application/json").split(";")[0].strip().lower()
    dup = _DuplicateKeys()
    if ctype == "application/vnd.kubernetes.protobuf":
        try:
            from tinykube.api import protobuf
        except ImportError:
            raise errors.ApiError(415, "UnsupportedMediaType",
                                  "protobuf request bodies are not supported by this server; use JSON", {}) from None
        return protobuf.decode(raw, res), None
    if ctype in ("application/yaml", "application/x-yaml", "application/apply-patch+yaml"):
        try:
            obj = yaml.safe_load(raw)
        except yaml.YAMLError as e:
            raise errors.bad_request(f"error converting YAML to JSON: {e}") from None
    elif ctype in ("application/json", "", "text/plain") or ctype.endswith("+json"):
        try:
            obj = json.loads(raw, object_pairs_hook=dup) if raw.strip() else {}
        except (ValueError, UnicodeDecodeError) as e:
            what = f'{res.kind} in version "{res.version}"' if res else "the request body"
            raise errors.bad_request(
                f"{what} cannot be handled as a {res.kind if res else 'object'}: {_json_error(e)}") from None
    else:
        raise errors.unsupported_media_type(ctype)
    if not isinstance(obj, dict):
        what = f'{res.kind} in version "{res.version}"' if res else "the request body"
        raise errors.bad_request(
            f"{what} cannot be handled as a {res.kind if res else 'object'}: json: cannot unmarshal "
            f"{_json_type(obj)} into Go value of type struct")
    # the raw body goes on to the strict-field check only when it holds a duplicated key: that
    # check re-reads the body to name it, which is otherwise work for nothing
    return obj, (raw if ctype not in ("application/yaml", "application/x-yaml") and dup.seen else None)


class _DuplicateKeys:
    """json.loads object_pairs_hook that builds dicts and notes whether any key repeated."""
    __slots__ = ("seen",)

    def __init__(self) -> None:
        self.seen = False

    def __call__(self, pairs: list) -> dict:
        d = dict(pairs)
        if len(d) != len(pairs):
            self.seen = True
        return d


def _json_error(e: Exception) -> str:
    msg = str(e)
    if isinstance(e, json.JSONDecodeError):
        return f"invalid character at offset {e.pos}: {e.msg}"
    return msg


def _json_type(v: Any) -> str:
    return {list: "array", str: "string", int: "number", float: "number", bool: "bool"}.get(type(v), "null")


def check_kind(res: Resource, obj: dict) -> None:
    kind, av = obj.get("kind"), obj.get("apiVersion")
    if kind and kind != res.kind:
        raise errors.bad_request(f'the kind of the object ({kind}) does not match the resource ({res.qualified}): '
                                 f'expected kind {res.kind}')
    if av and av != res.api_version:
        raise errors.bad_request(
            f'the API version in the data ({av}) does not match the expected API version ({res.api_version})')


def wants_table(request: web.Request) -> bool:
    return "as=Table" in request.headers.get("Accept", "")


# ------------------------------------------------------------------ handlers

class Api:
    def __init__(self, registry: Registry, server_address: str, stream_backend=None):
        self.registry = registry
        self.server_address = server_address
        self.streams = stream_backend  # exec/attach/portforward/log relay to the node agent

    # ---- meta endpoints
    async def version(self, request: web.Request) -> web.Response:
        return json_response({"major": "1", "minor": KUBE_MINOR, "emulationMajor": "1",
                              "emulationMinor": KUBE_MINOR, "minCompatibilityMajor": "1",
                              "minCompatibilityMinor": str(int(KUBE_MINOR) - 1), "gitVersion": KUBE_VERSION,
                              "gitCommit": "tinykube", "gitTreeState": "clean",
                              "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.24.0", "compiler": "gc",
                              "platform": "linux/amd64"})

    async def healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def api_root(self, request: web.Request) -> web.Response:
        agg = discovery.wants_aggregated(request.headers.get("Accept", ""))
        if agg:
            return web.Response(body=json.dumps(discovery.aggregated(True, agg)).encode(),
                                headers={"Content-Type": discovery.AGG_V2 if agg == "v2" else discovery.AGG_V2BETA1})
        return json_response(discovery.api_versions(self.server_address))

    async def apis_root(self, request: web.Request) -> web.Response:
        agg = discovery.wants_aggregated(request.headers.get("Accept", ""))
        if agg:
            return web.Response(body=json.dumps(discovery.aggregated(False, agg)).encode(),
                                headers={"Content-Type": discovery.AGG_V2 if agg == "v2" else discovery.AGG_V2BETA1})
        return json_response(discovery.api_group_list())

    async def group_version(self, request: web.Request) -> web.Response:
        gv = "v1" if request.match_info.get("group") is None else \
            f'{request.match_info["group"]}/{request.match_info["version"]}'
        doc = discovery.api_resource_list(gv)
        if doc is None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource", {})
        return json_response(doc)

    async def api_group(self, request: web.Request) -> web.Response:
        g = request.match_info["group"]
        for grp in discovery.api_group_list()["groups"]:
            if grp["name"] == g:
                return json_response({"kind": "APIGroup", "apiVersion": "v1", **grp})
        raise ApiError(404, "NotFound", "the server could not find the requested resource", {})

    async def openapi_v2(self, request: web.Request) -> web.Response:
        # An empty protobuf is a valid empty OpenAPI document: client-side validation passes and
        # the server does the validating.
        return web.Response(body=b"", content_type="application/octet-stream")

    async def openapi_v3(self, request: web.Request) -> web.Response:
        path = request.match_info.get("path")
        if not path:
            return json_response(discovery.openapi_v3_root())
        doc = discovery.openapi_v3_doc(path)
        if doc is None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource", {})
        return web.Response(body=doc, content_type="application/json",
                            headers={"Cache-Control": "public, immutable"})

    # ---- resource dispatch
    def _route(self, request: web.Request) -> tuple[Resource, str | None, str | None, str | None]:
        group = request.match_info.get("group")
        gv = "v1" if group is None else f'{group}/{request.match_info["version"]}'
        segs = [s for s in request.match_info["tail"].split("/") if s != ""]
        ns = None
        if len(segs) >= 3 and segs[0] == "namespaces":
            r = lookup(gv, segs[2])
            if r is not None and r.namespaced:
                ns, segs = segs[1], segs[2:]
        if not segs or len(segs) > 3:
            raise ApiError(404, "NotFound", "the server could not find the requested resource", {})
        res = lookup(gv, segs[0])
        if res is None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource", {})
        name = segs[1] if len(segs) > 1 else None
        sub = segs[2] if len(segs) > 2 else None
        if sub and sub not in res.subresources:
            raise ApiError(404, "NotFound", "the server could not find the requested resource", {})
        if res.namespaced and name is not None and ns is None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource", {})
        return res, ns, name, sub

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        res, ns, name, sub = self._route(request)
        m = request.method
        if sub in ("exec", "attach", "portforward", "log", "proxy"):
            return await self.stream(request, res, ns, name, sub)
        if name is None:
            if m == "GET":
                if _query_bool(request, "watch"):
                    return await self.watch(request, res, ns)
                return await self.list(request, res, ns)
            if m == "POST":
                return await self.create(request, res, ns)
            if m == "DELETE":
                return await self.delete_collection(request, res, ns)
            raise errors.method_not_allowed()
        if m == "GET":
            return await self.get(request, res, ns, name, sub)
        if m == "PUT":
            return await self.update(request, res, ns, name, sub)
        if m == "PATCH":
            return await self.patch(request, res, ns, name, sub)
        if m == "DELETE" and sub is None:
            return await self.delete(request, res, ns, name)
        if m == "POST" and sub in ("binding", "eviction"):
            return await self.binding(request, res, ns, name, sub)
        raise errors.method_not_allowed()

    # ---- reads
    def _out(self, res: Resource, obj: dict) -> dict:
        if res.group == "events.k8s.io":
            from .events import core_to_events
            return core_to_events(obj)
        return obj

    def _storage(self, res: Resource) -> Resource:
        return get_resource("events") if res.group == "events.k8s.io" else res

    async def get(self, request, res, ns, name, sub) -> web.Response:
        obj = await self.registry.get(self._storage(res), ns, name)
        if sub == "scale":
            return json_response(self.registry.scale_of(res, obj))
        obj = self._out(res, obj)
        if wants_table(request) and sub is None:
            from tinykube.api import tables
            return json_response(tables.to_table(res, [obj], include_object=request.query.get("includeObject", "Metadata"),
                                                 resource_version=obj["metadata"].get("resourceVersion", "")))
        return json_response(obj)

    def _selectors(self, request, res: Resource):
        from tinykube.api import selectors
        ls = request.query.get("labelSelector", "")
        fs = request.query.get("fieldSelector", "")
        label = selectors.parse_label_selector(ls) if ls else None
        fields = selectors.parse_field_selector(fs, res.kind) if fs else None

        def matches(obj: dict) -> bool:
            if label is not None and not label.matches(obj.get("metadata", {}).get("labels") or {}):
                return False
            if fields is not None and not fields.matches(obj):
                return False
            return True
        return matches

    async def list(self, request, res, ns) -> web.Response:
        matches = self._selectors(request, res)
        items, rv = await self.registry.list(self._storage(res), ns)
        items = [self._out(res, o) for o in items if matches(o)]
        if wants_table(request):
            from tinykube.api import tables
            return json_response(tables.to_table(res, items, include_object=request.query.get("includeObject", "Metadata"),
                                                 resource_version=str(rv)))
        return json_response({"kind": f"{res.kind}List", "apiVersion": res.api_version,
                              "metadata": {"resourceVersion": str(rv)}, "items": items})

    async def watch(self, request: web.Request, res: Resource, ns: str | None) -> web.StreamResponse:
        matches = self._selectors(request, res)
        rv_param = request.query.get("resourceVersion", "")
        timeout = request.query.get("timeoutSeconds")
        deadline = time.monotonic() + float(timeout) if timeout and timeout.isdigit() else None
        bookmarks = _query_bool(request, "allowWatchBookmarks")
        table = wants_table(request)
        include = request.query.get("includeObject", "Metadata")
        storage = self._storage(res)
        if rv_param and not rv_param.isdigit():
            raise errors.bad_request(f'resourceVersion: Invalid value: "{rv_param}": must be a number')

        resp = web.StreamResponse(status=200, headers={"Content-Type": "application/json",
                                                       "Transfer-Encoding": "chunked"})
        await resp.prepare(request)
        first_table = True

        async def send(typ: str, obj: dict) -> None:
            nonlocal first_table
            if table and typ not in ("ERROR", "BOOKMARK"):
                from tinykube.api import tables
                obj = tables.to_table(res, [obj], include_object=include, with_columns=first_table,
                                      resource_version=obj["metadata"].get("resourceVersion", ""))
                first_table = False
            await resp.write(json.dumps({"type": typ, "object": obj}, separators=(",", ":")).encode() + b"\n")

        matched: set[tuple] = set()
        try:
            if rv_param in ("", "0"):
                items, since = await self.registry.list(storage, ns)
                for o in items:
                    if matches(o):
                        matched.add(_k(o))
                        await send("ADDED", self._out(res, o))
            else:
                since = int(rv_param)
                items, _ = await self.registry.list(storage, ns)
                matched = {_k(o) for o in items if matches(o)}
            events = self.registry.watch(storage, ns, since)
            last_rv = since
            it = events.__aiter__()
            while True:
                wait = BOOKMARK_EVERY
                if deadline is not None:
                    wait = min(wait, deadline - time.monotonic())
                    if wait <= 0:
                        break
                try:
                    ev = await asyncio.wait_for(it.__anext__(), wait)
                except asyncio.TimeoutError:
                    if bookmarks and (deadline is None or deadline > time.monotonic()):
                        await send("BOOKMARK", {"kind": res.kind, "apiVersion": res.api_version,
                                                "metadata": {"resourceVersion": str(last_rv)}})
                    continue
                except StopAsyncIteration:
                    break
                last_rv = ev.revision
                obj, key = ev.object, _k(ev.object)
                now = matches(obj) if ev.type != "DELETED" else False
                if ev.type == "DELETED":
                    if key in matched or matches(obj):
                        matched.discard(key)
                        await send("DELETED", self._out(res, obj))
                elif ev.type == "ADDED":
                    if now:
                        matched.add(key)
                        await send("ADDED", self._out(res, obj))
                elif now and key in matched:
                    await send("MODIFIED", self._out(res, obj))
                elif now:
                    matched.add(key)
                    await send("ADDED", self._out(res, obj))
                elif key in matched:
                    matched.discard(key)
                    await send("DELETED", self._out(res, obj))
            await events.aclose()
        except Expired as e:
            st = errors.expired(f"too old resource version: {e.since} ({e.oldest})")
            await send("ERROR", st.status())
        except (ConnectionResetError, asyncio.CancelledError):
            return resp
        try:
            await resp.write_eof()
        except ConnectionResetError:
            pass
        return resp

    # ---- writes
    def _warn_headers(self, opts: WriteOptions) -> dict | None:
        if not opts.warnings:
            return None
        return {"Warning": ", ".join('299 - "' + w.replace('"', '\\"') + '"' for w in opts.warnings)}

    async def _decode_checked(self, request, res: Resource, opts: WriteOptions) -> dict:
        from tinykube.api import fields
        obj, raw = await read_body_raw(request, res)
        check_kind(res, obj)
        err, warnings = fields.strict_error(res.api_version, res.kind, obj, opts.field_validation, body=raw)
        if err:
            raise err
        opts.warnings.extend(warnings)
        return obj

    async def create(self, request, res, ns) -> web.Response:
        opts = write_options(request)
        obj = await self._decode_checked(request, res, opts)
        if res.group == "events.k8s.io":
            from .events import events_to_core
            obj = events_to_core(obj)
        out = await self.registry.create(self._storage(res), ns, obj, opts, owned=True)
        return json_response(self._out(res, out), 201, self._warn_headers(opts))

    async def update(self, request, res, ns, name, sub) -> web.Response:
        opts = write_options(request)
        if sub == "scale":
            obj = await read_body(request, None)
            return json_response(await self.registry.update_scale(res, ns, name, obj, opts))
        obj = await self._decode_checked(request, res, opts)
        if res.group == "events.k8s.io":
            from .events import events_to_core
            obj = events_to_core(obj)
        if res.kind == "Namespace" and sub == "finalize":
            cur = await self.registry.get(res, None, name)
            cur = dict(cur, spec={"finalizers": (obj.get("spec") or {}).get("finalizers", [])})
            out = await self.registry._store_update(res, cur, cur, opts, int(cur["metadata"]["resourceVersion"]))
            return json_response(out)
        out = await self.registry.update(self._storage(res), ns, name, obj, opts, sub)
        return json_response(self._out(res, out), 200, self._warn_headers(opts))

    async def patch(self, request, res, ns, name, sub) -> web.Response:
        opts = write_options(request)
        ctype = (request.content_type or "").lower()
        if ctype not in ("application/json-patch+json", "application/merge-patch+json",
                         "application/strategic-merge-patch+json", "application/apply-patch+yaml",
                         "application/apply-patch+cbor"):
            raise errors.ApiError(415, "UnsupportedMediaType", f'the server does not support the media type "{ctype}"'
                                  if ctype else "the body of the request was in an unknown format - accepted "
                                  "media types include: application/json-patch+json, application/merge-patch+json, "
                                  "application/apply-patch+yaml", {})
        body = await request.read()
        out, created = await self.registry.patch(self._storage(res), ns, name, body, ctype, opts, sub,
                                                 force=_query_bool(request, "force"))
        if sub == "scale":
            return json_response(self.registry.scale_of(res, out))
        return json_response(self._out(res, out), 201 if created else 200, self._warn_headers(opts))

    async def _delete_options(self, request) -> dict:
        raw = await request.read()
        opts: dict = {}
        if raw.strip():
            try:
                opts = json.loads(raw)
            except ValueError:
                raise errors.bad_request("DeleteOptions in version \"v1\" cannot be handled as a DeleteOptions") from None
        q = request.query
        if "gracePeriodSeconds" in q:
            opts["gracePeriodSeconds"] = int(q["gracePeriodSeconds"])
        if "propagationPolicy" in q:
            opts["propagationPolicy"] = q["propagationPolicy"]
        pp = opts.get("propagationPolicy")
        if pp not in (None, "Background", "Foreground", "Orphan"):
            raise errors.bad_request(f'propagationPolicy: Unsupported value: "{pp}": supported values: "Background", "Foreground", "Orphan"')
        return opts

    async def delete(self, request, res, ns, name) -> web.Response:
        options = await self._delete_options(request)
        out = await self.registry.delete(self._storage(res), ns, name, options, write_options(request))
        return json_response(self._out(res, out))

    async def delete_collection(self, request, res, ns) -> web.Response:
        options = await self._delete_options(request)
        matches = self._selectors(request, res)
        out = await self.registry.delete_collection(self._storage(res), ns, matches, options, write_options(request))
        return json_response({"kind": f"{res.kind}List", "apiVersion": res.api_version,
                              "metadata": {}, "items": [self._out(res, o) for o in out]})

    async def binding(self, request, res, ns, name, sub) -> web.Response:
        body = await read_body(request, None)
        if sub == "binding":
            target = (body.get("target") or {}).get("name")
            if not target:
                raise errors.invalid("Binding", "", name, [errors.FieldError("Required", "target.name")])
            await self.registry.bind(ns, name, target)
            return json_response({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                                  "code": 201}, 201)
        await self.registry.delete(res, ns, name, body.get("deleteOptions") or {}, WriteOptions())
        return json_response({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                              "code": 201}, 201)

    async def stream(self, request, res, ns, name, sub) -> web.StreamResponse:
        if res.kind != "Pod" or self.streams is None:
            raise errors.ApiError(503, "ServiceUnavailable",
                                  f"{sub} is not available: no node agent serves pod {sub} yet", {})
        pod = await self.registry.get(res, ns, name)
        return await self.streams.handle(request, sub, pod)


def _k(obj: dict) -> tuple:
    md = obj.get("metadata", {})
    return md.get("namespace"), md.get("name")


def make_app(registry: Registry, server_address: str, *, require_auth: bool = True,
             tokens: set[str] | None = None, stream_backend=None) -> web.Application:
    app = web.Application(middlewares=[error_middleware, auth_middleware], client_max_size=MAX_BODY)
    app[REQUIRE_AUTH] = require_auth
    app[TOKENS] = tokens or set()
    api = Api(registry, server_address, stream_backend)
    r = app.router
    r.add_get("/version", api.version)
    for p in ("/healthz", "/livez", "/readyz"):
        r.add_get(p, api.healthz)
    r.add_get("/api", api.api_root)
    r.add_get("/api/", api.api_root)
    r.add_get("/apis", api.apis_root)
    r.add_get("/apis/", api.apis_root)
    r.add_get("/api/v1", api.group_version)
    r.add_get("/api/v1/", api.group_version)
    r.add_get("/apis/{group}", api.api_group)
    r.add_get("/apis/{group}/{version}", api.group_version)
    r.add_get("/apis/{group}/{version}/", api.group_version)
    r.add_get("/openapi/v2", api.openapi_v2)
    r.add_get("/swagger-2.0.0.pb-v1", api.openapi_v2)
    r.add_get("/openapi/v3", api.openapi_v3)
    r.add_get("/openapi/v3/{path:.+}", api.openapi_v3)
    r.add_route("*", "/api/v1/{tail:.+}", api.dispatch)
    r.add_route("*", "/apis/{group}/{version}/{tail:.+}", api.dispatch)
    return app


def server_ssl_context(cert: str, key: str, ca: str) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    ctx.load_verify_locations(cafile=ca)
    ctx.verify_mode = ssl.CERT_OPTIONAL  # client certificates or bearer tokens
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx
