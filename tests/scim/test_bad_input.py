"""Acceptance 5: every malformed request gets the right SCIM error, and the store is left unchanged."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from app.store.db import Database
from app.store.tables import dirty, members, resources
from tests.scim.conftest import TOKEN_A, TOKEN_B, Live

USER = "urn:ietf:params:scim:schemas:core:2.0:User"
PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
ERROR = "urn:ietf:params:scim:api:messages:2.0:Error"


def snapshot(live: Live) -> list[Any]:
    """Every row the service keeps, as plain data (all sources: nothing may change anywhere)."""
    services = live.app.state.services  # type: ignore[attr-defined]

    async def read() -> list[Any]:
        database = Database(services.config.database_url)
        try:
            async with database.engine.connect() as conn:
                rows: list[Any] = []
                for table in (resources, members, dirty):
                    result = await conn.execute(select(table).order_by(*table.primary_key.columns))
                    rows.append([tuple(row) for row in result])
                return rows
        finally:
            await database.dispose()

    return asyncio.run(read())


def patch(*operations: dict[str, Any]) -> dict[str, Any]:
    return {"schemas": [PATCH], "Operations": list(operations)}


# (name, method, path, headers, body, status, scimType); {user} and {group} are replaced by the seeded ids.
CASES: list[tuple[str, str, str, dict[str, str], Any, int, str | None]] = [
    ("invalid JSON", "POST", "/Users", {}, b"{not json", 400, "invalidSyntax"),
    ("JSON that is not an object", "POST", "/Users", {}, b"[1, 2]", 400, "invalidSyntax"),
    ("wrong content type", "POST", "/Users", {"Content-Type": "text/plain"}, {"userName": "x"}, 415, None),
    (
        "unknown schema only",
        "POST",
        "/Users",
        {},
        {"schemas": ["urn:example:nope"], "userName": "x"},
        400,
        "invalidSyntax",
    ),
    ("missing userName", "POST", "/Users", {}, {"schemas": [USER]}, 400, "invalidValue"),
    (
        "userName of the wrong type",
        "POST",
        "/Users",
        {},
        {"schemas": [USER], "userName": 12},
        400,
        "invalidValue",
    ),
    (
        "taken userName, other case",
        "POST",
        "/Users",
        {},
        {"schemas": [USER], "userName": "ALICE"},
        409,
        "uniqueness",
    ),
    (
        "emails of the wrong type",
        "POST",
        "/Users",
        {},
        {"schemas": [USER], "userName": "y", "emails": "nope"},
        400,
        "invalidValue",
    ),
    ("bad filter syntax", "GET", "/Users?filter=userName%20eq", {}, None, 400, "invalidFilter"),
    (
        "filter on an unknown attribute",
        "GET",
        "/Users?filter=shoeSize%20eq%201",
        {},
        None,
        400,
        "invalidFilter",
    ),
    (
        "too expensive filter",
        "GET",
        "/Users?filter=" + "%20or%20".join(["userName%20co%20%22a%22"] * 40),
        {},
        None,
        400,
        "tooMany",
    ),
    (
        "ordering operator on a boolean",
        "GET",
        "/Users?filter=active%20gt%20true",
        {},
        None,
        400,
        "invalidFilter",
    ),
    ("startIndex not a number", "GET", "/Users?startIndex=abc", {}, None, 400, "invalidValue"),
    # Cursors are not announced (ServiceProviderConfig pagination.cursor = false): RFC 9865 §2.1.
    ("cursor, first page", "GET", "/Users?cursor=&count=1", {}, None, 400, "invalidCursor"),
    ("cursor value", "GET", "/Groups?cursor=VZUTiyhEQJ94IR", {}, None, 400, "invalidCursor"),
    (
        "cursor in a search body",
        "POST",
        "/Users/.search",
        {},
        {"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"], "cursor": "", "count": 1},
        400,
        "invalidCursor",
    ),
    ("unknown user id", "GET", "/Users/00000000-0000-0000-0000-000000000000", {}, None, 404, None),
    ("unknown group id", "DELETE", "/Groups/00000000-0000-0000-0000-000000000000", {}, None, 404, None),
    (
        "another source's user",
        "GET",
        "/Users/{user}",
        {"Authorization": f"Bearer {TOKEN_B}"},
        None,
        404,
        None,
    ),
    (
        "another source's user, PATCH",
        "PATCH",
        "/Users/{user}",
        {"Authorization": f"Bearer {TOKEN_B}"},
        patch({"op": "replace", "path": "displayName", "value": "x"}),
        404,
        None,
    ),
    (
        "another source's user, DELETE",
        "DELETE",
        "/Users/{user}",
        {"Authorization": f"Bearer {TOKEN_B}"},
        None,
        404,
        None,
    ),
    ("missing token", "GET", "/Users", {"Authorization": ""}, None, 401, None),
    ("wrong token", "GET", "/Users", {"Authorization": "Bearer wrong-token-0123456789"}, None, 401, None),
    ("truncated token", "GET", "/Users", {"Authorization": f"Bearer {TOKEN_A[:-1]}"}, None, 401, None),
    ("basic scheme", "GET", "/Users", {"Authorization": f"Basic {TOKEN_A}"}, None, 401, None),
    (
        "body over the limit",
        "POST",
        "/Users",
        {},
        {"schemas": [USER], "userName": "big", "displayName": "x" * 2_000_000},
        413,
        None,
    ),
    (
        "PATCH with a bad path",
        "PATCH",
        "/Users/{user}",
        {},
        patch({"op": "replace", "path": "name[", "value": 1}),
        400,
        "invalidPath",
    ),
    (
        "PATCH on an unknown attribute (strict source)",
        "PATCH",
        "/Users/{user_b}",
        {"Authorization": f"Bearer {TOKEN_B}"},
        patch({"op": "replace", "path": "shoeSize", "value": 1}),
        400,
        "invalidPath",
    ),
    (
        "unknown attribute (strict source)",
        "POST",
        "/Users",
        {"Authorization": f"Bearer {TOKEN_B}"},
        {"schemas": [USER], "userName": "z", "shoeSize": 44},
        400,
        "invalidSyntax",
    ),
    (
        "PATCH replace with no match (strict source)",
        "PATCH",
        "/Users/{user_b}",
        {"Authorization": f"Bearer {TOKEN_B}"},
        patch({"op": "replace", "path": 'emails[type eq "work"].value', "value": "x@example.com"}),
        400,
        "noTarget",
    ),
    (
        "PATCH with an unknown op",
        "PATCH",
        "/Users/{user}",
        {},
        patch({"op": "frobnicate", "path": "displayName"}),
        400,
        "invalidValue",
    ),
    ("PATCH without Operations", "PATCH", "/Users/{user}", {}, {"schemas": [PATCH]}, 400, "invalidValue"),
    (
        "PATCH half valid is not half applied",
        "PATCH",
        "/Users/{user}",
        {},
        patch(
            {"op": "replace", "path": "displayName", "value": "changed"},
            {"op": "replace", "path": "active", "value": "not-a-boolean"},
        ),
        400,
        "invalidValue",
    ),
    (
        "PATCH of a readOnly attribute",
        "PATCH",
        "/Users/{user}",
        {},
        patch({"op": "replace", "path": "id", "value": "x"}),
        400,
        "mutability",
    ),
    (
        "PATCH adding an unknown member",
        "PATCH",
        "/Groups/{group}",
        {},
        patch({"op": "add", "path": "members", "value": [{"value": "no-such-user"}]}),
        400,
        "invalidValue",
    ),
    (
        "PUT with a stale If-Match",
        "PUT",
        "/Users/{user}",
        {"If-Match": 'W/"999"'},
        {"schemas": [USER], "userName": "alice", "displayName": "stale"},
        412,
        None,
    ),
    ("DELETE with a stale If-Match", "DELETE", "/Users/{user}", {"If-Match": 'W/"999"'}, None, 412, None),
    (
        "PUT renaming onto a taken userName",
        "PUT",
        "/Users/{user2}",
        {},
        {"schemas": [USER], "userName": "Alice"},
        409,
        "uniqueness",
    ),
    (
        "group with an unknown member",
        "POST",
        "/Groups",
        {},
        {
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
            "displayName": "g2",
            "members": [{"value": "no-such-user"}],
        },
        400,
        "invalidValue",
    ),
    ("unknown endpoint", "GET", "/Devices", {}, None, 404, None),
    ("method not allowed", "PUT", "/Users", {}, {"schemas": [USER], "userName": "x"}, 405, None),
]


@pytest.fixture
def seeded(live: Live) -> tuple[Live, dict[str, str]]:
    with live.client() as client:
        alice = client.post(
            "/Users",
            json={
                "schemas": [USER],
                "userName": "alice",
                "emails": [{"value": "alice@example.com", "primary": True}],
            },
        )
        bob = client.post("/Users", json={"schemas": [USER], "userName": "bob"})
        group = client.post(
            "/Groups",
            json={
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                "displayName": "staff",
                "members": [{"value": alice.json()["id"]}],
            },
        )
        assert (alice.status_code, bob.status_code, group.status_code) == (201, 201, 201)
    with live.client(TOKEN_B) as client:
        carol = client.post("/Users", json={"schemas": [USER], "userName": "carol"})
        assert carol.status_code == 201
    ids = {"user": alice.json()["id"], "user2": bob.json()["id"], "group": group.json()["id"]}
    return live, {**ids, "user_b": carol.json()["id"]}


def test_bad_inputs_get_scim_errors_and_change_nothing(seeded: tuple[Live, dict[str, str]]) -> None:
    live, ids = seeded
    before = snapshot(live)
    failures = []
    with live.client() as client:
        for name, method, path, headers, body, status, scim_type in CASES:
            content = body if isinstance(body, bytes) else None if body is None else json.dumps(body).encode()
            response = client.request(method, path.format(**ids), headers=headers, content=content)
            got = response.json() if response.content else {}
            if (
                response.status_code != status
                or got.get("scimType") != scim_type
                or ERROR not in got.get("schemas", [])
            ):
                failures.append((name, response.status_code, got))
            if status == 401 and response.headers.get("WWW-Authenticate", "").split(" ")[0] != "Bearer":
                failures.append((name, "no WWW-Authenticate: Bearer", dict(response.headers)))
            if "Traceback" in response.text:
                failures.append((name, "traceback", response.text))
    for failure in failures:
        print("FAIL", failure)
    assert not failures, failures
    assert snapshot(live) == before


def test_count_over_the_maximum_is_clamped(seeded: tuple[Live, dict[str, str]]) -> None:
    live, _ = seeded
    with live.client() as client:
        for index in range(3):
            client.post("/Users", json={"schemas": [USER], "userName": f"extra{index}"})
        response = client.get("/Users", params={"count": 10_000_000})
        config = client.get("/ServiceProviderConfig").json()
    assert response.status_code == 200
    body = response.json()
    assert body["totalResults"] == 5
    assert body["itemsPerPage"] == 5 <= config["filter"]["maxResults"]


def test_password_is_ignored_and_never_stored(live: Live) -> None:
    secret = "Sup3r-Secret-Passw0rd!"
    with live.client() as client:
        created = client.post("/Users", json={"schemas": [USER], "userName": "okta-user", "password": secret})
        assert created.status_code == 201
        user_id = created.json()["id"]
        replaced = client.put(
            f"/Users/{user_id}", json={"schemas": [USER], "userName": "okta-user", "password": secret}
        )
        patched = client.patch(
            f"/Users/{user_id}", json=patch({"op": "replace", "path": "password", "value": secret})
        )
        assert (replaced.status_code, patched.status_code) == (200, 200)
        assert secret not in created.text + replaced.text + patched.text
    assert secret not in repr(snapshot(live))


def test_token_rotation_two_tokens_work_at_once(live: Live) -> None:
    from tests.scim.conftest import TOKEN_A2

    with live.client(TOKEN_A) as first, live.client(TOKEN_A2) as second:
        created = first.post("/Users", json={"schemas": [USER], "userName": "rotating"})
        assert created.status_code == 201
        assert second.get(f"/Users/{created.json()['id']}").status_code == 200


def test_unauthenticated_discovery(live: Live) -> None:
    with httpx.Client(base_url=live.scim) as anonymous:
        for path in ("/ServiceProviderConfig", "/ResourceTypes", "/Schemas"):
            assert anonymous.get(path).status_code == 200
        assert anonymous.get("/Users").status_code == 401


def test_tolerant_source_ignores_what_it_does_not_keep(seeded: tuple[Live, dict[str, str]]) -> None:
    """The default policy ignores attributes outside the published schema (Entra/Okta send many)."""
    live, ids = seeded
    before = snapshot(live)
    with live.client() as client:
        response = client.patch(
            f"/Users/{ids['user']}", json=patch({"op": "replace", "path": "title", "value": "x"})
        )
        assert response.status_code == 200
        assert "title" not in response.json(), response.json()
        removal = client.patch(
            f"/Users/{ids['user']}",
            json=patch({"op": "remove", "path": 'emails[value eq "nobody@example.com"]'}),
        )
        assert removal.status_code == 200
    assert snapshot(live) == before
