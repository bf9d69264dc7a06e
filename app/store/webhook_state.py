"""What the webhook receivers keep besides SCIM resources: accepted deliveries, ZITADEL grants, IdP flags.

* :class:`SqlReplayGuard` implements :class:`app.webhooks.replay.ReplayGuard` on a table with a unique
  key, so two concurrent deliveries of the same key cannot both be accepted (one INSERT wins).
* :class:`IdpState` remembers ZITADEL grants (``user.grant.changed``/``removed`` carry only the grant id,
  so the grant's user is remembered) and each user's activation and lockout flags.
* :class:`IdpEventLog` keeps the authenticated events of an event-sourced IdP (ZITADEL) per aggregate,
  keyed by the IdP's per-aggregate sequence, with the base each aggregate's fold starts from
  (:mod:`app.webhooks.zitadel_fold`). What the states mean is not this module's business.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table, and_, delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from app.store.db import Database
from app.store.tables import idp_aggregates, idp_events, idp_grants, idp_user_flags, webhook_deliveries
from app.store.types import StoredEvent, Transaction

__all__ = ["AggregateLog", "IdpEventLog", "IdpState", "LoggedEvent", "SqlReplayGuard", "open_events"]


class SqlReplayGuard:
    """Accepted delivery keys in ``webhook_deliveries`` until they expire (shared by every process)."""

    def __init__(self, db: Database, *, clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self.clock = clock

    def _insert(self) -> sqlite.Insert | postgresql.Insert:
        return self.db.upsert(webhook_deliveries)

    async def seen(self, key: str) -> bool:
        async with self.db.transaction() as conn:
            query = select(webhook_deliveries.c.key).where(
                webhook_deliveries.c.key == key, webhook_deliveries.c.expires_at > self.clock()
            )
            return (await conn.execute(query)).first() is not None

    async def remember(self, key: str, expires_at: float) -> bool:
        now = self.clock()
        async with self.db.transaction(write=True) as conn:
            # Expired keys go first: an old key can be claimed again, and the table stays small.
            await conn.execute(delete(webhook_deliveries).where(webhook_deliveries.c.expires_at <= now))
            result = await conn.execute(
                self._insert()
                .values(key=key, expires_at=expires_at)
                .on_conflict_do_nothing(index_elements=["key"])
            )
            return bool(result.rowcount == 1)

    async def forget(self, key: str) -> None:
        async with self.db.transaction(write=True) as conn:
            await conn.execute(delete(webhook_deliveries).where(webhook_deliveries.c.key == key))


class IdpState:
    """Grants and activation flags of one source's IdP users (keyed by the IdP's user id)."""

    def __init__(self, db: Database, source: str) -> None:
        self.db = db
        self.source = source

    def _insert(self, table: Table) -> sqlite.Insert | postgresql.Insert:
        return self.db.upsert(table)

    # -- grants -------------------------------------------------------------------------------

    async def grant_user(self, grant_id: str) -> str | None:
        async with self.db.transaction() as conn:
            row = (
                await conn.execute(
                    select(idp_grants.c.idp_user_id).where(
                        idp_grants.c.source == self.source, idp_grants.c.grant_id == grant_id
                    )
                )
            ).first()
            return None if row is None else str(row.idp_user_id)

    async def put_grant(
        self, grant_id: str, idp_user_id: str, role_keys: Iterable[str], active: bool = True
    ) -> None:
        keys = list(dict.fromkeys(role_keys))
        async with self.db.transaction(write=True) as conn:
            statement = self._insert(idp_grants).values(
                source=self.source, grant_id=grant_id, idp_user_id=idp_user_id, role_keys=keys, active=active
            )
            await conn.execute(
                statement.on_conflict_do_update(
                    index_elements=["source", "grant_id"],
                    set_={"idp_user_id": idp_user_id, "role_keys": keys, "active": active},
                )
            )

    async def set_grant_active(self, grant_id: str, active: bool) -> None:
        async with self.db.transaction(write=True) as conn:
            await conn.execute(
                update(idp_grants)
                .where(idp_grants.c.source == self.source, idp_grants.c.grant_id == grant_id)
                .values(active=active)
            )

    async def drop_grant(self, grant_id: str) -> None:
        async with self.db.transaction(write=True) as conn:
            await conn.execute(
                delete(idp_grants).where(
                    idp_grants.c.source == self.source, idp_grants.c.grant_id == grant_id
                )
            )

    async def grant_ids(self) -> set[str]:
        async with self.db.transaction() as conn:
            query = select(idp_grants.c.grant_id).where(idp_grants.c.source == self.source)
            return {str(row.grant_id) for row in await conn.execute(query)}

    async def roles_of(self, idp_user_id: str) -> list[str]:
        """The union of the role keys of the user's active grants, in a stable order."""
        async with self.db.transaction() as conn:
            query = (
                select(idp_grants.c.role_keys)
                .where(
                    idp_grants.c.source == self.source,
                    idp_grants.c.idp_user_id == idp_user_id,
                    idp_grants.c.active.is_(True),
                )
                .order_by(idp_grants.c.grant_id)
            )
            roles: dict[str, None] = {}
            for row in await conn.execute(query):
                roles.update(dict.fromkeys(str(key) for key in row.role_keys or []))
            return list(roles)

    async def forget_user(self, idp_user_id: str) -> None:
        async with self.db.transaction(write=True) as conn:
            await _forget(conn, self.source, idp_user_id)

    # -- activation and lockout ---------------------------------------------------------------

    async def set_flag(
        self, idp_user_id: str, *, active: bool | None = None, locked: bool | None = None
    ) -> bool:
        """Record a change of one flag and return the effective SCIM ``active`` (active and not locked)."""
        async with self.db.transaction(write=True) as conn:
            key = and_(idp_user_flags.c.source == self.source, idp_user_flags.c.idp_user_id == idp_user_id)
            row = (await conn.execute(select(idp_user_flags).where(key))).first()
            new_active = active if active is not None else (True if row is None else bool(row.active))
            new_locked = locked if locked is not None else (False if row is None else bool(row.locked))
            statement = self._insert(idp_user_flags).values(
                source=self.source, idp_user_id=idp_user_id, active=new_active, locked=new_locked
            )
            await conn.execute(
                statement.on_conflict_do_update(
                    index_elements=["source", "idp_user_id"],
                    set_={"active": new_active, "locked": new_locked},
                )
            )
            return new_active and not new_locked


@dataclass(frozen=True, slots=True)
class LoggedEvent:
    sequence: int
    aggregate_type: str
    event_type: str
    payload: dict[str, Any]
    received_at: float


@dataclass(frozen=True, slots=True)
class AggregateLog:
    """One aggregate's base (state at ``base_sequence``; ``0``/``None`` when there is none) and events."""

    aggregate_id: str
    base_sequence: int
    base: dict[str, Any] | None
    closed: bool
    events: tuple[LoggedEvent, ...]

    @property
    def last_sequence(self) -> int:
        return max([self.base_sequence, *(event.sequence for event in self.events)])

    @property
    def version(self) -> tuple[int, int, int]:
        """Changes whenever an event or a new base is stored (to detect a concurrent delivery)."""
        return (self.base_sequence, len(self.events), self.last_sequence)


class IdpEventLog:
    """The event log of one source: ``idp_events`` (events by aggregate and sequence) + ``idp_aggregates``."""

    def __init__(self, db: Database, source: str) -> None:
        self.db = db
        self.source = source

    def _insert(self, table: Table) -> sqlite.Insert | postgresql.Insert:
        return self.db.upsert(table)

    def _events(self, aggregate_id: str) -> Any:
        return and_(idp_events.c.source == self.source, idp_events.c.aggregate_id == aggregate_id)

    def _base(self, aggregate_id: str) -> Any:
        return and_(idp_aggregates.c.source == self.source, idp_aggregates.c.aggregate_id == aggregate_id)

    async def record(
        self,
        aggregate_type: str,
        aggregate_id: str,
        sequence: int,
        event_type: str,
        payload: dict[str, Any],
        received_at: float,
    ) -> bool:
        """Keep one event; False (nothing stored) for a known sequence or a closed aggregate."""
        async with self.db.transaction(write=True) as conn:
            closed = (
                await conn.execute(select(idp_aggregates.c.closed).where(self._base(aggregate_id)))
            ).scalar()
            if closed:
                return False
            result = await conn.execute(
                self._insert(idp_events)
                .values(
                    source=self.source,
                    aggregate_id=aggregate_id,
                    sequence=sequence,
                    aggregate_type=aggregate_type,
                    event_type=event_type,
                    payload=payload,
                    received_at=received_at,
                )
                .on_conflict_do_nothing(index_elements=["source", "aggregate_id", "sequence"])
            )
            return bool(result.rowcount == 1)

    async def load(self, aggregate_id: str) -> AggregateLog:
        async with self.db.transaction() as conn:
            base = (await conn.execute(select(idp_aggregates).where(self._base(aggregate_id)))).first()
            rows = await conn.execute(
                select(idp_events).where(self._events(aggregate_id)).order_by(idp_events.c.sequence)
            )
            events = tuple(
                LoggedEvent(
                    int(row.sequence),
                    str(row.aggregate_type),
                    str(row.event_type),
                    dict(row.payload or {}),
                    float(row.received_at),
                )
                for row in rows
            )
        return AggregateLog(
            aggregate_id=aggregate_id,
            base_sequence=0 if base is None else int(base.sequence),
            base=None if base is None else dict(base.state or {}),
            closed=False if base is None else bool(base.closed),
            events=events,
        )

    async def put_base(
        self,
        aggregate_type: str,
        aggregate_id: str,
        sequence: int,
        state: dict[str, Any],
        now: float,
        *,
        closed: bool = False,
        drop_events: bool = False,
    ) -> bool:
        """Make ``state`` the aggregate's base at ``sequence`` unless its base is newer or closed.

        ``drop_events``: delete the events up to ``sequence`` (they are folded into ``state``).
        """
        async with self.db.transaction(write=True) as conn:
            query = select(idp_aggregates.c.sequence, idp_aggregates.c.closed).where(self._base(aggregate_id))
            if self.db.locks(conn):
                query = query.with_for_update()
            current = (await conn.execute(query)).first()
            if current is not None and (bool(current.closed) or int(current.sequence) > sequence):
                return False
            values = {
                "aggregate_type": aggregate_type,
                "sequence": sequence,
                "state": state,
                "closed": closed,
                "updated_at": now,
            }
            await conn.execute(
                self._insert(idp_aggregates)
                .values(source=self.source, aggregate_id=aggregate_id, **values)
                .on_conflict_do_update(index_elements=["source", "aggregate_id"], set_=values)
            )
            if drop_events:
                await conn.execute(
                    delete(idp_events).where(self._events(aggregate_id), idp_events.c.sequence <= sequence)
                )
            return True

    async def quiet(self, before: float) -> list[tuple[str, str]]:
        """``(aggregate_type, aggregate_id)`` of the aggregates whose last event was received before."""
        async with self.db.transaction() as conn:
            query = (
                select(idp_events.c.aggregate_type, idp_events.c.aggregate_id)
                .where(idp_events.c.source == self.source)
                .group_by(idp_events.c.aggregate_type, idp_events.c.aggregate_id)
                .having(func.max(idp_events.c.received_at) < before)
            )
            return [(str(row.aggregate_type), str(row.aggregate_id)) for row in await conn.execute(query)]

    async def drop_closed(self, before: float) -> int:
        """Forget the tombstones written before ``before`` (and any event left for them)."""
        async with self.db.transaction(write=True) as conn:
            old = select(idp_aggregates.c.aggregate_id).where(
                idp_aggregates.c.source == self.source,
                idp_aggregates.c.closed.is_(True),
                idp_aggregates.c.updated_at < before,
            )
            ids = [str(row.aggregate_id) for row in await conn.execute(old)]
            for aggregate_id in ids:
                await conn.execute(delete(idp_events).where(self._events(aggregate_id)))
                await conn.execute(delete(idp_aggregates).where(self._base(aggregate_id)))
            return len(ids)


async def _forget(conn: AsyncConnection, source: str, idp_user_id: str) -> None:
    await conn.execute(
        delete(idp_grants).where(idp_grants.c.source == source, idp_grants.c.idp_user_id == idp_user_id)
    )
    await conn.execute(
        delete(idp_user_flags).where(
            idp_user_flags.c.source == source, idp_user_flags.c.idp_user_id == idp_user_id
        )
    )


async def open_events(tx: Transaction, aggregate_type: str, source: str | None = None) -> list[StoredEvent]:
    """The events of ``aggregate_type`` whose aggregate is not closed (no tombstone), of ``source`` or of
    every source, oldest received first; runs in the caller's transaction."""
    query = select(idp_events).where(idp_events.c.aggregate_type == aggregate_type)
    if source is not None:
        query = query.where(idp_events.c.source == source)
    done = select(idp_aggregates.c.source, idp_aggregates.c.aggregate_id).where(
        idp_aggregates.c.aggregate_type == aggregate_type, idp_aggregates.c.closed.is_(True)
    )
    closed = {(str(row.source), str(row.aggregate_id)) for row in await tx.execute(done)}
    return [
        StoredEvent(
            str(row.source),
            str(row.aggregate_id),
            int(row.sequence),
            str(row.aggregate_type),
            str(row.event_type),
            dict(row.payload or {}),
            float(row.received_at),
        )
        for row in await tx.execute(query.order_by(idp_events.c.received_at))
        if (str(row.source), str(row.aggregate_id)) not in closed
    ]
