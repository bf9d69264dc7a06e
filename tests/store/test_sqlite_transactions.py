"""SQLite transactions keep their meaning when ``BEGIN`` travels with the first statement
(:mod:`app.store.sqlite_driver`): a write transaction holds the write lock from its first statement on,
what it wrote is undone by a rollback, and a transaction that ran nothing leaves nothing open."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiosqlite
import pytest
from sqlalchemy import event, text

from app.store import settings, sqlite_driver
from app.store.db import CHECKPOINT_EVERY, Database


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


async def test_a_small_write_on_the_loop_makes_no_thread_hop_and_keeps_its_meaning(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    hops: list[object] = []
    queue_call = aiosqlite.Connection._execute

    async def counted(self: aiosqlite.Connection, fn: object, *args: object, **kwargs: object) -> object:
        hops.append(fn)
        return await queue_call(self, fn, *args, **kwargs)

    monkeypatch.setattr(aiosqlite.Connection, "_execute", counted)
    async with db.transaction(write=True) as tx:
        db.on_loop(tx)
        await settings.put(tx, "here", {"v": 1})
        assert not other_writer_can_begin(db)  # BEGIN IMMEDIATE ran here, before the statement
        assert await settings.get(tx, "here") == {"v": 1}
    assert hops == []  # BEGIN, the statements and COMMIT: none went through aiosqlite's thread
    assert other_writer_can_begin(db)
    async with db.transaction() as tx:  # a read likewise
        db.on_loop(tx)
        assert await settings.get(tx, "here") == {"v": 1}
        assert other_writer_can_begin(db)  # a read transaction on the loop takes no write lock
    assert hops == []
    with pytest.raises(RuntimeError):
        async with db.transaction(write=True) as tx:
            db.on_loop(tx)
            await settings.put(tx, "undone", {"v": 2})
            raise RuntimeError("undo")
    async with db.transaction() as tx:  # a later transaction on the same connection uses its thread again
        assert (await settings.get(tx, "here"), await settings.get(tx, "undone")) == ({"v": 1}, None)
    assert hops != []


async def test_a_write_on_the_loop_waits_on_its_thread_while_another_process_writes(db: Database) -> None:
    path = db.engine.url.database
    assert path is not None
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process holds SQLite's write lock

    async def write() -> None:
        async with db.transaction(write=True) as tx:
            db.on_loop(tx)
            await settings.put(tx, "after-the-other", {"v": 1})

    writing = asyncio.create_task(write())
    started = time.monotonic()
    for _ in range(20):  # the loop keeps running while the write waits for the lock
        await asyncio.sleep(0.01)
    # Blocked by a busy wait on the loop, these sleeps would end only when it gave up (30 s), the write failed.
    assert time.monotonic() - started < 5 and not writing.done()
    other.execute("COMMIT")
    other.close()
    await asyncio.wait_for(writing, 10)
    async with db.transaction() as tx:
        assert await settings.get(tx, "after-the-other") == {"v": 1}


async def test_the_wal_is_checkpointed_on_a_thread_every_checkpoint_every_writes(db: Database) -> None:
    path = Path(str(db.engine.url.database))
    async with db.transaction(write=True) as tx:
        await settings.put(tx, "first", {"v": 0})
    await asyncio.sleep(0)
    before = path.stat().st_size
    for n in range(CHECKPOINT_EVERY):  # a commit does not checkpoint: the pages stay in the WAL
        async with db.transaction(write=True) as tx:
            db.on_loop(tx)
            await settings.put(tx, f"k{n}", {"v": "x" * 2000})
        if n == CHECKPOINT_EVERY - 3:
            assert path.stat().st_size == before
    assert db._checkpointing is not None
    await db._checkpointing
    assert path.stat().st_size > before + 100 * 2000  # copied into the database file


def test_a_first_statement_on_the_loop_never_waits_for_another_process(tmp_path: Path) -> None:
    path = tmp_path / "locked.db"
    setup = sqlite3.connect(path, isolation_level=None)
    setup.execute("PRAGMA journal_mode=WAL")
    setup.execute("CREATE TABLE t (x)")
    setup.close()
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("PRAGMA locking_mode=EXCLUSIVE")  # in WAL mode: no reader gets in while it holds it
    other.execute("BEGIN EXCLUSIVE")
    other.execute("INSERT INTO t VALUES (1)")
    reader = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    reader.execute(f"PRAGMA busy_timeout={sqlite_driver.BUSY_TIMEOUT_MS}")

    def first() -> list[tuple[int]]:
        reader.execute("BEGIN")
        return reader.execute("SELECT count(*) FROM t").fetchall()

    started = time.monotonic()
    assert sqlite_driver._first_here(reader, first) is None  # busy: not waited for, nothing left begun
    assert time.monotonic() - started < 1 and not reader.in_transaction
    assert reader.execute("PRAGMA busy_timeout").fetchone() == (sqlite_driver.BUSY_TIMEOUT_MS,)
    other.execute("COMMIT")
    other.close()
    assert sqlite_driver._first_here(reader, first) == [(1,)]
    reader.close()


def checkouts(db: Database) -> list[object]:
    """Every connection the engine's pool hands out from now on."""
    seen: list[object] = []
    event.listen(db.engine.sync_engine.pool, "checkout", lambda dbapi, record, proxy: seen.append(dbapi))
    return seen


async def test_a_connection_whose_transaction_ended_well_serves_the_next_one(db: Database) -> None:
    taken = checkouts(db)
    for index in range(6):
        async with db.transaction(write=index % 2 == 0) as tx:
            if index % 3:
                db.on_loop(tx)
            if index % 2 == 0:
                await settings.put(tx, f"k{index}", {"v": index})
            else:
                assert await settings.get(tx, f"k{index - 1}") == {"v": index - 1}
    assert len(taken) == 1  # one pool checkout for six transactions, reads and writes, on the loop or not
    assert other_writer_can_begin(db)  # nothing left open in between
    async with asyncio.TaskGroup() as group:  # transactions running at once each have their own
        running = [group.create_task(_connection_of(db)) for _ in range(3)]
    assert len({id(task.result()) for task in running}) == 3
    async with db.transaction() as tx:
        assert [await settings.get(tx, f"k{index}") for index in (0, 2, 4)] == [{"v": 0}, {"v": 2}, {"v": 4}]


async def _connection_of(db: Database) -> object:
    async with db.transaction() as tx:
        await asyncio.sleep(0)
        await tx.execute(text("SELECT 1"))
        return tx


async def test_a_connection_whose_block_failed_or_was_cancelled_is_not_kept(db: Database) -> None:
    async with db.transaction(write=True) as tx:
        await settings.put(tx, "kept", {"v": 1})
    taken = checkouts(db)
    with pytest.raises(RuntimeError):
        async with db.transaction(write=True) as tx:
            failed = tx
            await settings.put(tx, "undone", {"v": 2})
            raise RuntimeError("undo")
    entered = asyncio.Event()

    async def cancelled() -> None:
        async with db.transaction(write=True) as tx:
            await settings.put(tx, "cancelled", {"v": 3})
            entered.set()
            await asyncio.sleep(30)

    task = asyncio.create_task(cancelled())
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert other_writer_can_begin(db)  # the cancelled transaction was rolled back, its lock released
    async with db.transaction() as tx:
        assert tx is not failed  # closed, back to the pool: a new connection object serves this one
        values = [await settings.get(tx, key) for key in ("kept", "undone", "cancelled")]
    assert values == [{"v": 1}, None, None]
    assert len(taken) == 2  # the failed block's and the cancelled block's replacements


async def test_dispose_closes_the_connections_kept(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'kept.db'}")
    await database.migrate()
    async with asyncio.TaskGroup() as group:
        for _ in range(3):
            group.create_task(_connection_of(database))
    pool = database.engine.pool
    assert pool.checkedout() == 3  # type: ignore[attr-defined]  # kept for the next transactions
    await database.dispose()
    assert pool.checkedout() == 0  # type: ignore[attr-defined]
