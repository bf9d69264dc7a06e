"""StateReads (app/reconcile/state_reads.py): stopping it leaves no statement running on a database thread."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from app.reconcile.state_reads import StateReads
from app.store import desired
from app.store.db import Database


async def test_close_returns_once_the_readers_statement_has_ended(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Seen in a full run: the service stopped while the reader's statement ran on aiosqlite's thread,
    the loop closed, and that thread then failed handing the result to the closed loop."""
    db = Database(str(tmp_path / "reads.db"))
    await db.migrate()
    entered, release = threading.Event(), threading.Event()

    def slow() -> int:  # runs on the connection's thread, as a long query would
        entered.set()
        release.wait(30)
        return 1

    async def blocking_read(tx: AsyncConnection, keys: Any) -> dict[Any, Any]:
        await tx.run_sync(lambda c: c.connection.dbapi_connection.create_function("slow", 0, slow))
        await tx.execute(text("SELECT slow()"))
        return {}

    monkeypatch.setattr(desired, "read_user_states", blocking_read)
    states = StateReads(db)
    caller = asyncio.create_task(states.read("source", "user"))
    assert await asyncio.to_thread(entered.wait, 30), "the read never reached the database"
    caller.cancel()
    threading.Timer(0.3, release.set).start()
    await states.close()
    assert release.is_set(), "close returned while the reader's statement still ran"
    assert db.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    with pytest.raises(asyncio.CancelledError):
        await caller
    await db.dispose()
