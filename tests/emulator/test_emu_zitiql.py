"""The ZitiQL subset (controller-api.md §3.2), tested without a server."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from ziti_emulator.ids import format_time, new_id, parse_time
from ziti_emulator.zitiql import FieldSet, FilterError, compile_predicate, parse_query, sort_entities


@dataclass
class Row:
    name: str
    n: int = 0
    admin: bool = False
    ext: str | None = None
    created: float = 0.0
    attrs: list[str] = field(default_factory=list)
    tags: dict[str, object] = field(default_factory=dict)


FIELDS: FieldSet[Row] = FieldSet(
    scalars={
        "name": lambda r: r.name,
        "n": lambda r: r.n,
        "isAdmin": lambda r: r.admin,
        "externalId": lambda r: r.ext,
        "createdAt": lambda r: r.created,
    },
    sets={"roleAttributes": lambda r: r.attrs},
    tags=lambda r: r.tags,
)
ROWS = [
    Row('a"quote', n=1, admin=True, ext="x", created=parse_time("2026-01-01T00:00:00Z"), attrs=["eng"]),
    Row("bob", n=2, attrs=["eng", "ops"], tags={"scim": "okta"}),
    Row("carol", n=3, created=parse_time("2026-06-01T00:00:00Z")),
]


def names(text: str) -> list[str]:
    query = parse_query(text)
    predicate = compile_predicate(query.predicate, FIELDS)
    return [r.name for r in sort_entities([r for r in ROWS if predicate(r)], query.sort, FIELDS)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('name = "a\\"quote"', ['a"quote']),
        ("n > 1 AND n <= 3", ["bob", "carol"]),
        ("n between 2 and 3", ["bob", "carol"]),
        ("n in [1, 3]", ['a"quote', "carol"]),
        ('name not contains "b"', ['a"quote', "carol"]),
        ('name icontains "BO"', ["bob"]),
        ("isAdmin", ['a"quote']),
        ("not isAdmin = true", ["bob", "carol"]),
        ("externalId = null", ["bob", "carol"]),
        ('allOf(roleAttributes) = "eng"', ['a"quote', "carol"]),  # vacuously true when empty
        ('anyOf(roleAttributes) = "ops" or (n = 3)', ["bob", "carol"]),
        ("isEmpty(roleAttributes)", ["carol"]),
        ("count(roleAttributes) >= 2", ["bob"]),
        ('tags.scim = "okta"', ["bob"]),
        ("'tags.scim' != null", ["bob"]),
        ("createdAt > datetime(2026-03-01T00:00:00Z)", ["carol"]),
        ("true sort by n desc", ["carol", "bob", 'a"quote']),
        ("sort by name desc skip 1 limit 1", ["carol", "bob", 'a"quote']),  # the caller applies skip/limit
    ],
)
def test_filters(text: str, expected: list[str]) -> None:
    assert names(text) == expected


def test_suffixes() -> None:
    query = parse_query('name = "x" sort by name asc, n desc skip 5 limit none')
    assert query.sort == (("name", False), ("n", True)) and query.skip == 5 and query.limit == -1


@pytest.mark.parametrize(
    "text",
    [
        'name = "unterminated',
        'name = "bad \\x escape"',
        'name = "tab\tinside"',
        'roleAttributes = "eng"',  # set field used as a scalar
        'anyOf(name) = "x"',
        'nope = "x"',
        "tags.scim2 = 1",  # digits are not allowed in identifiers
        'name = "x" limit 1 skip 2',
        "n in []",
        'name = "x" and',
        "sort by roleAttributes",
    ],
)
def test_invalid_filters(text: str) -> None:
    with pytest.raises(FilterError):
        query = parse_query(text)
        compile_predicate(query.predicate, FIELDS)
        sort_entities(ROWS, query.sort, FIELDS)


def test_ids_and_times() -> None:
    ident = new_id()
    assert (
        len(ident) == 9
        and ident[0] not in "-."
        and set(ident) <= set("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-")
    )
    assert format_time(parse_time("2026-01-02T03:04:05.678Z")) == "2026-01-02T03:04:05.678Z"
