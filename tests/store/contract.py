"""The contract of the store's operations (:mod:`app.store`), one class per concept, in the shape of
scim2-server's ``AsyncScimStorageContract``: subclass a contract and give it a ``db`` fixture returning an
empty, migrated :class:`~app.store.db.Database`; every test is one rule a docstring of the store promises.

The queue's clock is the ``clock`` fixture (``app.store.queue`` reads the time through ``time.time``), so
lease expiry and retry delays are tested without waiting for them.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator
from typing import Any

import pytest
from scim2_models import ResourceType, SearchRequest
from scim2_server.utils import load_default_provider

from app.store import audit, desired, provisioning, queue, settings
from app.store.db import Database
from app.store.storage import SqlStorage
from app.store.types import AuditEntry, Claim, ProvisioningView, StoredGroup, UserState
from app.store.webhook_state import IdpEventLog, open_events
from tests.support.clock import FrozenClock

SOURCE = "corp"
OTHER = "other"


class StoreContract:
    """What every contract needs: a ``db`` fixture (given by the subclass) and the queue's clock."""

    @pytest.fixture
    def db(self) -> Database:
        raise NotImplementedError("a contract subclass gives an empty, migrated database")

    @pytest.fixture
    def clock(self, monkeypatch: pytest.MonkeyPatch) -> Iterator[FrozenClock]:
        clock = FrozenClock(1_700_000_000.0)
        monkeypatch.setattr(queue, "time", clock)
        yield clock


class QueueContract(StoreContract):
    """:mod:`app.store.queue`: marks coalesce, claims are leases, settling respects newer marks."""

    @staticmethod
    async def mark(db: Database, *user_ids: str, source: str = SOURCE, **origin: Any) -> list[str]:
        async with db.transaction(write=True) as tx:
            return await queue.mark(tx, source, user_ids, **origin)

    @staticmethod
    async def claim(db: Database, user_id: str, source: str = SOURCE) -> Claim | None:
        async with db.transaction(write=True) as tx:
            return await queue.claim(tx, source, user_id)

    @staticmethod
    async def count(db: Database) -> int:
        async with db.transaction() as tx:
            return await queue.pending_count(tx)

    async def test_a_mark_is_claimable_at_once(self, db: Database, clock: FrozenClock) -> None:
        assert await self.mark(db, "u1") == ["u1"]
        assert await queue.claim_due(db, 10) == [Claim(SOURCE, "u1", generation=1, attempts=0)]

    async def test_repeated_marks_coalesce_in_one_row_whose_generation_grows(
        self, db: Database, clock: FrozenClock
    ) -> None:
        for _ in range(3):
            await self.mark(db, "u1")
        assert await self.count(db) == 1
        assert await queue.claim_due(db, 10) == [Claim(SOURCE, "u1", generation=3, attempts=0)]

    async def test_mark_returns_each_user_once_in_order(self, db: Database, clock: FrozenClock) -> None:
        assert await self.mark(db, "b", "a", "b") == ["b", "a"]
        assert await self.mark(db) == []
        assert await self.count(db) == 2

    async def test_marks_are_kept_per_source(self, db: Database, clock: FrozenClock) -> None:
        await self.mark(db, "u1")
        await self.mark(db, "u1", source=OTHER)
        async with db.transaction() as tx:
            assert await queue.marked(tx) == {(SOURCE, "u1"), (OTHER, "u1")}
            assert await queue.marked(tx, OTHER) == {(OTHER, "u1")}

    async def test_the_latest_mark_names_the_request(self, db: Database, clock: FrozenClock) -> None:
        await self.mark(db, "u1", request_id="r1", operation="POST /Users")
        await self.mark(db, "u1", request_id="r2", operation="PATCH /Users/u1")
        claim = await self.claim(db, "u1")
        assert claim is not None
        async with db.transaction() as tx:
            infos = await queue.request_infos(tx, [(claim.source, claim.user_id), (SOURCE, "nobody")])
        assert infos == {(SOURCE, "u1"): ("r2", "PATCH /Users/u1"), (SOURCE, "nobody"): (None, None)}

    async def test_a_mark_rolled_back_with_its_transaction_leaves_nothing(
        self, db: Database, clock: FrozenClock
    ) -> None:
        with pytest.raises(RuntimeError):
            async with db.transaction(write=True) as tx:
                await queue.mark(tx, SOURCE, ["u1"])
                raise RuntimeError("the write failed after marking")
        assert await self.count(db) == 0

    async def test_a_claimed_row_is_not_claimed_again_while_its_lease_holds(
        self, db: Database, clock: FrozenClock
    ) -> None:
        await self.mark(db, "u1")
        assert await self.claim(db, "u1") is not None
        clock.advance(queue.LEASE_SECONDS - 1)
        assert await self.claim(db, "u1") is None
        assert await queue.claim_due(db, 10) == []

    async def test_an_expired_lease_frees_the_row(self, db: Database, clock: FrozenClock) -> None:
        """A crashed worker's rows come back by themselves."""
        await self.mark(db, "u1")
        assert await queue.claim_due(db, 10)
        clock.advance(queue.LEASE_SECONDS + 1)
        assert [c.user_id for c in await queue.claim_due(db, 10)] == ["u1"]

    async def test_a_renewed_lease_holds_past_its_first_term(self, db: Database, clock: FrozenClock) -> None:
        await self.mark(db, "u1")
        claims = await queue.claim_due(db, 10)
        clock.advance(queue.LEASE_SECONDS - 1)
        async with db.transaction(write=True) as tx:
            await queue.renew(tx, claims)
        clock.advance(2)
        assert await queue.claim_due(db, 10) == []
        clock.advance(queue.LEASE_SECONDS)
        assert [c.user_id for c in await queue.claim_due(db, 10)] == ["u1"]

    async def test_a_renewal_after_the_release_does_not_claim_again(self, db: Database, clock: FrozenClock) -> None:
        await self.mark(db, "u1")
        claim = await self.claim(db, "u1")
        assert claim is not None
        await self.mark(db, "u1")
        async with db.transaction(write=True) as tx:
            await queue.finish(tx, claim)
        async with db.transaction(write=True) as tx:
            await queue.renew(tx, [claim])
        assert await self.claim(db, "u1") is not None

    async def test_finish_drops_the_mark(self, db: Database, clock: FrozenClock) -> None:
        await self.mark(db, "u1")
        [claim] = await queue.claim_due(db, 10)
        async with db.transaction(write=True) as tx:
            assert await queue.finish(tx, claim) is True
        assert await self.count(db) == 0

    async def test_finish_keeps_a_user_marked_again_meanwhile_released_and_due(
        self, db: Database, clock: FrozenClock
    ) -> None:
        await self.mark(db, "u1")
        [claim] = await queue.claim_due(db, 10)
        await self.mark(db, "u1")
        async with db.transaction(write=True) as tx:
            assert await queue.finish(tx, claim) is False
        assert await queue.claim_due(db, 10) == [Claim(SOURCE, "u1", generation=2, attempts=0)]

    async def test_retry_later_reschedules_and_counts_the_attempt(self, db: Database, clock: FrozenClock) -> None:
        await self.mark(db, "u1")
        [claim] = await queue.claim_due(db, 10)
        async with db.transaction(write=True) as tx:
            await queue.retry_later(tx, claim, 100.0)
        clock.advance(99)
        assert await queue.claim_due(db, 10) == []
        clock.advance(2)
        assert await queue.claim_due(db, 10) == [Claim(SOURCE, "u1", generation=1, attempts=1)]

    async def test_retry_later_of_a_user_marked_again_is_due_now(self, db: Database, clock: FrozenClock) -> None:
        await self.mark(db, "u1")
        [claim] = await queue.claim_due(db, 10)
        await self.mark(db, "u1")
        async with db.transaction(write=True) as tx:
            await queue.retry_later(tx, claim, 100.0)
        assert await queue.claim_due(db, 10) == [Claim(SOURCE, "u1", generation=2, attempts=0)]

    async def test_finish_all_drops_the_marks_at_their_generation_and_releases_the_rest(
        self, db: Database, clock: FrozenClock
    ) -> None:
        await self.mark(db, "u1", "u2", "u3")
        claims = await queue.claim_due(db, 10)
        await self.mark(db, "u2")
        async with db.transaction(write=True) as tx:
            await queue.finish_all(tx, claims)
        assert await self.count(db) == 1
        assert await queue.claim_due(db, 10) == [Claim(SOURCE, "u2", generation=2, attempts=0)]

    async def test_retry_later_all_reschedules_each_and_releases_those_marked_again(
        self, db: Database, clock: FrozenClock
    ) -> None:
        await self.mark(db, "u1", "u2", "u3")
        by_user = {claim.user_id: claim for claim in await queue.claim_due(db, 10)}
        await self.mark(db, "u3")
        async with db.transaction(write=True) as tx:
            await queue.retry_later_all(
                tx, [(by_user["u1"], 100.0), (by_user["u2"], 50.0), (by_user["u3"], 100.0)]
            )
        [again] = await queue.claim_due(db, 10)
        assert again == Claim(SOURCE, "u3", generation=2, attempts=0)
        async with db.transaction(write=True) as tx:
            await queue.finish_all(tx, [again])
        clock.advance(51)
        [retried] = await queue.claim_due(db, 10)
        assert retried == Claim(SOURCE, "u2", generation=1, attempts=1)
        async with db.transaction(write=True) as tx:
            await queue.finish_all(tx, [retried])
        clock.advance(50)
        assert await queue.claim_due(db, 10) == [Claim(SOURCE, "u1", generation=1, attempts=1)]

    async def test_renew_extends_every_held_lease_and_no_released_one(
        self, db: Database, clock: FrozenClock
    ) -> None:
        await self.mark(db, "u1", "u2")
        claims = await queue.claim_due(db, 10)
        async with db.transaction(write=True) as tx:
            await queue.finish_all(tx, [c for c in claims if c.user_id == "u2"])
        await self.mark(db, "u2")  # a fresh mark, unclaimed: renewing the old claim must not claim it
        clock.advance(queue.LEASE_SECONDS - 1)
        async with db.transaction(write=True) as tx:
            await queue.renew(tx, claims)
        clock.advance(2)  # past the first term of u1's lease
        assert await queue.claim_due(db, 10) == [Claim(SOURCE, "u2", generation=1, attempts=0)]

    async def test_request_infos_name_each_users_latest_mark(self, db: Database, clock: FrozenClock) -> None:
        await self.mark(db, "u1", request_id="r1", operation="POST /Users")
        await self.mark(db, "u1", request_id="r2", operation="PATCH /Users/u1")
        await self.mark(db, "u2", request_id="r3", operation="PUT /Users/u2")
        await self.mark(db, "u1", source=OTHER, request_id="r4", operation="POST /Users")
        keys = [(SOURCE, "u1"), (SOURCE, "u2"), (SOURCE, "nobody"), (OTHER, "u1"), (OTHER, "u2")]
        async with db.transaction() as tx:
            infos = await queue.request_infos(tx, keys)
        assert infos == {
            (SOURCE, "u1"): ("r2", "PATCH /Users/u1"),
            (SOURCE, "u2"): ("r3", "PUT /Users/u2"),
            (SOURCE, "nobody"): (None, None),
            (OTHER, "u1"): ("r4", "POST /Users"),
            (OTHER, "u2"): (None, None),
        }

    async def test_claim_due_takes_the_longest_due_first_up_to_the_limit(
        self, db: Database, clock: FrozenClock
    ) -> None:
        for user_id in ("c", "a", "b"):
            await self.mark(db, user_id)
            clock.advance(1)
        assert [c.user_id for c in await queue.claim_due(db, 2)] == ["c", "a"]
        assert [c.user_id for c in await queue.claim_due(db, 2)] == ["b"]

    async def test_two_claimers_never_get_the_same_row(self, db: Database, clock: FrozenClock) -> None:
        await self.mark(db, *(f"u{i}" for i in range(40)))
        first, second = await asyncio.gather(queue.claim_due(db, 25), queue.claim_due(db, 25))
        taken = [c.user_id for c in first + second]
        assert len(taken) == len(set(taken)) == 40

    async def test_release_all_frees_every_claim(self, db: Database, clock: FrozenClock) -> None:
        await self.mark(db, "u1", "u2")
        assert len(await queue.claim_due(db, 10)) == 2
        async with db.transaction(write=True) as tx:
            await queue.release_all(tx)
        assert len(await queue.claim_due(db, 10)) == 2

    async def test_make_all_due_brings_waiting_retries_forward(self, db: Database, clock: FrozenClock) -> None:
        await self.mark(db, "u1")
        [claim] = await queue.claim_due(db, 10)
        async with db.transaction(write=True) as tx:
            await queue.retry_later(tx, claim, 300.0)
        async with db.transaction(write=True) as tx:
            await queue.make_all_due(tx)
        assert [c.user_id for c in await queue.claim_due(db, 10)] == ["u1"]

    async def test_unsettled_counts_claimed_and_due_rows_not_waiting_retries(
        self, db: Database, clock: FrozenClock
    ) -> None:
        await self.mark(db, "claimed", "due", "waiting")
        await self.mark(db, "elsewhere", source=OTHER)
        claimed = await self.claim(db, "claimed")
        waiting = await self.claim(db, "waiting")
        assert claimed is not None and waiting is not None
        async with db.transaction(write=True) as tx:
            await queue.retry_later(tx, waiting, 60.0)
        users = {(SOURCE, u) for u in ("claimed", "due", "waiting", "unmarked")} | {(OTHER, "elsewhere")}
        async with db.transaction() as tx:
            assert await queue.unsettled(tx, users) == 3
            assert await queue.unsettled(tx, set()) == 0

    def test_backoff_grows_exponentially_with_jitter_up_to_the_cap(self) -> None:
        rng = random.Random(7)
        for attempts in range(20):
            ceiling = min(queue.MAX_BACKOFF, 2.0**attempts)
            assert ceiling / 2 <= queue.backoff(attempts, rng=rng) <= ceiling


class ProvisioningContract(StoreContract):
    """:mod:`app.store.provisioning`: the externalId claim is unique across sources; outcomes are recorded."""

    @staticmethod
    async def admit(db: Database, user_id: str, external_id: str, source: str = SOURCE) -> None:
        async with db.transaction(write=True) as tx:
            await provisioning.admit(tx, source, user_id, external_id=external_id, user_name=f"{user_id}-name")

    @staticmethod
    async def get(db: Database, user_id: str, source: str = SOURCE) -> dict[str, Any] | None:
        async with db.transaction() as tx:
            record = await provisioning.get(tx, source, user_id)
        return dict(record) if record is not None else None

    async def test_admit_records_a_pending_user_claiming_its_external_id(self, db: Database) -> None:
        await self.admit(db, "u1", "u1@example.com")
        record = await self.get(db, "u1")
        assert record is not None
        assert {k: record[k] for k in ("source", "user_id", "external_id", "user_name", "state")} == {
            "source": SOURCE,
            "user_id": "u1",
            "external_id": "u1@example.com",
            "user_name": "u1-name",
            "state": "pending",
        }
        assert record["identity_id"] is None and record["adopted"] is False
        assert set(record) == {
            "source", "user_id", "identity_id", "external_id", "user_name", "state",
            "last_error", "applied", "adopted", "updated_at",
        }  # fmt: skip

    async def test_an_external_id_claimed_by_another_user_of_any_source_is_refused(self, db: Database) -> None:
        await self.admit(db, "u1", "shared@example.com", source=OTHER)
        async with db.transaction(write=True) as tx:
            with pytest.raises(provisioning.ExternalIdTaken) as refused:
                await provisioning.admit(tx, SOURCE, "u2", external_id="shared@example.com", user_name="u2")
            assert refused.value.external_id == "shared@example.com"
            # The transaction is still usable, and the refused claim left nothing behind.
            await provisioning.admit(tx, SOURCE, "u3", external_id="u3@example.com", user_name="u3")
        assert await self.get(db, "u2") is None
        assert await self.get(db, "u3") is not None
        held = await self.get(db, "u1", source=OTHER)
        assert held is not None and held["external_id"] == "shared@example.com"

    async def test_admitting_again_keeps_the_state_and_the_identity(self, db: Database) -> None:
        await self.admit(db, "u1", "old@example.com")
        async with db.transaction(write=True) as tx:
            await provisioning.record_synced(tx, SOURCE, "u1", identity_id="i1", applied={"a": 1}, adopted=False)
        await self.admit(db, "u1", "new@example.com")
        record = await self.get(db, "u1")
        assert record is not None
        assert (record["state"], record["identity_id"], record["external_id"]) == ("synced", "i1", "new@example.com")

    async def test_admit_returns_the_record_as_written(self, db: Database) -> None:
        async with db.transaction(write=True) as tx:
            first = await provisioning.admit(tx, SOURCE, "u1", external_id="a@example.com", user_name="u1")
            await provisioning.record_synced(tx, SOURCE, "u1", identity_id="i1", applied={}, adopted=False)
            await provisioning.record_error(tx, SOURCE, "u1", "in flight")
            again = await provisioning.admit(tx, SOURCE, "u1", external_id="b@example.com", user_name="u1")
            skipped = await provisioning.admit_skipped(tx, SOURCE, "u1", user_name="u1", message="emails: missing")
            fresh = await provisioning.admit_skipped(tx, SOURCE, "u2", user_name="u2", message="emails: missing")
        assert first == ProvisioningView("pending", None, None)
        assert again == ProvisioningView("synced", "i1", "in flight")
        assert skipped == ProvisioningView("skipped", "i1", "emails: missing")
        assert fresh == ProvisioningView("skipped", None, "emails: missing")

    async def test_settled_now_is_the_record_of_a_settled_unmarked_user(
        self, db: Database
    ) -> None:
        target = {"name": "u1", "disabled": False}

        async def settled() -> dict[str, Any] | None:
            async with db.transaction() as tx:
                return provisioning.settled_target(await provisioning.settled_now(tx, SOURCE, "u1"))

        await self.admit(db, "u1", "u1@example.com")
        assert await settled() is None  # pending, no identity
        async with db.transaction(write=True) as tx:
            await provisioning.record_synced(
                tx, SOURCE, "u1", identity_id="i1", applied={"fields": {}, "target": target}, adopted=False
            )
        assert await settled() == target
        async with db.transaction(write=True) as tx:
            await queue.mark(tx, SOURCE, ["u1"])
        assert await settled() is None  # a change waits to be converged
        async with db.transaction(write=True) as tx:
            claim = await queue.claim(tx, SOURCE, "u1")
            assert claim is not None
            await queue.finish(tx, claim)
            await provisioning.record_error(tx, SOURCE, "u1", "in flight")
        assert await settled() is None  # not settled: the last change's outcome is unknown
        async with db.transaction() as tx:
            assert await provisioning.settled_now(tx, SOURCE, "nobody") is None

    async def test_a_released_external_id_can_be_claimed_by_another_user(self, db: Database) -> None:
        await self.admit(db, "u1", "x@example.com")
        async with db.transaction(write=True) as tx:
            await provisioning.release_external_id(tx, SOURCE, "u1")
        await self.admit(db, "u2", "x@example.com")
        first, second = await self.get(db, "u1"), await self.get(db, "u2")
        assert first is not None and first["external_id"] is None
        assert second is not None and second["external_id"] == "x@example.com"

    async def test_a_skipped_user_keeps_its_claim_and_says_why(self, db: Database) -> None:
        await self.admit(db, "u1", "x@example.com")
        async with db.transaction(write=True) as tx:
            await provisioning.admit_skipped(tx, SOURCE, "u1", user_name="u1", message="emails: missing")
            await provisioning.admit_skipped(tx, SOURCE, "u2", user_name="u2", message="emails: missing")
        for user_id, claim in (("u1", "x@example.com"), ("u2", None)):
            record = await self.get(db, user_id)
            assert record is not None
            assert (record["state"], record["last_error"], record["external_id"]) == (
                "skipped",
                "emails: missing",
                claim,
            )

    async def test_record_synced_writes_the_outcome_with_or_without_a_record(self, db: Database) -> None:
        async with db.transaction(write=True) as tx:
            await provisioning.record_error(tx, SOURCE, "u1", "boom", state="failed")
            await provisioning.record_synced(
                tx, SOURCE, "u1", identity_id="i1", applied={"fields": {"name": "a"}}, adopted=True
            )
        record = await self.get(db, "u1")
        assert record is not None
        assert (record["state"], record["last_error"], record["identity_id"], record["adopted"]) == (
            "synced",
            None,
            "i1",
            True,
        )
        assert record["applied"] == {"fields": {"name": "a"}}

    async def test_record_error_keeps_the_state_unless_given_one_and_cuts_the_message(
        self, db: Database
    ) -> None:
        await self.admit(db, "u1", "x@example.com")
        async with db.transaction(write=True) as tx:
            await provisioning.record_error(tx, SOURCE, "u1", "in flight")
        record = await self.get(db, "u1")
        assert record is not None and (record["state"], record["last_error"]) == ("pending", "in flight")
        async with db.transaction(write=True) as tx:
            await provisioning.record_error(tx, SOURCE, "u1", "x" * 5000, state="conflict")
            await provisioning.record_error(tx, SOURCE, "nobody", "no record", state="failed")
        record = await self.get(db, "u1")
        assert record is not None and record["state"] == "conflict"
        assert record["last_error"] == "x" * provisioning.MAX_ERROR
        assert await self.get(db, "nobody") is None

    async def test_record_disabled_and_forget(self, db: Database) -> None:
        await self.admit(db, "u1", "a@example.com")
        await self.admit(db, "u2", "b@example.com")
        async with db.transaction(write=True) as tx:
            await provisioning.record_error(tx, SOURCE, "u1", "was failing")
            await provisioning.record_disabled(tx, SOURCE, "u1")
            await provisioning.forget(tx, SOURCE, "u2")
        record = await self.get(db, "u1")
        assert record is not None and (record["state"], record["last_error"]) == ("disabled", None)
        assert await self.get(db, "u2") is None

    async def test_batched_outcomes_write_each_user_as_one_at_a_time_would(self, db: Database) -> None:
        for user_id in ("u1", "u2", "u3", "u4", "u5"):
            await self.admit(db, user_id, f"{user_id}@example.com")
        async with db.transaction(write=True) as tx:
            await provisioning.record_synced_all(
                tx,
                [
                    provisioning.Synced(SOURCE, "u1", "i1", {"fields": {"name": "a"}}, False),
                    provisioning.Synced(SOURCE, "new", "i9", {}, True),  # no record yet: written
                ],
            )
            await provisioning.record_errors(
                tx,
                [
                    provisioning.Outcome(SOURCE, "u2", "in flight"),  # the state is kept
                    provisioning.Outcome(SOURCE, "u3", "y" * 5000, "failed"),
                    provisioning.Outcome(SOURCE, "nobody", "no record", "failed"),
                ],
            )
            await provisioning.record_disabled_all(tx, [(SOURCE, "u4")])
            await provisioning.forget_all(tx, [(SOURCE, "u5")])
        states = {}
        for user_id in ("u1", "new", "u2", "u3", "u4"):
            record = await self.get(db, user_id)
            assert record is not None
            states[user_id] = (record["state"], record["last_error"], record["identity_id"])
        assert states == {
            "u1": ("synced", None, "i1"),
            "new": ("synced", None, "i9"),
            "u2": ("pending", "in flight", None),
            "u3": ("failed", "y" * provisioning.MAX_ERROR, None),
            "u4": ("disabled", None, None),
        }
        u1, new = await self.get(db, "u1"), await self.get(db, "new")
        assert u1 is not None and u1["applied"] == {"fields": {"name": "a"}} and u1["external_id"] == "u1@example.com"
        assert new is not None and new["adopted"] is True
        assert await self.get(db, "u5") is None and await self.get(db, "nobody") is None

    async def test_record_drift_sets_pending_and_forgets_a_lost_identity(self, db: Database) -> None:
        async with db.transaction(write=True) as tx:
            for user_id in ("kept", "lost"):
                await provisioning.record_synced(
                    tx, SOURCE, user_id, identity_id=f"i-{user_id}", applied={"old": 1}, adopted=False
                )
            await provisioning.record_drift(tx, SOURCE, "kept", applied={"new": 2}, identity_lost=False)
            await provisioning.record_drift(tx, SOURCE, "lost", applied=None, identity_lost=True)
        kept, lost = await self.get(db, "kept"), await self.get(db, "lost")
        assert kept is not None and (kept["state"], kept["identity_id"], kept["applied"]) == (
            "pending",
            "i-kept",
            {"new": 2},
        )
        assert lost is not None and (lost["state"], lost["identity_id"], lost["applied"]) == ("pending", None, None)

    async def test_view_shows_pending_while_the_user_is_marked(self, db: Database) -> None:
        async with db.transaction(write=True) as tx:
            await provisioning.record_synced(tx, SOURCE, "u1", identity_id="i1", applied={}, adopted=False)
            await provisioning.admit_skipped(tx, SOURCE, "u2", user_name="u2", message="emails: missing")
        async with db.transaction() as tx:
            shown = await provisioning.view(tx, SOURCE, ["u1", "u2", "unknown"])
        assert set(shown) == {"u1", "u2"}
        assert (shown["u1"].state, shown["u1"].identity_id) == ("synced", "i1")
        assert (shown["u2"].state, shown["u2"].last_error) == ("skipped", "emails: missing")
        async with db.transaction(write=True) as tx:
            await queue.mark(tx, SOURCE, ["u1"])
        async with db.transaction() as tx:
            assert (await provisioning.view(tx, SOURCE, ["u1"]))["u1"].state == "pending"

    async def test_counts_and_lookups(self, db: Database) -> None:
        async with db.transaction(write=True) as tx:
            await provisioning.record_synced(tx, SOURCE, "u1", identity_id="i1", applied={}, adopted=False)
            await provisioning.record_synced(tx, SOURCE, "u2", identity_id="i2", applied={}, adopted=False)
            await provisioning.admit_skipped(tx, SOURCE, "u3", user_name="u3", message="m")
            await provisioning.admit_skipped(tx, OTHER, "u4", user_name="u4", message="m")
            await provisioning.record_error(tx, SOURCE, "u1", "held by the mass-deprovision brake")
            await provisioning.record_error(tx, SOURCE, "u2", "held by the mass-deprovision brake")
            await queue.mark(tx, SOURCE, ["u1"])
        async with db.transaction() as tx:
            assert await provisioning.count_in_state(tx, "skipped") == {SOURCE: 1, OTHER: 1}
            assert await provisioning.managed_count(tx, SOURCE) == 2
            assert await provisioning.managed_count(tx, OTHER) == 0
            # Only users still queued count, and the fragment is literal (no wildcard).
            assert await provisioning.queued_with_error(tx, SOURCE, "brake") == 1
            assert await provisioning.queued_with_error(tx, SOURCE, "b%e") == 0
            assert await provisioning.user_of_identity(tx, "i2") == (SOURCE, "u2")
            assert await provisioning.user_of_identity(tx, "unknown") is None
            assert set(await provisioning.records(tx, OTHER)) == {(OTHER, "u4")}
            assert len(await provisioning.records(tx)) == 4


class AuditContract(StoreContract):
    """:mod:`app.store.audit`: rows are appended, read newest first, counted and pruned."""

    @staticmethod
    def entry(action: str = "create", **values: Any) -> AuditEntry:
        return AuditEntry(**{"source": SOURCE, "action": action, "outcome": "done", **values})

    async def test_rows_read_back_newest_first_with_every_field(self, db: Database) -> None:
        first = self.entry(
            user_id="u1",
            user_name="alice",
            identity_id="i1",
            request_id="r1",
            operation="POST /Users",
            error=None,
        )
        async with db.transaction(write=True) as tx:
            await audit.record(tx, [first, self.entry("patch", user_id="u1")], at=100.0)
            await audit.record(tx, [])
        async with db.transaction() as tx:
            rows = await audit.read(tx)
        assert [row["action"] for row in rows] == ["patch", "create"]
        assert rows[0]["id"] > rows[1]["id"]
        oldest = rows[1]
        assert {k: oldest[k] for k in ("at", "source", "user_id", "user_name", "identity_id")} == {
            "at": 100.0,
            "source": SOURCE,
            "user_id": "u1",
            "user_name": "alice",
            "identity_id": "i1",
        }
        assert (oldest["request_id"], oldest["operation"], oldest["outcome"], oldest["error"]) == (
            "r1",
            "POST /Users",
            "done",
            None,
        )

    async def test_read_filters_by_time_and_user_and_pages(self, db: Database) -> None:
        async with db.transaction(write=True) as tx:
            await audit.record(tx, [self.entry(user_id="u1")], at=10.0)
            await audit.record(tx, [self.entry(user_name="bob")], at=20.0)
            await audit.record(tx, [self.entry(identity_id="i3")], at=30.0)
        async with db.transaction() as tx:
            assert [r["at"] for r in await audit.read(tx, since=20.0)] == [30.0, 20.0]
            for user in ("u1", "bob", "i3"):
                assert len(await audit.read(tx, user=user)) == 1
            assert [r["at"] for r in await audit.read(tx, limit=1, offset=1)] == [20.0]

    async def test_prune_drops_only_older_rows(self, db: Database) -> None:
        async with db.transaction(write=True) as tx:
            await audit.record(tx, [self.entry(), self.entry()], at=10.0)
            await audit.record(tx, [self.entry()], at=20.0)
            assert await audit.prune(tx, 20.0) == 2
        async with db.transaction() as tx:
            assert [r["at"] for r in await audit.read(tx)] == [20.0]

    async def test_count_selects_source_time_actions_and_outcome(self, db: Database) -> None:
        async with db.transaction(write=True) as tx:
            await audit.record(tx, [self.entry("delete"), self.entry("disable"), self.entry("create")], at=50.0)
            await audit.record(tx, [self.entry("delete", outcome="held")], at=50.0)
            await audit.record(tx, [self.entry("delete")], at=10.0)
            await audit.record(tx, [self.entry("delete", source=OTHER)], at=50.0)
        async with db.transaction() as tx:
            assert await audit.count(tx, SOURCE, since=40.0, actions=("disable", "delete"), outcome="done") == 2

    async def test_latest_of_action_keeps_the_last_row_per_user(self, db: Database) -> None:
        async with db.transaction(write=True) as tx:
            await audit.record(tx, [self.entry("conflict", user_id="u1", error="first")])
            await audit.record(tx, [self.entry("conflict", user_id="u1", error="second")])
            await audit.record(tx, [self.entry("conflict", user_id="u2", source=OTHER, error="other")])
        async with db.transaction() as tx:
            latest = await audit.latest_of_action(tx, "conflict", SOURCE)
            assert {key: row["error"] for key, row in latest.items()} == {(SOURCE, "u1"): "second"}
            assert len(await audit.latest_of_action(tx, "conflict")) == 2


class SettingsContract(StoreContract):
    """:mod:`app.store.settings`: JSON values by key; the first writer of :func:`put_new` wins."""

    async def test_values_round_trip_and_none_unsets(self, db: Database) -> None:
        values = {"paused": {"since": 1.5}, "name": "x", "count": 3, "flag": True, "list": [1, "a"]}
        async with db.transaction(write=True) as tx:
            assert await settings.get(tx, "paused") is None
            for key, value in values.items():
                await settings.put(tx, key, value)
        async with db.transaction(write=True) as tx:
            assert {key: await settings.get(tx, key) for key in values} == values
            await settings.put(tx, "name", "y")
            await settings.put(tx, "paused", None)
            await settings.put(tx, "never-set", None)
        async with db.transaction() as tx:
            assert await settings.get(tx, "name") == "y"
            assert await settings.get(tx, "paused") is None

    async def test_put_new_keeps_the_first_value(self, db: Database) -> None:
        async with db.transaction(write=True) as tx:
            await settings.put_new(tx, "deployment", "first")
            await settings.put_new(tx, "deployment", "second")
            assert await settings.get(tx, "deployment") == "first"

    async def test_racing_put_new_leaves_one_winner(self, db: Database) -> None:
        async def attempt(value: str) -> None:
            async with db.transaction(write=True) as tx:
                await settings.put_new(tx, "deployment", value)

        await asyncio.gather(*(attempt(f"v{i}") for i in range(4)))
        async with db.transaction() as tx:
            assert await settings.get(tx, "deployment") in {f"v{i}" for i in range(4)}

    async def test_with_prefix_takes_the_prefix_literally(self, db: Database) -> None:
        async with db.transaction(write=True) as tx:
            for key in ("brake:a", "brake:b", "brakeX", "a%b", "ab", "a_c"):
                await settings.put(tx, key, key)
        async with db.transaction() as tx:
            assert set(await settings.with_prefix(tx, "brake:")) == {"brake:a", "brake:b"}
            assert await settings.with_prefix(tx, "a%") == {"a%b": "a%b"}
            assert await settings.with_prefix(tx, "a_") == {"a_c": "a_c"}


Scim = tuple[SqlStorage, ResourceType, ResourceType, Any, Any]


async def created(storage: SqlStorage, resource_type: ResourceType, resource: Any) -> str:
    """Create through the SCIM storage (the real write path); return the new id."""
    made = await storage.create(resource_type, resource)
    assert made.id is not None
    return str(made.id)


class DesiredContract(StoreContract):
    """:mod:`app.store.desired`: a user's document, groups and record, as SCIM writes left them."""

    @pytest.fixture
    def scim(self, db: Database) -> Scim:
        provider = load_default_provider()
        user_type = next(rt for rt in provider.resource_types if rt.id == "User")
        group_type = next(rt for rt in provider.resource_types if rt.id == "Group")
        storage = SqlStorage(db, provider, SOURCE).bound(write=True, request_id=None, operation=None)
        return storage, user_type, group_type, provider.model_for(user_type), provider.model_for(group_type)

    async def test_a_user_reads_back_with_its_groups_in_creation_order(self, db: Database, scim: Scim) -> None:
        storage, user_type, group_type, user_model, group_model = scim
        user = await created(storage, user_type, user_model(user_name="alice", display_name="Alice"))
        other = await created(storage, user_type, user_model(user_name="bob"))
        zeta = await created(storage, group_type, group_model(display_name="zeta", members=[{"value": user}]))
        members = [{"value": other}, {"value": user}]
        alpha = await created(
            storage, group_type, group_model(display_name="alpha", external_id="g-ext", members=members)
        )
        async with db.transaction() as tx:
            state = await desired.read_user_state(tx, SOURCE, user)
        assert state.document is not None
        assert (state.document["userName"], state.document["displayName"]) == ("alice", "Alice")
        assert state.groups == (StoredGroup(zeta, "zeta", None), StoredGroup(alpha, "alpha", "g-ext"))
        assert state.provisioning is None

    async def test_a_user_read_by_id_lists_its_groups_as_a_search_does(self, db: Database, scim: Scim) -> None:
        """GET /Users/{id} and a search by key read the row and the groups in one statement, another
        search with a second one: the same groups, in the order the groups were created, a group's
        displayName as ``display``."""
        storage, user_type, group_type, user_model, group_model = scim
        user = await created(storage, user_type, user_model(user_name="alice"))
        alone = await created(storage, user_type, user_model(user_name="bob"))
        made = []
        for name in ("zeta", "alpha", "Ünï \"quoted\""):
            made.append(await created(storage, group_type, group_model(display_name=name, members=[{"value": user}])))
        read = await storage.get(user_type, user, answer=True)
        by_key = await storage.search([user_type], SearchRequest(filter='userName eq "alice"'), answer=True)
        scanned = await storage.search([user_type], SearchRequest(filter='userName sw "ali"'), answer=True)
        assert by_key.resources == scanned.resources == [read]
        found = await storage.search([user_type], SearchRequest(filter='userName eq "alice"'))
        assert read["groups"] == [
            {"value": group_id, "$ref": f"Groups/{group_id}", "type": "direct", "display": name}
            for group_id, name in zip(made, ("zeta", "alpha", 'Ünï "quoted"'), strict=True)
        ]
        (listed,) = found.resources
        assert [g.value for g in listed.groups] == made
        assert "groups" not in await storage.get(user_type, alone, answer=True)
        model = await storage.get(user_type, user)
        assert [(g.value, g.display) for g in model.groups] == [(g["value"], g["display"]) for g in read["groups"]]

    async def test_a_read_for_an_update_serves_only_its_own_transaction(self, db: Database, scim: Scim) -> None:
        """The row a write transaction read (``SqlStorage.get``) is reused by its update, never by a later
        transaction's, even on the same connection (SQLite keeps one for the next transaction): a write
        in between is seen, and the version counts both."""
        storage, user_type, _, user_model, _ = scim
        user = await created(storage, user_type, user_model(user_name="alice", display_name="A"))
        async with storage.operation():
            first = await storage.get(user_type, user, views=False)
        other = storage.bound(write=True, request_id=None, operation=None)
        async with other.operation():
            between = await other.get(user_type, user, views=False)
            between.display_name = "between"
            await other.update(user_type, between)
        first.nick_name = "later"
        async with storage.operation():
            updated = await storage.update(user_type, first, answer=True)
        assert updated["meta"]["version"] == 'W/"3"'
        assert (await storage.get(user_type, user)).meta.version == 'W/"3"'

    async def test_a_deleted_user_has_no_document_but_keeps_its_record(self, db: Database, scim: Scim) -> None:
        storage, user_type, _, user_model, _ = scim
        user = await created(storage, user_type, user_model(user_name="alice"))
        async with db.transaction(write=True) as tx:
            await provisioning.record_synced(tx, SOURCE, user, identity_id="i1", applied={}, adopted=False)
        await storage.delete(user_type, user)
        async with db.transaction() as tx:
            state = await desired.read_user_state(tx, SOURCE, user)
            assert await desired.read_user_state(tx, OTHER, user) == UserState(None, (), None)
        assert (state.document, state.groups) == (None, ())
        assert state.provisioning is not None and state.provisioning["identity_id"] == "i1"

    async def test_many_users_read_at_once_as_one_at_a_time(self, db: Database, scim: Scim) -> None:
        storage, user_type, group_type, user_model, group_model = scim
        made = [await created(storage, user_type, user_model(user_name=name)) for name in ("c", "a", "b", "d")]
        await created(storage, group_type, group_model(display_name="g1", members=[{"value": made[0]}]))
        await created(
            storage, group_type, group_model(display_name="g2", members=[{"value": m} for m in made[:2]])
        )
        async with db.transaction(write=True) as tx:
            await provisioning.record_synced(tx, SOURCE, made[1], identity_id="i1", applied={}, adopted=False)
        await storage.delete(user_type, made[3])
        keys = [(SOURCE, user_id) for user_id in made] + [(SOURCE, "nobody"), (OTHER, made[0])]
        async with db.transaction() as tx:
            states = await desired.read_user_states(tx, [*keys, keys[0]])
            single = await desired.read_user_state(tx, SOURCE, made[1])
        assert set(states) == set(keys) and single == states[(SOURCE, made[1])]
        names = {key: (state.document or {}).get("userName") for key, state in states.items()}
        assert [names[key] for key in keys] == ["c", "a", "b", None, None, None]
        groups = {key: [g.display_name for g in state.groups] for key, state in states.items()}
        assert [groups[key] for key in keys[:3]] == [["g1", "g2"], ["g2"], []]
        assert (states[(SOURCE, made[1])].provisioning or {}).get("identity_id") == "i1"
        assert states[(SOURCE, "nobody")] == UserState(None, (), None)
        assert states[(SOURCE, made[1])].provisioning is not None
        assert states[(SOURCE, made[3])].document is None
        assert states[(OTHER, made[0])] == UserState(None, (), None)

    async def test_users_of_a_source_in_creation_order_with_their_groups(self, db: Database, scim: Scim) -> None:
        storage, user_type, group_type, user_model, group_model = scim
        made = [await created(storage, user_type, user_model(user_name=name)) for name in ("c", "a", "b")]
        await created(storage, group_type, group_model(display_name="g", members=[{"value": made[0]}]))
        elsewhere = SqlStorage(db, storage.provider, OTHER).bound(write=True, request_id=None, operation=None)
        await created(elsewhere, user_type, user_model(user_name="z"))
        async with db.transaction() as tx:
            assert await desired.user_ids(tx, SOURCE) == made
            listed = await desired.users(tx, SOURCE)
            everyone = await desired.users(tx)
        assert [u.user_id for u in listed] == made
        assert [g.display_name for g in listed[0].groups] == ["g"] and listed[1].groups == ()
        assert {u.source for u in everyone} == {SOURCE, OTHER} and len(everyone) == 4


class IdpEventsContract(StoreContract):
    """:func:`app.store.webhook_state.open_events`: events of aggregates not closed, oldest first."""

    async def test_open_events_leave_out_closed_aggregates_and_other_types(self, db: Database) -> None:
        log, other = IdpEventLog(db, SOURCE), IdpEventLog(db, OTHER)
        assert await log.record("pending", "pending:b", 1, "delivery", {"reason": "later"}, 20.0)
        assert await log.record("pending", "pending:a", 1, "delivery", {"reason": "first"}, 10.0)
        assert await log.record("pending", "pending:done", 1, "delivery", {}, 5.0)
        assert await log.record("user", "user-1", 1, "user.added", {}, 1.0)
        assert await other.record("pending", "pending:o", 1, "delivery", {}, 30.0)
        assert await log.put_base("pending", "pending:done", 1, {}, 40.0, closed=True)
        async with db.transaction() as tx:
            mine = await open_events(tx, "pending", SOURCE)
            every = await open_events(tx, "pending")
        assert [(e.aggregate_id, e.payload.get("reason"), e.received_at) for e in mine] == [
            ("pending:a", "first", 10.0),
            ("pending:b", "later", 20.0),
        ]
        assert [e.aggregate_id for e in every] == ["pending:a", "pending:b", "pending:o"]
