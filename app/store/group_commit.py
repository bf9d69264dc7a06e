"""Group commit: the write steps of many concurrent tasks committed together, in one transaction.

The reconciler converges many users at once and each leaves a little bookkeeping (its provisioning
record, audit rows, the settling of its dirty mark). Committed one transaction per user, those writes
take SQLite's single writer turn once each and dominate a burst's convergence; here the steps that
arrive while a transaction is open wait for the next one, so a burst costs a handful of transactions.

Writes that many callers make alike go as :class:`Batched` items: the items of one ``write`` function
in a transaction are applied by one call with all of them (an ``executemany``: one statement for the
settling of a whole batch of converges instead of one per user, :func:`GroupCommit.run_all`).

Every caller's parts still commit atomically together, and a caller's ``await`` returns only once they
are committed (nothing is acknowledged before it is durable). If a batch fails, each caller's parts are
retried alone, so one bad step fails only its own caller.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from app.store.db import Database
from app.store.types import Transaction

Step = Callable[[Transaction], Awaitable[Any]]
T = TypeVar("T")


@dataclass(frozen=True)
class Batched(Generic[T]):
    """One item of a write many callers make alike: ``write(tx, items)`` applies every item of a
    transaction at once, after the plain steps of that transaction, in the order the items came."""

    write: Callable[[Transaction, list[T]], Awaitable[None]]
    item: T


ON_LOOP_UNITS = 64
"""Up to this many callers' parts, a transaction runs on the event loop's thread (:meth:`Database.on_loop`):
each part is a row or two by key, applied by one ``executemany`` per kind, well under a millisecond."""

Part = Step | Batched[Any]
Unit = tuple[Sequence[Part], "asyncio.Future[Any]"]


async def _apply(conn: Transaction, units: Sequence[Sequence[Part]]) -> list[Any]:
    """Run the units' plain steps in order, then each batched write once; the last plain step's result
    of each unit (None without one)."""
    results: list[Any] = []
    writes: dict[Any, list[Any]] = {}
    for parts in units:
        result = None
        for part in parts:
            if isinstance(part, Batched):
                writes.setdefault(part.write, []).append(part.item)
            else:
                result = await part(conn)
        results.append(result)
    for write, items in writes.items():
        await write(conn, items)
    return results


class GroupCommit:
    """Runs write steps in shared transactions, one flusher task at a time."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._pending: list[Unit] = []
        self._flusher: asyncio.Task[None] | None = None

    async def run(self, step: Step) -> Any:
        """Commit ``step`` (with whatever else is waiting) and return its result once committed."""
        return await self.run_all([step])

    async def run_all(self, parts: Sequence[Part]) -> Any:
        """Commit ``parts`` atomically together (with whatever else is waiting); once committed, return
        the last plain step's result (None without one)."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.append((parts, future))
        if self._flusher is None or self._flusher.done():
            # A fresh context: the flusher must never join a transaction its first caller happens to hold.
            self._flusher = asyncio.create_task(self._flush(), context=contextvars.Context())
        return await future

    async def close(self) -> None:
        """Wait for the steps already handed over to be committed."""
        if self._flusher is not None:
            await asyncio.gather(self._flusher, return_exceptions=True)

    async def _flush(self) -> None:
        batch: list[Unit] = []
        try:
            await self._flush_all(batch)
        finally:
            # Cancelled (the loop is shutting down): nobody may wait forever for a commit that never runs.
            for _, future in batch + self._pending:
                if not future.done():
                    future.cancel()

    async def _flush_all(self, batch: list[Unit]) -> None:
        while self._pending:
            batch[:], self._pending = self._pending, []
            try:
                async with self.db.transaction(write=True) as conn:
                    if len(batch) <= ON_LOOP_UNITS:
                        self.db.on_loop(conn)
                    results = await _apply(conn, [parts for parts, _ in batch])
            except Exception:  # noqa: BLE001 - retried one by one below, each caller gets its own error
                for parts, future in batch:
                    try:
                        async with self.db.transaction(write=True) as conn:
                            (result,) = await _apply(conn, [parts])
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
