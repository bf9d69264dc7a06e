"""One thread hop per SQLite statement instead of four.

aiosqlite runs each sqlite3 call on the connection's own thread, and SQLAlchemy's adapter
(``sqlalchemy/dialects/sqlite/aiosqlite.py``) makes four such calls per statement: open a cursor,
execute, fetch the rows, close the cursor. Each call is a round trip between the event loop and that
thread (a queue put, a thread wake-up, a GIL hand-over, a ``call_soon_threadsafe`` back), and a SCIM
write runs about ten statements: the round trips cost more CPU than SQLite itself (profiled with
``python -m bench.profile create --gil``). :class:`OneHopConnection` runs the four steps as one call on
the same thread, so the event loop still never waits for SQLite (a long query or a busy wait blocks
that thread, not the loop), with a quarter of the round trips.

A transaction's ``BEGIN`` (``BEGIN IMMEDIATE`` for a write, :mod:`app.store.db`) is no round trip of its
own either: :meth:`OneHopConnection.defer_begin` keeps it, and the transaction's first statement runs it
on the connection's thread just before itself, in the same call (the write lock is still taken before
anything is read). A transaction that ends before any statement never began: its commit or rollback
drops the pending ``BEGIN``.

A transaction of a few statements of a few rows each by index (one user's read or write) runs on the
event loop's own thread instead (:meth:`OneHopConnection.run_on_loop`), ``BEGIN`` and ``COMMIT``
included. SQLite has one writer at a time, so the process's writers queue for their turn
(:meth:`app.store.db.Database.transaction`), and every hop's answer waits behind the callbacks ready on
the loop: at 8 concurrent requests the writers' turns lasted about 2 ms (median 1.9–2.2 ms) for under
1 ms of SQLite's and SQLAlchemy's work, which capped writes near 400/s. On the loop the turn lasts that
work, and no statement pays a hop's CPU (a queue, a thread wake-up, two hand-overs of the GIL). Nothing
there may wait: the first statement, which takes SQLite's locks, runs without SQLite's busy wait, and if
another process holds a lock the transaction goes on on the connection's thread as any other
(:func:`_first_here`); a commit never checkpoints the WAL (an ``fsync``): no connection checkpoints on
commit, the database does it on a thread every :data:`app.store.db.CHECKPOINT_EVERY` writes.
"""

from __future__ import annotations

import collections
import sqlite3
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy.dialects.sqlite.aiosqlite import AsyncAdapt_aiosqlite_connection, AsyncAdapt_aiosqlite_cursor
from sqlalchemy.util.concurrency import await_

T = TypeVar("T")


class OneHopCursor(AsyncAdapt_aiosqlite_cursor):
    """A cursor whose ``execute`` / ``executemany`` run cursor, execute, fetch and close in one call."""

    __slots__ = ("_description", "_rowcount", "_lastrowid")
    _awaitable_cursor_close = False

    def __init__(self, adapt_connection: Any) -> None:
        self._adapt_connection = adapt_connection
        self._connection = adapt_connection._connection
        self._cursor = None  # type: ignore[assignment]  # no aiosqlite cursor: sqlite3 ones, per call
        self._soft_closed_memoized = {}  # type: ignore[assignment]
        self._rows = collections.deque()
        self._description: Any = None
        self._rowcount = -1
        self._lastrowid: Any = None

    @property
    def description(self) -> Any:
        return self._description

    @property
    def rowcount(self) -> int:
        return self._rowcount

    @property
    def lastrowid(self) -> Any:
        return self._lastrowid

    def _run(self, step: Callable[[Any], None]) -> None:
        """Run ``step(sqlite3_cursor)`` on the connection's thread, keeping what the caller reads after."""
        connection = self._connection  # an aiosqlite.Connection

        begin = _take_begin(connection)

        def call() -> tuple[Any, int, Any, list[Any] | None]:
            if begin is not None:
                connection._conn.execute(begin)
            cursor = connection._conn.cursor()
            try:
                step(cursor)
                rows = cursor.fetchall() if cursor.description else None
                return cursor.description, cursor.rowcount, cursor.lastrowid, rows
            finally:
                cursor.close()

        async def queued() -> tuple[Any, int, Any, list[Any] | None]:
            async with self._adapt_connection._execute_mutex:
                return await connection._execute(call)  # type: ignore[no-any-return]

        async def here() -> tuple[Any, int, Any, list[Any] | None]:
            if begin is None:
                return call()
            first = _first_here(connection._conn, call)
            if first is not None:
                return first
            setattr(connection, _ON_LOOP, False)  # another process holds a lock: the thread waits for it
            return await queued()

        try:
            # On the loop: a coroutine that does not suspend (SQLAlchemy's async API wants an await).
            outcome = await_(here() if getattr(connection, _ON_LOOP, False) else queued())
            self._description, self._rowcount, self._lastrowid, rows = outcome
        except Exception as error:
            self._adapt_connection._handle_exception(error)
        self._rows = collections.deque(rows or ())

    def execute(self, operation: Any, parameters: Any = None) -> Any:
        if parameters is None:
            self._run(lambda cursor: cursor.execute(operation))
        else:
            self._run(lambda cursor: cursor.execute(operation, parameters))

    def executemany(self, operation: Any, seq_of_parameters: Any) -> Any:
        self._run(lambda cursor: cursor.executemany(operation, seq_of_parameters))

    def close(self) -> None:
        self._rows.clear()


_BEGIN = "_ziti_scim_begin"
"""The pending ``BEGIN`` statement, kept on the aiosqlite connection (the adapter has fixed slots)."""
_ON_LOOP = "_ziti_scim_on_loop"
"""Whether the open transaction runs on the calling thread (:meth:`OneHopConnection.run_on_loop`)."""


BUSY_TIMEOUT_MS = 30_000
"""How long a statement on a connection's thread waits for another process's lock."""


def _first_here(connection: sqlite3.Connection, call: Callable[[], T]) -> T | None:
    """``call()`` (a transaction's ``BEGIN`` and first statement, which takes SQLite's locks) without
    waiting for a lock: None, with nothing begun, if another process holds one (SQLITE_BUSY; the caller
    then runs it on the connection's thread, where waiting is harmless)."""
    connection.execute("PRAGMA busy_timeout=0")
    try:
        return call()
    except sqlite3.OperationalError as error:
        if error.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY:
            raise
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        return None
    finally:
        connection.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")


def _take_begin(connection: Any) -> str | None:
    begin: str | None = getattr(connection, _BEGIN, None)
    if begin is not None:
        setattr(connection, _BEGIN, None)
    return begin


class OneHopConnection(AsyncAdapt_aiosqlite_connection):
    """SQLAlchemy's aiosqlite connection adapter with :class:`OneHopCursor` for plain cursors, and the
    transaction's ``BEGIN`` sent with its first statement."""

    __slots__ = ()
    _cursor_cls = OneHopCursor

    def defer_begin(self, statement: str) -> None:
        """Run ``statement`` (a ``BEGIN``) just before the next statement, in the same call."""
        setattr(self._connection, _BEGIN, statement)

    def run_on_loop(self) -> None:
        """Run the open transaction's statements, its ``BEGIN`` and ``COMMIT`` on the calling thread,
        until it ends (on the connection's thread if its first statement would wait for another process).

        For a transaction whose statements are each a few rows by index; the connection must have been
        opened with ``check_same_thread=False``.
        """
        setattr(self._connection, _ON_LOOP, True)

    def cursor(self, server_side: bool = False) -> Any:
        if server_side:
            # A server-side cursor makes calls of its own: begin first.
            begin = _take_begin(self._connection)
            if begin is not None:
                await_(self._connection.execute(begin))
        return super().cursor(server_side)

    def commit(self) -> None:
        here = getattr(self._connection, _ON_LOOP, False)
        setattr(self._connection, _ON_LOOP, False)
        if _take_begin(self._connection) is not None:
            return
        if not here:
            super().commit()
            return
        try:
            self._connection._conn.commit()
        except Exception as error:
            self._handle_exception(error)

    def rollback(self) -> None:
        # The pool rolls back every connection it takes back, after the commit too: no hop when SQLite
        # holds no transaction open (``in_transaction`` reads SQLite's autocommit flag, no statement).
        setattr(self._connection, _ON_LOOP, False)
        if _take_begin(self._connection) is None and self._connection.in_transaction:
            super().rollback()


def adopt(dbapi_connection: Any) -> None:
    """Make a freshly connected aiosqlite adapter use one hop per statement (a ``connect`` event hook)."""
    if type(dbapi_connection) is AsyncAdapt_aiosqlite_connection:
        dbapi_connection.__class__ = OneHopConnection
