"""The audit log: one row per controller action ziti-scim took (or attempted), with why and how it went."""

from __future__ import annotations

import time
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
