"""The database connection: engine set-up, migrations at start-up, and one transaction per SCIM operation.

SQLite (the default, a file in WAL mode) and PostgreSQL are both first-class. Each SCIM operation runs
in one transaction (:meth:`Database.transaction`); the storage methods called inside it join it (the
task's open transaction), so a PATCH's read and write are atomic. Whether a transaction writes is said
when it opens (``write=True``) and kept on its connection: writers are serialised per row, ``BEGIN
IMMEDIATE`` on SQLite, ``SELECT … FOR UPDATE`` on PostgreSQL (:meth:`Database.locks`).
"""

from __future__ import annotations

import asyncio
import logging
import unicodedata
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from contextvars import ContextVar
from importlib import resources as package_files
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Table, event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.engine.url import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import QueuePool

from app.store import sqlite_driver

log = logging.getLogger("ziti_scim.store")

# The one context variable left: scim2-server calls the storage's methods with signatures fixed by its ABC
# (``AsyncScimStorage``), so the SCIM operation's transaction (``SqlStorage.operation``) cannot be passed
# to them; they join it through this. The store's own operations take their transaction as an argument.
_current: ContextVar[AsyncConnection | None] = ContextVar("ziti_scim_connection", default=None)
WRITE = "ziti_scim_write"
"""The connection ``info`` key telling whether its transaction writes (read by the SQLite begin hook)."""


CHECKPOINT_EVERY = 100
"""SQLite write transactions of this process between two WAL checkpoints (SQLite's own default,
switched off here: a checkpoint by the connection committing once the WAL holds 1,000 pages)."""

CHUNK = 500
"""Keys per ``IN`` list (within every database's limit on bound parameters)."""


def chunks_by_source(keys: Iterable[tuple[str, str]]) -> Iterator[tuple[str, list[str]]]:
    """``(source, ids)`` of ``(source, user_id)`` keys, duplicates dropped, at most :data:`CHUNK` ids
    each: the ``IN`` lists of a read of many users."""
    wanted: dict[str, list[str]] = {}
    for source, user_id in dict.fromkeys(keys):
        wanted.setdefault(source, []).append(user_id)
    for source, ids in wanted.items():
        for start in range(0, len(ids), CHUNK):
            yield source, ids[start : start + CHUNK]


def fold(value: str) -> str:
    """The case-insensitive form of a string: NFC, then lower case (scim2-models' default comparison key)."""
    return unicodedata.normalize("NFC", unicodedata.normalize("NFC", value).lower())


def upsert(table: Table, *, is_sqlite: bool) -> sqlite.Insert | postgresql.Insert:
    """``INSERT … ON CONFLICT`` for the dialect in use (SQLite and PostgreSQL share the construct)."""
    return (sqlite.insert if is_sqlite else postgresql.insert)(table)


def database_url(url_or_path: str) -> str:
    """Accept a SQLAlchemy URL or a plain file path (SQLite), and return an async driver URL."""
    if "://" not in url_or_path:
        return f"sqlite+aiosqlite:///{Path(url_or_path).expanduser().resolve()}"
    url = make_url(url_or_path)
    driver = {
        "sqlite": "sqlite+aiosqlite",
        "postgresql": "postgresql+asyncpg",
        "postgres": "postgresql+asyncpg",
    }
    if url.drivername in driver:
        url = url.set(drivername=driver[url.drivername])
    return url.render_as_string(hide_password=False)


def sqlite_path(url: str) -> str | None:
    """The file of a SQLite URL (``:memory:`` for an in-memory database); None for another database."""
    if not url.startswith("sqlite"):
        return None
    return make_url(url).database or ":memory:"


def _sqlite_lower(value: Any) -> Any:
    return fold(value) if isinstance(value, str) else value


class Database:
    """An async engine plus the per-operation transaction discipline of the store."""

    def __init__(self, url: str, *, pool_size: int = 10) -> None:
        self.url = database_url(url)
        self.is_sqlite = self.url.startswith("sqlite")
        kwargs: dict[str, Any] = {}
        if self.is_sqlite:
            # Statements of small transactions may run on the event loop's thread (on_loop).
            kwargs.update(connect_args={"check_same_thread": False})
        else:
            kwargs.update(pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)
        self.engine: AsyncEngine = create_async_engine(self.url, **kwargs)
        self._writer: asyncio.Lock | None = None
        self._kept: list[AsyncConnection] = []
        pool = self.engine.pool
        self._keep = pool.size() if isinstance(pool, QueuePool) else 1
        """SQLite connections kept between transactions (:meth:`_connection`): the pool's own size, so that
        its overflow still serves what connects to it directly (checkpoints, migrations)."""
        self._writes = 0
        self._checkpointing: asyncio.Task[None] | None = None
        if self.is_sqlite:
            self._configure_sqlite()

    def _configure_sqlite(self) -> None:
        sync_engine = self.engine.sync_engine

        @event.listens_for(sync_engine, "connect")
        def on_connect(dbapi_connection: Any, _record: Any) -> None:
            sqlite_driver.adopt(dbapi_connection)
            # Take transaction control from the driver so BEGIN IMMEDIATE can be chosen per operation.
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={sqlite_driver.BUSY_TIMEOUT_MS}")
            # A commit may run on the event loop (sqlite_driver): checkpoints run on a thread (_checkpoint).
            cursor.execute("PRAGMA wal_autocheckpoint=0")
            cursor.close()
            # SQLite's lower() folds ASCII only; use the same Unicode folding as the filter evaluator.
            dbapi_connection.create_function("lower", 1, _sqlite_lower, deterministic=True)

        @event.listens_for(sync_engine, "begin")
        def on_begin(connection: Connection) -> None:
            statement = "BEGIN IMMEDIATE" if connection.info.get(WRITE) else "BEGIN"
            dbapi_connection = connection.connection.dbapi_connection
            if isinstance(dbapi_connection, sqlite_driver.OneHopConnection):
                dbapi_connection.defer_begin(statement)  # sent with the first statement, no hop of its own
            else:
                connection.exec_driver_sql(statement)

    def upsert(self, table: Table) -> sqlite.Insert | postgresql.Insert:
        """``INSERT … ON CONFLICT`` on ``table`` for this database's dialect."""
        return upsert(table, is_sqlite=self.is_sqlite)

    def on_loop(self, conn: AsyncConnection) -> None:
        """Run ``conn``'s transaction's next statements on the event loop's thread, until it ends (the
        blocks that join it after this call included: call it only where the whole rest is small).

        For a transaction of a few statements of a few rows each, by index (one user's read or write):
        SQLite's single writer's turn then lasts as long as SQLite's work, not as long as a thread hop
        per statement waiting behind the loop's other callbacks, and no statement pays a hop's CPU
        (:mod:`app.store.sqlite_driver`). No effect on PostgreSQL.
        """
        if self.is_sqlite:
            dbapi_connection = conn.sync_connection.connection.dbapi_connection  # type: ignore[union-attr]
            if isinstance(dbapi_connection, sqlite_driver.OneHopConnection):
                dbapi_connection.run_on_loop()

    def locks(self, conn: AsyncConnection) -> bool:
        """Whether reads in ``conn``'s transaction must lock their rows (a write transaction, PostgreSQL)."""
        return not self.is_sqlite and bool(conn.info.get(WRITE))

    async def migrate(self) -> None:
        """Apply the Alembic migrations shipped in :mod:`app.store.migrations`."""
        script_location = str(package_files.files("app.store") / "migrations")

        def upgrade(connection: Connection) -> None:
            config = Config()
            config.set_main_option("script_location", script_location)
            config.attributes["connection"] = connection
            command.upgrade(config, "head")

        async with self.engine.connect() as connection:
            connection.info[WRITE] = True
            async with connection.begin():
                await connection.run_sync(upgrade)

    @asynccontextmanager
    async def transaction(self, *, write: bool = False) -> AsyncIterator[AsyncConnection]:
        """Run the enclosed block in one transaction, or join the one already open.

        A block that writes says so (``write=True``) on the outermost transaction of the operation.
        """
        current = _current.get()
        if current is not None:
            yield current
            return
        async with self._writer_turn(write), self._connection() as connection:
            connection.info[WRITE] = write
            async with connection.begin():
                token = _current.set(connection)
                try:
                    yield connection
                finally:
                    _current.reset(token)
        if self.is_sqlite and write:
            self._wrote()

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[AsyncConnection]:
        """A connection for one transaction; on SQLite, kept open for the next one when it ends well.

        Taking a connection from SQLAlchemy's pool and giving it back costs four times what a one-row
        SQLite transaction costs on the loop (an ``AsyncConnection`` built, its pool checkout and reset,
        two greenlet spawns and a shielded close task): about 0.1 ms of CPU per SCIM request. A kept
        connection skips all of it and runs the next transaction as it is (``BEGIN`` to ``COMMIT``). One
        whose block failed, was cancelled or left a transaction open goes back to the pool the usual
        way (rolled back, closed; :meth:`AsyncConnection.close` shielded as its own ``async with``).
        PostgreSQL keeps the pool's checkout, whose pre-ping notices a restarted server.
        """
        if not self.is_sqlite:
            async with self.engine.connect() as connection:
                yield connection
            return
        connection = self._kept.pop() if self._kept else await self.engine.connect()
        keep = False
        try:
            yield connection
            ended_well = not (connection.invalidated or connection.in_transaction())
            keep = ended_well and len(self._kept) < self._keep
        finally:
            if keep:
                self._kept.append(connection)
            else:
                await asyncio.shield(connection.close())

    def _wrote(self) -> None:
        """Count a committed SQLite write; every :data:`CHECKPOINT_EVERY`, checkpoint in the background."""
        self._writes += 1
        if self._writes >= CHECKPOINT_EVERY and (self._checkpointing is None or self._checkpointing.done()):
            self._writes = 0
            self._checkpointing = asyncio.get_running_loop().create_task(self._checkpoint())

    async def _checkpoint(self) -> None:
        """Copy the WAL's frames into the database file on a connection's thread: ``PASSIVE`` waits for no
        reader or writer (what a reader still sees stays in the WAL until a next checkpoint)."""
        try:
            async with self.engine.connect() as connection:
                raw = await connection.get_raw_connection()
                cursor = await raw.driver_connection.execute("PRAGMA wal_checkpoint(PASSIVE)")  # type: ignore[union-attr]
                await cursor.close()
        except Exception as error:  # the next one retries; meanwhile the WAL grows
            log.warning("WAL checkpoint failed: %s", error)

    def _writer_turn(self, writing: bool) -> AbstractAsyncContextManager[Any]:
        """SQLite has one writer: queue this process's writers here instead of in SQLite's busy loop,
        whose sleeps (up to 100 ms each) would otherwise dominate the tail latency."""
        if not (self.is_sqlite and writing):
            return nullcontext()
        if self._writer is None:
            self._writer = asyncio.Lock()
        return self._writer

    async def ping(self) -> None:
        """Raise if the database cannot run a query now (the readiness probe)."""
        async with self.transaction() as conn:
            await conn.execute(text("SELECT 1"))

    @property
    def driver(self) -> str:
        """The SQLAlchemy driver name in use (``sqlite+aiosqlite``, ``postgresql+asyncpg``)."""
        return str(self.engine.url.drivername)

    async def dispose(self) -> None:
        if self._checkpointing is not None:
            await self._checkpointing
        kept, self._kept = self._kept, []
        for connection in kept:
            await connection.close()
        await self.engine.dispose()
