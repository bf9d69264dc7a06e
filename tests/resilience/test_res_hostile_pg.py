"""Issue 6, resilience 4 on PostgreSQL: the filter comparison with the reference semantics, and the
hostile values PostgreSQL itself refuses (NUL characters, index rows past the btree limit), which must
be client errors, not a "retry later" that can never succeed."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.resilience.res_arena import (
    POPULATION,
    Arena,
    Hostile,
    assert_past_the_end,
    check_filters,
    hostile_server,
    make_arena,
)
from tests.resilience.res_support import PATCH, USER

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def hostile_pg(postgres_shared: str) -> Iterator[Hostile]:
    with hostile_server(postgres_shared, 10) as server:
        yield server


@pytest.fixture
def arena(hostile_pg: Hostile) -> Iterator[Arena]:
    with make_arena(hostile_pg) as fresh:
        yield fresh


def test_filters_select_what_scim2_models_selects_on_postgres(arena: Arena) -> None:
    check_filters(arena, POPULATION, 160, "hostile-filters[postgres]")


def test_nul_in_a_string_is_a_client_error(arena: Arena) -> None:
    """NUL is refused (400) in bodies, PATCH values and filters; PostgreSQL cannot store it. Regression:
    it used to be a 503 'retry later' forever (a DBAPIError), last in a filter value written as the JSON
    escape \\u0000, which the filter parser decodes after the request-level NUL checks."""
    created = arena.send(
        "POST",
        "/Users",
        {"schemas": [USER], "userName": "nul\u0000name", "emails": [{"value": "nul-create@example.com"}]},
        allowed={400, 409, 503},
    )
    patched = arena.send(
        "PATCH",
        f"/Users/{arena.target}",
        {"schemas": [PATCH], "Operations": [{"op": "replace", "path": "displayName", "value": "a\u0000b"}]},
        allowed={400, 503},
    )
    searched = arena.send("GET", "/Users", params={"filter": 'userName eq "\\u0000"'}, allowed={400, 503})
    arena.assert_sentinels(other=True)
    assert (created.status_code, patched.status_code) == (400, 400), (created.text, patched.text)
    assert searched.status_code == 400, searched.text


def test_long_indexed_values_are_client_errors(arena: Arena) -> None:
    """Regression: a userName, displayName, email or externalId past PostgreSQL's btree row limit (about
    2.7 kB incompressible) was a 503 'retry later' forever; it must be stored or refused with 400."""

    def noise(length: int) -> str:
        return "".join(uuid.uuid4().hex for _ in range(length // 32 + 1))[:length]

    statuses = {}
    for attribute in ("userName", "displayName", "email", "externalId"):
        body = {
            "schemas": [USER],
            "userName": f"long-{attribute}",
            "emails": [{"value": f"{attribute}@long.example"}],
        }
        if attribute == "email":
            body["emails"] = [{"value": noise(3000) + "@long.example"}]
        else:
            body[attribute] = noise(3000)
        response = arena.send("POST", "/Users", body, allowed={400, 503})
        statuses[attribute] = response.status_code
        found = arena.client.get("/Users", params={"filter": f'userName eq "long-{attribute}"'}).json()
        if response.status_code == 201:  # stored whole: what is read back is what was sent
            (stored,) = found["Resources"]
            sent = body["emails"][0]["value"] if attribute == "email" else body[attribute]
            kept = stored["emails"][0]["value"] if attribute == "email" else stored[attribute]
            assert kept == sent, attribute
        else:  # refused: nothing stored
            assert found["totalResults"] == 0, (attribute, found)
    arena.assert_sentinels(other=True)
    assert set(statuses.values()) <= {201, 400}, statuses


def test_huge_start_index_is_a_scim_error_on_postgres(arena: Arena) -> None:
    """Regression: a startIndex past 2**63 reached the OFFSET unclamped (asyncpg DataError, then 503)."""
    response = arena.send("GET", "/Users", params={"startIndex": "99999999999999999999"}, allowed={400, 503})
    assert_past_the_end(arena, response, "/Users")
    arena.assert_sentinels()
