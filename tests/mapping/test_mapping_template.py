"""Name templates: ``{path}`` placeholders, whitespace handling, empty results."""

from __future__ import annotations

from typing import Any

import pytest

from app.constants import ENTERPRISE_EXTENSION as ENT
from app.mapping import MappingConfig, MappingConfigError, MappingError, PathSyntaxError, map_user
from app.mapping.template import parse_template

USER: dict[str, Any] = {
    "userName": "jdoe",
    "name": {"givenName": "Jane", "familyName": "Doe"},
    "displayName": "Jane Doe",
    "emails": [
        {"value": "jane@work.example", "type": "work"},
        {"value": "jane@home.example", "type": "home"},
    ],
    ENT: {"employeeNumber": 1234, "department": "  "},
    "active": True,
}


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{userName}", "jdoe"),
        ("{name.givenName} {name.familyName}", "Jane Doe"),
        ("{emails[primary eq true].value}", "jane@work.example"),  # none primary → first
        ('{emails[type eq "home"].value}', "jane@home.example"),
        ("{emails.value}", "jane@work.example"),  # multi-valued → first value
        ("{displayName} ({userName})", "Jane Doe (jdoe)"),
        ("{nickName} {userName}", "jdoe"),  # missing → "", then stripped
        ("{name.givenName} {name.middleName} {name.familyName}", "Jane Doe"),  # whitespace collapsed
        (f"{{{ENT}:employeeNumber}}-{{userName}}", "1234-jdoe"),  # numbers render in decimal
        (f"{{{ENT}:department}}{{userName}}", "jdoe"),  # blank value counts as missing
        ("{{{userName}}}", "{jdoe}"),  # doubled braces are literal
        ("user {active}", "user true"),
    ],
)
def test_render(template: str, expected: str) -> None:
    assert parse_template(template).render(USER) == expected


def test_authentik_single_word_name_is_trimmed() -> None:
    # authentik sends familyName " " and formatted "Bob " for one-word names (its default SCIM mapping)
    user = {"userName": "bob", "name": {"formatted": "Bob ", "familyName": " ", "givenName": "Bob"}}
    assert parse_template("{name.givenName} {name.familyName}").render(user) == "Bob"
    assert parse_template("{name.formatted}").render(user) == "Bob"


@pytest.mark.parametrize(
    ("template", "attribute"),
    [
        ("{nickName}", "nickName"),
        ("{name.middleName} {title}", "name.middleName, title"),
        ("{name.familyName}", "name.familyName"),
    ],
)
def test_empty_result_is_a_mapping_error_naming_the_attributes(template: str, attribute: str) -> None:
    user = {"userName": "x", "name": {"familyName": " "}}
    with pytest.raises(MappingError) as info:
        parse_template(template).render(user)
    assert info.value.attribute == attribute
    assert info.value.scim_type == "invalidValue"


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{userName", "unclosed '{' at position 0 in '{userName'"),
        ("userName}", "unmatched '}' (write '}}' for a literal brace) at position 8 in 'userName}'"),
        ("{}", "empty attribute path at position 1 in '{}'"),
        (
            "x {emails[type eq work].value}",  # the position counts from the start of the template
            "unexpected 'work', expected a value (a quoted string, a number, true, false or null) "
            "at position 18 in 'x {emails[type eq work].value}'",
        ),
        (
            "x {emails.type eq 1}",  # an error with no position keeps none
            "a comparison is not an attribute path (write attribute[filter].subAttribute) in 'x {emails.type eq 1}'",
        ),
    ],
)
def test_template_syntax_errors(template: str, message: str) -> None:
    with pytest.raises(PathSyntaxError) as info:
        parse_template(template)
    assert str(info.value) == message


def test_template_without_placeholder_is_a_config_error() -> None:
    with pytest.raises(MappingConfigError) as info:
        MappingConfig(external_id="userName", name_template="everyone")
    assert info.value.key == "name_template"


def test_map_user_uses_template() -> None:
    config = MappingConfig(external_id="userName", name_template="{name.familyName}, {name.givenName}")
    assert map_user(USER, [], config).identity.name == "Doe, Jane"
