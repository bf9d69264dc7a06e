"""ZITADEL deliveries in any order, concurrent or duplicated, and combined with the pull: events are kept
per aggregate and folded in ``sequence`` order, so the store ends in the same state (checked on the store;
tests/resilience/test_res_webhooks.py checks the identities on a controller)."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.config import Config
from app.idp.zitadel.puller import ZitadelPuller
from app.idp.zitadel.webhook import sign_zitadel
from app.server import create_app
from app.store.webhook_state import IdpEventLog
from app.webhooks.routes import WebhookReceiver, webhook_receiver
from tests.idp.conftest import API_TOKEN, FakeApi, source
from tests.idp.test_zitadel_pull import human

KEY = "zitadel-signing-key-0123456789"
INSPECT = "inspection-token-0123456789"
NOW = 1_800_000_000.0
ALICE, BOB, GRANT = "100", "200", "g1"


def body(aggregate: str, sequence: int, event_type: str, payload: dict[str, Any] | None = None) -> bytes:
    data: dict[str, Any] = {
        "aggregateID": aggregate,
        "aggregateType": "usergrant" if event_type.startswith("user.grant.") else "user",
        "instanceID": "1",
        "sequence": sequence,
        "event_type": event_type,
    }
    if payload is not None:
        data["event_payload"] = payload
    return json.dumps(data).encode()


HISTORY = {
    "alice-added": body(
        ALICE, 1, "user.human.added", {"userName": "alice@example.com", "email": "alice@example.com"}
    ),
    "alice-email": body(ALICE, 2, "user.human.email.changed", {"email": "alice.smith@example.com"}),
    "alice-deactivated": body(ALICE, 3, "user.deactivated"),
    "alice-locked": body(ALICE, 4, "user.locked"),
    "alice-unlocked": body(ALICE, 5, "user.unlocked"),
    "grant-added": body(GRANT, 1, "user.grant.added", {"userId": ALICE, "roleKeys": ["ops", "vpn"]}),
    "grant-changed": body(GRANT, 2, "user.grant.changed", {"roleKeys": ["ops"]}),
    "bob-added": body(BOB, 1, "user.human.added", {"userName": "bob@example.com"}),
    "bob-removed": body(BOB, 2, "user.removed"),
}


@dataclass
class Service:
    client: httpx.AsyncClient
    receiver: WebhookReceiver
    fake_api: FakeApi | None

    @property
    def log(self) -> IdpEventLog:
        aggregates = self.receiver.sources["zitadel"].aggregates
        assert aggregates is not None
        return aggregates.events

    async def post(self, content: bytes, signed_ago: int = 0) -> httpx.Response:
        """Deliver ``content``; a retry ZITADEL signs anew has another timestamp (``signed_ago``)."""
        now = int(self.receiver.clock()) - signed_ago
        headers = {"ZITADEL-Signature": sign_zitadel(content, KEY, now)}
        response = await self.client.post("/webhooks/zitadel", content=content, headers=headers)
        assert response.status_code == 200, response.text
        return response

    async def users(self) -> dict[str, tuple[str, list[str], list[str], bool]]:
        response = await self.client.get("/scim/v2/Users", headers={"Authorization": f"Bearer {INSPECT}"})
        return {
            u["externalId"]: (
                u["userName"],
                [e["value"] for e in u.get("emails", [])],
                [r["value"] for r in u.get("roles", [])],
                u["active"],
            )
            for u in response.json()["Resources"]
        }

    def puller(self) -> ZitadelPuller:
        (only,) = self.receiver.pullers()
        return only


ServiceFactory = Callable[..., AbstractAsyncContextManager[Service]]


@pytest.fixture
def service(tmp_path: Path, fake_api: FakeApi) -> ServiceFactory:
    """``service(api=False, **options)``: ziti-scim in process (the store is what is checked), with one
    ZITADEL source; with ``api`` it reads the fake ZITADEL API, but only when a test runs the pull."""

    @asynccontextmanager
    async def start(*, api: bool = False, **options: Any) -> AsyncIterator[Service]:
        if api:
            options.update(zitadel_url=fake_api.url, zitadel_token=API_TOKEN)
        zitadel = source("zitadel", "zitadel", INSPECT, webhook_secret=KEY, **options)
        path = tmp_path / f"store-{len(list(tmp_path.iterdir()))}.db"
        app = create_app(Config(database_url=str(path), sources={"zitadel": zitadel}))
        receiver = webhook_receiver(app)
        assert receiver is not None
        receiver.clock = lambda: NOW
        async with app.router.lifespan_context(app):
            # The background pull was scheduled but has not run yet: the tests run the pull themselves.
            for task in asyncio.all_tasks():
                if task.get_name() == "zitadel-pull":
                    task.cancel()
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://ziti-scim") as client:
                yield Service(client, receiver, fake_api if api else None)

    return start


CLEAN = {ALICE: ("alice@example.com", ["alice.smith@example.com"], ["ops"], False)}


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_concurrent_shuffled_and_duplicated_deliveries_converge(
    service: ServiceFactory, seed: int
) -> None:
    retries = [(content, 5) for content in random.Random(seed).sample(list(HISTORY.values()), 4)]
    deliveries = [*((content, 0) for content in HISTORY.values()), *retries]
    random.Random(seed).shuffle(deliveries)
    async with service() as svc:
        await asyncio.gather(*(svc.post(content, ago) for content, ago in deliveries))
        assert await svc.users() == CLEAN
        # bob's removal replaced his events by a tombstone; a late copy of his creation changes nothing.
        bob = await svc.log.load(BOB)
        assert bob.closed and bob.events == ()
        assert bob.base is not None and bob.base["removed"] is True and bob.base["profile"] == {}
        await svc.post(HISTORY["bob-added"], signed_ago=9)
        assert await svc.users() == CLEAN


async def test_a_grant_removed_before_it_is_added_never_applies(service: ServiceFactory) -> None:
    async with service() as svc:
        await svc.post(HISTORY["alice-added"])
        await svc.post(body(GRANT, 3, "user.grant.removed"))
        for name in ("grant-changed", "grant-added"):
            await svc.post(HISTORY[name])
        assert (await svc.users())[ALICE][2] == []


async def test_a_repair_by_the_pull_is_not_undone_by_a_later_event(service: ServiceFactory) -> None:
    async with service(api=True) as svc:
        assert svc.fake_api is not None
        await svc.post(HISTORY["alice-added"])
        # The email change (sequence 2) is lost; ZITADEL has it, and the pull brings it.
        svc.fake_api.users[ALICE] = human(ALICE, "alice@example.com")
        svc.fake_api.users[ALICE]["human"]["email"]["email"] = "alice.smith@example.com"
        assert await svc.puller().run_once() is not None
        assert (await svc.users())[ALICE][1] == ["alice.smith@example.com"]
        # A later event folds on top of the pull's view instead of replaying the older creation.
        await svc.post(body(ALICE, 3, "user.deactivated"))
        assert await svc.users() == {ALICE: ("alice@example.com", ["alice.smith@example.com"], [], False)}


async def test_the_pull_never_brings_back_a_user_removed_by_an_event(service: ServiceFactory) -> None:
    async with service(api=True) as svc:
        assert svc.fake_api is not None
        await svc.post(HISTORY["bob-added"])
        await svc.post(HISTORY["bob-removed"])
        # ZITADEL's list lags behind the removal and still shows bob.
        svc.fake_api.users[BOB] = human(BOB, "bob@example.com")
        report = await svc.puller().run_once()
        assert report is not None and (report.users, report.deleted) == (0, 0)
        assert await svc.users() == {}


async def test_an_api_view_older_than_the_kept_events_does_not_hide_them(service: ServiceFactory) -> None:
    async with service(api=True) as svc:
        assert svc.fake_api is not None
        for name in ("alice-added", "alice-email", "alice-deactivated"):
            await svc.post(HISTORY[name])
        # The API's projection is at sequence 1: it still has the old email and an active user.
        svc.fake_api.users[ALICE] = {**human(ALICE, "alice@example.com"), "details": {"sequence": "1"}}
        await svc.puller().run_once()
        assert await svc.users() == {ALICE: ("alice@example.com", ["alice.smith@example.com"], [], False)}
        # Once it caught up (sequence 3 and beyond), its view is the base.
        svc.fake_api.users[ALICE] = {
            **human(ALICE, "alice.new@example.com", state="USER_STATE_INACTIVE"),
            "details": {"sequence": "9"},
        }
        await svc.puller().run_once()
        aggregate = await svc.log.load(ALICE)
        assert aggregate.base_sequence == 3
        assert await svc.users() == {ALICE: ("alice.new@example.com", ["alice.new@example.com"], [], False)}


async def test_a_change_for_a_user_not_added_yet_is_read_from_the_api(service: ServiceFactory) -> None:
    async with service(api=True) as svc:
        assert svc.fake_api is not None
        svc.fake_api.users[ALICE] = human(ALICE, "alice@example.com", displayName="Alice")
        svc.fake_api.users[ALICE]["human"]["email"]["email"] = "alice.smith@example.com"
        await svc.post(HISTORY["alice-email"])
        assert await svc.users() == {ALICE: ("alice@example.com", ["alice.smith@example.com"], [], True)}
        # The late creation is older than the API's view: nothing changes.
        await svc.post(HISTORY["alice-added"])
        assert await svc.users() == {ALICE: ("alice@example.com", ["alice.smith@example.com"], [], True)}


async def test_quiet_aggregates_are_compacted_and_old_tombstones_dropped(service: ServiceFactory) -> None:
    async with service(zitadel_event_retention=100) as svc:
        for name in ("alice-added", "alice-email", "grant-added", "bob-added", "bob-removed"):
            await svc.post(HISTORY[name])
        assert len((await svc.log.load(ALICE)).events) == 2
        svc.receiver.clock = lambda: NOW + 200
        # Any delivery runs the compaction (at most hourly): alice, the grant and bob have been quiet.
        await svc.post(body("300", 1, "user.human.added", {"userName": "carol@example.com"}))
        alice = await svc.log.load(ALICE)
        assert alice.events == () and alice.base_sequence == 2 and alice.base is not None
        assert alice.base["profile"]["emails"][0]["value"] == "alice.smith@example.com"
        assert (await svc.log.load(GRANT)).events == ()
        assert (await svc.log.load(BOB)).base is None  # the tombstone outlived the retention
        assert len((await svc.log.load("300")).events) == 1
        # Folding from the compacted bases gives the same state as from the events.
        for name in ("alice-deactivated", "grant-changed"):
            await svc.post(HISTORY[name])
        users = await svc.users()
        assert users[ALICE] == CLEAN[ALICE] and sorted(users) == [ALICE, "300"]
