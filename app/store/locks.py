"""Exclusive locks between processes sharing one store (replicas, the CLI next to the service)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import text

from app.store.db import Database


@asynccontextmanager
async def exclusive(db: Database, key: int) -> AsyncIterator[None]:
    """Hold the lock named ``key`` for the enclosed block, waiting for it if another process holds it.

    PostgreSQL: a session advisory lock (``pg_advisory_lock``), released at the end of the block or when
    the holder's connection dies. SQLite: nothing to do, one process owns the file.
    """
    if db.is_sqlite:
        yield
        return
    async with db.engine.connect() as conn:
        await conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": key})
        try:
            yield
        finally:
            await conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
