"""Label and field selectors of the Kubernetes emulator parse and match as the API server does.

Cases follow k8s.io/apimachinery labels.Parse, fields.ParseSelector and metav1.LabelSelectorAsSelector.
"""

from __future__ import annotations

import pytest

from sandbox.k8s.selectors import SelectorError, match_label_selector, parse_field_selector, parse_label_selector

MLFLOW = {"app.kubernetes.io/name": "mlflow", "app.kubernetes.io/component": "server", "tier": "backend"}
LABELED = {"app": "web", "env": "prod", "empty": ""}


# --------------------------------------------------------------------------------------------------------------------
# Label selectors: what matches
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        # empty selectors select everything, even unlabeled objects
        ("", {}, True),
        ("", LABELED, True),
        ("  \t ", LABELED, True),
        # existence
        ("app", LABELED, True),
        ("missing", LABELED, False),
        ("empty", LABELED, True),  # a key with an empty value exists
        ("!missing", LABELED, True),
        ("!app", LABELED, False),
        ("!empty", LABELED, False),
        # equality, all three spellings
        ("app=web", LABELED, True),
        ("app==web", LABELED, True),
        ("app=db", LABELED, False),
        ("app==db", LABELED, False),
        ("missing=web", LABELED, False),
        ("app!=db", LABELED, True),
        ("app!=web", LABELED, False),
        ("missing!=web", LABELED, True),  # != matches objects without the key
        ("missing!=web", {}, True),
        # empty values
        ("empty=", LABELED, True),
        ("app=", LABELED, False),
        ("missing=", LABELED, False),  # = needs the key even for the empty value
        ("app!=", LABELED, True),
        ("empty!=", LABELED, False),
        # set-based
        ("app in (web,db)", LABELED, True),
        ("app in (db,cache)", LABELED, False),
        ("missing in (web)", LABELED, False),
        ("app notin (db,cache)", LABELED, True),
        ("app notin (web,cache)", LABELED, False),
        ("missing notin (web)", LABELED, True),  # notin matches objects without the key
        ("missing notin (web)", {}, True),
        ("env in (prod)", LABELED, True),
        ("empty in ()", LABELED, True),  # "()" is the set holding the empty value
        ("app in ()", LABELED, False),
        ("empty in (,web)", LABELED, True),
        ("app in (,web)", LABELED, True),
        ("empty in (web,)", LABELED, True),
        ("empty in (web,,db)", LABELED, True),
        ("empty in (web,db)", LABELED, False),
        ("empty notin (,)", LABELED, False),
        # blanks anywhere between tokens; tab, CR and LF count as blanks
        (" app = web ", LABELED, True),
        ("app==web , env!=dev", LABELED, True),
        ("app in(web)", LABELED, True),
        ("app\tin\t( web , db )", LABELED, True),
        ("app notin (db, cache)", LABELED, True),
        ("\r\napp\n=\nweb\n", LABELED, True),
        ("! app", LABELED, False),
        ("! missing", LABELED, True),
        # requirements are ANDed
        ("app=web,env=prod", LABELED, True),
        ("app=web,env=dev", LABELED, False),
        ("app in (web),!missing,env notin (dev),empty", LABELED, True),
        ("app in (web),!missing,env notin (prod),empty", LABELED, False),
        ("app=web,app=db", LABELED, False),
        # prefixed keys
        ("app.kubernetes.io/name=mlflow", MLFLOW, True),
        ("app.kubernetes.io/name=mlflow,app.kubernetes.io/component in (server, ui)", MLFLOW, True),
        ("app.kubernetes.io/name=postgres", MLFLOW, False),
        ("example.com/name=mlflow", MLFLOW, False),
        ("!app.kubernetes.io/part-of", MLFLOW, True),
        ("app.kubernetes.io/name", MLFLOW, True),
        # keys and values are case-sensitive
        ("App=web", LABELED, False),
        ("app=Web", LABELED, False),
        # `in` and `notin` are keywords only where an operator is expected
        ("in in (in)", {"in": "in"}, True),
        ("notin notin (notin)", {"notin": "x"}, True),
        ("in=notin", {"in": "notin"}, True),
        ("in", {"in": "1"}, True),
        ("!notin", {"in": "1"}, True),
        # numeric Gt / Lt, which labels.Parse accepts as well
        ("replicas>2", {"replicas": "3"}, True),
        ("replicas>2", {"replicas": "2"}, False),
        ("replicas<2", {"replicas": "1"}, True),
        ("replicas<2", {"replicas": "10"}, False),
        ("replicas>2", {}, False),  # Gt needs the key
        ("replicas>2", {"replicas": "many"}, False),  # and an integer label value
        ("replicas < 10", {"replicas": "0009"}, True),
    ],
)
def test_label_selector_matches(selector, labels, expected):
    assert parse_label_selector(selector)(labels) is expected


def test_label_selector_treats_none_labels_as_no_labels():
    assert parse_label_selector("!app")(None) is True
    assert parse_label_selector("app")(None) is False


def test_label_selector_stops_at_nul_like_the_go_lexer():
    # The Go lexer reads byte 0 as the end of the input: everything after a NUL is ignored.
    matcher = parse_label_selector("app \x00 this is not a selector")
    assert matcher({"app": "x"}) is True
    assert matcher({}) is False


# --------------------------------------------------------------------------------------------------------------------
# Label selectors: what is rejected, and with which message
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("selector", "message"),
    [
        # a second operator after a complete requirement: k8s rejects a=b=c rather than reading value "b=c"
        ("a=b=c", "found '=', expected: ',' or 'end of string'"),
        ("a==b==c", "found '==', expected: ',' or 'end of string'"),
        ("a=b c", "found 'c', expected: ',' or 'end of string'"),
        ("!a=b", "found '=', expected: ',' or 'end of string'"),
        # in / notin need a parenthesised list
        ("a in b", "found 'b' expected: '('"),
        ("a in", "found '' expected: '('"),
        ("a notin b,c", "found 'b' expected: '('"),
        ("a in (b", "found '', expected: ',' or ')'"),
        ("a in (b c)", "found 'c', expected: ',' or ')'"),
        ("a in (", "found '', expected: ',', ')' or identifier"),
        ("a in (=)", "found '=', expected: ',', ')' or identifier"),
        ("a in (b,=)", "found '=', expected: ',', or identifier"),
        # operators
        ("a b", "found 'b', expected: in, notin, =, ==, !=, gt, lt"),
        ("a!", "found '!', expected: in, notin, =, ==, !=, gt, lt"),
        ("a=(b)", "found '(', expected: identifier"),
        ("a=!b", "found '!', expected: identifier"),
        ("a===b", "found '=', expected: identifier"),
        # commas
        ("a,", "found '', expected: identifier after ','"),
        ("a,,b", "found ',', expected: identifier after ','"),
        (",a", "found ',', expected: !, identifier, or 'end of string'"),
        (",", "found ',', expected: !, identifier, or 'end of string'"),
        # missing or empty keys
        ("!", "found '', expected: identifier"),
        ("!!a", "found '!', expected: identifier"),
        ("=b", "found '=', expected: !, identifier, or 'end of string'"),
        ("!=b", "found '!=', expected: !, identifier, or 'end of string'"),
        ("(a)", "found '(', expected: !, identifier, or 'end of string'"),
        ("/a=b", 'Invalid value: "/a": prefix part must be non-empty'),
        ("example.com/=b", 'Invalid value: "example.com/": name part must be non-empty'),
        # invalid keys
        ("a" * 64, "name part must be no more than 63 bytes"),
        ("-app=web", 'Invalid value: "-app": name part must consist of alphanumeric characters'),
        ("app-=web", 'Invalid value: "app-": name part must consist of alphanumeric characters'),
        ("app:web", 'Invalid value: "app:web": name part must consist'),
        ("a/b/c=d", 'Invalid value: "a/b/c": a valid label key must consist'),
        ("Example.com/app=web", "prefix part a lowercase RFC 1123 subdomain must consist"),
        ("example_com/app=web", "prefix part a lowercase RFC 1123 subdomain must consist"),
        ("app\u00e9=web", "name part must consist"),
        ("app\v=web", "name part must consist"),  # vertical tab is not a blank for the lexer
        # invalid values
        ("a=" + "v" * 64, 'values[0][a]: Invalid value: "' + "v" * 64 + '": must be no more than 63 bytes'),
        ("a=-web", 'values[0][a]: Invalid value: "-web": a valid label must be an empty string or consist'),
        ("a=web.", 'Invalid value: "web.": a valid label must be'),
        ("a in (ok,b@d)", 'Invalid value: "b@d": a valid label must be'),
        ("a=b/c", 'Invalid value: "b/c": a valid label must be'),
        # Gt / Lt operands
        ("a>b", "for 'Gt', 'Lt' operators, the value must be an integer"),
        ("a<", "for 'Gt', 'Lt' operators, the value must be an integer"),
        ("a>99999999999999999999", "for 'Gt', 'Lt' operators, the value must be an integer"),
    ],
)
def test_label_selector_rejects(selector, message):
    with pytest.raises(SelectorError) as caught:
        parse_label_selector(selector)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("selector", "message"),
    [
        # errors inside a requirement carry the server's prefix and a nil field path
        (
            "app:web",
            'unable to parse requirement: <nil>: Invalid value: "app:web": name part must consist of alphanumeric '
            "characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or "
            "'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')",
        ),
        ("a in b", "unable to parse requirement: found 'b' expected: '('"),
        (
            "x>y",
            "unable to parse requirement: values[0]: Invalid value: \"y\": for 'Gt', 'Lt' operators, the value must be an integer",
        ),
        # errors between requirements do not
        ("a=b=c", "found '=', expected: ',' or 'end of string'"),
        ("a,", "found '', expected: identifier after ','"),
    ],
)
def test_label_selector_error_messages_are_the_servers(selector, message):
    with pytest.raises(SelectorError) as caught:
        parse_label_selector(selector)
    assert str(caught.value) == message


def test_selector_error_is_a_value_error():
    with pytest.raises(ValueError, match="expected"):
        parse_label_selector("a in b")


@pytest.mark.parametrize(
    ("key", "valid"),
    [
        ("k" * 63, True),
        ("k" * 64, False),
        ("example.com/" + "k" * 63, True),
        ("example.com/" + "k" * 64, False),
        (".".join(["p" * 63] * 4)[:253] + "/key", True),  # a 253-byte prefix is the longest allowed
        (".".join(["p" * 63] * 4)[:252] + "pp/key", False),  # 254 bytes
        ("a", True),
        ("A_b.C-9", True),
        ("a..b", True),  # the name regex allows any run of [-_.] inside
        ("1-2", True),
    ],
)
def test_label_key_length_and_charset_limits(key, valid):
    selector = f"{key}=v"
    if valid:
        assert parse_label_selector(selector)({key: "v"}) is True
    else:
        with pytest.raises(SelectorError, match=r"must be no more than|must consist"):
            parse_label_selector(selector)


@pytest.mark.parametrize(("value", "valid"), [("v" * 63, True), ("v" * 64, False), ("A_b.C-9", True), ("_a", False)])
def test_label_value_length_and_charset_limits(value, valid):
    if valid:
        assert parse_label_selector(f"k={value}")({"k": value}) is True
    else:
        with pytest.raises(SelectorError, match=r"values\[0\]\[k\]"):
            parse_label_selector(f"k={value}")


# --------------------------------------------------------------------------------------------------------------------
# Field selectors
# --------------------------------------------------------------------------------------------------------------------

POD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "mlflow-0", "namespace": "mlops", "labels": {"app": "mlflow"}},
    "spec": {"nodeName": "node-a", "restartPolicy": "Always", "hostNetwork": False},
    "status": {"phase": "Running", "podIP": "10.0.0.5"},
}
PENDING_POD = {"metadata": {"name": "pending", "namespace": "default"}, "spec": {}, "status": {"phase": "Pending"}}
ODD_NAMES = {"metadata": {"name": "a,b=c\\d", "namespace": "x"}}
RS = {"metadata": {"name": "rs", "namespace": "mlops"}, "status": {"replicas": 3}}


@pytest.mark.parametrize(
    ("selector", "obj", "expected"),
    [
        ("", POD, True),
        (",", POD, True),  # empty terms are skipped
        ("metadata.name=mlflow-0", POD, True),
        ("metadata.name==mlflow-0", POD, True),
        ("metadata.name=other", POD, False),
        ("metadata.name!=other", POD, True),
        ("metadata.name!=mlflow-0", POD, False),
        ("metadata.namespace=mlops", POD, True),
        ("metadata.namespace!=default", POD, True),
        ("metadata.namespace!=default", PENDING_POD, False),
        ("status.phase=Running", POD, True),
        ("status.phase=running", POD, False),  # values are case-sensitive
        ("status.phase!=Running,spec.restartPolicy=Always", POD, False),
        ("status.phase=Running,spec.restartPolicy=Always", POD, True),
        ("status.phase=Running,spec.restartPolicy=Always,", POD, True),
        ("spec.nodeName=node-a", POD, True),
        # missing fields compare as ""
        ("spec.nodeName=", PENDING_POD, True),
        ("spec.nodeName=", POD, False),
        ("spec.nodeName!=", PENDING_POD, False),
        ("spec.nodeName!=", POD, True),
        ("spec.nodeName==", PENDING_POD, True),
        ("spec.nodeName=node-a", PENDING_POD, False),
        ("spec.nodeName!=node-a", PENDING_POD, True),
        ("status.podIP=", {"metadata": {"name": "x"}}, True),
        ("no.such.field=", POD, True),
        ("metadata.name.deeper=", POD, True),  # a path through a scalar is missing too
        # scalars compare in their string form
        ("spec.hostNetwork=false", POD, True),
        ("spec.hostNetwork=False", POD, False),
        ("status.replicas=3", RS, True),
        ("status.replicas!=3", RS, False),
        # the first operator splits the term: "==" is not read as "=" followed by a value "=...", "=!" keeps "!"
        ("metadata.name==pending", PENDING_POD, True),
        ("metadata.name=!pending", {"metadata": {"name": "!pending"}}, True),
        # escapes
        (r"metadata.name=a\,b\=c\\d", ODD_NAMES, True),
        (r"metadata.name=a\,b\=c\\d,metadata.namespace=x", ODD_NAMES, True),
        (r"metadata.name=a\,b\=c\\d,metadata.namespace=y", ODD_NAMES, False),
        (r"metadata.name!=a\,b\=c\\d", ODD_NAMES, False),
        # blanks are data in a value, not separators
        ("status.phase= Running", POD, False),
        ("status.phase= Running", {"status": {"phase": " Running"}}, True),
    ],
)
def test_field_selector_matches(selector, obj, expected):
    assert parse_field_selector(selector)(obj) is expected


@pytest.mark.parametrize(
    ("selector", "message"),
    [
        ("metadata.name", "invalid selector: 'metadata.name'; can't understand 'metadata.name'"),
        ("metadata.name=a,status.phase", "can't understand 'status.phase'"),
        ("metadata.name!x", "can't understand 'metadata.name!x'"),
        (" ", "can't understand ' '"),
        ("metadata.name=a=b", "invalid field selector: unescaped character in value: 61"),
        ("metadata.name==a=b", "unescaped character in value: 61"),
        ("metadata.name!==a", "unescaped character in value: 61"),
        (r"metadata.name=a\b", r"invalid field selector: invalid escape sequence: \b"),
        (r"metadata.name=a\ ", "invalid escape sequence"),
        ("metadata.name=a\\", "invalid field selector: invalid escape sequence: \\"),
        ("=mlflow-0", '"" is not a known field selector'),
        ("metadata.name =mlflow-0", '"metadata.name " is not a known field selector'),
        ("metadata..name=x", '"metadata..name" is not a known field selector'),
        ("metadata.name=x, status.phase=Running", '" status.phase" is not a known field selector'),
        (r"meta\,data=x", r'"meta\,data" is not a known field selector'),
    ],
)
def test_field_selector_rejects(selector, message):
    with pytest.raises(SelectorError) as caught:
        parse_field_selector(selector)
    assert message in str(caught.value)


def test_field_selector_escaped_comma_is_not_a_separator():
    one_odd_name = {"metadata": {"name": "a,status.phase=Running"}}
    two_fields = {"metadata": {"name": "a"}, "status": {"phase": "Running"}}
    escaped = parse_field_selector(r"metadata.name=a\,status.phase\=Running")
    assert escaped(one_odd_name) is True
    assert escaped(two_fields) is False
    plain = parse_field_selector("metadata.name=a,status.phase=Running")
    assert plain(one_odd_name) is False
    assert plain(two_fields) is True
    with pytest.raises(SelectorError, match="unescaped character"):  # an escaped comma alone leaves the "=" bare
        parse_field_selector(r"metadata.name=a\,status.phase=Running")


def test_field_selector_treats_none_object_as_empty():
    assert parse_field_selector("metadata.name=")(None) is True
    assert parse_field_selector("metadata.name=x")(None) is False


# --------------------------------------------------------------------------------------------------------------------
# metav1.LabelSelector objects
# --------------------------------------------------------------------------------------------------------------------


def test_none_selector_matches_nothing_and_empty_selector_everything():
    assert match_label_selector(None, {}) is False
    assert match_label_selector(None, LABELED) is False
    assert match_label_selector({}, {}) is True
    assert match_label_selector({}, LABELED) is True
    assert match_label_selector({"matchLabels": {}, "matchExpressions": []}, LABELED) is True
    assert match_label_selector({"matchLabels": None, "matchExpressions": None}, None) is True


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        ({"matchLabels": {"app": "web"}}, LABELED, True),
        ({"matchLabels": {"app": "db"}}, LABELED, False),
        ({"matchLabels": {"app": "web", "env": "prod"}}, LABELED, True),
        ({"matchLabels": {"app": "web", "env": "dev"}}, LABELED, False),
        ({"matchLabels": {"empty": ""}}, LABELED, True),
        ({"matchLabels": {"missing": ""}}, LABELED, False),
        ({"matchLabels": {"app.kubernetes.io/name": "mlflow"}}, MLFLOW, True),
        ({"matchExpressions": [{"key": "app", "operator": "In", "values": ["web", "db"]}]}, LABELED, True),
        ({"matchExpressions": [{"key": "app", "operator": "In", "values": ["db"]}]}, LABELED, False),
        ({"matchExpressions": [{"key": "missing", "operator": "In", "values": ["web"]}]}, LABELED, False),
        ({"matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["db"]}]}, LABELED, True),
        ({"matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["web"]}]}, LABELED, False),
        ({"matchExpressions": [{"key": "missing", "operator": "NotIn", "values": ["web"]}]}, LABELED, True),
        ({"matchExpressions": [{"key": "app", "operator": "Exists"}]}, LABELED, True),
        ({"matchExpressions": [{"key": "missing", "operator": "Exists", "values": []}]}, LABELED, False),
        ({"matchExpressions": [{"key": "missing", "operator": "DoesNotExist"}]}, LABELED, True),
        ({"matchExpressions": [{"key": "app", "operator": "DoesNotExist"}]}, LABELED, False),
        # matchLabels and matchExpressions are ANDed
        (
            {
                "matchLabels": {"app": "web"},
                "matchExpressions": [
                    {"key": "env", "operator": "In", "values": ["prod", "staging"]},
                    {"key": "canary", "operator": "DoesNotExist"},
                ],
            },
            LABELED,
            True,
        ),
        (
            {"matchLabels": {"app": "web"}, "matchExpressions": [{"key": "env", "operator": "In", "values": ["dev"]}]},
            LABELED,
            False,
        ),
        (
            {"matchLabels": {"app": "db"}, "matchExpressions": [{"key": "env", "operator": "In", "values": ["prod"]}]},
            LABELED,
            False,
        ),
        ({"matchLabels": {"app": "web"}}, None, False),
        ({"matchExpressions": [{"key": "app", "operator": "DoesNotExist"}]}, None, True),
    ],
)
def test_match_label_selector(selector, labels, expected):
    assert match_label_selector(selector, labels) is expected


@pytest.mark.parametrize(
    ("selector", "message"),
    [
        ({"matchExpressions": [{"key": "app", "operator": "in", "values": ["web"]}]}, '"in" is not a valid label'),
        ({"matchExpressions": [{"key": "app", "operator": "Equals", "values": ["web"]}]}, '"Equals" is not a valid'),
        ({"matchExpressions": [{"key": "app", "operator": "Gt", "values": ["1"]}]}, '"Gt" is not a valid'),
        ({"matchExpressions": [{"key": "app", "values": ["web"]}]}, '"" is not a valid label selector operator'),
        ({"matchExpressions": [{"key": "app", "operator": "In"}]}, "values set can't be empty"),
        ({"matchExpressions": [{"key": "app", "operator": "NotIn", "values": []}]}, "values set can't be empty"),
        ({"matchExpressions": [{"key": "app", "operator": "Exists", "values": ["x"]}]}, "values set must be empty"),
        ({"matchExpressions": [{"key": "a", "operator": "DoesNotExist", "values": ["x"]}]}, "values set must be empty"),
        ({"matchExpressions": [{"key": "", "operator": "Exists"}]}, 'key: Invalid value: "": name part must be'),
        (
            {"matchExpressions": [{"key": "a", "operator": "In", "values": ["b@d"]}]},
            'values[0][a]: Invalid value: "b@d"',
        ),
        ({"matchLabels": {"bad key": "x"}}, 'key: Invalid value: "bad key"'),
        ({"matchLabels": {"app": "v" * 64}}, "must be no more than 63 bytes"),
        ({"matchLabels": {"app": 1}}, "matchLabels must map strings to strings"),
        ({"matchLabels": ["app"]}, "matchLabels must be a map"),
        ({"matchExpressions": {"key": "app"}}, "matchExpressions must be a list"),
        ({"matchExpressions": [{"key": "app", "operator": "In", "values": "web"}]}, "values must be a list of strings"),
        ("app=web", "a label selector must be a map"),
    ],
)
def test_match_label_selector_rejects(selector, message):
    with pytest.raises(SelectorError) as caught:
        match_label_selector(selector, LABELED)
    assert message in str(caught.value)


def test_match_label_selector_validates_even_when_labels_cannot_match():
    bad = {"matchLabels": {"app": "nope"}, "matchExpressions": [{"key": "x", "operator": "Bogus"}]}
    with pytest.raises(SelectorError, match="Bogus"):
        match_label_selector(bad, None)


@pytest.mark.parametrize(
    "labels",
    [{}, {"app": "web"}, {"app": "db"}, {"app": "web", "canary": "1"}, {"app": "web", "env": "prod"}, {"env": "dev"}],
)
def test_string_and_object_selectors_agree(labels):
    text = "app in (web, cache), !canary, env notin (prod)"
    obj = {
        "matchExpressions": [
            {"key": "app", "operator": "In", "values": ["web", "cache"]},
            {"key": "canary", "operator": "DoesNotExist"},
            {"key": "env", "operator": "NotIn", "values": ["prod"]},
        ]
    }
    expected = labels.get("app") in {"web", "cache"} and "canary" not in labels and labels.get("env") != "prod"
    assert parse_label_selector(text)(labels) is expected
    assert match_label_selector(obj, labels) is expected
