"""ZitiQL filter builders: quoting per the ZitiQl.g4 STRING/IDENTIFIER rules."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.ziti.filters import (
    ziti_filter_and,
    ziti_filter_eq,
    ziti_filter_tag_eq,
    ziti_identifier,
    ziti_quote,
)

# Reference reading of the grammar: STRING: '"' (ESC | SAFECODEPOINT)* '"'
_STRING = re.compile(r'"((?:\\["\\fnrt]|[^"\\\x00-\x1f])*)"')
_UNESCAPE = {'"': '"', "\\": "\\", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


def _decode(literal: str) -> str:
    match = _STRING.fullmatch(literal)
    assert match is not None, f"not a ZitiQL string literal: {literal!r}"
    return re.sub(r"\\(.)", lambda m: _UNESCAPE[m.group(1)], match.group(1))


def test_quote_escapes_quote_and_backslash() -> None:
    assert ziti_quote('a"b\\c') == '"a\\"b\\\\c"'
    assert ziti_quote("") == '""'


def test_quote_escapes_the_five_escapable_controls() -> None:
    assert ziti_quote("x\ny\tz\r\f") == '"x\\ny\\tz\\r\\f"'


@pytest.mark.parametrize("char", ["\x00", "\x01", "\x08", "\x1b", "\x1f"])
def test_quote_rejects_other_control_characters(char: str) -> None:
    with pytest.raises(ValueError, match="control character"):
        ziti_quote(f"a{char}b")


@given(
    st.text(alphabet=st.characters(codec="utf-8"), max_size=40).filter(
        lambda s: all(ord(c) >= 0x20 or c in "\f\n\r\t" for c in s)
    )
)
def test_quote_round_trips_through_the_grammar(value: str) -> None:
    assert _decode(ziti_quote(value)) == value


def test_filter_eq_renders_each_literal_kind() -> None:
    assert ziti_filter_eq("externalId", 'o"k\\') == 'externalId = "o\\"k\\\\"'
    assert ziti_filter_eq("isAdmin", False) == "isAdmin = false"
    assert ziti_filter_eq("isAdmin", True) == "isAdmin = true"
    assert ziti_filter_eq("defaultHostingCost", 7) == "defaultHostingCost = 7"
    assert ziti_filter_eq("externalId", None) == "externalId = null"


def test_filter_eq_cannot_be_used_for_injection() -> None:
    hostile = '" or true or name = "'
    rendered = ziti_filter_eq("externalId", hostile)
    assert rendered.startswith("externalId = ")
    assert _decode(rendered.removeprefix("externalId = ")) == hostile


@pytest.mark.parametrize("field", ["externalId", "tags.scimId", "tags.scim_id", "tags.scim-id", "a.b.c"])
def test_valid_identifiers(field: str) -> None:
    assert ziti_identifier(field) == field


@pytest.mark.parametrize("field", ["", "1abc", "tags.scim2", "name = 1", "tags.", ".x", "a-b", "ta gs"])
def test_invalid_identifiers_are_refused(field: str) -> None:
    with pytest.raises(ValueError, match="not a valid Ziti filter field"):
        ziti_identifier(field)


def test_tag_filter() -> None:
    assert ziti_filter_tag_eq("scimId", "2819c223") == 'tags.scimId = "2819c223"'
    with pytest.raises(ValueError, match="must not contain"):
        ziti_filter_tag_eq("a.b", "x")
    with pytest.raises(ValueError):
        ziti_filter_tag_eq("scim2", "x")


def test_unsupported_value_type() -> None:
    with pytest.raises(TypeError):
        ziti_filter_eq("name", 1.5)  # type: ignore[arg-type]


def test_and_parenthesises_clauses() -> None:
    assert ziti_filter_and('a = "1"') == 'a = "1"'
    assert ziti_filter_and('a = "1"', "", 'b = "2" or c = "3"') == '(a = "1") and (b = "2" or c = "3")'
    with pytest.raises(ValueError):
        ziti_filter_and("")
