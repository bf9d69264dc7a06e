"""Issue 10 items 3 and 5: fewer controller calls and fewer transactions for the same convergence.

- An initial sync (every user, then the groups with their members) creates each identity once, with its
  group-derived role attributes, because new users wait for the source to pause (``create_settle``).
- A change to a user who already has an identity never waits for that pause.
- The bookkeeping of concurrent converges is committed together (:mod:`app.store.group_commit`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import update

from app.reconcile import worker as worker_module
from app.reconcile.state_reads import StateReads
from app.server import create_app
from app.store import desired, provisioning, queue
from app.store import settings as stored_settings
from app.store.db import Database
from app.store.group_commit import Batched, GroupCommit, Part
from app.store.tables import dirty
from tests.provisioning.conftest import Stack
from tests.provisioning.test_lifecycle import GROUP, STATUS, patch, user
from tests.support.idp import TestIdp
from tests.support.live import live_server
from tests.support.stack import add_signer, make_stack_config
from ziti_emulator import EmulatorThread

IDENTITY_PATHS = "/identities"


def identity_calls(stack: Stack, since: int = 0) -> list[tuple[str, str]]:
    """The controller's identity calls (method, path) since the ``since``-th request."""
    return [
        (r.method, r.path)
        for r in list(stack.state.requests)[since:]
        if IDENTITY_PATHS in r.path and "/authenticate" not in r.path
    ]


def test_initial_sync_creates_each_identity_once_with_its_groups(
    emulator: EmulatorThread, idp: TestIdp, database_url: str, source_name: str
) -> None:
    """authentik's full sync order: users first, then each group and a PATCH adding its members. With the
    source still writing, no identity is created until it pauses; then one POST per user carries the
    role attributes of both of its groups, and nothing is PATCHed or re-read."""
    add_signer(emulator, idp)
    config = make_stack_config(database_url, source_name, emulator.url, create_settle=2.0)
    mark = len(emulator.state.requests)
    with live_server(create_app(config)) as url:
        stack = Stack(scim_url=f"{url}/scim/v2", emulator=emulator, idp=idp, app=None)
        with stack.client() as scim:
            ids = []
            for i in range(12):
                created = scim.post("/Users", json=user(f"sync{i}", f"sync{i}@example.com"))
                assert created.status_code == 201
                ids.append(created.json()["id"])
            for g, members in (("red", ids[:8]), ("blue", ids[4:])):
                group = scim.post("/Groups", json={"schemas": [GROUP], "displayName": g})
                assert group.status_code == 201
                added = scim.patch(
                    f"/Groups/{group.json()['id']}",
                    json=patch(*({"op": "add", "path": "members", "value": [{"value": m}]} for m in members)),
                )
                assert added.status_code == 200
        users = stack.settle(timeout=60)
        assert {u[STATUS]["provisioningState"] for u in users} == {"synced"}
        for i in range(12):
            identity = emulator.state.identity_by_external_id(f"sync{i}@example.com")
            want = (["red"] if i < 8 else []) + (["blue"] if i >= 4 else [])
            assert identity is not None and sorted(identity.role_attributes) == sorted(want), (i, identity)
        calls = identity_calls(stack, mark)
        creates = [c for c in calls if c[0] == "POST"]
        assert len(creates) == 12
        assert calls == creates, f"no PATCH or GET of an identity expected: {calls}"


def test_a_change_to_an_existing_identity_does_not_wait_for_the_source_to_pause(
    emulator: EmulatorThread, idp: TestIdp, database_url: str, source_name: str
) -> None:
    """Deactivating a user disables its identity while the source keeps writing (removing access is
    never delayed), whereas a new user's create waits until the writes pause."""
    add_signer(emulator, idp)
    config = make_stack_config(database_url, source_name, emulator.url, create_settle=3.0)
    with live_server(create_app(config)) as url:
        stack = Stack(scim_url=f"{url}/scim/v2", emulator=emulator, idp=idp, app=None)
        with stack.client() as scim:
            first = scim.post("/Users", json=user("early", "early@example.com"))
            # Nothing else writes: the lone user's identity is created once the source paused 3 s.
            deadline = time.monotonic() + 60
            while emulator.state.identity_by_external_id("early@example.com") is None:
                assert time.monotonic() < deadline, "the lone user's identity was never created"
                time.sleep(0.05)
            identity = emulator.state.identity_by_external_id("early@example.com")
            assert identity is not None
            # The source keeps writing (new users, each restarting the pause) while one user is disabled.
            scim.post("/Users", json=user("late0", "late0@example.com"))
            disabled = scim.patch(
                f"/Users/{first.json()['id']}", json=patch({"op": "replace", "path": "active", "value": False})
            )
            assert disabled.status_code == 200
            deadline = time.monotonic() + 20
            i = 1
            while not emulator.state.identities[identity.id].is_disabled(emulator.state.now()):
                assert time.monotonic() < deadline, "the disable waited for the source to pause"
                scim.post("/Users", json=user(f"late{i}", f"late{i}@example.com"))
                i += 1
                time.sleep(0.05)
            assert emulator.state.identity_by_external_id("late0@example.com") is None, "created too early"


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url)
    try:
        yield database
    finally:
        await database.dispose()


async def _mark(db: Database, source: str, user_id: str, *, age: float = 0.0, attempts: int = 0) -> None:
    """Mark ``user_id`` dirty as if ``age`` seconds ago, having been tried ``attempts`` times."""
    async with db.transaction(write=True) as tx:
        await queue.mark(tx, source, [user_id])
    for _ in range(attempts):
        async with db.transaction(write=True) as tx:
            claim = await queue.claim(tx, source, user_id)
            assert claim is not None
            await queue.retry_later(tx, claim, -age)
    if age and not attempts:
        await _age(db, source, user_id, age)


async def _age(db: Database, source: str, user_id: str, age: float) -> None:
    """Pretend the user's last mark was ``age`` seconds ago (the store has no operation for that)."""
    async with db.transaction(write=True) as tx:
        await tx.execute(
            update(dirty)
            .where(dirty.c.source == source, dirty.c.user_id == user_id)
            .values(due_at=time.time() - age)
        )


async def test_claim_due_holds_only_new_users_of_a_source_still_writing(db: Database, source_name: str) -> None:
    await _mark(db, source_name, "new")
    await _mark(db, source_name, "retried", age=1, attempts=1)
    await _mark(db, source_name, "existing")
    async with db.transaction(write=True) as tx:
        await provisioning.record_synced(
            tx, source_name, "existing", identity_id="z1", applied={}, adopted=False
        )
    settle = {source_name: 30.0}
    claimed = await queue.claim_due(db, 10, settle)
    assert {c.user_id for c in claimed} == {"retried", "existing"}
    # The source paused (its last marks are older than the window): the new user is claimed.
    await _age(db, source_name, "new", 31)
    await _age(db, source_name, "existing", 31)
    assert {c.user_id for c in await queue.claim_due(db, 10, settle)} == {"new"}


async def test_claim_due_never_holds_a_new_user_longer_than_max_settle(db: Database, source_name: str) -> None:
    await _mark(db, source_name, "old", age=queue.MAX_SETTLE + 1)
    await _mark(db, source_name, "busy")  # the source is still writing
    claimed = {c.user_id for c in await queue.claim_due(db, 10, {source_name: 60.0})}
    assert claimed == {"old"}
    # Without a settle map (ziti-scim sync drains everything) nothing waits.
    assert {c.user_id for c in await queue.claim_due(db, 10, None)} == {"busy"}


async def test_group_commit_joins_concurrent_steps_and_isolates_a_failing_one(
    db: Database, source_name: str
) -> None:
    commits = GroupCommit(db)
    connections: list[Any] = []

    def step(i: int) -> Any:
        async def write(conn: Any) -> int:
            connections.append(conn)
            if i == 27:
                raise ValueError("step 27 is bad")
            await stored_settings.put(conn, f"{source_name}-{i}", {"i": i})
            return i

        return write

    # Twenty steps handed over at once: one transaction.
    assert await asyncio.gather(*(commits.run(step(i)) for i in range(20))) == list(range(20))
    assert len({id(c) for c in connections}) == 1
    # A batch with a failing step: only that step's caller gets the error, the others commit.
    results = await asyncio.gather(*(commits.run(step(i)) for i in range(20, 30)), return_exceptions=True)
    await commits.close()
    assert results[:7] == list(range(20, 27)) and results[8:] == [28, 29]
    assert isinstance(results[7], ValueError)
    async with db.transaction() as tx:
        stored = {i for i in range(30) if await stored_settings.get(tx, f"{source_name}-{i}") is not None}
    assert stored == set(range(30)) - {27}


async def test_group_commit_applies_each_batched_write_once_per_transaction_and_isolates_a_failing_unit(
    db: Database, source_name: str
) -> None:
    """Many callers' settling parts: each batched write runs once with every caller's items (one
    executemany), after the plain steps; a unit whose step fails is retried alone and fails alone, its
    other parts not applied (a caller's parts commit together or not at all)."""
    commits = GroupCommit(db)
    calls: list[list[str]] = []

    async def write(tx: Any, keys: list[str]) -> None:
        calls.append(list(keys))
        for key in keys:
            await stored_settings.put(tx, f"{source_name}-{key}", {"batched": True})

    async def failing(tx: Any) -> None:
        raise ValueError("this unit is bad")

    units = [[Batched(write, f"a{i}"), Batched(write, f"b{i}")] for i in range(10)]
    await asyncio.gather(*(commits.run_all(parts) for parts in units))
    assert calls == [[f"{p}{i}" for i in range(10) for p in "ab"]]
    calls.clear()
    bad: list[Part] = [Batched(write, "bad"), failing]
    results = await asyncio.gather(
        commits.run_all([Batched(write, "c0")]), commits.run_all(bad), commits.run_all([Batched(write, "c1")]),
        return_exceptions=True,
    )
    await commits.close()
    assert results[0] is None and results[2] is None and isinstance(results[1], ValueError)
    async with db.transaction() as tx:
        stored = {
            key
            for key in ["bad", "c0", "c1", *(f"{p}{i}" for i in range(10) for p in "ab")]
            if await stored_settings.get(tx, f"{source_name}-{key}") is not None
        }
    assert stored == {"c0", "c1", *(f"{p}{i}" for i in range(10) for p in "ab")}


async def test_state_reads_of_concurrent_converges_share_one_transaction(
    db: Database, source_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reads asked for in the same loop turn are answered by one read transaction, each with what a read
    of its own would give (document, groups, record, and the latest mark's request)."""
    async with db.transaction(write=True) as tx:
        await queue.mark(tx, source_name, ["u1", "u2"], request_id="r1", operation="PATCH /Groups/g")
        await provisioning.record_synced(tx, source_name, "u2", identity_id="i2", applied={}, adopted=False)
    opened = 0
    transaction = db.transaction

    def counting(*args: Any, **kwargs: Any) -> Any:
        nonlocal opened
        opened += 1
        return transaction(*args, **kwargs)

    monkeypatch.setattr(db, "transaction", counting)
    reads = StateReads(db)
    results = await asyncio.gather(*(reads.read(source_name, user) for user in ("u1", "u2", "u3")))
    assert opened == 1
    monkeypatch.undo()
    async with db.transaction() as tx:
        expected = [await desired.read_user_state(tx, source_name, user) for user in ("u1", "u2", "u3")]
    assert [state for state, _ in results] == expected
    assert expected[1].provisioning is not None and expected[1].provisioning["identity_id"] == "i2"
    assert [info for _, info in results] == [("r1", "PATCH /Groups/g")] * 2 + [(None, None)]


def _looks_at_the_queue(database_url: str, monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The times the worker looks at the dirty queue (``claim_due``), as they come. SQLite only: on
    PostgreSQL every mark's NOTIFY wakes the replicas, this one included (:mod:`app.store.notify`)."""
    if database_url.startswith("postgres"):
        pytest.skip("on PostgreSQL the mark's NOTIFY wakes every replica's worker, by design")
    looks: list[float] = []
    claim_due = queue.claim_due

    async def counted(*args: Any, **kwargs: Any) -> list[queue.Claim]:
        looks.append(time.monotonic())
        return await claim_due(*args, **kwargs)

    monkeypatch.setattr(worker_module.queue, "claim_due", counted)
    return looks


def test_creates_of_a_settling_source_do_not_each_look_at_the_queue(
    emulator: EmulatorThread, idp: TestIdp, database_url: str, source_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """New users of a source with ``create_settle`` wait for its pause anyway: their writes wake no look at
    the dirty queue (each look scans the users still settling), only the worker's poll looks (every
    ``create_settle / 2``); the users still converge once the source paused. SQLite only: on PostgreSQL
    every mark's NOTIFY wakes the replicas, this one included (:mod:`app.store.notify`)."""
    looks = _looks_at_the_queue(database_url, monkeypatch)
    add_signer(emulator, idp)
    config = make_stack_config(database_url, source_name, emulator.url, create_settle=2.0)
    with live_server(create_app(config)) as url:
        stack = Stack(scim_url=f"{url}/scim/v2", emulator=emulator, idp=idp, app=None)
        with stack.client() as scim:
            began = time.monotonic()
            for i in range(30):
                assert scim.post("/Users", json=user(f"quiet{i}", f"quiet{i}@example.com")).status_code == 201
            ended = time.monotonic()
        during = [t for t in looks if began <= t <= ended]
        # One poll a second (create_settle / 2), not one look per create.
        assert len(during) <= (ended - began) / 1.0 + 2, (len(during), ended - began)
        users = stack.settle(timeout=60)
        assert len(users) == 30 and {u[STATUS]["provisioningState"] for u in users} == {"synced"}


def test_group_writes_of_an_initial_sync_do_not_each_look_at_the_queue(
    emulator: EmulatorThread, idp: TestIdp, database_url: str, source_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An initial sync's group PATCHes add members who have no identity yet: like their creates, they wake
    no look at the dirty queue (the source still writes, so nothing is due); once the users have
    identities, a member added to a group wakes the worker at once, while the source keeps writing.
    SQLite only (on PostgreSQL every mark's NOTIFY wakes the replicas, by design)."""
    looks = _looks_at_the_queue(database_url, monkeypatch)
    add_signer(emulator, idp)
    config = make_stack_config(database_url, source_name, emulator.url, create_settle=2.0)
    with live_server(create_app(config)) as url:
        stack = Stack(scim_url=f"{url}/scim/v2", emulator=emulator, idp=idp, app=None)
        with stack.client() as scim:
            ids = [
                scim.post("/Users", json=user(f"gsync{i}", f"gsync{i}@example.com")).json()["id"]
                for i in range(6)
            ]
            began = time.monotonic()
            groups = []
            for g in range(15):
                group = scim.post("/Groups", json={"schemas": [GROUP], "displayName": f"g{g}"})
                assert group.status_code == 201
                groups.append(group.json()["id"])
                members = [ids[g % 6], ids[(g + 1) % 6]]
                added = scim.patch(
                    f"/Groups/{groups[-1]}",
                    json=patch(*({"op": "add", "path": "members", "value": [{"value": m}]} for m in members)),
                )
                assert added.status_code == 200
            ended = time.monotonic()
            during = [t for t in looks if began <= t <= ended]
            # One poll a second (create_settle / 2), not one look per group PATCH.
            assert len(during) <= (ended - began) / 1.0 + 2, (len(during), ended - began)
            users = stack.settle(timeout=60)
            assert {u[STATUS]["provisioningState"] for u in users} == {"synced"}
            for i in range(6):
                identity = emulator.state.identity_by_external_id(f"gsync{i}@example.com")
                want = [f"g{g}" for g in range(15) if i in (g % 6, (g + 1) % 6)]
                assert identity is not None and sorted(identity.role_attributes) == sorted(want), i
            # With identities, a membership change converges while the source keeps writing.
            late = scim.post("/Groups", json={"schemas": [GROUP], "displayName": "late"}).json()["id"]
            added = scim.patch(
                f"/Groups/{late}", json=patch({"op": "add", "path": "members", "value": [{"value": ids[0]}]})
            )
            assert added.status_code == 200
            deadline = time.monotonic() + 20
            i = 0
            while "late" not in getattr(
                emulator.state.identity_by_external_id("gsync0@example.com"), "role_attributes", ()
            ):
                assert time.monotonic() < deadline, "the member add waited for the source to pause"
                scim.post("/Users", json=user(f"busy{i}", f"busy{i}@example.com"))
                i += 1
                time.sleep(0.05)
