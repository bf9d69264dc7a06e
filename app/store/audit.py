"""The audit log: one row per controller action ziti-scim took or attempted, newest last.

Rows are only ever added (:func:`record`) and, after the retention, pruned (:func:`prune`); their ``id``
orders them as they were written. The mass-deprovision brake counts the rows of actions done
(:func:`count`), so a destructive action's row must be written as the action is made.

Every operation runs in the caller's transaction (:data:`app.store.types.Transaction`).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from typing import cast

from sqlalchemy import delete, func, insert, select

from app.store.tables import audit
from app.store.types import AuditEntry, AuditRow, Transaction


async def record(tx: Transaction, entries: Sequence[AuditEntry], *, at: float | None = None) -> None:
    """Append these entries, in order, stamped ``at`` (now by default)."""
    if not entries:
        return
    now = time.time() if at is None else at
    await tx.execute(insert(audit), [{"at": now, **asdict(entry)} for entry in entries])


async def read(
    tx: Transaction,
    *,
    since: float | None = None,
    user: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[AuditRow]:
    """Rows newest first, from ``since`` (Unix seconds) on; ``user`` matches a SCIM id, a userName or an
    identity id; ``offset`` rows are skipped, at most ``limit`` returned."""
    query = select(audit).order_by(audit.c.id.desc()).limit(limit).offset(offset)
    if since is not None:
        query = query.where(audit.c.at >= since)
    if user:
        query = query.where(
            (audit.c.user_id == user) | (audit.c.user_name == user) | (audit.c.identity_id == user)
        )
    return [cast(AuditRow, dict(row._mapping)) for row in await tx.execute(query)]


async def prune(tx: Transaction, before: float) -> int:
    """Drop the rows older than ``before`` (Unix seconds); return how many were dropped."""
    result = await tx.execute(delete(audit).where(audit.c.at < before))
    return int(result.rowcount or 0)


async def count(
    tx: Transaction, source: str, *, since: float, actions: Iterable[str], outcome: str
) -> int:
    """How many rows of ``source`` since ``since`` record one of ``actions`` with this ``outcome``."""
    query = (
        select(func.count())
        .select_from(audit)
        .where(
            audit.c.source == source,
            audit.c.at >= since,
            audit.c.action.in_(list(actions)),
            audit.c.outcome == outcome,
        )
    )
    return int((await tx.execute(query)).scalar_one())


async def latest_of_action(
    tx: Transaction, action: str, source: str | None = None
) -> dict[tuple[str, str | None], AuditRow]:
    """The latest row of ``action`` per ``(source, user_id)``, of ``source`` or of every source."""
    query = select(audit).where(audit.c.action == action)
    if source is not None:
        query = query.where(audit.c.source == source)
    latest: dict[tuple[str, str | None], AuditRow] = {}
    for row in await tx.execute(query.order_by(audit.c.id)):
        latest[(row.source, row.user_id)] = cast(AuditRow, dict(row._mapping))
    return latest


__all__ = ["count", "latest_of_action", "prune", "read", "record"]
