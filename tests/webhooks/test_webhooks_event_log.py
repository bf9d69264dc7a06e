"""The per-aggregate event log of event-sourced IdPs (``idp_events`` + ``idp_aggregates``), on SQLite and
PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from app.store.db import Database
from app.store.webhook_state import IdpEventLog


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url)
    yield database
    await database.dispose()


async def test_events_are_kept_once_and_read_in_sequence_order(db: Database) -> None:
    log = IdpEventLog(db, "zitadel")
    assert await log.record("user", "u1", 3, "user.deactivated", {}, 100.0)
    assert await log.record("user", "u1", 1, "user.human.added", {"userName": "a"}, 101.0)
    # The same sequence again (a duplicate delivery) stores nothing, whatever it says.
    assert not await log.record("user", "u1", 3, "user.reactivated", {}, 102.0)
    assert await log.record("user", "u2", 1, "user.human.added", {"userName": "b"}, 103.0)
    assert await IdpEventLog(db, "other").record("user", "u1", 1, "user.human.added", {}, 104.0)
    aggregate = await log.load("u1")
    assert [(e.sequence, e.event_type, e.payload) for e in aggregate.events] == [
        (1, "user.human.added", {"userName": "a"}),
        (3, "user.deactivated", {}),
    ]
    assert (aggregate.base, aggregate.base_sequence, aggregate.closed, aggregate.last_sequence) == (
        None,
        0,
        False,
        3,
    )
    assert (await log.load("nobody")).events == ()


async def test_a_base_only_moves_forward_and_can_absorb_events(db: Database) -> None:
    log = IdpEventLog(db, "zitadel")
    for sequence in (1, 2, 5):
        await log.record("user", "u1", sequence, "user.locked", {}, 100.0)
    before = (await log.load("u1")).version
    assert await log.put_base("user", "u1", 2, {"v": "api"}, 110.0)
    assert (await log.load("u1")).version != before
    assert not await log.put_base("user", "u1", 1, {"v": "older"}, 111.0)
    assert await log.put_base("user", "u1", 2, {"v": "same sequence, newer read"}, 112.0)
    aggregate = await log.load("u1")
    assert (aggregate.base, aggregate.base_sequence, len(aggregate.events)) == (
        {"v": "same sequence, newer read"},
        2,
        3,
    )
    assert await log.put_base("user", "u1", 2, {"v": "compacted"}, 113.0, drop_events=True)
    assert [e.sequence for e in (await log.load("u1")).events] == [5]


async def test_a_closed_aggregate_keeps_no_further_event(db: Database) -> None:
    log = IdpEventLog(db, "zitadel")
    await log.record("user", "u1", 1, "user.human.added", {"email": "a@example.com"}, 100.0)
    await log.record("user", "u1", 2, "user.removed", {}, 100.0)
    assert await log.put_base("user", "u1", 2, {"removed": True}, 100.0, closed=True, drop_events=True)
    assert not await log.record("user", "u1", 1, "user.human.added", {"email": "a@example.com"}, 101.0)
    assert not await log.put_base("user", "u1", 9, {"from": "a pull"}, 102.0)
    aggregate = await log.load("u1")
    assert (aggregate.closed, aggregate.base, aggregate.events) == (True, {"removed": True}, ())


async def test_quiet_aggregates_and_old_tombstones(db: Database) -> None:
    log = IdpEventLog(db, "zitadel")
    await log.record("user", "old", 1, "user.human.added", {}, 100.0)
    await log.record("user", "busy", 1, "user.human.added", {}, 100.0)
    await log.record("user", "busy", 2, "user.locked", {}, 500.0)
    await log.record("grant", "g1", 1, "user.grant.added", {}, 150.0)
    await IdpEventLog(db, "other").record("user", "x", 1, "user.human.added", {}, 1.0)
    assert sorted(await log.quiet(200.0)) == [("grant", "g1"), ("user", "old")]
    await log.put_base("user", "gone", 3, {"removed": True}, 100.0, closed=True)
    await log.put_base("user", "gone-recently", 3, {"removed": True}, 300.0, closed=True)
    await log.put_base("user", "compacted", 3, {"profile": {}}, 100.0)
    assert await log.drop_closed(200.0) == 1
    assert (await log.load("gone")).base is None
    assert (await log.load("gone-recently")).closed
    assert (await log.load("compacted")).base == {"profile": {}}
