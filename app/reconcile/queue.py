"""The dirty marks as a work queue: claim, finish, retry with backoff.

A claim is a lease (``claimed_until``) so that a crashed worker's rows come back by themselves; the
row's ``generation`` tells whether the user changed again while it was being converged, in which
case the row stays for another pass. On PostgreSQL the batch claim uses ``FOR UPDATE SKIP LOCKED`` so
that several processes share the queue without converging one user twice at the same time.
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import ColumnElement, and_, delete, exists, false, func, not_, or_, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncConnection

from app.store.db import Database
from app.store.tables import dirty, provisioning

LEASE_SECONDS = 20.0
"""How long a claim holds without renewal; a live worker renews its claims (:func:`renew`)."""
MAX_BACKOFF = 300.0
MAX_SETTLE = 300.0
"""The longest a new user's create waits for its source to pause (:func:`claim_due`)."""


@dataclass(frozen=True)
class Claim:
    source: str
    user_id: str
    generation: int
    attempts: int


def backoff(attempts: int, *, base: float = 1.0, rng: random.Random | None = None) -> float:
    """Exponential backoff with full jitter, capped at five minutes."""
    ceiling = min(MAX_BACKOFF, base * 2 ** min(attempts, 16))
    return (rng or random).uniform(ceiling / 2, ceiling)


def _claimable(now: float) -> ColumnElement[bool]:
    return or_(dirty.c.claimed_until.is_(None), dirty.c.claimed_until < now)


def _settling(now: float, settle: Mapping[str, float]) -> ColumnElement[bool]:
    """Rows whose converge would create an identity while their source is still writing.

    A row settles when its user has no identity yet, was never tried (``attempts = 0``), was marked
    less than :data:`MAX_SETTLE` ago, and its source marked some user within its ``settle`` seconds
    (a mark sets ``due_at`` to its own time). An IdP's initial sync sends every user, then the groups
    with their members: waiting for the pause lets one create carry the group-derived role attributes,
    instead of a create followed by a PATCH per group. Updates and deletions of existing identities
    never wait (removing access must not be delayed by a busy source).
    """
    recent = dirty.alias("recent")
    clauses = [
        and_(
            dirty.c.source == source,
            exists().where(
                recent.c.source == source, recent.c.attempts == 0, recent.c.due_at > now - seconds
            ),
        )
        for source, seconds in settle.items()
        if seconds > 0
    ]
    if not clauses:
        return false()
    has_identity = exists().where(
        provisioning.c.source == dirty.c.source,
        provisioning.c.user_id == dirty.c.user_id,
        provisioning.c.identity_id.is_not(None),
    )
    return and_(dirty.c.attempts == 0, dirty.c.due_at > now - MAX_SETTLE, not_(has_identity), or_(*clauses))


async def claim(db: Database, source: str, user_id: str) -> Claim | None:
    """Claim one user's row, due or not; None when it is not dirty or already claimed.

    The service claims with :func:`claim_due`; this one serves tools and the queue's lease tests.
    """
    now = time.time()
    async with db.transaction(write=True) as conn:
        row = (
            await conn.execute(
                update(dirty)
                .where(dirty.c.source == source, dirty.c.user_id == user_id, _claimable(now))
                .values(claimed_until=now + LEASE_SECONDS)
                .returning(dirty.c.generation, dirty.c.attempts)
            )
        ).first()
    return None if row is None else Claim(source, user_id, row.generation, row.attempts)


async def claim_due(db: Database, limit: int, settle: Mapping[str, float] | None = None) -> list[Claim]:
    """Claim up to ``limit`` rows that are due.

    ``settle`` (seconds per source): new users of a source that is still writing wait for it to pause
    (see :func:`_settling`); ``None`` claims them too (``ziti-scim sync`` drains everything).
    Looked for first in a read transaction, so that an empty queue costs no write (on SQLite a write
    transaction takes the single writer's turn); then claimed with one ``UPDATE … RETURNING``.
    """
    now = time.time()
    due = and_(dirty.c.due_at <= now, _claimable(now))
    if settle:
        due = and_(due, not_(_settling(now, settle)))
    async with db.transaction() as conn:
        if (await conn.execute(select(dirty.c.user_id).where(due).limit(1))).first() is None:
            return []
    async with db.transaction(write=True) as conn:
        chosen = select(dirty.c.source, dirty.c.user_id).where(due).order_by(dirty.c.due_at).limit(limit)
        if not db.is_sqlite:
            chosen = chosen.with_for_update(skip_locked=True)
        keys = chosen.subquery()
        rows = await conn.execute(
            update(dirty)
            .where(tuple_(dirty.c.source, dirty.c.user_id).in_(select(keys.c.source, keys.c.user_id)), due)
            .values(claimed_until=now + LEASE_SECONDS)
            .returning(dirty.c.source, dirty.c.user_id, dirty.c.generation, dirty.c.attempts)
        )
        return [Claim(row.source, row.user_id, row.generation, row.attempts) for row in rows]


async def request_info(conn: AsyncConnection, claim: Claim) -> tuple[str | None, str | None]:
    """The request id and SCIM operation that last marked this user (for the audit log)."""
    row = (
        await conn.execute(
            select(dirty.c.request_id, dirty.c.operation).where(
                dirty.c.source == claim.source, dirty.c.user_id == claim.user_id
            )
        )
    ).first()
    return (row.request_id, row.operation) if row is not None else (None, None)


async def finish(db: Database, claim: Claim) -> None:
    """The user converged at ``claim.generation``: drop the mark, unless it changed meanwhile."""
    async with db.transaction(write=True) as conn:
        where = and_(dirty.c.source == claim.source, dirty.c.user_id == claim.user_id)
        result = await conn.execute(delete(dirty).where(where, dirty.c.generation == claim.generation))
        if result.rowcount == 0:
            await conn.execute(update(dirty).where(where).values(claimed_until=None))


async def retry_later(db: Database, claim: Claim, delay: float) -> None:
    """A transient failure: try again after ``delay`` (now, if the user changed meanwhile)."""
    async with db.transaction(write=True) as conn:
        where = and_(dirty.c.source == claim.source, dirty.c.user_id == claim.user_id)
        result = await conn.execute(
            update(dirty)
            .where(where, dirty.c.generation == claim.generation)
            .values(claimed_until=None, attempts=claim.attempts + 1, due_at=time.time() + delay)
        )
        if result.rowcount == 0:
            await conn.execute(update(dirty).where(where).values(claimed_until=None))


async def renew(db: Database, claims: list[Claim]) -> None:
    """Extend the leases of the claims this process still works on.

    Only a row that is still claimed is extended: one that ``finish``/``retry_later`` released while
    this renewal was on its way must stay free for the next worker.
    """
    if not claims:
        return
    now = time.time()
    async with db.transaction(write=True) as conn:
        for claim in claims:
            await conn.execute(
                update(dirty)
                .where(
                    dirty.c.source == claim.source,
                    dirty.c.user_id == claim.user_id,
                    dirty.c.claimed_until.is_not(None),
                    dirty.c.claimed_until >= now,
                )
                .values(claimed_until=now + LEASE_SECONDS)
            )


async def release_all(db: Database) -> None:
    """Drop every claim: only for a single-process store (SQLite), where no other worker can hold one."""
    async with db.transaction(write=True) as conn:
        await conn.execute(update(dirty).values(claimed_until=None))


async def pending_count(db: Database) -> int:
    async with db.transaction() as conn:
        return int((await conn.execute(select(func.count()).select_from(dirty))).scalar_one())
