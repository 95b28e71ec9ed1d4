"""Shared validation helpers: apimachinery's name/label/IP checks with Kubernetes' exact texts,
field paths, Go-style rendering of composite bad values, and ObjectMeta validation."""
from __future__ import annotations

import ipaddress
import json
import re
from typing import Any, Callable, Iterable

from tinykube.api.errors import FieldError

# ---------------------------------------------------------------------------------------------
# Go rendering of bad values that are not strings or numbers (field.Error prints them with %#v)


class GoValue:
    """A bad value pre-rendered the way Go's `%#v` prints it (e.g. `[]string{"a"}`).

    FieldError renders unknown types with str(), so wrapping keeps errors.py unchanged."""

    def __init__(self, text: str, raw: Any = None):
        self.text = text
        self.raw = raw

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return f"GoValue({self.text!r})"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, GoValue):
            return self.text == other.text
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.text)


def go_quote(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)


def go_string_slice(values: list[str] | None) -> GoValue:
    if values is None:
        return GoValue("[]string(nil)", values)
    return GoValue("[]string{" + ", ".join(go_quote(str(v)) for v in values) + "}", values)


def go_string_map(m: dict | None) -> GoValue:
    if m is None:
        return GoValue("map[string]string(nil)", m)
    inner = ", ".join(f"{go_quote(str(k))}:{go_quote(str(m[k]))}" for k in sorted(m))
    return GoValue("map[string]string{" + inner + "}", m)


def go_label_selector(sel: dict | None) -> GoValue:
    sel = sel or {}
    ml = sel.get("matchLabels")
    exprs = sel.get("matchExpressions")
    ml_s = go_string_map(ml).text
    if exprs is None:
        ex_s = "[]v1.LabelSelectorRequirement(nil)"
    else:
        parts = []
        for e in exprs:
            vals = e.get("values")
            parts.append("v1.LabelSelectorRequirement{Key:%s, Operator:%s, Values:%s}" % (
                go_quote(str(e.get("key", ""))), go_quote(str(e.get("operator", ""))),
                go_string_slice(vals).text))
        ex_s = "[]v1.LabelSelectorRequirement{" + ", ".join(parts) + "}"
    return GoValue(f"v1.LabelSelector{{MatchLabels:{ml_s}, MatchExpressions:{ex_s}}}", sel)


def go_int_or_string(v: Any) -> GoValue:
    if isinstance(v, str):
        return GoValue(f"intstr.IntOrString{{Type:1, IntVal:0, StrVal:{go_quote(v)}}}", v)
    return GoValue(f"intstr.IntOrString{{Type:0, IntVal:{int(v or 0)}, StrVal:\"\"}}", v)


# ---------------------------------------------------------------------------------------------
# field paths


class Path:
    """field.Path: child(), index(), key() like apimachinery's."""

    __slots__ = ("s",)

    def __init__(self, *names: str):
        self.s = ".".join(names)

    @classmethod
    def _raw(cls, s: str) -> "Path":
        p = cls()
        p.s = s
        return p

    def child(self, *names: str) -> "Path":
        s = self.s
        for n in names:
            s = f"{s}.{n}" if s else n
        return Path._raw(s)

    def index(self, i: int) -> "Path":
        return Path._raw(f"{self.s}[{i}]")

    def key(self, k: str) -> "Path":
        return Path._raw(f"{self.s}[{k}]")

    def __str__(self) -> str:
        return self.s


def invalid(path: Path | str, value: Any, detail: str) -> FieldError:
    return FieldError("Invalid", str(path), value, detail)


def required(path: Path | str, detail: str = "") -> FieldError:
    return FieldError("Required", str(path), detail=detail)


def forbidden(path: Path | str, detail: str) -> FieldError:
    return FieldError("Forbidden", str(path), detail=detail)


def duplicate(path: Path | str, value: Any) -> FieldError:
    return FieldError("Duplicate", str(path), value)


def not_supported(path: Path | str, value: Any, supported: Iterable[str]) -> FieldError:
    return FieldError("NotSupported", str(path), value, supported=list(supported))


def too_long(path: Path | str, max_len: int) -> FieldError:
    return FieldError("TooLong", str(path), detail=f"may not be more than {max_len} bytes")


def too_many(path: Path | str, actual: int, max_items: int) -> FieldError:
    # Go prints "Too many: <actual>: must have at most <max> items"; FieldError omits the
    # value for TooMany, so it goes into the detail.
    return FieldError("TooMany", str(path), actual, f"{actual}: must have at most {max_items} items")


def immutable(path: Path | str, value: Any) -> FieldError:
    return FieldError("Invalid", str(path), value, "field is immutable")


# ---------------------------------------------------------------------------------------------
# apimachinery/pkg/util/validation messages


def regex_error(msg: str, fmt: str, *examples: str) -> str:
    if not examples:
        return f"{msg} (regex used for validation is '{fmt}')"
    s = msg + " (e.g. "
    for i, e in enumerate(examples):
        if i > 0:
            s += " or "
        s += f"'{e}', "
    return s + f"regex used for validation is '{fmt}')"


def max_len_error(n: int) -> str:
    return f"must be no more than {n} characters"


EMPTY_ERROR = "must be non-empty"

DNS1123_LABEL_FMT = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
DNS1123_LABEL_ERR = ("a lowercase RFC 1123 label must consist of lower case alphanumeric characters "
                     "or '-', and must start and end with an alphanumeric character")
DNS1123_SUBDOMAIN_FMT = DNS1123_LABEL_FMT + "(\\." + DNS1123_LABEL_FMT + ")*"
DNS1123_SUBDOMAIN_ERR = ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric "
                         "characters, '-' or '.', and must start and end with an alphanumeric character")
DNS1035_LABEL_FMT = "[a-z]([-a-z0-9]*[a-z0-9])?"
DNS1035_LABEL_ERR = ("a DNS-1035 label must consist of lower case alphanumeric characters or '-', "
                     "start with an alphabetic character, and end with an alphanumeric character")
WILDCARD_DNS1123_SUBDOMAIN_FMT = "\\*\\." + DNS1123_SUBDOMAIN_FMT
WILDCARD_DNS1123_SUBDOMAIN_ERR = (
    "a wildcard DNS-1123 subdomain must start with '*.', followed by a valid DNS subdomain, which "
    "must consist of lower case alphanumeric characters, '-' or '.' and end with an alphanumeric character")
QUALIFIED_NAME_FMT = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
QUALIFIED_NAME_ERR = ("must consist of alphanumeric characters, '-', '_' or '.', and must start and "
                      "end with an alphanumeric character")
LABEL_VALUE_FMT = "(" + QUALIFIED_NAME_FMT + ")?"
LABEL_VALUE_ERR = ("a valid label must be an empty string or consist of alphanumeric characters, "
                   "'-', '_' or '.', and must start and end with an alphanumeric character")
CONFIG_KEY_FMT = "[-._a-zA-Z0-9]+"
CONFIG_KEY_ERR = "a valid config key must consist of alphanumeric characters, '-', '_' or '.'"
PERCENT_FMT = "[0-9]+%"
PERCENT_ERR = "a valid percent string must be a numeric string followed by an ending '%'"
HTTP_PATH_FMT = "[A-Za-z0-9/\\-._~%!$&'()*+,;=:]+"

_re = lambda f: re.compile("^(?:" + f + ")$")  # noqa: E731
_DNS1123_LABEL_RE = _re(DNS1123_LABEL_FMT)
_DNS1123_SUBDOMAIN_RE = _re(DNS1123_SUBDOMAIN_FMT)
_DNS1035_LABEL_RE = _re(DNS1035_LABEL_FMT)
_WILDCARD_RE = _re(WILDCARD_DNS1123_SUBDOMAIN_FMT)
_QUALIFIED_NAME_RE = _re(QUALIFIED_NAME_FMT)
_LABEL_VALUE_RE = _re(LABEL_VALUE_FMT)
_CONFIG_KEY_RE = _re(CONFIG_KEY_FMT)
_PERCENT_RE = _re(PERCENT_FMT)
_HTTP_PATH_RE = _re(HTTP_PATH_FMT)
_PORT_NAME_CHARSET_RE = re.compile(r"^[-a-z0-9]+$")
_PORT_NAME_ONE_LETTER_RE = re.compile(r"[a-z]")


def is_dns1123_label(value: str) -> list[str]:
    errs = []
    if len(value) > 63:
        errs.append(max_len_error(63))
    if not _DNS1123_LABEL_RE.match(value):
        if _DNS1123_SUBDOMAIN_RE.match(value):
            errs.append("must not contain dots")
        else:
            errs.append(regex_error(DNS1123_LABEL_ERR, DNS1123_LABEL_FMT, "my-name", "123-abc"))
    return errs


def is_dns1123_subdomain(value: str) -> list[str]:
    errs = []
    if len(value) > 253:
        errs.append(max_len_error(253))
    if not _DNS1123_SUBDOMAIN_RE.match(value):
        errs.append(regex_error(DNS1123_SUBDOMAIN_ERR, DNS1123_SUBDOMAIN_FMT, "example.com"))
    return errs


def is_dns1035_label(value: str) -> list[str]:
    errs = []
    if len(value) > 63:
        errs.append(max_len_error(63))
    if not _DNS1035_LABEL_RE.match(value):
        errs.append(regex_error(DNS1035_LABEL_ERR, DNS1035_LABEL_FMT, "my-name", "abc-123"))
    return errs


def is_wildcard_dns1123_subdomain(value: str) -> list[str]:
    errs = []
    if len(value) > 253:
        errs.append(max_len_error(253))
    if not _WILDCARD_RE.match(value):
        errs.append(regex_error(WILDCARD_DNS1123_SUBDOMAIN_ERR, WILDCARD_DNS1123_SUBDOMAIN_FMT,
                                "*.example.com"))
    return errs


def is_qualified_name(value: str) -> list[str]:
    errs: list[str] = []
    parts = value.split("/")
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            errs.append("prefix part " + EMPTY_ERROR)
        else:
            errs.extend("prefix part " + m for m in is_dns1123_subdomain(prefix))
    else:
        return ["a qualified name " + regex_error(QUALIFIED_NAME_ERR, QUALIFIED_NAME_FMT, "MyName",
                                                   "my.name", "123-abc")
                + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"]
    if not name:
        errs.append("name part " + EMPTY_ERROR)
    elif len(name) > 63:
        errs.append("name part " + max_len_error(63))
    if not _QUALIFIED_NAME_RE.match(name):
        errs.append("name part " + regex_error(QUALIFIED_NAME_ERR, QUALIFIED_NAME_FMT, "MyName",
                                               "my.name", "123-abc"))
    return errs


def is_valid_label_value(value: str) -> list[str]:
    errs = []
    if len(value) > 63:
        errs.append(max_len_error(63))
    if not _LABEL_VALUE_RE.match(value):
        errs.append(regex_error(LABEL_VALUE_ERR, LABEL_VALUE_FMT, "MyValue", "my_value", "12345"))
    return errs


def is_config_map_key(value: str) -> list[str]:
    errs = []
    if len(value) > 253:
        errs.append(max_len_error(253))
    if not _CONFIG_KEY_RE.match(value):
        errs.append(regex_error(CONFIG_KEY_ERR, CONFIG_KEY_FMT, "key.name", "KEY_NAME", "key-name"))
    if value == ".":
        errs.append("must not be '.'")
    elif value == "..":
        errs.append("must not be '..'")
    elif value.startswith(".."):
        errs.append("must not start with '..'")
    return errs


def is_valid_port_num(port: Any) -> list[str]:
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        return ["must be between 1 and 65535, inclusive"]
    return []


def is_valid_port_name(port: str) -> list[str]:
    errs = []
    if len(port) > 15:
        errs.append(max_len_error(15))
    if not _PORT_NAME_CHARSET_RE.match(port):
        errs.append("must contain only alpha-numerics (a-z, 0-9), and hyphens (-)")
    if not _PORT_NAME_ONE_LETTER_RE.search(port):
        errs.append("must contain at least one letter (a-z)")
    if "--" in port:
        errs.append("must not contain consecutive hyphens")
    if port and (port[0] == "-" or port[-1] == "-"):
        errs.append("must not begin or end with a hyphen")
    return errs


def is_valid_percent(value: str) -> list[str]:
    if not _PERCENT_RE.match(value):
        return [regex_error(PERCENT_ERR, PERCENT_FMT, "1%", "93%")]
    return []


def is_valid_path_segment_name(name: str) -> list[str]:
    errs = []
    for bad in (".", ".."):
        if name == bad:
            errs.append(f"may not be '{bad}'")
    for bad in ("/", "%"):
        if bad in name:
            errs.append(f"may not contain '{bad}'")
    return errs


# ---- IPs

def parse_ip(value: Any) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """netutils.ParseIPSloppy: like net.ParseIP but tolerating leading zeros in IPv4."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        pass
    if "." in value and ":" not in value:
        parts = value.split(".")
        if len(parts) == 4 and all(p.isdigit() and 0 < len(p) <= 3 and int(p) <= 255 for p in parts):
            return ipaddress.IPv4Address(".".join(str(int(p)) for p in parts))
    return None


def parse_cidr(value: Any) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    if not isinstance(value, str) or "/" not in value:
        return None
    try:
        return ipaddress.ip_network(value, strict=False)
    except ValueError:
        return None


IP_INVALID = "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"
CIDR_INVALID = "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)"


def validate_ip(path: Path | str, value: Any) -> list[FieldError]:
    if parse_ip(value) is None:
        return [invalid(path, value, IP_INVALID)]
    return []


def validate_cidr(path: Path | str, value: Any) -> list[FieldError]:
    if parse_cidr(value) is None:
        return [invalid(path, value, CIDR_INVALID)]
    return []


def validate_ipv4(path: Path | str, value: Any) -> list[FieldError]:
    ip = parse_ip(value)
    if ip is None or ip.version != 4:
        return [invalid(path, value, "must be a valid IPv4 address")]
    return []


def validate_ipv6(path: Path | str, value: Any) -> list[FieldError]:
    ip = parse_ip(value)
    if ip is None or ip.version != 6:
        return [invalid(path, value, "must be a valid IPv6 address")]
    return []


def _is_link_local_multicast(ip) -> bool:
    if ip.version == 4:
        return ip in ipaddress.ip_network("224.0.0.0/24")
    return ip.packed[0] == 0xFF and (ip.packed[1] & 0x0F) == 0x02


def validate_non_special_ip(path: Path | str, value: str) -> list[FieldError]:
    """ValidateNonSpecialIP / ValidateEndpointIP."""
    ip = parse_ip(value)
    if ip is None:
        return [invalid(path, value, "must be a valid IP address")]
    errs = []
    if ip.is_unspecified:
        errs.append(invalid(path, value, f"may not be unspecified ({value})"))
    if ip.is_loopback:
        errs.append(invalid(path, value, "may not be in the loopback range (127.0.0.0/8, ::1/128)"))
    if ip.is_link_local:
        errs.append(invalid(path, value, "may not be in the link-local range (169.254.0.0/16, fe80::/10)"))
    if _is_link_local_multicast(ip):
        errs.append(invalid(path, value,
                            "may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)"))
    return errs


def is_fully_qualified_domain_name(path: Path | str, name: str) -> list[FieldError]:
    s = name.removesuffix(".")
    if not s:
        return [required(path, "")]
    errs = [invalid(path, name, m) for m in is_dns1123_subdomain(s)]
    if errs:
        return errs
    if len(s.split(".")) < 2:
        return [invalid(path, name, "should be a domain with at least two segments separated by dots")]
    for label in s.split("."):
        for m in is_dns1123_label(label):
            errs.append(invalid(path, name, m))
    return errs


def is_domain_prefixed_path(path: Path | str, dp: str) -> list[FieldError]:
    if not dp:
        return [required(path, "")]
    segs = dp.split("/", 1)
    if len(segs) != 2 or not segs[0] or not segs[1]:
        return [invalid(path, dp, 'must be a domain-prefixed path (such as "acme.io/foo")')]
    errs = [invalid(path, segs[0], m) for m in is_dns1123_subdomain(segs[0])]
    if not _HTTP_PATH_RE.match(segs[1]):
        errs.append(invalid(path, segs[1], regex_error("Invalid path", HTTP_PATH_FMT)))
    return errs


# ---------------------------------------------------------------------------------------------
# field validators returning FieldErrors


def validate_dns1123_label(value: str, path: Path | str) -> list[FieldError]:
    return [invalid(path, value, m) for m in is_dns1123_label(value)]


def validate_dns1123_subdomain(value: str, path: Path | str) -> list[FieldError]:
    return [invalid(path, value, m) for m in is_dns1123_subdomain(value)]


def validate_qualified_name(value: str, path: Path | str) -> list[FieldError]:
    return [invalid(path, value, m) for m in is_qualified_name(value)]


def validate_nonnegative(value: Any, path: Path | str) -> list[FieldError]:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0:
        return [invalid(path, value, "must be greater than or equal to 0")]
    return []


def validate_port_num_or_name(port: Any, path: Path | str) -> list[FieldError]:
    if isinstance(port, str):
        return [invalid(path, port, m) for m in is_valid_port_name(port)]
    return [invalid(path, port, m) for m in is_valid_port_num(port)]


def validate_labels(labels: Any, path: Path | str) -> list[FieldError]:
    errs: list[FieldError] = []
    if not isinstance(labels, dict):
        return errs
    for k, v in labels.items():
        errs.extend(invalid(path, k, m) for m in is_qualified_name(str(k)))
    for k, v in labels.items():
        v = "" if v is None else str(v)
        errs.extend(invalid(path, v, m) for m in is_valid_label_value(v))
    return errs


TOTAL_ANNOTATION_SIZE_LIMIT = 256 * 1024


def validate_annotations(ann: Any, path: Path | str) -> list[FieldError]:
    errs: list[FieldError] = []
    if not isinstance(ann, dict):
        return errs
    total = 0
    for k, v in ann.items():
        errs.extend(invalid(path, k, m) for m in is_qualified_name(str(k).lower()))
        total += len(str(k)) + len(str(v or ""))
    if total > TOTAL_ANNOTATION_SIZE_LIMIT:
        errs.append(FieldError("TooLong", str(path), detail=f"may not be more than {TOTAL_ANNOTATION_SIZE_LIMIT} bytes"))
    return errs


def validate_label_selector(sel: Any, path: Path) -> list[FieldError]:
    errs: list[FieldError] = []
    if not isinstance(sel, dict):
        return errs
    for i, req in enumerate(sel.get("matchExpressions") or []):
        p = path.child("matchExpressions").index(i)
        op = req.get("operator")
        vals = req.get("values") or []
        if op in ("In", "NotIn"):
            if not vals:
                errs.append(required(p.child("values"), "must be specified when `operator` is 'In' or 'NotIn'"))
        elif op in ("Exists", "DoesNotExist"):
            if vals:
                errs.append(forbidden(p.child("values"), "may not be specified when `operator` is 'Exists' or 'DoesNotExist'"))
        else:
            errs.append(invalid(p.child("operator"), op, "not a valid selector operator"))
        errs.extend(invalid(p.child("key"), req.get("key", ""), m)
                    for m in is_qualified_name(str(req.get("key", ""))))
        for v in vals:
            errs.extend(invalid(p.child("values"), v, m) for m in is_valid_label_value(str(v)))
    errs.extend(validate_labels(sel.get("matchLabels"), path.child("matchLabels")))
    return errs


def selector_matches(sel: dict, labels: dict) -> bool:
    labels = labels or {}
    for k, v in (sel.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for req in sel.get("matchExpressions") or []:
        k, op, vals = req.get("key"), req.get("operator"), req.get("values") or []
        if op == "In" and labels.get(k) not in vals:
            return False
        if op == "NotIn" and k in labels and labels[k] in vals:
            return False
        if op == "Exists" and k not in labels:
            return False
        if op == "DoesNotExist" and k in labels:
            return False
    return True


# ---- ObjectMeta

NameFn = Callable[[str, bool], list[str]]


def name_is_dns_subdomain(name: str, prefix: bool) -> list[str]:
    if prefix:
        name = mask_trailing_dash(name)
    return is_dns1123_subdomain(name)


def name_is_dns_label(name: str, prefix: bool) -> list[str]:
    if prefix:
        name = mask_trailing_dash(name)
    return is_dns1123_label(name)


def name_is_dns1035_label(name: str, prefix: bool) -> list[str]:
    if prefix:
        name = mask_trailing_dash(name)
    return is_dns1035_label(name)


def mask_trailing_dash(name: str) -> str:
    if len(name) > 1 and name.endswith("-"):
        return name[:-2] + "a"
    return name


def validate_object_meta(meta: Any, namespaced: bool, name_fn: NameFn,
                         path: Path | None = None) -> list[FieldError]:
    path = path or Path("metadata")
    errs: list[FieldError] = []
    if not isinstance(meta, dict):
        meta = {}
    name = meta.get("name") or ""
    gen = meta.get("generateName") or ""
    if gen:
        errs.extend(invalid(path.child("generateName"), gen, m) for m in name_fn(gen, True))
    if not name:
        errs.append(required(path.child("name"), "name or generateName is required"))
    else:
        errs.extend(invalid(path.child("name"), name, m) for m in name_fn(name, False))
    ns = meta.get("namespace") or ""
    if namespaced:
        if not ns:
            errs.append(required(path.child("namespace"), ""))
        else:
            errs.extend(invalid(path.child("namespace"), ns, m) for m in is_dns1123_label(ns))
    elif ns:
        errs.append(forbidden(path.child("namespace"), "not allowed on this type"))
    errs.extend(validate_labels(meta.get("labels"), path.child("labels")))
    errs.extend(validate_annotations(meta.get("annotations"), path.child("annotations")))
    for f in meta.get("finalizers") or []:
        errs.extend(validate_finalizer_name(str(f), path.child("finalizers")))
    return errs


STANDARD_FINALIZERS = {"kubernetes", "orphan", "foregroundDeletion"}


def validate_finalizer_name(name: str, path: Path) -> list[FieldError]:
    errs = [invalid(path, name, m) for m in is_qualified_name(name)]
    if not errs and "/" not in name and name not in STANDARD_FINALIZERS:
        errs.append(invalid(path, name, "name is neither a standard finalizer name nor is it fully qualified"))
    return errs


def validate_object_meta_update(new: Any, old: Any, path: Path | None = None) -> list[FieldError]:
    path = path or Path("metadata")
    new = new if isinstance(new, dict) else {}
    old = old if isinstance(old, dict) else {}
    errs = []
    for f in ("name", "namespace", "uid"):
        if old.get(f) and new.get(f) != old.get(f):
            errs.append(immutable(path.child(f), new.get(f) or ""))
    if old.get("creationTimestamp") and new.get("creationTimestamp") not in (None, old.get("creationTimestamp")):
        errs.append(immutable(path.child("creationTimestamp"), new.get("creationTimestamp")))
    return errs


def as_int(v: Any, default: int = 0) -> int:
    if isinstance(v, bool):
        return default
    if isinstance(v, int):
        return v
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return default
