"""Issue 6, resilience 3: duplicate and reordered ZITADEL webhook deliveries end in the same state as
the clean sequence (push mode: the events carry their payloads, no ZITADEL API configured)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.config import Config, PolicyConfig, SafetyConfig, SourceConfig, ZitiConfig, hash_token
from app.server import create_app
from app.webhooks import sign_zitadel
from tests.resilience.res_support import STATUS, Controller, list_all, report, running_controller
from tests.support.emulator import ADMIN_PASSWORD
from tests.support.live import live_server

KEY = "resilience-zitadel-signing-key-0123456789"
INSPECT = "resilience-inspection-token-0123456789"
INSTANCE = "339000000000000001"


@dataclass(frozen=True)
class Delivery:
    name: str
    body: bytes

    def signed(self, t: int | None = None) -> dict[str, str]:
        t = int(time.time()) if t is None else t
        return {"Content-Type": "application/json", "ZITADEL-Signature": sign_zitadel(self.body, KEY, t)}


def event(
    name: str, event_type: str, aggregate: str, sequence: int, payload: dict[str, Any] | None
) -> Delivery:
    body: dict[str, Any] = {
        "aggregateID": aggregate,
        "aggregateType": "usergrant" if event_type.startswith("user.grant.") else "user",
        "resourceOwner": "339100000000000001",
        "instanceID": INSTANCE,
        "version": "v2",
        "sequence": sequence,
        "event_type": event_type,
        "created_at": "2026-03-02T10:15:30.123456Z",
        "userID": "339100000000000009",
    }
    if payload is not None:
        body["event_payload"] = payload
    return Delivery(name, json.dumps(body, separators=(",", ":")).encode())


def deliveries(alice: str, bob: str, grant: str) -> dict[str, Delivery]:
    return {
        "alice-added": event(
            "alice-added",
            "user.human.added",
            alice,
            1,
            {
                "email": "alice@example.com",
                "userName": "alice@example.com",
                "firstName": "Alice",
                "lastName": "Smith",
                "displayName": "Alice Smith",
                "preferredLanguage": "en",
            },
        ),
        "grant-added": event(
            "grant-added",
            "user.grant.added",
            grant,
            1,
            {
                "userId": alice,
                "roleKeys": ["ops", "vpn"],
                "projectId": "339200000000000003",
            },
        ),
        "alice-email": event(
            "alice-email", "user.human.email.changed", alice, 2, {"email": "alice.smith@example.com"}
        ),
        "grant-changed": event(
            "grant-changed",
            "user.grant.changed",
            grant,
            2,
            {
                "userId": alice,
                "roleKeys": ["ops"],
                "projectId": "339200000000000003",
            },
        ),
        "alice-deactivated": event("alice-deactivated", "user.deactivated", alice, 3, None),
        "bob-added": event(
            "bob-added",
            "user.human.added",
            bob,
            1,
            {
                "email": "bob@example.com",
                "userName": "bob@example.com",
                "firstName": "Bob",
                "lastName": "Jones",
            },
        ),
        "bob-removed": event("bob-removed", "user.removed", bob, 2, None),
    }


CLEAN = [
    "alice-added",
    "grant-added",
    "alice-email",
    "grant-changed",
    "alice-deactivated",
    "bob-added",
    "bob-removed",
]


@dataclass
class WebhookStack:
    url: str
    source: str
    controller: Controller
    posts: int = 0

    def post(self, delivery: Delivery, headers: dict[str, str] | None = None) -> httpx.Response:
        self.posts += 1
        response = httpx.post(
            f"{self.url}/webhooks/{self.source}",
            content=delivery.body,
            headers=headers or delivery.signed(),
            timeout=30,
        )
        assert response.status_code < 500, response.text
        return response

    def end_state(self) -> dict[str, Any]:
        deadline = time.monotonic() + 20
        with httpx.Client(
            base_url=f"{self.url}/scim/v2", headers={"Authorization": f"Bearer {INSPECT}"}, timeout=30
        ) as scim:
            while True:
                users = list_all(scim, "Users")
                if all(u.get(STATUS, {}).get("provisioningState") == "synced" for u in users):
                    break
                assert time.monotonic() < deadline, users
                time.sleep(0.1)
        with self.controller.state.lock:
            identities = {
                i.external_id: (i.name, sorted(i.role_attributes), i.disabled_at is not None)
                for i in self.controller.state.identities.values()
                if i.tags.get("managedBy") == "ziti-scim"
            }
        return {
            "users": {
                u["externalId"]: (
                    u["userName"],
                    sorted(e["value"] for e in u.get("emails", [])),
                    sorted(r["value"] for r in u.get("roles", [])),
                    u.get("active"),
                )
                for u in users
            },
            "identities": identities,
        }


@contextmanager
def webhook_stack(path: Path) -> Iterator[WebhookStack]:
    source = f"zitadel-{uuid.uuid4().hex[:8]}"
    with running_controller() as controller:
        config = Config(
            database_url=str(path),
            sources={
                source: SourceConfig(
                    name=source,
                    kind="zitadel",
                    token_hashes=(hash_token(INSPECT),),
                    policy=PolicyConfig(),
                    mapping={"preset": "zitadel"},
                    options={"webhook_secret": KEY},
                )
            },
            ziti=ZitiConfig(
                url=controller.url, username="admin", password=ADMIN_PASSWORD
            ),
            safety=SafetyConfig(brake_max=100_000, brake_min=100_000),
        )
        with live_server(create_app(config)) as url:
            yield WebhookStack(url, source, controller)


ALICE, BOB, GRANT = "339123456789012345", "339123456789012346", "339300000000000004"
EXPECTED = {
    "users": {ALICE: ("alice@example.com", ["alice.smith@example.com"], ["ops"], False)},
    "identities": {ALICE: ("alice@example.com", ["ops"], True)},
}


def test_zitadel_clean_and_duplicated_deliveries_end_in_the_same_state(tmp_path: Path) -> None:
    events = deliveries(ALICE, BOB, GRANT)
    with webhook_stack(tmp_path / "clean.db") as stack:
        for name in CLEAN:
            assert stack.post(events[name]).status_code == 200
        clean = stack.end_state()
    assert clean == EXPECTED
    with webhook_stack(tmp_path / "dup.db") as stack:
        replayed = resigned = 0
        for name in CLEAN:
            first = events[name].signed()
            assert stack.post(events[name], first).status_code == 200
            # The same delivery again (a retry of the exact request): refused as a replay, no change.
            again = stack.post(events[name], first)
            assert again.status_code == 401 and again.json() == {"error": "webhook rejected"}
            replayed += 1
            # A retry ZITADEL signed anew (another timestamp): applied again, to the same effect.
            assert stack.post(events[name], events[name].signed(int(time.time()) - 5)).status_code == 200
            resigned += 1
        duplicated = stack.end_state()
        creates = stack.controller.recorder.duplicate_creates()
    assert duplicated == clean
    assert creates == {}
    report(
        "zitadel-webhook-duplicates",
        operations=len(CLEAN) + stack.posts,
        replays_refused=replayed,
        resigned_retries_applied=resigned,
        users=len(duplicated["users"]),
        identities_verified=len(duplicated["identities"]),
        duplicates=0,
        leftovers=0,
        same_end_state=True,
    )


@pytest.mark.parametrize(
    ("case", "order"),
    [
        (
            "grant-before-user",
            [
                "grant-added",
                "alice-added",
                "alice-email",
                "grant-changed",
                "alice-deactivated",
                "bob-added",
                "bob-removed",
            ],
        ),
        (
            "email-change-before-user",
            [
                "alice-email",
                "alice-added",
                "grant-added",
                "grant-changed",
                "alice-deactivated",
                "bob-added",
                "bob-removed",
            ],
        ),
        (
            "deactivation-before-user",
            [
                "alice-deactivated",
                "alice-added",
                "grant-added",
                "alice-email",
                "grant-changed",
                "bob-added",
                "bob-removed",
            ],
        ),
        (
            "grant-change-before-grant-add",
            [
                "alice-added",
                "grant-changed",
                "grant-added",
                "alice-email",
                "alice-deactivated",
                "bob-added",
                "bob-removed",
            ],
        ),
        (
            "removal-before-add",
            [
                "alice-added",
                "grant-added",
                "alice-email",
                "grant-changed",
                "alice-deactivated",
                "bob-removed",
                "bob-added",
            ],
        ),
    ],
)
def test_zitadel_reordered_deliveries_end_in_the_same_state(
    tmp_path: Path, case: str, order: list[str]
) -> None:
    events = deliveries(ALICE, BOB, GRANT)
    assert sorted(order) == sorted(CLEAN)
    with webhook_stack(tmp_path / "reordered.db") as stack:
        for name in order:
            assert stack.post(events[name]).status_code in (200, 422), name
        state = stack.end_state()
    report(
        f"zitadel-webhook-reordered[{case}]",
        operations=stack.posts,
        users=len(state["users"]),
        identities_verified=len(state["identities"]),
        same_end_state=state == EXPECTED,
    )
    assert state == EXPECTED
