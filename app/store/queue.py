"""The dirty queue: the users whose identity must be (re)converged, as a leased work queue.

A write marks a user (:func:`mark`) in its own transaction; repeated marks of one user coalesce in its
single row, whose ``generation`` grows by one per mark. A worker claims due rows (:func:`claim_due`): a
claim is a lease (``claimed_until``) so that a crashed worker's rows come back by themselves once it
expires (:data:`LEASE_SECONDS`), and a live worker renews its leases (:func:`renew`). Settling a claim
(:func:`finish`, :func:`retry_later`) drops or reschedules the row only if its generation is still the
claimed one: a user marked again while being converged keeps its row, released and due, for another pass.
On PostgreSQL the batch claim uses ``FOR UPDATE SKIP LOCKED``, so several processes share the queue
without converging one user twice at the same time, and :func:`mark` sends a ``NOTIFY``
(:mod:`app.store.notify`) delivered on commit.

Every operation but :func:`claim_due` runs in the caller's transaction (:data:`app.store.types.Transaction`).
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Float,
    Integer,
    Select,
    and_,
    bindparam,
    delete,
    exists,
    false,
    func,
    not_,
    or_,
    select,
    tuple_,
    update,
)

from app.store.db import CHUNK, Database, chunks_by_source, upsert
from app.store.notify import notify
from app.store.tables import dirty, provisioning
from app.store.types import Claim, Transaction

LEASE_SECONDS = 20.0
"""How long a claim holds without renewal; a live worker renews its claims (:func:`renew`)."""
MAX_BACKOFF = 300.0
MAX_SETTLE = 300.0
"""The longest a new user's create waits for its source to pause (:func:`claim_due`)."""


def backoff(attempts: int, *, base: float = 1.0, rng: random.Random | None = None) -> float:
    """The delay before retry ``attempts + 1``: exponential with full jitter, capped at five minutes."""
    ceiling = min(MAX_BACKOFF, base * 2 ** min(attempts, 16))
    return (rng or random).uniform(ceiling / 2, ceiling)


def _is_sqlite(tx: Transaction) -> bool:
    return tx.dialect.name == "sqlite"


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


def _key(source: str, user_id: str) -> ColumnElement[bool]:
    return and_(dirty.c.source == source, dirty.c.user_id == user_id)


def _mark_statement(is_sqlite: bool) -> Any:
    """The mark upsert, one statement whatever the rows (so SQLAlchemy compiles it once and caches it;
    a ``.values(rows)`` statement with literal ``set_`` values is compiled again on every call)."""
    insert = upsert(dirty, is_sqlite=is_sqlite)
    return insert.on_conflict_do_update(
        index_elements=["source", "user_id"],
        set_={
            "generation": dirty.c.generation + 1,
            "due_at": insert.excluded.due_at,
            "attempts": 0,
            "request_id": insert.excluded.request_id,
            "operation": insert.excluded.operation,
        },
    )


_MARKS = {True: _mark_statement(True), False: _mark_statement(False)}


async def mark(
    tx: Transaction,
    source: str,
    user_ids: Iterable[str],
    *,
    request_id: str | None = None,
    operation: str | None = None,
) -> list[str]:
    """Mark these users of ``source`` dirty, due now; return the ids marked (once each, in order).

    A user already marked keeps one row: its generation grows by one, its attempts restart at 0, it is
    due now, and ``request_id``/``operation`` (what the audit log of the converge names) are the latest
    mark's. A claim on the row is left in place: its holder settles it and, seeing the new generation,
    leaves the row for another pass.
    """
    ids = list(dict.fromkeys(user_ids))
    if not ids:
        return ids
    now = time.time()
    # Rows are locked in key order, so that two writes marking overlapping users wait for each other
    # instead of deadlocking (PostgreSQL). The reconciler settles many users in one transaction in the
    # order their converges end: a deadlock with it is possible, and the SCIM write is run again.
    ordered = sorted(ids)
    for start in range(0, len(ordered), CHUNK):
        rows = [
            {
                "source": source,
                "user_id": user_id,
                "generation": 1,
                "due_at": now,
                "attempts": 0,
                "request_id": request_id,
                "operation": operation,
            }
            for user_id in ordered[start : start + CHUNK]
        ]
        await tx.execute(_MARKS[_is_sqlite(tx)], rows)
    if not _is_sqlite(tx):
        await notify(tx)
    return ids


async def mark_selected(
    tx: Transaction,
    source: str,
    user_ids: Select[tuple[str]],
    *,
    request_id: str | None = None,
    operation: str | None = None,
) -> list[str]:
    """:func:`mark` the user ids a query of the store selects (for :mod:`app.store.storage` only)."""
    ids = [str(row[0]) for row in await tx.execute(user_ids)]
    return await mark(tx, source, ids, request_id=request_id, operation=operation)


async def claim(tx: Transaction, source: str, user_id: str) -> Claim | None:
    """Claim one user's row, due or not; None when it is not dirty or claimed by a live lease.

    The service claims with :func:`claim_due`; this one serves tools and tests.
    """
    now = time.time()
    row = (
        await tx.execute(
            update(dirty)
            .where(_key(source, user_id), _claimable(now))
            .values(claimed_until=now + LEASE_SECONDS)
            .returning(dirty.c.generation, dirty.c.attempts)
        )
    ).first()
    return None if row is None else Claim(source, user_id, row.generation, row.attempts)


async def claim_due(db: Database, limit: int, settle: Mapping[str, float] | None = None) -> list[Claim]:
    """Claim up to ``limit`` due, unclaimed (or expired) rows, the longest due first.

    ``settle`` (seconds per source): new users of a source that is still writing wait for it to pause
    (:func:`_settling`); ``None`` claims them too (``ziti-scim sync`` drains everything).
    Runs its own transactions: it looks first in a read transaction, so that an empty queue costs no
    write (on SQLite a write transaction takes the single writer's turn), then claims with one
    ``UPDATE … RETURNING``. Two concurrent callers never get the same row.
    """
    now = time.time()
    due = and_(dirty.c.due_at <= now, _claimable(now))
    if settle:
        due = and_(due, not_(_settling(now, settle)))
    async with db.transaction() as tx:
        if (await tx.execute(select(dirty.c.user_id).where(due).limit(1))).first() is None:
            return []
    async with db.transaction(write=True) as tx:
        chosen = select(dirty.c.source, dirty.c.user_id).where(due).order_by(dirty.c.due_at).limit(limit)
        if not db.is_sqlite:
            chosen = chosen.with_for_update(skip_locked=True)
        keys = chosen.subquery()
        rows = await tx.execute(
            update(dirty)
            .where(tuple_(dirty.c.source, dirty.c.user_id).in_(select(keys.c.source, keys.c.user_id)), due)
            .values(claimed_until=now + LEASE_SECONDS)
            .returning(dirty.c.source, dirty.c.user_id, dirty.c.generation, dirty.c.attempts)
        )
        return [Claim(row.source, row.user_id, row.generation, row.attempts) for row in rows]


async def request_infos(
    tx: Transaction, keys: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], tuple[str | None, str | None]]:
    """The request id and operation of the latest mark of each ``(source, user_id)``, by key;
    ``(None, None)`` for a user not marked."""
    wanted = list(chunks_by_source(keys))
    found: dict[tuple[str, str], tuple[str | None, str | None]] = {}
    for source, chunk in wanted:
        rows = await tx.execute(
            select(dirty.c.user_id, dirty.c.request_id, dirty.c.operation).where(
                dirty.c.source == source, dirty.c.user_id.in_(chunk)
            )
        )
        for row in rows:
            found[(source, str(row.user_id))] = (row.request_id, row.operation)
    return {
        (source, user_id): found.get((source, user_id), (None, None))
        for source, chunk in wanted
        for user_id in chunk
    }


async def finish(tx: Transaction, claim: Claim) -> bool:
    """The user converged at ``claim.generation``: drop the mark; True if it was dropped.

    A user marked again since the claim keeps its row, released and due as the new mark made it
    (False).
    """
    where = _key(claim.source, claim.user_id)
    result = await tx.execute(delete(dirty).where(where, dirty.c.generation == claim.generation))
    if result.rowcount == 0:
        await tx.execute(update(dirty).where(where).values(claimed_until=None))
        return False
    return True


async def retry_later(tx: Transaction, claim: Claim, delay: float) -> None:
    """A converge that must be tried again: release the row, due in ``delay`` seconds, attempts + 1.

    A user marked again since the claim is released as the new mark made it: due now, attempts 0.
    """
    await retry_later_all(tx, [(claim, delay)])


_KEYED = and_(dirty.c.source == bindparam("b_source"), dirty.c.user_id == bindparam("b_user"))
_AT_GENERATION = and_(_KEYED, dirty.c.generation == bindparam("b_generation"))
_FINISH = delete(dirty).where(_AT_GENERATION)
_RETRY = (
    update(dirty)
    .where(_AT_GENERATION)
    .values(
        claimed_until=None,
        attempts=bindparam("b_attempts", type_=Integer),
        due_at=bindparam("b_due", type_=Float),
    )
)
_RELEASE = update(dirty).where(_KEYED, dirty.c.claimed_until.is_not(None)).values(claimed_until=None)
_RENEW = (
    update(dirty)
    .where(_KEYED, dirty.c.claimed_until.is_not(None), dirty.c.claimed_until >= bindparam("b_now"))
    .values(claimed_until=bindparam("b_until", type_=Float))
)


def _params(claim: Claim, **more: Any) -> dict[str, Any]:
    return {"b_source": claim.source, "b_user": claim.user_id, "b_generation": claim.generation, **more}


def _ordered(claims: Iterable[Claim]) -> list[Claim]:
    # In key order, as :func:`mark` locks them, so that a settling and a write wait instead of deadlocking.
    return sorted(claims, key=lambda claim: (claim.source, claim.user_id))


async def finish_all(tx: Transaction, claims: Sequence[Claim]) -> None:
    """:func:`finish` of many claims: two statements (executemany) for all of them, whatever the count.

    The rows still at their claimed generation are dropped; the others (marked again since the claim)
    are released, due as their new mark made them.
    """
    if not claims:
        return
    ordered = _ordered(claims)
    await tx.execute(_FINISH, [_params(claim) for claim in ordered])
    await tx.execute(_RELEASE, [_params(claim) for claim in ordered])


async def retry_later_all(tx: Transaction, retries: Sequence[tuple[Claim, float]]) -> None:
    """:func:`retry_later` of many ``(claim, delay)``: two statements (executemany) for all of them."""
    if not retries:
        return
    now = time.time()
    ordered = sorted(retries, key=lambda retry: (retry[0].source, retry[0].user_id))
    await tx.execute(
        _RETRY, [_params(claim, b_attempts=claim.attempts + 1, b_due=now + delay) for claim, delay in ordered]
    )
    await tx.execute(_RELEASE, [_params(claim) for claim, _ in ordered])


async def renew(tx: Transaction, claims: Iterable[Claim]) -> None:
    """Extend, by :data:`LEASE_SECONDS` from now, the leases of these claims that are still held.

    A row released meanwhile (settled, or expired) is left alone: it must stay free for the next worker.
    One statement (executemany) for all of them.
    """
    now = time.time()
    rows = [_params(claim, b_now=now, b_until=now + LEASE_SECONDS) for claim in _ordered(claims)]
    if rows:
        await tx.execute(_RENEW, rows)


async def release_all(tx: Transaction) -> None:
    """Drop every claim: only for a single-process store (SQLite), where no other worker can hold one."""
    await tx.execute(update(dirty).values(claimed_until=None))


async def make_all_due(tx: Transaction) -> None:
    """Every marked user due now and unclaimed (``ziti-scim resume``)."""
    await tx.execute(update(dirty).values(due_at=time.time(), claimed_until=None))


async def pending_count(tx: Transaction) -> int:
    """How many users are marked (claimed or not, due or not)."""
    return int((await tx.execute(select(func.count()).select_from(dirty))).scalar_one())


async def marked(tx: Transaction, source: str | None = None) -> set[tuple[str, str]]:
    """The ``(source, user_id)`` pairs marked, of ``source`` or of every source."""
    query = select(dirty.c.source, dirty.c.user_id)
    if source is not None:
        query = query.where(dirty.c.source == source)
    return {(str(row.source), str(row.user_id)) for row in await tx.execute(query)}


async def unsettled(tx: Transaction, users: set[tuple[str, str]]) -> int:
    """How many of these users are still being converged: claimed under a live lease, or due.

    A row waiting for a retry later (not claimed, not due) has failed for now and is not counted; nor is a
    user that is not marked.
    """
    if not users:
        return 0
    now = time.time()
    rows = await tx.execute(
        select(dirty.c.source, dirty.c.user_id, dirty.c.claimed_until, dirty.c.due_at).where(
            dirty.c.source.in_({source for source, _ in users})
        )
    )
    return sum(
        1
        for source, user_id, claimed_until, due_at in rows
        if (source, user_id) in users
        and ((claimed_until is not None and claimed_until >= now) or due_at <= now)
    )


__all__ = [
    "LEASE_SECONDS",
    "MAX_BACKOFF",
    "Claim",
    "backoff",
    "claim",
    "claim_due",
    "finish",
    "finish_all",
    "make_all_due",
    "mark",
    "mark_selected",
    "marked",
    "pending_count",
    "release_all",
    "renew",
    "request_infos",
    "retry_later",
    "retry_later_all",
    "unsettled",
]
