"""Issue 15 items 1 and 2: Asgardeo deliveries as the WSO2 hub sends them, answered so the hub never stops.

The hub retries only 500/502/503 (three times) and marks the subscription stale on any other non-2xx,
or when those retries are spent (product-integrator-websubhub
``components/websubhub/modules/delivery/delivery.bal``, ``dispatcher.bal``): a stale subscription
receives nothing more. ``hub_marks_stale`` is that rule; no well-signed delivery may trigger it.
"""

from __future__ import annotations

import asyncio
import copy
import json
from typing import Any

import httpx
import pytest

from app.observability import audit
from app.store.db import Database
from app.webhooks import sign_asgardeo
from app.webhooks.pending import pending_deliveries
from tests.idp.conftest import Stack, StackFactory, source
from tests.paths import WEBHOOK_TRACES
from tests.support.waiting import wait_for

SECRET = "asgardeo-webhook-test-secret-7f3c"
INSPECT = "inspection-token-0123456789"
TRACES = WEBHOOK_TRACES / "asgardeo"
ALICE = "3987d74e-8432-4f4d-b1a8-cad463af843d"
ALICE_EMAIL = "alice@example.com"  # the identity's externalId (preset asgardeo: the email)
GROUP = "f1c2a7e0-3b4d-4e5f-8a9b-0c1d2e3f4a5b"
HUB_RETRIED = (500, 502, 503)


def hub_marks_stale(status: int) -> bool:
    """The WSO2 hub's rule (delivery.bal): any non-2xx ends the subscription, the retried ones after 3."""
    return not 200 <= status < 300


def body_of(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((TRACES / name).read_text())["body"]
    return data


def post(stack: Stack, body: dict[str, Any] | bytes, *, secret: str = SECRET, pin: bool = False) -> httpx.Response:
    if pin and isinstance(body, dict):
        stack.pin_clock(body["iat"] / 1000 + 1)
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"Content-Type": "application/json", "X-Hub-Signature": sign_asgardeo(raw, secret)}
    return httpx.post(f"{stack.url}/webhooks/asgardeo", content=raw, headers=headers, timeout=30)


def users(stack: Stack) -> list[dict[str, Any]]:
    with stack.scim(INSPECT) as scim:
        return list(scim.get("/Users").json()["Resources"])


def roles(stack: Stack, external_id: str) -> list[str]:
    identity = stack.identity(external_id)
    assert identity is not None
    return sorted(identity.role_attributes or [])


def retag(body: dict[str, Any], jti: str) -> dict[str, Any]:
    copied = copy.deepcopy(body)
    copied["jti"] = jti
    return copied


@pytest.fixture
def stack(make_stack: StackFactory) -> Stack:
    built = make_stack(
        source("asgardeo", "asgardeo", INSPECT, webhook_secret=SECRET, webhook_max_age=600)
    )
    built.pin_clock(body_of("webhook-02-user-created.json")["iat"] / 1000 + 5)
    return built


def test_a_redelivery_is_acknowledged_and_changes_nothing(stack: Stack) -> None:
    created = body_of("webhook-02-user-created.json")
    assert post(stack, created).status_code == 200
    (user,) = users(stack)
    with stack.scim(INSPECT) as scim:
        assert scim.delete(f"/Users/{user['id']}").status_code == 204
    again = post(stack, created)  # the hub's redelivery: same jti (Kafka is at-least-once)
    assert again.status_code == 200 and again.json() == {"status": "duplicate"}
    assert users(stack) == [] and stack.identity(ALICE_EMAIL) is None


def test_no_well_signed_delivery_can_make_the_hub_drop_the_subscription(stack: Stack) -> None:
    created = body_of("webhook-02-user-created.json")
    iat = created["iat"]
    clash = {
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": "alice@example.com",
        "emails": [{"value": "other@example.com", "primary": True}],
    }
    with stack.scim(INSPECT) as scim:  # another user already holds the userName: the store refuses it
        assert scim.post("/Users", json={**clash, "externalId": "someone-else"}).status_code == 201
    unmappable = retag(created, "no-email-1")  # the asgardeo preset takes externalId from the email
    claims = unmappable["events"][next(iter(unmappable["events"]))]["user"]["claims"]
    unmappable["events"][next(iter(unmappable["events"]))]["user"]["claims"] = [
        c for c in claims if "email" not in c["uri"]
    ]
    unmappable["events"][next(iter(unmappable["events"]))]["user"]["id"] = "no-email-user"
    deliveries: list[dict[str, Any] | bytes] = [
        created,  # cannot be applied (userName clash)
        created,  # its redelivery
        unmappable,
        b"{not json",  # unreadable, yet signed
        b"[1, 2]",
        {**retag(created, "old-1"), "iat": iat - 3_600_000},  # older than webhook_max_age
        {**retag(created, "future-1"), "iat": iat + 3_600_000},
        {"iss": "x", "jti": "no-events", "iat": iat},
        {"iss": "x", "jti": "bad-user", "iat": iat, "events": {next(iter(created["events"])): {"user": 5}}},
        {"iss": "x", "jti": "unknown", "iat": iat, "events": {"https://schemas.identity.wso2.org/x": {}}},
    ]
    answers = [post(stack, delivery).status_code for delivery in deliveries]
    assert not any(hub_marks_stale(status) for status in answers), answers
    assert answers[:3] == [202, 200, 202]
    # Authentic but unusable: acknowledged, and recorded (metric, audit, doctor's "webhook-unusable").
    metrics = httpx.get(f"{stack.url}/metrics", timeout=30).text
    assert 'ziti_scim_webhook_unusable_total{source="asgardeo"} 6.0' in metrics
    assert 'ziti_scim_webhook_duplicates_total{source="asgardeo"} 1.0' in metrics
    assert sum(r["action"] == "webhook-unusable" for r in inspect(stack)[1]) == 6
    # Only a bad signature is refused.
    assert hub_marks_stale(post(stack, created, secret="not-the-secret-0000").status_code)
    assert [u["externalId"] for u in users(stack)] == ["someone-else"]


def inspect(stack: Stack) -> tuple[list[Any], list[dict[str, Any]]]:
    """The pending deliveries and audit rows, read through a database handle of the test's own."""

    async def read() -> tuple[list[Any], list[dict[str, Any]]]:
        db = Database(stack.app.state.services.config.database_url)
        try:
            return await pending_deliveries(db, "asgardeo"), await audit.read(db)
        finally:
            await db.dispose()

    return asyncio.run(read())


def test_an_event_that_cannot_be_applied_is_recorded_and_retried_by_us(make_stack: StackFactory) -> None:
    stack = make_stack(
        source(
            "asgardeo", "asgardeo", INSPECT, webhook_secret=SECRET, webhook_max_age=600, webhook_retry_interval=0.2
        )
    )
    created = body_of("webhook-02-user-created.json")
    clash = {
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": "alice@example.com",
        "emails": [{"value": "other@example.com", "primary": True}],
    }
    with stack.scim(INSPECT) as scim:
        other = scim.post("/Users", json={**clash, "externalId": "someone-else"}).json()
    answer = post(stack, created, pin=True)
    assert answer.status_code == 202 and answer.json()["status"] == "deferred"
    (waiting,), rows = inspect(stack)
    assert waiting.delivery_id == created["jti"] and "userName" in waiting.reason
    assert any(r["action"] == "webhook-deferred" and r["source"] == "asgardeo" for r in rows)
    metrics = httpx.get(f"{stack.url}/metrics", timeout=30).text
    assert 'ziti_scim_webhook_deferred_total{source="asgardeo"} 1.0' in metrics

    # The cause goes away: the background retry applies the kept delivery, no redelivery needed.
    with stack.scim(INSPECT) as scim:
        assert scim.delete(f"/Users/{other['id']}").status_code == 204
    wait_for(lambda: [u["externalId"] for u in users(stack)] == [ALICE])
    wait_for(lambda: inspect(stack)[0] == [])
    assert stack.identity(ALICE_EMAIL) is not None
    assert any(r["action"] == "webhook-retried" for r in inspect(stack)[1])
    assert post(stack, created).json() == {"status": "duplicate"}  # a late redelivery changes nothing


def test_group_membership_and_group_roles_reach_the_identity(stack: Stack) -> None:
    assert post(stack, body_of("webhook-02-user-created.json")).status_code == 200
    assert roles(stack, ALICE_EMAIL) == []
    group_updated = body_of("webhook-08-group-updated.json")
    stack.pin_clock(group_updated["iat"] / 1000 + 1)
    assert post(stack, group_updated).status_code == 200
    assert roles(stack, ALICE_EMAIL) == ["ziti-operators"]  # groups are role attributes (preset asgardeo)

    role_groups = body_of("webhook-09-role-groups-updated.json")
    stack.pin_clock(role_groups["iat"] / 1000 + 1)
    assert post(stack, role_groups).status_code == 200
    assert roles(stack, ALICE_EMAIL) == ["ziti-admin", "ziti-operators"]

    # Removed from the group: the group and the role it brought are gone.
    event = group_updated["events"]
    removed = copy.deepcopy(group_updated)
    payload = removed["events"][next(iter(event))]["group"]
    payload["removedUsers"], payload["addedUsers"] = payload.pop("addedUsers"), []
    removed["jti"] = "group-removed-1"
    assert post(stack, removed).status_code == 200
    assert roles(stack, ALICE_EMAIL) == []


def test_a_role_held_directly_survives_losing_the_group(stack: Stack) -> None:
    assert post(stack, body_of("webhook-02-user-created.json")).status_code == 200
    direct = json.loads((TRACES / "webhook-04-role-users-updated-added.json").read_text())["body"]
    for body in (body_of("webhook-09-role-groups-updated.json"), body_of("webhook-08-group-updated.json"), direct):
        assert post(stack, body, pin=True).json()["status"] == "ok"
    assert roles(stack, ALICE_EMAIL) == ["ziti-admin", "ziti-operators"]
    removed = retag(body_of("webhook-08-group-updated.json"), "group-removed-2")
    group = removed["events"][next(iter(removed["events"]))]["group"]
    group["removedUsers"], group["addedUsers"] = group.pop("addedUsers"), []
    assert post(stack, removed).status_code == 200
    assert roles(stack, ALICE_EMAIL) == ["ziti-admin"]
