"""Wake-ups across processes on PostgreSQL: ``NOTIFY`` when a write marks users dirty, ``LISTEN`` for them.

The notification is sent inside the writing transaction (``pg_notify``), so PostgreSQL delivers it only
once that transaction commits, to every replica listening, which then claims the work from the dirty
queue. It is only a hint: a lost notification (a listener reconnecting, a restart) costs at most the
worker's poll interval, since the queue itself is the record of what is to do.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import asyncpg  # type: ignore[import-untyped]
from sqlalchemy import text
from sqlalchemy.engine.url import make_url
from sqlalchemy.ext.asyncio import AsyncConnection

from app.store.db import Database

CHANNEL = "ziti_scim_dirty"
RECONNECT = 2.0
log = logging.getLogger("ziti_scim.store")

_NOTIFY = text(f"SELECT pg_notify('{CHANNEL}', '')")


async def notify(conn: AsyncConnection) -> None:
    """Announce, on commit of ``conn``'s transaction, that users were marked dirty (PostgreSQL only)."""
    await conn.execute(_NOTIFY)


def _dsn(db: Database) -> str:
    return make_url(db.url).set(drivername="postgresql").render_as_string(hide_password=False)


async def _session(db: Database, wake: Callable[[], None]) -> None:
    """One listening connection, until it is lost."""
    connection: Any = await asyncpg.connect(_dsn(db))
    try:
        lost = asyncio.Event()
        connection.add_termination_listener(lambda _connection: lost.set())
        await connection.add_listener(CHANNEL, lambda *_args: wake())
        wake()  # anything marked while not listening
        while not lost.is_set() and not connection.is_closed():
            # Termination is only noticed on I/O: a cheap probe keeps a dead link from lingering.
            try:
                await asyncio.wait_for(lost.wait(), timeout=10.0)
            except TimeoutError:
                await connection.execute("SELECT 1")
    finally:
        if not connection.is_closed():
            connection.terminate()


async def listen(db: Database, wake: Callable[[], None]) -> None:
    """Call ``wake`` on every notification, reconnecting after a database outage; runs until cancelled."""
    while True:
        try:
            await _session(db, wake)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # noqa: BLE001 - the queue's poll covers the gap
            log.info("notification listener lost (%s); reconnecting", type(error).__name__)
        await asyncio.sleep(RECONNECT)
