"""The ZITADEL repair (periodic pull, ``ziti-scim sync``) and API reads, against a fake ZITADEL API."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.config import Config
from app.server import create_app
from app.webhooks import sign_zitadel
from app.webhooks.routes import WebhookReceiver, webhook_receiver
from app.webhooks.zitadel_pull import ZitadelPuller
from tests.idp.conftest import API_TOKEN, FakeApi, source

KEY = "zitadel-signing-key-0123456789"
INSPECT = "inspection-token-0123456789"
ORG = "339100000000000001"


def human(user_id: str, username: str, state: str = "USER_STATE_ACTIVE", **profile: str) -> dict[str, Any]:
    return {
        "userId": user_id,
        "details": {"resourceOwner": ORG},
        "state": state,
        "username": username,
        "loginNames": [username],
        "preferredLoginName": username,
        "human": {
            "profile": {"givenName": "Given", "familyName": "Family", **profile},
            "email": {"email": username, "isVerified": True},
        },
    }


@pytest.fixture
async def service(
    fake_api: FakeApi, tmp_path: Path
) -> AsyncIterator[tuple[httpx.AsyncClient, WebhookReceiver]]:
    """ziti-scim in process (no controller: the store is what is checked), with one ZITADEL source."""
    zitadel = source(
        "zitadel",
        "zitadel",
        INSPECT,
        webhook_secret=KEY,
        zitadel_url=fake_api.url,
        zitadel_token=API_TOKEN,
        zitadel_pull_interval=60,
    )
    app = create_app(Config(database_url=str(tmp_path / "store.db"), sources={"zitadel": zitadel}))
    receiver = webhook_receiver(app)
    assert receiver is not None
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://ziti-scim") as client:
            yield client, receiver


async def users(client: httpx.AsyncClient) -> dict[str, dict[str, Any]]:
    response = await client.get("/scim/v2/Users", headers={"Authorization": f"Bearer {INSPECT}"})
    return {u["externalId"]: u for u in response.json()["Resources"]}


def puller(receiver: WebhookReceiver) -> ZitadelPuller:
    (only,) = receiver.pullers()
    assert only.interval == 60
    return only


async def test_pull_converges_users_grants_and_deletions(
    service: tuple[httpx.AsyncClient, WebhookReceiver], fake_api: FakeApi
) -> None:
    client, receiver = service
    # A user known from an earlier webhook that ZITADEL no longer has (its user.removed was lost).
    body = json.dumps(
        {
            "aggregateID": "300",
            "aggregateType": "user",
            "resourceOwner": ORG,
            "instanceID": "1",
            "sequence": 1,
            "event_type": "user.human.added",
            "event_payload": {"userName": "gone@example.com", "email": "gone@example.com"},
        }
    ).encode()
    receiver.clock = lambda: 1_800_000_000.0
    signed = {"ZITADEL-Signature": sign_zitadel(body, KEY, 1_800_000_000)}
    assert (await client.post("/webhooks/zitadel", content=body, headers=signed)).status_code == 200
    fake_api.users.update(
        {
            "100": human("100", "alice@example.com", displayName="Alice", preferredLanguage="en"),
            "200": human("200", "bob@example.com", state="USER_STATE_LOCKED"),
            "250": human("250", "carol@example.com", state="USER_STATE_INACTIVE"),
            "900": {
                "userId": "900",
                "state": "USER_STATE_ACTIVE",
                "username": "ci-bot",
                "machine": {"name": "ci"},
            },
        }
    )
    fake_api.grants[:] = [
        {"id": "g1", "userId": "100", "roleKeys": ["ziti-admin", "ops"], "state": "USER_GRANT_STATE_ACTIVE"},
        {"id": "g2", "userId": "200", "roleKeys": ["ops"], "state": "USER_GRANT_STATE_INACTIVE"},
    ]
    report = await puller(receiver).run_once()
    assert report is not None and (report.users, report.grants, report.deleted) == (3, 2, 1)
    found = await users(client)
    assert sorted(found) == ["100", "200", "250"]
    alice = found["100"]
    assert alice["userName"] == "alice@example.com" and alice["active"] is True
    assert alice["displayName"] == "Alice" and alice["preferredLanguage"] == "en"
    assert [r["value"] for r in alice["roles"]] == ["ziti-admin", "ops"]
    assert found["200"]["active"] is False and "roles" not in found["200"]  # locked; inactive grant
    assert found["250"]["active"] is False
    assert all(token == f"Bearer {API_TOKEN}" for token in fake_api.tokens)

    # The grant is removed and bob is unlocked in ZITADEL; nobody told us: the next pull repairs it.
    fake_api.grants[:] = []
    fake_api.users["200"]["state"] = "USER_STATE_ACTIVE"
    await puller(receiver).run_once()
    found = await users(client)
    assert "roles" not in found["100"] and found["200"]["active"] is True


async def test_a_failed_read_changes_nothing(
    service: tuple[httpx.AsyncClient, WebhookReceiver], fake_api: FakeApi
) -> None:
    client, receiver = service
    fake_api.users["100"] = human("100", "alice@example.com")
    assert (await puller(receiver).run_once()) is not None
    receiver.sources["zitadel"].api._token = "a-revoked-token"  # type: ignore[union-attr]
    assert await puller(receiver).run_once() is None  # 401 from ZITADEL: logged, nothing deleted
    assert sorted(await users(client)) == ["100"]


async def test_an_event_without_payload_is_read_from_the_api(
    service: tuple[httpx.AsyncClient, WebhookReceiver], fake_api: FakeApi
) -> None:
    """ZITADEL v4.1.x sent ``event_payload: {}`` for every event (seen in its recorded webhook traffic)."""
    client, receiver = service
    fake_api.users["100"] = human("100", "alice@example.com")
    receiver.clock = lambda: 1_800_000_000.0
    for sequence, event_type in ((1, "user.human.added"), (2, "user.human.profile.changed")):
        body = json.dumps(
            {
                "aggregateID": "100",
                "aggregateType": "user",
                "instanceID": "1",
                "sequence": sequence,
                "event_type": event_type,
                "event_payload": {},
            }
        ).encode()
        signed = {"ZITADEL-Signature": sign_zitadel(body, KEY, 1_800_000_000)}
        response = await client.post("/webhooks/zitadel", content=body, headers=signed)
        assert response.status_code == 200, response.text
        fake_api.users["100"]["human"]["profile"]["displayName"] = "Alice Renamed"
    assert (await users(client))["100"]["displayName"] == "Alice Renamed"
    # Read back for a user that is gone: the API's 404 deletes it.
    del fake_api.users["100"]
    body = json.dumps(
        {
            "aggregateID": "100",
            "aggregateType": "user",
            "instanceID": "1",
            "sequence": 3,
            "event_type": "user.human.profile.changed",
            "event_payload": {},
        }
    ).encode()
    signed = {"ZITADEL-Signature": sign_zitadel(body, KEY, 1_800_000_000)}
    assert (await client.post("/webhooks/zitadel", content=body, headers=signed)).status_code == 200
    assert await users(client) == {}


async def test_the_periodic_pull_runs_in_the_background_until_stopped(
    service: tuple[httpx.AsyncClient, WebhookReceiver], fake_api: FakeApi
) -> None:
    client, receiver = service
    fake_api.users["100"] = human("100", "alice@example.com")
    background = puller(receiver)
    background.start()
    try:
        for _ in range(200):
            if await users(client):
                break
            await asyncio.sleep(0.02)
    finally:
        await background.stop()
    assert sorted(await users(client)) == ["100"]
    calls = len(fake_api.tokens)
    await asyncio.sleep(0.1)
    assert len(fake_api.tokens) == calls  # stopped: no more reads
