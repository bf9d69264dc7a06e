"""The desired state of the users being converged, read together: one read transaction for a batch.

Every converge starts by reading its user's SCIM document, groups and provisioning record, and what
asked for the change (the dirty mark's request id and operation, for the audit log). Read one user at a
time, that is a transaction of four statements per user, which on SQLite cost more CPU than the
controller call itself (``python -m bench.profile create-provisioned``). The worker starts a claimed
batch's converges in one go, so their reads arrive together: they wait for the next loop turn and are
answered by :func:`app.store.desired.read_user_states` and :func:`app.store.queue.request_infos`, a few
statements for the whole batch.

Each read still happens after its caller holds the claim, so it sees at least the claimed generation
(a later write bumps the generation, and the settling leaves the row for another pass). A failed read
fails each of its callers alone, as a read of its own would.
"""

from __future__ import annotations

import asyncio
import contextvars

from app.store import desired, queue
from app.store.db import Database
from app.store.types import UserState

Key = tuple[str, str]
RequestInfo = tuple[str | None, str | None]
"""The latest mark's request id and operation (``(None, None)`` if the user is not marked)."""


class StateReads:
    """Coalesces concurrent reads of users' desired state into one transaction, one reader at a time."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._pending: list[tuple[Key, asyncio.Future[tuple[UserState, RequestInfo]]]] = []
        self._reader: asyncio.Task[None] | None = None

    async def read(self, source: str, user_id: str) -> tuple[UserState, RequestInfo]:
        """The user's state and its mark's request info, read with whatever else is asked meanwhile."""
        future: asyncio.Future[tuple[UserState, RequestInfo]] = asyncio.get_running_loop().create_future()
        self._pending.append(((source, user_id), future))
        if self._reader is None or self._reader.done():
            # A fresh context: the reader must never join a transaction its first caller happens to hold.
            self._reader = asyncio.create_task(self._read_all(), context=contextvars.Context())
        return await future

    async def close(self) -> None:
        """Stop the reader (the worker is stopping) and return once it has ended: its transaction is
        rolled back and no statement of it is left running on a database thread when the loop closes
        (aiosqlite would then hand that statement's result to a closed loop, an error in its thread)."""
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)

    async def _read_all(self) -> None:
        batch: list[tuple[Key, asyncio.Future[tuple[UserState, RequestInfo]]]] = []
        try:
            while self._pending:
                batch[:], self._pending = self._pending, []
                keys = [key for key, future in batch if not future.done()]
                try:
                    async with self.db.transaction() as tx:
                        states = await desired.read_user_states(tx, keys)
                        infos = await queue.request_infos(tx, keys)
                except Exception as error:  # noqa: BLE001 - each caller gets the error, as if read alone
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(error)
                    continue
                for key, future in batch:
                    if not future.done():
                        future.set_result((states[key], infos[key]))
        finally:
            # Cancelled (the loop is shutting down): nobody may wait forever for a read that never runs.
            for _, future in batch + self._pending:
                if not future.done():
                    future.cancel()


__all__ = ["RequestInfo", "StateReads"]
