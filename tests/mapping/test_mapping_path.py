"""SCIM attribute paths and value filters, parsed by scim2-models and evaluated on dicts by
app/mapping/scim_path.py and app/mapping/value_filter.py (RFC 7644 §3.4.2.2, §3.5.2)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.constants import ENTERPRISE_EXTENSION as ENT
from app.constants import ZITI_EXTENSION as ZITI
from app.mapping import PathSyntaxError, evaluate, parse_path

USER: dict[str, Any] = {
    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", ENT, ZITI],
    "userName": "Alice@Example.com",
    "externalId": "00u123",
    "name": {"givenName": "Alice", "familyName": "Smith", "formatted": "Alice Smith"},
    "displayName": "Alice Smith",
    "active": True,
    "emails": [
        {"value": "alice@home.example", "type": "home"},
        {"value": "alice@work.example", "type": "work", "primary": True},
        {"value": "a.smith@work.example", "type": "Work"},
    ],
    "phoneNumbers": [{"value": "+1 555", "type": "mobile", "primary": "True"}],
    "roles": [{"value": "dev", "display": "Developer", "type": "app"}],
    ENT: {"employeeNumber": "E-42", "costCenter": 4200, "manager": {"value": "m-1", "displayName": "Bob"}},
    ZITI: {"roleAttributes": ["vpn", "ssh"], "badge": 7},
}


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("userName", ["Alice@Example.com"]),
        ("USERNAME", ["Alice@Example.com"]),  # RFC 7643 §2.1: names are case-insensitive
        ("externalId", ["00u123"]),
        ("name.givenName", ["Alice"]),
        ("NAME.familyname", ["Smith"]),
        ("emails[primary eq true].value", ["alice@work.example"]),
        ('emails[type eq "work"].value', ["alice@work.example", "a.smith@work.example"]),
        ('emails[type eq "WORK" and primary eq true].value', ["alice@work.example"]),
        ('emails[type ne "work"].value', ["alice@home.example"]),
        ('emails[value co "smith"].value', ["a.smith@work.example"]),
        ('emails[value sw "ALICE@"].value', ["alice@home.example", "alice@work.example"]),
        ('emails[value ew "home.example"].value', ["alice@home.example"]),
        ("emails[primary pr].value", ["alice@work.example"]),
        (
            'emails[type eq "home" or type eq "work"].value',
            ["alice@home.example", "alice@work.example", "a.smith@work.example"],
        ),
        ('emails[not (type eq "work")].value', ["alice@home.example"]),
        ('emails[(type eq "home") or (primary eq true)].type', ["home", "work"]),
        ("emails.value", ["alice@home.example", "alice@work.example", "a.smith@work.example"]),
        ('emails[value gt "alice@i"].value', ["alice@work.example"]),
        ("phoneNumbers[primary eq true].value", ["+1 555"]),  # Entra-style "True" string
        ('phoneNumbers[primary eq "True"].value', ["+1 555"]),  # Entra's own spelling of the filter
        ('emails[primary eq "True"].value', ["alice@work.example"]),  # ... against a real boolean
        ('emails[type eq "home"]', [USER["emails"][0]]),  # no sub-attribute: the whole element
        ('emails[type eq "home"].display', []),
        ("  userName ", ["Alice@Example.com"]),  # surrounding blanks are not part of the path
        ('roles[display eq "developer"].value', ["dev"]),
        (f"{ENT}:employeeNumber", ["E-42"]),
        (f"{ENT.upper()}:EMPLOYEENUMBER", ["E-42"]),
        (f"{ENT}:costCenter", [4200]),
        (f"{ENT}:manager.value", ["m-1"]),
        (f"{ZITI}:roleAttributes", ["vpn", "ssh"]),
        (f"{ZITI}:badge", [7]),
        ("urn:ietf:params:scim:schemas:core:2.0:User:userName", ["Alice@Example.com"]),
        ("urn:ietf:params:scim:schemas:core:2.0:User:name.givenName", ["Alice"]),
        ("nickName", []),
        ("name.middleName", []),
        ('emails[type eq "other"].value', []),
        ("urn:example:unknown:2.0:User:x", []),
    ],
)
def test_path_forms(path: str, expected: list[object]) -> None:
    assert list(evaluate(parse_path(path), USER).values) == expected


def test_urn_split_uses_last_colon_before_filter() -> None:
    path = parse_path(f'{ENT}:emails[value eq "a:b"].value')
    assert (path.schema, path.attribute, path.text) == (ENT, "emails", f'{ENT}:emails[value eq "a:b"].value')
    assert str(path.node) == f'{ENT}:emails[value eq "a:b"].value'
    assert evaluate(path, {ENT: {"emails": [{"value": "a:b"}, {"value": "c"}]}}).values == ("a:b",)


@pytest.mark.parametrize(
    ("emails", "fallback", "expected"),
    [
        ([{"value": "a@x"}, {"value": "b@x"}], True, ["a@x"]),  # none primary → first
        ([{"value": "a@x"}, {"value": "b@x"}], False, []),
        ([{"value": "a@x", "primary": False}, {"value": "b@x", "primary": True}], True, ["b@x"]),
        ([{"value": "a@x", "primary": "false"}, {"value": "b@x", "primary": "TRUE"}], True, ["b@x"]),
        (["plain@x", "second@x"], True, ["plain@x"]),  # Asgardeo: emails as plain strings
        ([], True, []),
        ([None, {"value": "c@x"}], True, ["c@x"]),
    ],
)
def test_primary_fallback(emails: list[object], fallback: bool, expected: list[str]) -> None:
    path = parse_path("emails[primary eq true].value")
    assert list(evaluate(path, {"emails": emails}, primary_fallback=fallback).values) == expected


def test_primary_fallback_is_noted_and_only_for_primary_filter() -> None:
    user = {"emails": [{"value": "a@x", "type": "home"}]}
    ev = evaluate(parse_path("emails[primary eq true].value"), user, primary_fallback=True)
    assert ev.notes == ("no element of emails is marked primary; used the first one",)
    ev = evaluate(parse_path('emails[type eq "work"].value'), user, primary_fallback=True)
    assert ev.values == ()


def test_two_primaries_are_noted() -> None:
    user = {"emails": [{"value": "a@x", "primary": True}, {"value": "b@x", "primary": True}]}
    ev = evaluate(parse_path("emails[primary eq true].value"), user)
    assert ev.values == ("a@x", "b@x")
    assert "2 elements of emails are marked primary" in ev.notes


ODD_PATHS = ("emails[primary eq true].value", "name.givenName", f"{ENT}:employeeNumber", "emails.value")


@pytest.mark.parametrize(
    ("resource", "expected"),
    [
        # A bare value where a list of objects was expected is read as its own value.
        ({"emails": "not-a-list"}, [("not-a-list",), (), (), ("not-a-list",)]),
        ({"emails": {"value": "x"}}, [("x",), (), (), ("x",)]),  # a single object where a list was expected
        # Scalars pass through (the mapper refuses non-strings later); nested lists are flattened.
        ({"emails": [1, True, None, ["nested"]]}, [(1,), (), (), (1, True, "nested")]),
        ({"name": "flat"}, [(), (), (), ()]),
        ({ENT: "not-an-object"}, [(), (), (), ()]),
        ({ENT: None}, [(), (), (), ()]),
        ({}, [(), (), (), ()]),
    ],
)
def test_odd_shapes_never_raise(resource: dict[str, Any], expected: list[tuple[object, ...]]) -> None:
    got = [evaluate(parse_path(text), resource, primary_fallback=True) for text in ODD_PATHS]
    assert [ev.values for ev in got] == expected
    for ev in got:
        assert not any(isinstance(v, dict | list) for v in ev.values)  # never a container
    assert f"extension {ENT} is absent" in got[2].notes


def test_single_object_where_list_expected_still_matches() -> None:
    ev = evaluate(parse_path("emails[primary eq true].value"), {"emails": {"value": "x@y", "primary": True}})
    assert ev.values == ("x@y",)


@pytest.mark.parametrize(
    ("flt", "element", "expected"),
    [
        ("value eq null", {}, True),
        ("value eq null", {"value": "x"}, False),
        ("value ne null", {"value": "x"}, True),
        ('value ne "x"', {}, True),  # ne matches an absent attribute
        ("n eq 3", {"n": 3}, True),
        ("n eq 3", {"n": "3"}, False),
        ("n eq 3", {"n": True}, False),
        ("n gt 2.5", {"n": 3}, True),
        ("n le 2", {"n": 3}, False),
        ("n ge 3", {"n": 3}, True),
        ("n lt 10", {"n": 3}, True),
        ("n gt 1", {"n": "5"}, False),
        ("primary eq false", {"primary": False}, True),
        ("primary eq false", {"primary": "False"}, True),
        ('primary eq "true"', {"primary": True}, True),
        ("primary eq true", {"primary": 1}, False),
        ('tags eq "b"', {"tags": ["a", "b"]}, True),  # multi-valued: any element
        ("tags pr", {"tags": []}, False),
        ("tags pr", {"tags": {}}, False),
        ("x pr", {"x": ""}, False),
        ("x pr", {"x": 0}, True),
        ('sub.attr eq "v"', {"sub": {"attr": "V"}}, True),
        ('sub.attr eq "v"', {"sub": "flat"}, False),
        ('value co "x"', {"value": 5}, False),
        ('a eq "1" and b eq "2" or c eq "3"', {"c": "3"}, True),  # and binds tighter than or
        ('a eq "1" and (b eq "2" or c eq "3")', {"c": "3"}, False),
        ('NOT (a EQ "1")', {"a": "2"}, True),  # keywords are case-insensitive (WSO2 sends "Eq")
        ('a Eq "x\\"y"', {"a": 'x"y'}, True),
    ],
)
def test_filter_semantics(flt: str, element: dict[str, Any], expected: bool) -> None:
    selected = evaluate(parse_path(f"items[{flt}]"), {"items": [element]}).values
    assert selected == ((element,) if expected else ())


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty attribute path at position 0 in ''"),
        ("   ", "empty attribute path at position 0 in '   '"),
        ("emails[", "unexpected end of path, expected an attribute name, 'not' or '(' at position 6 in 'emails['"),
        (
            "emails[type eq work].value",
            "unexpected 'work', expected a value (a quoted string, a number, true, false or null) "
            "at position 15 in 'emails[type eq work].value'",
        ),
        ('emails[type zz "x"]', """unexpected 'zz', expected an operator or pr at position 12 in 'emails[type zz "x"]'"""),
        (
            "emails[type eq]",
            "unexpected ']', expected a value (a quoted string, a number, true, false or null) "
            "at position 14 in 'emails[type eq]'",
        ),
        ("emails[]", "unexpected ']', expected an attribute name, 'not' or '(' at position 7 in 'emails[]'"),
        (
            'emails[type eq "a" and]',
            """unexpected ']', expected an attribute name, 'not' or '(' at position 22 in 'emails[type eq "a" and]'""",
        ),
        ('emails[type eq "a"))]', """unexpected ')', expected ']' at position 18 in 'emails[type eq "a"))]'"""),
        ('emails[(type eq "a"]', """unexpected ']', expected ')' at position 19 in 'emails[(type eq "a"]'"""),
        ("emails[value co 3]", "co compares strings, not 3 in 'emails[value co 3]'"),
        ("emails[primary gt true]", "gt compares strings or numbers, not true in 'emails[primary gt true]'"),
        (
            'emails[type eq "unterminated]',
            """unexpected '"' (an unterminated or invalid string), expected a value (a quoted string, a number, """
            """true, false or null) at position 15 in 'emails[type eq "unterminated]'""",
        ),
        ("9lives", "unexpected '9', expected an attribute name at position 0 in '9lives'"),
        ("name..givenName", "unexpected '.', expected '[' or end of path at position 4 in 'name..givenName'"),
        ("name givenName", "unexpected 'givenName', expected '[' or end of path at position 5 in 'name givenName'"),
        (f"{ENT}:", f"unexpected ':', expected '[' or end of path at position {len(ENT)} in '{ENT}:'"),
        ('emails[type eq "a"]x', """unexpected 'x', expected '.' or end of path at position 19 in 'emails[type eq "a"]x'"""),
        ('emails[not type eq "a"]', """unexpected 'type', expected '(' at position 11 in 'emails[not type eq "a"]'"""),
        (
            'emails["v" eq "a"]',
            """unexpected '"v"', expected an attribute name, 'not' or '(' at position 7 in 'emails["v" eq "a"]'""",
        ),
        # Refused by scim2-models' grammar where the old one read on: SCIM has nothing below a
        # sub-attribute (RFC 7643 errata 8415), so neither a third name nor a filter on a sub-attribute.
        ("name.givenName.x", "unexpected '.', expected '[' or end of path at position 14 in 'name.givenName.x'"),
        (
            'name.givenName[type eq "x"]',
            """a value selection cannot apply to the sub-attribute 'name.givenName' in 'name.givenName[type eq "x"]'""",
        ),
        # Read by the grammar (a PATCH path, RFC 7644 errata 7122; a URN inside brackets), refused here.
        (
            'emails.type eq "work"',
            """a comparison is not an attribute path (write attribute[filter].subAttribute) """
            """in 'emails.type eq "work"'""",
        ),
        (
            'emails[urn:x:y:type eq "a"].value',
            """a value filter names sub-attributes, not 'urn:x:y:type' in 'emails[urn:x:y:type eq "a"].value'""",
        ),
    ],
)
def test_syntax_errors(text: str, message: str) -> None:
    with pytest.raises(PathSyntaxError) as info:
        parse_path(text)
    assert str(info.value) == message


def test_syntax_error_position_points_into_the_path() -> None:
    with pytest.raises(PathSyntaxError) as info:
        parse_path('emails[type xx "a"].value')
    assert info.value.position == len("emails[type ")


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet='emails[]().:"\\ typeqrnotdu1', max_size=30))
def test_any_text_parses_or_is_a_path_syntax_error(text: str) -> None:
    """Whatever the parser reports is turned into a PathSyntaxError (never a KeyError or a lark error), and
    its position, when it has one, points into the path."""
    try:
        path = parse_path(text)
    except PathSyntaxError as error:
        assert error.text in (text, text.strip())  # the path is read without surrounding blanks
        assert error.position is None or 0 <= error.position <= len(error.text)
        assert str(error).endswith(f" in {error.text!r}")
    else:
        evaluate(path, USER, primary_fallback=True)
