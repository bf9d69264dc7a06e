"""ZITADEL deliveries applied in sequence order: keep each event, fold its aggregate, apply the fold.

ZITADEL delivers each event once (an Actions v2 target gets no retries), possibly out of order and
concurrently. Every authenticated event that matters is kept in the source's event log
(:class:`~app.store.webhook_state.IdpEventLog`, keyed by aggregate and ``sequence``: a second delivery of
the same event stores nothing). Then, on every delivery, the aggregate's state is derived again by folding
*all* its kept events in sequence order (:mod:`app.webhooks.zitadel_fold`) and applied to the store
idempotently through the source's SCIM application (:class:`~app.webhooks.apply.EventApplier`):

* user: removed → delete it (the removal stays as a tombstone: a late ``user.human.added`` does nothing);
  not described completely yet (``user.human.added`` not received) → read it from the API when one is
  configured, otherwise wait; else create it or update the attributes that differ, with SCIM ``active``
  = active and not locked.
* grant: removed → drop it; user or role set still unknown → wait; else store it. Then the user's
  ``roles`` are recomputed from its active grants, as before.

A delivery that raced another one for the same aggregate sees the log change under it and folds again,
so the last application always reflects every kept event.

The periodic pull (:mod:`app.webhooks.zitadel_pull`) and the read of an event without payload record
ZITADEL's answer as the aggregate's *base* and apply the same fold: the API's view is authoritative at
its time, so the base supersedes the events kept until then and only events numbered after it are folded
on top. Its sequence is the last one kept (or the API's ``details.sequence`` if lower: the read lagged
behind events already received). The pull never deletes events and never writes a tombstone: only a
``removed`` event does, and a tombstoned aggregate is skipped by the pull. Users and grants the pull no
longer finds are removed from the store only (no tombstone); a later event can bring them back until the
next pull.

Storage stays bounded: a removal replaces the aggregate's events by its tombstone at once; the events of an
aggregate quiet for ``retention`` seconds (source option ``zitadel_event_retention``, 30 days by default)
are folded into its base and deleted, and tombstones older than the retention are forgotten.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any

from app.store.webhook_state import AggregateLog, IdpEventLog
from app.webhooks.apply import ApplyFailed, EventApplier, Outcome
from app.webhooks.common import SequencedEvent
from app.webhooks.events import SCIM_USER_SCHEMA, FetchUser
from app.webhooks.zitadel import zitadel_event
from app.webhooks.zitadel_api import ZitadelApi
from app.webhooks.zitadel_fold import (
    GRANT,
    USER,
    GrantState,
    UserState,
    api_sequence,
    fold_grant,
    fold_user,
    grant_state_from_api,
    user_state_from_api,
)

__all__ = ["DEFAULT_RETENTION", "ZitadelAggregates"]

log = logging.getLogger("ziti_scim.webhooks")

DEFAULT_RETENTION = 30 * 86400.0
_ROUNDS = 4
_COMPACT_EVERY = 3600.0


def _events(aggregate: AggregateLog) -> list[SequencedEvent]:
    return [
        SequencedEvent(e.aggregate_type, aggregate.aggregate_id, e.sequence, e.event_type, e.payload)
        for e in aggregate.events
    ]


def fold_user_log(aggregate: AggregateLog) -> UserState:
    base = None if aggregate.base is None else UserState.from_json(aggregate.base)
    return fold_user(base, aggregate.base_sequence, _events(aggregate))


def fold_grant_log(aggregate: AggregateLog) -> GrantState:
    base = None if aggregate.base is None else GrantState.from_json(aggregate.base)
    return fold_grant(base, aggregate.base_sequence, _events(aggregate))


class ZitadelAggregates:
    """The event log of one ZITADEL source and its application to the source's store."""

    def __init__(
        self,
        applier: EventApplier,
        events: IdpEventLog,
        *,
        api: ZitadelApi | None = None,
        retention: float = DEFAULT_RETENTION,
        clock: Callable[[], float],
    ) -> None:
        if retention <= 0:
            raise ValueError("retention must be positive")
        self.applier = applier
        self.events = events
        self.api = api
        self.retention = retention
        self.clock = clock
        self._compacted_at = -math.inf

    @property
    def source(self) -> str:
        return self.events.source

    # -- deliveries ---------------------------------------------------------------------------

    async def deliver(self, event: SequencedEvent) -> Outcome:
        """Keep ``event``, then fold its aggregate and apply the result."""
        neutral = zitadel_event(event.event_type, event.aggregate_id, event.payload)
        if isinstance(neutral, FetchUser) and self.api is None:
            raise ApplyFailed(
                422, "the delivery names a user without its attributes and no IdP API is configured"
            )
        outcome = Outcome()
        kept = await self.events.record(
            event.aggregate_type,
            event.aggregate_id,
            event.sequence,
            event.event_type,
            event.payload,
            self.clock(),
        )
        if not kept:
            outcome.skipped.append(f"{event.event_type} {event.sequence}: already kept or aggregate removed")
        await self.converge(event.aggregate_type, event.aggregate_id, outcome)
        await self.maybe_compact()
        return outcome

    async def converge(
        self, aggregate_type: str, aggregate_id: str, outcome: Outcome, *, sync_roles: bool = True
    ) -> str | None:
        """Fold the aggregate's kept events and apply the state; again if the log changed meanwhile.

        Returns the grant's user id (grants) once the grant is stored, else None.
        """
        read = False
        result: str | None = None
        for _ in range(_ROUNDS):
            aggregate = await self.events.load(aggregate_id)
            if aggregate_type == USER:
                state = fold_user_log(aggregate)
                if self.api is not None and not read and not state.removed:
                    if state.needs_read or not state.complete:
                        read = True  # once per delivery: a lagging API view must not loop
                        if not await self._read_user(aggregate_id, aggregate, outcome):
                            return None
                        continue
                await self._apply_user(aggregate_id, state, outcome)
                closed = state.removed
                tombstone = UserState(removed=True).to_json()
            else:
                grant = fold_grant_log(aggregate)
                result = await self._apply_grant(aggregate_id, grant, outcome, sync_roles=sync_roles)
                closed = grant.removed
                tombstone = GrantState(user_id=grant.user_id, removed=True).to_json()
            if closed and not aggregate.closed:
                # Final: the events (and what they said of the person) give way to the tombstone.
                await self.events.put_base(
                    aggregate_type,
                    aggregate_id,
                    aggregate.last_sequence,
                    tombstone,
                    self.clock(),
                    closed=True,
                    drop_events=True,
                )
                return result
            if (await self.events.load(aggregate_id)).version == aggregate.version:
                return result
        log.warning(
            "zitadel aggregate of source %s kept changing; the next delivery folds it again",
            self.source,
        )
        return result

    async def _read_user(self, user_id: str, aggregate: AggregateLog, outcome: Outcome) -> bool:
        """Record the API's view of the user as its base (True), or delete the user ZITADEL lacks."""
        assert self.api is not None
        user = await self.api.get_user(user_id)
        if user is None:
            # Not a tombstone: the API may lag behind a creation; only user.removed is final.
            if await self.applier.delete_user(user_id):
                outcome.applied.append("user deleted (not found in ZITADEL)")
            return False
        state = user_state_from_api(user)
        if state is None:
            outcome.skipped.append("machine user")
            return False
        await self._put_api_base(USER, user_id, state.to_json(), api_sequence(user), aggregate)
        return True

    async def _put_api_base(
        self,
        aggregate_type: str,
        aggregate_id: str,
        state: dict[str, Any],
        api_seq: int | None,
        aggregate: AggregateLog,
    ) -> bool:
        sequence = aggregate.last_sequence if api_seq is None else min(api_seq, aggregate.last_sequence)
        return await self.events.put_base(aggregate_type, aggregate_id, sequence, state, self.clock())

    async def _apply_user(self, user_id: str, state: UserState, outcome: Outcome) -> None:
        if state.removed:
            if await self.applier.delete_user(user_id):
                outcome.applied.append("user deleted")
            return
        if not state.complete:
            outcome.skipped.append("user not added yet: waiting for user.human.added")
            return
        document = {
            "schemas": [SCIM_USER_SCHEMA],
            **state.profile,
            "externalId": user_id,
            "active": state.scim_active,
        }
        done = await self.applier.write_user(user_id, document)
        if done == "created":
            # A grant applied while the user was being created may have missed it.
            await self.applier.sync_roles(user_id)
        (outcome.skipped if done == "unchanged" else outcome.applied).append(f"user {done}")

    async def _apply_grant(
        self, grant_id: str, grant: GrantState, outcome: Outcome, *, sync_roles: bool
    ) -> str | None:
        state = self.applier.state
        if grant.removed:
            user_id = grant.user_id or await state.grant_user(grant_id)
            await state.drop_grant(grant_id)
            if user_id is not None and sync_roles:
                await self.applier.sync_roles(user_id)
            outcome.applied.append("grant removed")
            return None
        if grant.user_id is None or grant.role_keys is None:
            outcome.skipped.append("grant not added yet: waiting for user.grant.added")
            return None
        await state.put_grant(grant_id, grant.user_id, grant.role_keys, grant.active is not False)
        if sync_roles:
            await self.applier.sync_roles(grant.user_id)
        outcome.applied.append("grant stored")
        return grant.user_id

    # -- the pull -----------------------------------------------------------------------------

    async def organization_of(self, user_id: str) -> str | None:
        """The user's organisation as its kept events or the last API read named it (None: unknown)."""
        return fold_user_log(await self.events.load(user_id)).organization

    async def snapshot_user(self, user: dict[str, Any], outcome: Outcome) -> str | None:
        """Record the API's view of a user as its base and apply the fold; the user id, or None for a
        machine user or a user a ``user.removed`` event already deleted."""
        state = user_state_from_api(user)
        if state is None:
            return None
        user_id = str(user["userId"])
        aggregate = await self.events.load(user_id)
        if aggregate.closed or fold_user_log(aggregate).removed:
            return None
        await self._put_api_base(USER, user_id, state.to_json(), api_sequence(user), aggregate)
        await self.converge(USER, user_id, outcome)
        return user_id

    async def snapshot_grant(self, grant: dict[str, Any], outcome: Outcome) -> tuple[str, str | None] | None:
        """Record the API's view of a grant as its base and store the fold (roles are not synced here).

        Returns ``(grant id, user id or None when not stored)``, or None for an unusable item.
        """
        parsed = grant_state_from_api(grant)
        if parsed is None:
            return None
        grant_id, state = parsed
        aggregate = await self.events.load(grant_id)
        if not aggregate.closed and not fold_grant_log(aggregate).removed:
            await self._put_api_base(GRANT, grant_id, state.to_json(), api_sequence(grant), aggregate)
        return grant_id, await self.converge(GRANT, grant_id, outcome, sync_roles=False)

    # -- storage bound ------------------------------------------------------------------------

    async def maybe_compact(self) -> None:
        now = self.clock()
        if now - self._compacted_at >= min(self.retention, _COMPACT_EVERY):
            self._compacted_at = now
            await self.compact()

    async def compact(self) -> int:
        """Fold the aggregates quiet for the retention into their base; forget old tombstones."""
        now = self.clock()
        cutoff = now - self.retention
        compacted = 0
        for aggregate_type, aggregate_id in await self.events.quiet(cutoff):
            aggregate = await self.events.load(aggregate_id)
            if not aggregate.events:
                continue
            if aggregate_type == USER:
                user = fold_user_log(aggregate)
                state, closed = user.to_json(), user.removed
            else:
                grant = fold_grant_log(aggregate)
                state, closed = grant.to_json(), grant.removed
            await self.events.put_base(
                aggregate_type,
                aggregate_id,
                aggregate.last_sequence,
                state,
                now,
                closed=closed,
                drop_events=True,
            )
            compacted += 1
        dropped = await self.events.drop_closed(cutoff)
        if compacted or dropped:
            log.info(
                "zitadel event log of source %s: %d aggregates compacted, %d tombstones dropped",
                self.source,
                compacted,
                dropped,
            )
        return compacted
