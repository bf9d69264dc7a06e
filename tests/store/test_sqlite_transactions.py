"""SQLite transactions keep their meaning when ``BEGIN`` travels with the first statement
(:mod:`app.store.sqlite_driver`): a write transaction holds the write lock from its first statement on,
what it wrote is undone by a rollback, and a transaction that ran nothing leaves nothing open."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text

from app.store import settings
from app.store.db import Database


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'store.db'}")
    await database.migrate()
    try:
        yield database
    finally:
        await database.dispose()


def other_writer_can_begin(db: Database) -> bool:
    """Whether another connection gets the write lock at once (no waiting)."""
    path = db.engine.url.database
    assert path is not None
    other = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as error:
        assert "locked" in str(error)
        return False
    else:
        other.execute("ROLLBACK")
        return True
    finally:
        other.close()


async def test_a_write_transaction_holds_the_write_lock_from_its_first_statement(db: Database) -> None:
    async with db.transaction(write=True) as tx:
        await tx.execute(text("SELECT 1"))  # a read: only BEGIN IMMEDIATE makes it take the write lock
        assert not other_writer_can_begin(db)
    assert other_writer_can_begin(db)
    async with db.transaction() as tx:
        await tx.execute(text("SELECT 1"))
        assert other_writer_can_begin(db)  # a read transaction takes no write lock


async def test_a_rollback_undoes_what_the_transaction_wrote(db: Database) -> None:
    with pytest.raises(RuntimeError):
        async with db.transaction(write=True) as tx:
            await settings.put(tx, "a", {"v": 1})
            await settings.put(tx, "b", {"v": 2})
            raise RuntimeError("undo")
    async with db.transaction() as tx:
        assert (await settings.get(tx, "a"), await settings.get(tx, "b")) == (None, None)


async def test_a_transaction_that_ran_nothing_leaves_nothing_open(db: Database) -> None:
    for write in (True, False, True):
        async with db.transaction(write=write):
            pass
        assert other_writer_can_begin(db)
    async with db.transaction(write=True) as tx:
        await settings.put(tx, "after", {"v": 3})
    async with db.transaction() as tx:
        assert await settings.get(tx, "after") == {"v": 3}
