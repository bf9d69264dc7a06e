"""Group commit: the write steps of many concurrent tasks committed together, in one transaction.

The reconciler converges many users at once and each leaves a little bookkeeping (its provisioning
record, audit rows, the settling of its dirty mark). Committed one transaction per user, those writes
take SQLite's single writer turn once each and dominate a burst's convergence; here the steps that
arrive while a transaction is open wait for the next one, so a burst costs a handful of transactions.

Every step still commits atomically, and a caller's ``await`` returns only once its step is committed
(nothing is acknowledged before it is durable). If a batch fails, each of its steps is retried alone,
so one bad step fails only its own caller.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable
from typing import Any

from app.store.db import Database
from app.store.types import Transaction

Step = Callable[[Transaction], Awaitable[Any]]


class GroupCommit:
    """Runs write steps in shared transactions, one flusher task at a time."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._pending: list[tuple[Step, asyncio.Future[Any]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def run(self, step: Step) -> Any:
        """Commit ``step`` (with whatever else is waiting) and return its result once committed."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.append((step, future))
        if self._flusher is None or self._flusher.done():
            # A fresh context: the flusher must never join a transaction its first caller happens to hold.
            self._flusher = asyncio.create_task(self._flush(), context=contextvars.Context())
        return await future

    async def close(self) -> None:
        """Wait for the steps already handed over to be committed."""
        if self._flusher is not None:
            await asyncio.gather(self._flusher, return_exceptions=True)

    async def _flush(self) -> None:
        batch: list[tuple[Step, asyncio.Future[Any]]] = []
        try:
            await self._flush_all(batch)
        finally:
            # Cancelled (the loop is shutting down): nobody may wait forever for a commit that never runs.
            for _, future in batch + self._pending:
                if not future.done():
                    future.cancel()

    async def _flush_all(self, batch: list[tuple[Step, asyncio.Future[Any]]]) -> None:
        while self._pending:
            batch[:], self._pending = self._pending, []
            try:
                async with self.db.transaction(write=True) as conn:
                    results = [await step(conn) for step, _ in batch]
            except Exception:  # noqa: BLE001 - retried one by one below, each caller gets its own error
                for step, future in batch:
                    try:
                        async with self.db.transaction(write=True) as conn:
                            result = await step(conn)
                    except Exception as error:  # noqa: BLE001
                        if not future.done():
                            future.set_exception(error)
                    else:
                        if not future.done():
                            future.set_result(result)
                continue
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)
