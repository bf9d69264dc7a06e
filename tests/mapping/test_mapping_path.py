"""SCIM attribute paths and value filters evaluated on dicts (RFC 7644 §3.4.2.2, §3.5.2)."""

from __future__ import annotations

from typing import Any

import pytest

from app.constants import ENTERPRISE_EXTENSION as ENT
from app.constants import ZITI_EXTENSION as ZITI
from app.mapping import PathSyntaxError, evaluate, parse_filter, parse_path
from app.mapping.value_filter import matches

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
    assert path.schema == ENT
    assert [s.name for s in path.segments] == ["emails", "value"]
    assert path.segments[0].filter_text == 'value eq "a:b"'


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
    assert matches(parse_filter(flt), element) is expected


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "empty attribute path"),
        ("   ", "empty attribute path"),
        ("emails[", "unclosed '['"),
        ("emails[type eq work].value", "quote strings"),
        ('emails[type zz "x"]', "unknown operator"),
        ("emails[type eq]", "expected a value"),
        ("emails[]", "empty filter"),
        ('emails[type eq "a" and]', "expected an attribute name"),
        ('emails[type eq "a"))]', "unexpected ')'"),
        ('emails[(type eq "a"]', "expected ')'"),
        ("emails[value co 3]", "co needs a string"),
        ("emails[primary gt true]", "gt needs a string or number"),
        ('emails[type eq "unterminated]', "unclosed '['"),
        ("9lives", "expected an attribute name"),
        ("name..givenName", "expected an attribute name"),
        ("name givenName", "unexpected ' '"),
        (f"{ENT}:", "schema URN without an attribute name"),
        ('emails[type eq "a"]x', "unexpected 'x'"),
        ('emails[not type eq "a"]', "expected '('"),
        ('emails["v" eq "a"]', "expected an attribute name"),
    ],
)
def test_syntax_errors(text: str, fragment: str) -> None:
    with pytest.raises(PathSyntaxError) as info:
        parse_path(text)
    assert fragment in str(info.value)


def test_syntax_error_position_points_into_the_path() -> None:
    with pytest.raises(PathSyntaxError) as info:
        parse_path('emails[type xx "a"].value')
    assert info.value.position == len("emails[type ")
