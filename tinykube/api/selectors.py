"""Label and field selectors with Kubernetes' syntax, semantics and error messages.

Label selectors follow apimachinery `labels.Parse` (the `-l` / `labelSelector=` language):
requirements are sorted by key, `str()` gives the canonical form, and a parse error is a
400 BadRequest whose message is the one the real API server returns.

Field selectors follow apimachinery `fields.ParseSelector` plus the per-kind field label
conversion functions of the API server (`field label not supported: <field>`).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable

from . import errors

# ---------------------------------------------------------------------------
# validation of keys and values (k8s.io/apimachinery/pkg/util/validation)

_QNAME_CHAR = "[-A-Za-z0-9_.]"
_QNAME_FMT = "([A-Za-z0-9]" + _QNAME_CHAR + "*)?[A-Za-z0-9]"
_QNAME_RE = re.compile("^" + _QNAME_FMT + "$")
_LABEL_VALUE_FMT = "(" + _QNAME_FMT + ")?"
_LABEL_VALUE_RE = re.compile("^" + _LABEL_VALUE_FMT + "$")
_DNS1123_LABEL_FMT = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_SUBDOMAIN_FMT = _DNS1123_LABEL_FMT + "(\\." + _DNS1123_LABEL_FMT + ")*"
_DNS1123_SUBDOMAIN_RE = re.compile("^" + _DNS1123_SUBDOMAIN_FMT + "$")

_QNAME_ERR = ("must consist of alphanumeric characters, '-', '_' or '.', and must start and end "
              "with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex "
              "used for validation is '" + _QNAME_FMT + "')")
_LABEL_VALUE_ERR = ("a valid label must be an empty string or consist of alphanumeric characters, "
                    "'-', '_' or '.', and must start and end with an alphanumeric character (e.g. "
                    "'MyValue',  or 'my_value',  or '12345', regex used for validation is '"
                    + _LABEL_VALUE_FMT + "')")
_DNS1123_SUBDOMAIN_ERR = ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric "
                          "characters, '-' or '.', and must start and end with an alphanumeric "
                          "character (e.g. 'example.com', regex used for validation is '"
                          + _DNS1123_SUBDOMAIN_FMT + "')")


def qualified_name_errors(value: str) -> list[str]:
    """validation.IsQualifiedName: the messages Kubernetes gives for a bad label key."""
    errs: list[str] = []
    parts = value.split("/")
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if len(prefix) == 0:
            errs.append("prefix part must be non-empty")
        else:
            if len(prefix) > 253:
                errs.append("prefix part must be no more than 253 characters")
            if not _DNS1123_SUBDOMAIN_RE.match(prefix):
                errs.append("prefix part " + _DNS1123_SUBDOMAIN_ERR)
    else:
        return ["a qualified name " + _QNAME_ERR
                + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"]
    if len(name) == 0:
        errs.append("name part must be non-empty")
    elif len(name) > 63:
        errs.append("name part must be no more than 63 characters")
    if not _QNAME_RE.match(name):
        errs.append("name part " + _QNAME_ERR)
    return errs


def label_value_errors(value: str) -> list[str]:
    """validation.IsValidLabelValue."""
    errs: list[str] = []
    if len(value) > 63:
        errs.append("must be no more than 63 characters")
    if not _LABEL_VALUE_RE.match(value):
        errs.append(_LABEL_VALUE_ERR)
    return errs


def _go_quote(s: str) -> str:
    out = ['"']
    for ch in s:
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif ord(ch) < 0x20:
            out.append("\\x%02x" % ord(ch))
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _go_value(v: Any) -> str:
    """%#v-ish rendering field.Invalid uses for a string or []string value."""
    if isinstance(v, list):
        return "[]string{" + ", ".join(_go_quote(x) for x in v) + "}"
    return _go_quote(str(v))


def _invalid(path: str, value: Any, detail: str) -> str:
    return f"{path}: Invalid value: {_go_value(value)}: {detail}"


# ---------------------------------------------------------------------------
# label selectors

EQUALS = "="
DOUBLE_EQUALS = "=="
NOT_EQUALS = "!="
IN = "in"
NOT_IN = "notin"
EXISTS = "exists"
DOES_NOT_EXIST = "!"
GREATER_THAN = "gt"
LESS_THAN = "lt"

_BINARY_OPERATORS = [IN, NOT_IN, EQUALS, DOUBLE_EQUALS, NOT_EQUALS, GREATER_THAN, LESS_THAN]


@dataclass(frozen=True)
class Requirement:
    key: str
    operator: str
    values: tuple[str, ...] = ()

    def matches(self, labels: dict) -> bool:
        op = self.operator
        if op in (IN, EQUALS, DOUBLE_EQUALS):
            return self.key in labels and labels[self.key] in self.values
        if op in (NOT_IN, NOT_EQUALS):
            return self.key not in labels or labels[self.key] not in self.values
        if op == EXISTS:
            return self.key in labels
        if op == DOES_NOT_EXIST:
            return self.key not in labels
        if op in (GREATER_THAN, LESS_THAN):
            if self.key not in labels or len(self.values) != 1:
                return False
            try:
                have = _parse_int64(labels[self.key])
                want = _parse_int64(self.values[0])
            except ValueError:
                return False
            return have > want if op == GREATER_THAN else have < want
        return False

    def __str__(self) -> str:
        op = self.operator
        s = ("!" if op == DOES_NOT_EXIST else "") + self.key
        if op in (EXISTS, DOES_NOT_EXIST):
            return s
        sym = {EQUALS: "=", DOUBLE_EQUALS: "==", NOT_EQUALS: "!=", IN: " in ", NOT_IN: " notin ",
               GREATER_THAN: ">", LESS_THAN: "<"}[op]
        vals = self.values[0] if len(self.values) == 1 else ",".join(sorted(self.values))
        if op in (IN, NOT_IN):
            return f"{s}{sym}({vals})"
        return f"{s}{sym}{vals}"


_INT64_RE = re.compile(r"^[+-]?[0-9]+$")


def _parse_int64(s: str) -> int:
    if not _INT64_RE.match(s):
        raise ValueError(s)
    v = int(s)
    if not -(1 << 63) <= v < (1 << 63):
        raise ValueError(s)
    return v


def new_requirement(key: str, op: str, values: list[str]) -> Requirement:
    """labels.NewRequirement; raises ValueError carrying Kubernetes' aggregated message."""
    errs: list[str] = []
    kerrs = qualified_name_errors(key)
    if kerrs:
        errs.append(_invalid("key", key, "; ".join(kerrs)))
    if op in (IN, NOT_IN):
        if not values:
            errs.append(_invalid("values", values, "for 'in', 'notin' operators, values set can't be empty"))
    elif op in (EQUALS, DOUBLE_EQUALS, NOT_EQUALS):
        if len(values) != 1:
            errs.append(_invalid("values", values, "exact-match compatibility requires one single value"))
    elif op in (EXISTS, DOES_NOT_EXIST):
        if values:
            errs.append(_invalid("values", values, "values set must be empty for exists and does not exist"))
    elif op in (GREATER_THAN, LESS_THAN):
        if len(values) != 1:
            errs.append(_invalid("values", values, "for 'Gt', 'Lt' operators, exactly one value is required"))
        for i, v in enumerate(values):
            try:
                _parse_int64(v)
            except ValueError:
                errs.append(_invalid(f"values[{i}]", v, "for 'Gt', 'Lt' operators, the value must be an integer"))
    else:
        supported = ", ".join(_go_quote(o) for o in _BINARY_OPERATORS + [EXISTS, DOES_NOT_EXIST])
        errs.append(f"operator: Unsupported value: {_go_quote(op)}: supported values: {supported}")
    for i, v in enumerate(values):
        verrs = label_value_errors(v)
        if verrs:
            errs.append(_invalid(f"values[{i}][{key}]", v, "; ".join(verrs)))
    if errs:
        raise ValueError(errs[0] if len(errs) == 1 else "[" + ", ".join(errs) + "]")
    return Requirement(key, op, tuple(values))


@dataclass(frozen=True)
class LabelSelector:
    """A parsed label selector: all requirements must match (AND). Empty matches everything.

    `nothing=True` is metav1's "match nothing" selector (a nil selector on some objects)."""
    requirements: tuple[Requirement, ...] = ()
    nothing: bool = False

    @property
    def empty(self) -> bool:
        return not self.requirements and not self.nothing

    def matches(self, labels: dict | None) -> bool:
        if self.nothing:
            return False
        labels = labels or {}
        return all(r.matches(labels) for r in self.requirements)

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)

    def requires_exact_match(self, key: str) -> str | None:
        for r in self.requirements:
            if r.key == key:
                if r.operator in (EQUALS, DOUBLE_EQUALS, IN) and len(r.values) == 1:
                    return r.values[0]
                return None
        return None


EVERYTHING = LabelSelector()
NOTHING = LabelSelector(nothing=True)

# lexer tokens
_ERR, _EOS, _CPAR, _COMMA, _NOT, _DEQ, _EQ, _GT, _ID, _IN, _LT, _NEQ, _NOTIN, _OPAR = range(14)
_STRING2TOKEN = {")": _CPAR, ",": _COMMA, "!": _NOT, "==": _DEQ, "=": _EQ, ">": _GT, "in": _IN,
                 "<": _LT, "!=": _NEQ, "notin": _NOTIN, "(": _OPAR}
_SPECIAL = set("=!(),><")
_WS = set(" \t\r\n")


def _lex(s: str) -> list[tuple[int, str]]:
    items: list[tuple[int, str]] = []
    pos, n = 0, len(s)
    while True:
        while pos < n and s[pos] in _WS:
            pos += 1
        if pos >= n:
            items.append((_EOS, ""))
            return items
        ch = s[pos]
        if ch in _SPECIAL:
            buf = ""
            last: tuple[int, str] | None = None
            while pos < n and s[pos] in _SPECIAL:
                buf += s[pos]
                pos += 1
                if buf in _STRING2TOKEN:
                    last = (_STRING2TOKEN[buf], buf)
                elif last is not None:
                    pos -= 1
                    break
            if last is None:
                items.append((_ERR, f"error expected: keyword found '{buf}'"))
            else:
                items.append(last)
        else:
            start = pos
            while pos < n and s[pos] not in _SPECIAL and s[pos] not in _WS:
                pos += 1
            word = s[start:pos]
            items.append((_STRING2TOKEN.get(word, _ID), word))


class _Parser:
    def __init__(self, text: str):
        self.items = _lex(text)
        self.pos = 0

    def lookahead(self, values: bool = True) -> tuple[int, str]:
        tok, lit = self.items[self.pos]
        if values and tok in (_IN, _NOTIN):
            tok = _ID
        return tok, lit

    def consume(self, values: bool = True) -> tuple[int, str]:
        tok, lit = self.lookahead(values)
        self.pos += 1
        return tok, lit

    def parse(self) -> list[Requirement]:
        reqs: list[Requirement] = []
        while True:
            tok, lit = self.lookahead()
            if tok in (_ID, _NOT):
                try:
                    reqs.append(self.requirement())
                except ValueError as e:
                    raise ValueError(f"unable to parse requirement: {e}") from None
                t, l = self.consume()
                if t == _EOS:
                    return reqs
                if t == _COMMA:
                    t2, l2 = self.lookahead()
                    if t2 not in (_ID, _NOT):
                        raise ValueError(f"found '{l2}', expected: identifier after ','")
                else:
                    raise ValueError(f"found '{l}', expected: ',' or 'end of string'")
            elif tok == _EOS:
                return reqs
            else:
                raise ValueError(f"found '{lit}', expected: !, identifier, or 'end of string'")

    def requirement(self) -> Requirement:
        op = ""
        tok, lit = self.consume()
        if tok == _NOT:
            op = DOES_NOT_EXIST
            tok, lit = self.consume()
        if tok != _ID:
            raise ValueError(f"found '{lit}', expected: identifier")
        kerrs = qualified_name_errors(lit)
        if kerrs:
            raise ValueError(_invalid("<nil>", lit, "; ".join(kerrs)))
        key = lit
        if op == DOES_NOT_EXIST or self.lookahead()[0] in (_EOS, _COMMA):
            # `!key` is complete by itself; whatever follows is the caller's problem
            return new_requirement(key, op or EXISTS, [])
        tok, lit = self.consume(values=False)
        ops = {_IN: IN, _EQ: EQUALS, _DEQ: DOUBLE_EQUALS, _GT: GREATER_THAN, _LT: LESS_THAN,
               _NOTIN: NOT_IN, _NEQ: NOT_EQUALS}
        if tok not in ops:
            raise ValueError(f"found '{lit}', expected: {', '.join(_BINARY_OPERATORS)}")
        op = ops[tok]
        if op in (IN, NOT_IN):
            values = self.set_values()
        else:
            values = self.exact_value()
        return new_requirement(key, op, sorted(set(values)))

    def set_values(self) -> list[str]:
        tok, lit = self.consume()
        if tok != _OPAR:
            raise ValueError(f"found '{lit}' expected: '('")
        tok, lit = self.lookahead()
        if tok in (_ID, _COMMA):
            vals = self.identifiers()
            if self.consume()[0] != _CPAR:
                raise ValueError(f"found '{lit}', expected: ')'")
            return vals
        if tok == _CPAR:
            self.consume()
            return [""]
        raise ValueError(f"found '{lit}', expected: ',', ')' or identifier")

    def identifiers(self) -> list[str]:
        vals: list[str] = []
        while True:
            tok, lit = self.consume()
            if tok == _ID:
                vals.append(lit)
                t2, l2 = self.lookahead()
                if t2 == _COMMA:
                    continue
                if t2 == _CPAR:
                    return vals
                raise ValueError(f"found '{l2}', expected: ',' or ')'")
            if tok == _COMMA:
                if not vals:
                    vals.append("")
                t2, _ = self.lookahead()
                if t2 == _CPAR:
                    vals.append("")
                    return vals
                if t2 == _COMMA:
                    self.consume()
                    vals.append("")
                continue
            raise ValueError(f"found '{lit}', expected: ',', or identifier")

    def exact_value(self) -> list[str]:
        tok, _ = self.lookahead()
        if tok in (_EOS, _COMMA):
            return [""]
        tok, lit = self.consume()
        if tok == _ID:
            return [lit]
        raise ValueError(f"found '{lit}', expected: identifier")


def _sorted_reqs(reqs: list[Requirement]) -> tuple[Requirement, ...]:
    return tuple(sorted(reqs, key=lambda r: r.key))   # stable, like sort.Sort(ByKey) in practice


def parse_label_selector(text: str | None) -> LabelSelector:
    """labels.Parse: raise ApiError 400 with Kubernetes' message on bad input."""
    if not text:
        return EVERYTHING
    try:
        reqs = _Parser(text).parse()
    except ValueError as e:
        raise errors.bad_request(str(e)) from None
    return LabelSelector(_sorted_reqs(reqs))


def selector_from_map(d: dict | None) -> LabelSelector:
    """A Service-style `{key: value}` selector (labels.SelectorFromSet); empty matches all."""
    if not d:
        return EVERYTHING
    return LabelSelector(_sorted_reqs([Requirement(k, EQUALS, (str(v),)) for k, v in d.items()]))


_SPEC_OPS = {"In": IN, "NotIn": NOT_IN, "Exists": EXISTS, "DoesNotExist": DOES_NOT_EXIST}


def selector_from_spec(sel: dict | None) -> LabelSelector:
    """metav1.LabelSelectorAsSelector: None matches nothing, {} matches everything."""
    if sel is None:
        return NOTHING
    match_labels = sel.get("matchLabels") or {}
    exprs = sel.get("matchExpressions") or []
    if not match_labels and not exprs:
        return EVERYTHING
    reqs: list[Requirement] = []
    try:
        for k, v in match_labels.items():
            reqs.append(new_requirement(k, EQUALS, [v]))
        for e in exprs:
            op = e.get("operator")
            if op not in _SPEC_OPS:
                raise ValueError(f'"{op}" is not a valid label selector operator')
            reqs.append(new_requirement(e.get("key", ""), _SPEC_OPS[op], list(e.get("values") or [])))
    except ValueError as e:
        raise errors.bad_request(str(e)) from None
    return LabelSelector(_sorted_reqs(reqs))


# ---------------------------------------------------------------------------
# field selectors


def _get(obj: dict, *path: str) -> Any:
    cur: Any = obj
    for p in path:
        if not isinstance(cur, dict):
            return None
        cur = cur.get(p)
    return cur


def _s(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def _path(*path: str) -> Callable[[dict], str]:
    return lambda o: _s(_get(o, *path))


def _bool_path(*path: str) -> Callable[[dict], str]:
    return lambda o: "true" if _get(o, *path) else "false"


def _pod_ip(o: dict) -> str:
    ips = _get(o, "status", "podIPs") or []
    if ips and isinstance(ips[0], dict) and ips[0].get("ip"):
        return str(ips[0]["ip"])
    return _s(_get(o, "status", "podIP"))


_COMMON: dict[str, Callable[[dict], str]] = {
    "metadata.name": _path("metadata", "name"),
    "metadata.namespace": _path("metadata", "namespace"),
}

_core_event = {
    **{f"involvedObject.{f}": _path("involvedObject", f)
       for f in ("kind", "namespace", "name", "uid", "apiVersion", "resourceVersion", "fieldPath")},
    "reason": _path("reason"),
    "reportingComponent": _path("reportingComponent"),
    "source": lambda o: _s(_get(o, "source", "component")) or _s(o.get("reportingComponent")),
    "type": _path("type"),
}
_events_event = {
    **{f"regarding.{f}": _path("regarding", f)
       for f in ("kind", "namespace", "name", "uid", "apiVersion", "resourceVersion", "fieldPath")},
    "reason": _path("reason"),
    "reportingController": _path("reportingController"),
    "type": _path("type"),
}

# (api_version or "" for any version, kind) -> extra supported fields
FIELD_LABELS: dict[tuple[str, str], dict[str, Callable[[dict], str]]] = {
    ("v1", "Pod"): {
        "spec.nodeName": _path("spec", "nodeName"),
        "spec.restartPolicy": _path("spec", "restartPolicy"),
        "spec.schedulerName": _path("spec", "schedulerName"),
        "spec.serviceAccountName": _path("spec", "serviceAccountName"),
        "spec.hostNetwork": _bool_path("spec", "hostNetwork"),
        "status.phase": _path("status", "phase"),
        "status.podIP": _pod_ip,
        "status.nominatedNodeName": _path("status", "nominatedNodeName"),
    },
    ("v1", "Event"): _core_event,
    ("events.k8s.io/v1", "Event"): _events_event,
    ("v1", "Secret"): {"type": _path("type")},
    ("v1", "Node"): {"spec.unschedulable": _bool_path("spec", "unschedulable")},
    ("v1", "Namespace"): {"status.phase": _path("status", "phase")},
    ("v1", "ReplicationController"): {"status.replicas": lambda o: _s(_get(o, "status", "replicas") or 0)},
    ("apps/v1", "ReplicaSet"): {"status.replicas": lambda o: _s(_get(o, "status", "replicas") or 0)},
    ("v1", "Service"): {"spec.clusterIP": _path("spec", "clusterIP"), "spec.type": _path("spec", "type")},
    ("batch/v1", "Job"): {"status.successful": lambda o: _s(_get(o, "status", "succeeded") or 0)},
}

_DEFAULT_API_VERSION = {"Pod": "v1", "Event": "v1", "Secret": "v1", "Node": "v1", "Namespace": "v1",
                        "Service": "v1", "ReplicaSet": "apps/v1", "ReplicationController": "v1",
                        "Job": "batch/v1"}


@dataclass(frozen=True)
class FieldRequirement:
    field: str
    operator: str           # "=" (also for "==") or "!="
    value: str
    getter: Callable[[dict], str] = field(compare=False, repr=False, default=_path())

    def matches(self, obj: dict) -> bool:
        have = self.getter(obj)
        return (have == self.value) if self.operator == "=" else (have != self.value)

    def __str__(self) -> str:
        op = "!=" if self.operator == "!=" else "="
        return f"{self.field}{op}{_escape_field_value(self.value)}"


@dataclass(frozen=True)
class FieldSelector:
    requirements: tuple[FieldRequirement, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.requirements

    def matches(self, obj: dict) -> bool:
        return all(r.matches(obj) for r in self.requirements)

    def requires_exact_match(self, fld: str) -> str | None:
        for r in self.requirements:
            if r.field == fld and r.operator == "=":
                return r.value
        return None

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)


def _escape_field_value(v: str) -> str:
    return v.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=")


def _split_terms(text: str) -> list[str]:
    terms, cur, escaped = [], [], False
    for ch in text:
        if escaped:
            cur.append(ch)
            escaped = False
        elif ch == "\\":
            cur.append(ch)
            escaped = True
        elif ch == ",":
            terms.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    terms.append("".join(cur))
    return terms


def _split_term(term: str) -> tuple[str, str, str] | None:
    escaped = False
    for i, ch in enumerate(term):
        if escaped:
            escaped = False
            continue
        if ch == "\\":
            escaped = True
            continue
        for op in ("!=", "==", "="):
            if term.startswith(op, i):
                return term[:i], op, term[i + len(op):]
    return None


_VALID_ESCAPES = {"\\", ",", "="}


def _unescape(v: str) -> str:
    out, i = [], 0
    while i < len(v):
        ch = v[i]
        if ch == "\\":
            if i + 1 >= len(v):
                raise ValueError(f"invalid field selector: trailing backslash in value: {v}")
            nxt = v[i + 1]
            if nxt not in _VALID_ESCAPES:
                raise ValueError(f"invalid field selector: invalid escape sequence: \\{nxt} in value: {v}")
            out.append(nxt)
            i += 2
            continue
        if ch in ",=":
            raise ValueError(f"invalid field selector: unescaped {ch} in value: {v}")
        out.append(ch)
        i += 1
    return "".join(out)


def supported_field_labels(kind: str, api_version: str | None = None) -> dict[str, Callable[[dict], str]]:
    api_version = api_version or _DEFAULT_API_VERSION.get(kind, "")
    return {**_COMMON, **FIELD_LABELS.get((api_version, kind), {})}


def parse_field_selector(text: str | None, kind: str, api_version: str | None = None) -> FieldSelector:
    """fields.ParseSelector plus the kind's field label conversion; 400 on bad input."""
    if not text:
        return FieldSelector()
    supported = supported_field_labels(kind, api_version)
    reqs: list[FieldRequirement] = []
    for term in _split_terms(text):
        if term == "":
            continue
        parts = _split_term(term)
        if parts is None:
            raise errors.bad_request(f"invalid selector: '{text}'; can't understand '{term}'")
        lhs, op, rhs = parts
        try:
            value = _unescape(rhs)
        except ValueError as e:
            raise errors.bad_request(str(e)) from None
        getter = supported.get(lhs)
        if getter is None:
            raise errors.bad_request(f"field label not supported: {lhs}")
        reqs.append(FieldRequirement(lhs, "!=" if op == "!=" else "=", value, getter))
    return FieldSelector(tuple(reqs))
