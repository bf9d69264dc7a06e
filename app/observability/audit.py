"""The audit log: one row per controller action ziti-scim took (or attempted), with why and how it went.

The rows live in the store (:mod:`app.store.audit`); this module is the service's door to them: each
function here is one transaction, and :func:`parse_query` reads the ``/admin/audit`` query.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping

from app.store import audit as audit_log
from app.store.db import Database
from app.store.types import AuditEntry, AuditRow

DAY = 86400.0


async def record(db: Database, entries: list[AuditEntry]) -> None:
    """Write these entries in a transaction of their own (joining the one open, if any)."""
    if not entries:
        return
    async with db.transaction(write=True) as tx:
        await audit_log.record(tx, entries)


async def read(
    db: Database, *, since: float | None = None, user: str | None = None, limit: int = 100, offset: int = 0
) -> list[AuditRow]:
    """Newest first; ``user`` matches a SCIM id, a userName or an identity id."""
    async with db.transaction() as tx:
        return await audit_log.read(tx, since=since, user=user, limit=limit, offset=offset)


async def prune(db: Database, retention_days: float) -> int:
    """Drop the rows older than ``retention_days``; return how many."""
    async with db.transaction(write=True) as tx:
        return await audit_log.prune(tx, time.time() - retention_days * DAY)


MAX_START_INDEX = 2**31 - 1


def parse_query(params: Mapping[str, str]) -> tuple[int, int, float | None]:
    """``(limit, offset, since)`` of an /admin/audit query; ValueError (a 400) says what is wrong.

    ``count`` is clamped to 1..1000; ``startIndex`` must be 1..2^31-1 (beyond, the database's integer
    overflows); ``since`` must be a finite Unix time.
    """
    try:
        limit = min(max(int(params.get("count", 100)), 1), 1000)
    except ValueError:
        raise ValueError("count must be an integer") from None
    try:
        start = int(params.get("startIndex", 1))
    except ValueError:
        raise ValueError("startIndex must be an integer") from None
    if not 1 <= start <= MAX_START_INDEX:
        raise ValueError(f"startIndex must be between 1 and {MAX_START_INDEX}")
    since = None
    if "since" in params:
        try:
            since = float(params["since"])
        except ValueError:
            raise ValueError("since must be a Unix time in seconds") from None
        if not math.isfinite(since):
            raise ValueError("since must be a finite Unix time in seconds")
    return limit, start - 1, since


__all__ = ["AuditEntry", "AuditRow", "parse_query", "prune", "read", "record"]
