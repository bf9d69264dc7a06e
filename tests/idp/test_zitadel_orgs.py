"""Issue 15 items 3-5: ZITADEL deliveries as ZITADEL sends them, and the pull's organisation scope.

Envelope: ``ContextInfoEvent`` of ZITADEL's Actions v2 executions (aggregateID, aggregateType,
resourceOwner, instanceID, sequence, event_type, event_payload); executions are instance-wide, so users of
every organisation arrive. ``user.grant.cascade.changed`` marshals ``roleKeys`` with ``omitempty``
(``internal/repository/usergrant/user_grant.go``); profiles always carry ``preferredLanguage``, ``"und"``
when unset (``golang.org/x/text/language.Und``).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.config import Config
from app.idp.zitadel.webhook import sign_zitadel
from app.server import create_app
from app.webhooks.routes import WebhookReceiver, webhook_receiver
from tests.idp.conftest import API_TOKEN, FakeApi, source

KEY = "zitadel-signing-key-0123456789"
INSPECT = "inspection-token-0123456789"
ORG_A, ORG_B = "339100000000000001", "339200000000000001"
NOW = 1_800_000_000

Service = tuple[httpx.AsyncClient, WebhookReceiver]


@pytest.fixture
async def make_service(
    fake_api: FakeApi, tmp_path: Path
) -> AsyncIterator[Callable[..., Any]]:
    """``await make_service(**options)``: ziti-scim in process with one ZITADEL source (no controller)."""
    stack: list[Any] = []

    async def start(**options: Any) -> Service:
        zitadel = source(
            "zitadel",
            "zitadel",
            INSPECT,
            webhook_secret=KEY,
            zitadel_url=fake_api.url,
            zitadel_token=API_TOKEN,
            zitadel_pull_interval=3600,
            **options,
        )
        app = create_app(Config(database_url=str(tmp_path / f"s{len(stack)}.db"), sources={"zitadel": zitadel}))
        receiver = webhook_receiver(app)
        assert receiver is not None
        receiver.clock = lambda: float(NOW)
        lifespan = app.router.lifespan_context(app)
        await lifespan.__aenter__()
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ziti-scim")
        stack.append((lifespan, client))
        return client, receiver

    yield start
    for lifespan, client in reversed(stack):
        await client.aclose()
        await lifespan.__aexit__(None, None, None)


async def deliver(
    client: httpx.AsyncClient, aggregate: str, sequence: int, event_type: str, payload: Any, org: str = ORG_A
) -> httpx.Response:
    body = json.dumps(
        {
            "aggregateID": aggregate,
            "aggregateType": "usergrant" if event_type.startswith("user.grant.") else "user",
            "resourceOwner": org,
            "instanceID": "339000000000000001",
            "version": "v2",
            "sequence": sequence,
            "event_type": event_type,
            "created_at": "2027-01-15T08:00:00.000000Z",
            "userID": "339100000000000009",
            "event_payload": payload,
        }
    ).encode()
    headers = {"Content-Type": "application/json", "ZITADEL-Signature": sign_zitadel(body, KEY, NOW)}
    response = await client.post("/webhooks/zitadel", content=body, headers=headers)
    assert response.status_code == 200, response.text
    return response


def human_added(name: str) -> dict[str, Any]:
    return {
        "userName": name,
        "email": name,
        "firstName": "Given",
        "lastName": "Family",
        "displayName": name,
        "preferredLanguage": "und",
    }


def api_user(user_id: str, name: str, org: str) -> dict[str, Any]:
    return {
        "userId": user_id,
        "details": {"resourceOwner": org},
        "state": "USER_STATE_ACTIVE",
        "username": name,
        "human": {
            "profile": {"givenName": "Given", "familyName": "Family", "preferredLanguage": "und"},
            "email": {"email": name, "isVerified": True},
        },
    }


async def users(client: httpx.AsyncClient) -> dict[str, dict[str, Any]]:
    response = await client.get("/scim/v2/Users", headers={"Authorization": f"Bearer {INSPECT}"})
    return {u["externalId"]: u for u in response.json()["Resources"]}


def role_values(user: dict[str, Any]) -> list[str]:
    return sorted(r["value"] for r in user.get("roles", []))


async def test_a_cascade_change_with_an_empty_payload_removes_the_roles(make_service: Callable[..., Any]) -> None:
    client, _ = await make_service()
    await deliver(client, "100", 1, "user.human.added", human_added("alice@example.com"))
    await deliver(client, "g1", 1, "user.grant.added", {"userId": "100", "projectId": "p1", "roleKeys": ["ops"]})
    assert role_values((await users(client))["100"]) == ["ops"]
    # The project role "ops" is deleted in ZITADEL: the grant's only role goes, the payload is {}.
    await deliver(client, "g1", 2, "user.grant.cascade.changed", {})
    assert role_values((await users(client))["100"]) == []


async def test_und_is_not_a_language_and_username_changes_apply(make_service: Callable[..., Any]) -> None:
    client, _ = await make_service()
    await deliver(client, "100", 1, "user.human.added", human_added("alice@example.com"))
    assert "preferredLanguage" not in (await users(client))["100"]
    await deliver(client, "100", 2, "user.username.changed", {"userName": "alice.smith"})
    assert (await users(client))["100"]["userName"] == "alice.smith"


async def test_the_pull_deletes_nothing_of_an_organisation_it_cannot_see(
    make_service: Callable[..., Any], fake_api: FakeApi
) -> None:
    client, receiver = await make_service()
    # Instance-wide executions: users of both organisations arrive by webhook.
    await deliver(client, "100", 1, "user.human.added", human_added("alice@a.example"), ORG_A)
    await deliver(client, "101", 1, "user.human.added", human_added("gone@a.example"), ORG_A)
    await deliver(client, "200", 1, "user.human.added", human_added("bob@b.example"), ORG_B)
    await deliver(client, "g2", 1, "user.grant.added", {"userId": "200", "roleKeys": ["ops"]}, ORG_B)
    assert sorted(await users(client)) == ["100", "101", "200"]
    # The token of organisation A lists A's users and grants only; 101 was deleted in ZITADEL.
    fake_api.users["100"] = api_user("100", "alice@a.example", ORG_A)
    (puller,) = receiver.pullers()
    report = await puller.run_once()
    assert report is not None and report.deleted == 1
    found = await users(client)
    assert sorted(found) == ["100", "200"]
    assert role_values(found["200"]) == ["ops"]  # B's grant is not dropped either
    assert "preferredLanguage" not in found["100"]


async def test_a_source_scoped_to_organisations_ignores_the_others(
    make_service: Callable[..., Any], fake_api: FakeApi
) -> None:
    client, receiver = await make_service(zitadel_organizations=[ORG_A])
    answer = await deliver(client, "200", 1, "user.human.added", human_added("bob@b.example"), ORG_B)
    assert answer.json()["applied"] == [] and await users(client) == {}
    await deliver(client, "100", 1, "user.human.added", human_added("alice@a.example"), ORG_A)
    # An instance-wide token lists both organisations: only A's users are taken.
    fake_api.users.update(
        {"100": api_user("100", "alice@a.example", ORG_A), "200": api_user("200", "bob@b.example", ORG_B)}
    )
    (puller,) = receiver.pullers()
    assert await puller.run_once() is not None
    assert sorted(await users(client)) == ["100"]
