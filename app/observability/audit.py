"""The audit log: one row per controller action ziti-scim took (or attempted), with why and how it went."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, insert, select

from app.store.db import Database
from app.store.tables import audit


@dataclass(frozen=True)
class AuditEntry:
    source: str
    action: str
    outcome: str
    user_id: str | None = None
    user_name: str | None = None
    identity_id: str | None = None
    request_id: str | None = None
    operation: str | None = None
    error: str | None = None


async def record(db: Database, entries: list[AuditEntry]) -> None:
    if not entries:
        return
    now = time.time()
    async with db.transaction(write=True) as conn:
        await conn.execute(
            insert(audit),
            [{"at": now, **{k: v for k, v in entry.__dict__.items()}} for entry in entries],
        )


async def read(
    db: Database, *, since: float | None = None, user: str | None = None, limit: int = 100, offset: int = 0
) -> list[dict[str, Any]]:
    """Newest first; ``user`` matches a SCIM id, a userName or an identity id."""
    query = select(audit).order_by(audit.c.id.desc()).limit(limit).offset(offset)
    if since is not None:
        query = query.where(audit.c.at >= since)
    if user:
        query = query.where(
            (audit.c.user_id == user) | (audit.c.user_name == user) | (audit.c.identity_id == user)
        )
    async with db.transaction() as conn:
        return [dict(row._mapping) for row in await conn.execute(query)]


async def prune(db: Database, retention_days: float) -> int:
    async with db.transaction(write=True) as conn:
        result = await conn.execute(delete(audit).where(audit.c.at < time.time() - retention_days * 86400))
        return int(result.rowcount or 0)


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
