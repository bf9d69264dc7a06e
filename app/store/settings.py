"""Small facts the service keeps about itself, by key: pause, brakes, deployment id, last full sync.

Values are JSON. Every replica and the CLI share them through the database.

Every operation runs in the caller's transaction (:data:`app.store.types.Transaction`).
"""

from __future__ import annotations

from sqlalchemy import delete, select

from app.store.db import upsert
from app.store.tables import settings
from app.store.types import Json, Transaction


async def get(tx: Transaction, key: str) -> Json:
    """The value of ``key``; None when it is not set."""
    return (await tx.execute(select(settings.c.value).where(settings.c.key == key))).scalar_one_or_none()


async def put(tx: Transaction, key: str, value: Json) -> None:
    """Set ``key`` to ``value`` (replacing what it held); ``None`` unsets it."""
    if value is None:
        await tx.execute(delete(settings).where(settings.c.key == key))
        return
    await tx.execute(
        upsert(settings, is_sqlite=tx.dialect.name == "sqlite")
        .values(key=key, value=value)
        .on_conflict_do_update(index_elements=["key"], set_={"value": value})
    )


async def put_new(tx: Transaction, key: str, value: Json) -> None:
    """Set ``key`` to ``value`` unless it is set already (then nothing changes): the first writer wins,
    also between two transactions racing (read the key back afterwards for the winner)."""
    await tx.execute(
        upsert(settings, is_sqlite=tx.dialect.name == "sqlite")
        .values(key=key, value=value)
        .on_conflict_do_nothing(index_elements=["key"])
    )


async def with_prefix(tx: Transaction, prefix: str) -> dict[str, Json]:
    """``{key: value}`` of the keys that start with ``prefix`` (taken literally: no wildcards)."""
    rows = await tx.execute(
        select(settings.c.key, settings.c.value).where(settings.c.key.startswith(prefix, autoescape=True))
    )
    return {str(row.key): row.value for row in rows}


__all__ = ["get", "put", "put_new", "with_prefix"]
