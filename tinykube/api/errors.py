"""Kubernetes API errors as Status objects, with the exact wording Kubernetes uses.

Every layer raises ApiError; the HTTP layer turns it into the Status body and code.
Validation collects FieldErrors and raises them together with `invalid()`.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


class ApiError(Exception):
    """An error that becomes a `kind: Status` response."""

    def __init__(self, code: int, reason: str, message: str, details: dict | None = None):
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details

    def status(self) -> dict:
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
        }
        if self.details is not None:
            body["details"] = self.details
        body["code"] = self.code
        return body


def _qualified(resource: str, group: str) -> str:
    return f"{resource}.{group}" if group else resource


def _details(name: str, group: str, kind: str) -> dict:
    d: dict[str, Any] = {"name": name}
    if group:
        d["group"] = group
    d["kind"] = kind
    return d


def not_found(resource: str, group: str, name: str) -> ApiError:
    return ApiError(404, "NotFound", f'{_qualified(resource, group)} "{name}" not found',
                    _details(name, group, resource))


def already_exists(resource: str, group: str, name: str) -> ApiError:
    return ApiError(409, "AlreadyExists", f'{_qualified(resource, group)} "{name}" already exists',
                    _details(name, group, resource))


def conflict(resource: str, group: str, name: str, why: str | None = None) -> ApiError:
    why = why or "the object has been modified; please apply your changes to the latest version and try again"
    return ApiError(409, "Conflict",
                    f'Operation cannot be fulfilled on {_qualified(resource, group)} "{name}": {why}',
                    _details(name, group, resource))


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def method_not_allowed(message: str = "the server does not allow this method on the requested resource") -> ApiError:
    return ApiError(405, "MethodNotAllowed", message, {})


def unsupported_media_type(content_type: str) -> ApiError:
    return ApiError(415, "UnsupportedMediaType",
                    f'the body of the request was in an unknown format ({content_type}) - accepted media types '
                    'include: application/json, application/yaml, application/vnd.kubernetes.protobuf', {})


def unauthorized() -> ApiError:
    return ApiError(401, "Unauthorized", "Unauthorized")


def expired(message: str) -> ApiError:
    return ApiError(410, "Expired", message)


def gone(message: str) -> ApiError:
    return ApiError(410, "Gone", message)


def internal(message: str) -> ApiError:
    return ApiError(500, "InternalError", f"Internal error occurred: {message}",
                    {"causes": [{"message": message}]})


def request_entity_too_large(message: str = "the request is too large") -> ApiError:
    return ApiError(413, "RequestEntityTooLarge", message)


def service_unavailable(message: str) -> ApiError:
    return ApiError(503, "ServiceUnavailable", message)


def forbidden(resource: str, group: str, name: str, why: str) -> ApiError:
    target = f'{_qualified(resource, group)} "{name}"' if name else _qualified(resource, group)
    return ApiError(403, "Forbidden", f"{target} is forbidden: {why}", _details(name, group, resource))


# ---- field errors (k8s.io/apimachinery/pkg/util/validation/field) ----

_CAUSE_REASON = {
    "Invalid": "FieldValueInvalid",
    "Required": "FieldValueRequired",
    "Duplicate": "FieldValueDuplicate",
    "NotSupported": "FieldValueNotSupported",
    "Forbidden": "FieldValueForbidden",
    "TooLong": "FieldValueTooLong",
    "TooMany": "FieldValueTooMany",
    "NotFound": "FieldValueNotFound",
    "InternalError": "InternalError",
}

_OMIT = object()


def _render_value(value: Any) -> str:
    """Render a bad value as Go's field.Error does (%#v-like for strings, plain for numbers)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if value is None:
        return "null"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, (list, dict)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


@dataclass
class FieldError:
    type: str            # Invalid, Required, Duplicate, NotSupported, Forbidden, TooLong, TooMany
    field: str           # e.g. "spec.ports[0].port"
    value: Any = _OMIT
    detail: str = ""
    supported: list[str] | None = None

    def message(self) -> str:
        """The text after "<field>: " exactly as Kubernetes prints it."""
        t = self.type
        if t == "Required":
            head = "Required value"
        elif t == "Forbidden":
            head = "Forbidden"
        elif t == "Duplicate":
            head = f"Duplicate value: {_render_value(self.value)}"
        elif t == "NotSupported":
            head = f"Unsupported value: {_render_value(self.value)}"
            if self.supported:
                quoted = ", ".join(json.dumps(s) for s in self.supported)
                return f"{head}: supported values: {quoted}"
        elif t == "TooLong":
            head = "Too long"
        elif t == "TooMany":
            head = "Too many"
        elif t == "NotFound":
            head = f"Not found: {_render_value(self.value)}"
        else:
            head = "Invalid value" if self.value is _OMIT else f"Invalid value: {_render_value(self.value)}"
        return f"{head}: {self.detail}" if self.detail else head

    def __str__(self) -> str:
        return f"{self.field}: {self.message()}"

    def cause(self) -> dict:
        return {"reason": _CAUSE_REASON.get(self.type, "FieldValueInvalid"),
                "message": self.message(), "field": self.field}


def invalid(kind: str, group: str, name: str, errors: list[FieldError]) -> ApiError:
    """422 Invalid: kubectl prints `The <Kind> "<name>" is invalid: <field>: <message>`."""
    if len(errors) == 1:
        summary = str(errors[0])
    else:
        summary = "[" + ", ".join(str(e) for e in errors) + "]"
    details: dict[str, Any] = {"name": name}
    if group:
        details["group"] = group
    details["kind"] = kind
    details["causes"] = [e.cause() for e in errors]
    return ApiError(422, "Invalid", f'{kind}{"." + group if group else ""} "{name}" is invalid: {summary}', details)
