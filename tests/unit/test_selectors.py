import pytest
from hypothesis import given, strategies as st

from tinykube.api.errors import ApiError
from tinykube.api.selectors import (
    parse_field_selector, parse_label_selector, selector_from_map, selector_from_spec,
)

BINOPS = "in, notin, =, ==, !=, gt, lt"


def bad(text):
    with pytest.raises(ApiError) as ei:
        parse_label_selector(text)
    assert ei.value.code == 400 and ei.value.reason == "BadRequest"
    return ei.value.message


# ---- label selectors: matching ----

@pytest.mark.parametrize("sel,labels,want", [
    ("app=web", {"app": "web"}, True),
    ("app=web", {"app": "db"}, False),
    ("app=web", {}, False),
    ("app==web", {"app": "web"}, True),
    ("app!=web", {"app": "db"}, True),
    ("app!=web", {}, True),
    ("app!=web", {"app": "web"}, False),
    ("env in (prod,staging)", {"env": "prod"}, True),
    ("env in (prod,staging)", {"env": "dev"}, False),
    ("env in (prod,staging)", {}, False),
    ("env notin (prod,staging)", {"env": "dev"}, True),
    ("env notin (prod,staging)", {}, True),
    ("env notin (prod)", {"env": "prod"}, False),
    ("app", {"app": ""}, True),
    ("app", {"x": "1"}, False),
    ("!app", {"x": "1"}, True),
    ("!app", {"app": "1"}, False),
    ("n>3", {"n": "4"}, True),
    ("n>3", {"n": "3"}, False),
    ("n<3", {"n": "-1"}, True),
    ("n>3", {"n": "x"}, False),
    ("n>3", {}, False),
    ("app=web,tier=fe", {"app": "web", "tier": "fe"}, True),
    ("app=web,tier=fe", {"app": "web", "tier": "be"}, False),
    ("app.kubernetes.io/name=nginx", {"app.kubernetes.io/name": "nginx"}, True),
    ("  app = web ,  tier in ( fe , be )  ", {"app": "web", "tier": "be"}, True),
    ("app=", {"app": ""}, True),
    ("app=", {}, False),
    ("x in (in)", {"x": "in"}, True),
    ("x in (a,,b)", {"x": ""}, True),
    ("x in ()", {"x": ""}, True),
])
def test_label_matches(sel, labels, want):
    assert parse_label_selector(sel).matches(labels) is want


def test_empty_selector_matches_everything():
    s = parse_label_selector("")
    assert s.empty and s.matches(None) and s.matches({"a": "b"}) and str(s) == ""


def test_none_labels():
    assert not parse_label_selector("a=b").matches(None)
    assert parse_label_selector("!a").matches(None)


@pytest.mark.parametrize("text,canonical", [
    ("tier=fe,app=web", "app=web,tier=fe"),
    ("app==web", "app==web"),
    ("env in (staging, prod)", "env in (prod,staging)"),
    ("env  notin  (b,a,b)", "env notin (a,b)"),
    ("!x,y", "!x,y"),
    ("n>3,m<2", "m<2,n>3"),
    ("app!=web", "app!=web"),
    ("a=", "a="),
])
def test_canonical_string(text, canonical):
    s = parse_label_selector(text)
    assert str(s) == canonical
    assert str(parse_label_selector(str(s))) == canonical


# ---- label selectors: errors (apimachinery labels/selector.go wording) ----

def test_missing_operator():
    assert bad("a b") == f"unable to parse requirement: found 'b', expected: {BINOPS}"


def test_bad_operator_token():
    assert bad("a in b") == "unable to parse requirement: found 'b' expected: '('"


def test_trailing_comma():
    assert bad("a=b,") == "found '', expected: identifier after ','"


def test_double_value():
    assert bad("a=b c") == "found 'c', expected: ',' or 'end of string'"


def test_leading_operator():
    assert bad("=a") == "found '=', expected: !, identifier, or 'end of string'"


def test_unclosed_paren():
    assert bad("a in (b") == "unable to parse requirement: found '', expected: ',' or ')'"


def test_not_key_with_value():
    assert bad("!a=b") == "found '=', expected: ',' or 'end of string'"


def test_bad_key():
    msg = bad("-a=b")
    assert msg.startswith('unable to parse requirement: <nil>: Invalid value: "-a": name part must consist of '
                          "alphanumeric characters, '-', '_' or '.', and must start and end with an "
                          "alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used "
                          "for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')")


def test_bad_value():
    msg = bad("a=b$")
    assert msg == ('unable to parse requirement: values[0][a]: Invalid value: "b$": a valid label must be '
                   "an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start "
                   "and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', "
                   "regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')")


def test_gt_needs_integer():
    assert bad("a>b") == ('unable to parse requirement: values[0]: Invalid value: "b": '
                          "for 'Gt', 'Lt' operators, the value must be an integer")


def test_bad_prefix():
    assert "prefix part a lowercase RFC 1123 subdomain" in bad("Ex.com/a=b")


def test_lex_error():
    assert bad("a=>b").startswith("unable to parse requirement: found '>', expected: identifier")


# ---- metav1.LabelSelector / map selectors ----

def test_selector_from_spec():
    s = selector_from_spec({"matchLabels": {"app": "web"},
                            "matchExpressions": [{"key": "tier", "operator": "In", "values": ["fe", "be"]},
                                                 {"key": "legacy", "operator": "DoesNotExist"},
                                                 {"key": "env", "operator": "NotIn", "values": ["dev"]},
                                                 {"key": "team", "operator": "Exists"}]})
    assert s.matches({"app": "web", "tier": "fe", "team": "x"})
    assert not s.matches({"app": "web", "tier": "fe", "team": "x", "legacy": "1"})
    assert not s.matches({"app": "web", "tier": "fe", "team": "x", "env": "dev"})
    assert not s.matches({"app": "web", "tier": "fe"})
    assert str(s) == "app=web,env notin (dev),!legacy,team,tier in (be,fe)"


def test_selector_from_spec_empty_and_none():
    assert selector_from_spec({}).matches({"a": "b"})
    assert selector_from_spec({}).empty
    assert not selector_from_spec(None).matches({})
    assert not selector_from_spec(None).empty


def test_selector_from_spec_invalid_operator():
    with pytest.raises(ApiError) as ei:
        selector_from_spec({"matchExpressions": [{"key": "a", "operator": "Foo"}]})
    assert ei.value.message == '"Foo" is not a valid label selector operator'


def test_selector_from_map():
    s = selector_from_map({"b": "2", "a": "1"})
    assert str(s) == "a=1,b=2"
    assert s.matches({"a": "1", "b": "2", "c": "3"})
    assert not s.matches({"a": "1"})
    assert selector_from_map({}).empty and selector_from_map(None).matches({"x": "y"})


label_key = st.from_regex(r"\A[a-z][a-z0-9]{0,5}\Z")
label_val = st.from_regex(r"\A([a-z0-9]{1,5})?\Z")


@given(st.dictionaries(label_key, label_val, max_size=5), st.dictionaries(label_key, label_val, max_size=5))
def test_map_selector_property(sel, labels):
    want = all(labels.get(k) == v for k, v in sel.items())
    assert selector_from_map(sel).matches(labels) == want
    assert parse_label_selector(str(selector_from_map(sel))).matches(labels) == want


# ---- field selectors ----

POD = {"metadata": {"name": "p1", "namespace": "default"},
       "spec": {"nodeName": "node-1", "restartPolicy": "Always", "schedulerName": "default-scheduler",
                "serviceAccountName": "default", "hostNetwork": True},
       "status": {"phase": "Running", "podIP": "10.244.0.5", "podIPs": [{"ip": "10.244.0.5"}]}}


@pytest.mark.parametrize("sel,want", [
    ("metadata.name=p1", True),
    ("metadata.name==p1", True),
    ("metadata.name!=p1", False),
    ("metadata.namespace=default,status.phase=Running", True),
    ("status.phase!=Running,spec.restartPolicy=Always", False),
    ("spec.restartPolicy=Always,status.phase!=Pending", True),
    ("spec.nodeName=node-1", True),
    ("spec.hostNetwork=true", True),
    ("spec.hostNetwork=false", False),
    ("status.podIP=10.244.0.5", True),
    ("status.nominatedNodeName=", True),
    ("spec.schedulerName=default-scheduler,spec.serviceAccountName=default", True),
])
def test_pod_field_selector(sel, want):
    assert parse_field_selector(sel, "Pod").matches(POD) is want


def test_empty_value_matches_missing_field():
    pending = {"metadata": {"name": "p2"}, "spec": {}}
    assert parse_field_selector("spec.nodeName=", "Pod").matches(pending)
    assert not parse_field_selector("spec.nodeName!=", "Pod").matches(pending)
    assert parse_field_selector("spec.hostNetwork=false", "Pod").matches(pending)


def test_unsupported_field():
    with pytest.raises(ApiError) as ei:
        parse_field_selector("spec.foo=bar", "Pod")
    assert (ei.value.code, ei.value.reason, ei.value.message) == (400, "BadRequest",
                                                                 "field label not supported: spec.foo")
    with pytest.raises(ApiError) as ei:
        parse_field_selector("status.phase=Running", "Deployment")
    assert ei.value.message == "field label not supported: status.phase"


def test_unparseable_term():
    with pytest.raises(ApiError) as ei:
        parse_field_selector("metadata.name", "Pod")
    assert ei.value.message == "invalid selector: 'metadata.name'; can't understand 'metadata.name'"


def test_every_kind_has_name_and_namespace():
    for kind in ("Deployment", "ConfigMap", "Ingress", "Lease", "EndpointSlice"):
        s = parse_field_selector("metadata.name=a,metadata.namespace=b", kind)
        assert s.matches({"metadata": {"name": "a", "namespace": "b"}})


def test_other_kinds():
    ev = {"metadata": {"name": "e"}, "involvedObject": {"kind": "Pod", "name": "p1", "namespace": "default",
                                                       "uid": "u1"},
          "reason": "Scheduled", "type": "Normal", "source": {"component": "default-scheduler"}}
    assert parse_field_selector("involvedObject.kind=Pod,involvedObject.name=p1,involvedObject.uid=u1,"
                                "type=Normal,reason=Scheduled,source=default-scheduler", "Event").matches(ev)
    assert parse_field_selector("involvedObject.fieldPath=", "Event").matches(ev)
    assert parse_field_selector("type=kubernetes.io/tls", "Secret").matches({"type": "kubernetes.io/tls"})
    assert parse_field_selector("spec.unschedulable=false", "Node").matches({"spec": {}})
    assert parse_field_selector("spec.unschedulable=true", "Node").matches({"spec": {"unschedulable": True}})
    assert parse_field_selector("status.phase=Active", "Namespace").matches({"status": {"phase": "Active"}})
    assert parse_field_selector("status.replicas=0", "ReplicaSet").matches({"status": {}})
    assert parse_field_selector("status.replicas=3", "ReplicaSet").matches({"status": {"replicas": 3}})
    svc = {"spec": {"type": "ClusterIP", "clusterIP": "10.96.0.1"}}
    assert parse_field_selector("spec.type=ClusterIP,spec.clusterIP=10.96.0.1", "Service").matches(svc)
    with pytest.raises(ApiError):
        parse_field_selector("spec.replicas=1", "Deployment")


def test_field_selector_escapes_and_str():
    s = parse_field_selector(r"metadata.name=a\,b", "ConfigMap")
    assert s.matches({"metadata": {"name": "a,b"}})
    assert str(s) == r"metadata.name=a\,b"
    assert str(parse_field_selector("metadata.name==x,status.phase!=Running", "Pod")) == \
        "metadata.name=x,status.phase!=Running"
    assert parse_field_selector("", "Pod").empty
    assert parse_field_selector("metadata.name=x", "Pod").requires_exact_match("metadata.name") == "x"
