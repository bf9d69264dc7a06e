"""Which searches are lookups by a key (:func:`app.store.filters.by_key`): those run on the event loop's
thread on SQLite, so a filter that may scan must never pass for one."""

from __future__ import annotations

import pytest
from scim2_models import SearchRequest

from app.store.filters import by_key


def _parse(text: str) -> object:
    search = SearchRequest[object].model_validate({"filter": text})
    assert search.filter is not None
    return search.filter.ast


@pytest.mark.parametrize(
    "text",
    [
        'userName eq "ada"',
        'USERNAME eq "ada"',
        'externalId eq "00u1"',
        'id eq "2819c223"',
        'urn:ietf:params:scim:schemas:core:2.0:User:userName eq "ada"',
    ],
)
def test_an_equality_on_a_user_key_is_a_lookup_by_key(text: str) -> None:
    assert by_key(_parse(text), ["User"])


@pytest.mark.parametrize(
    "text",
    [
        'userName co "ad"',
        'userName sw "a"',
        'displayName eq "Ada"',
        'emails.value eq "ada@example.org"',
        'userName eq "ada" or userName eq "bob"',
        'userName eq "ada" and active eq true',
        'emails[value eq "ada@example.org"]',
        'urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber eq "1"',
    ],
)
def test_anything_else_is_not(text: str) -> None:
    assert not by_key(_parse(text), ["User"])


def test_a_search_of_groups_is_not() -> None:
    assert not by_key(_parse('id eq "2819c223"'), ["User", "Group"])
    assert not by_key(_parse('externalId eq "g1"'), ["Group"])
    assert not by_key(None, ["User"])
