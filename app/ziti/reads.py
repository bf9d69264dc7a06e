"""Coalesced identity reads: the ``GET /identities/{id}`` of many concurrent converges as one list call.

Before it changes an identity, the reconciler re-reads it to check that it is still its own
(:mod:`app.reconcile.ownership`): a group change touching thousands of users would cost one GET per user
on top of the PATCH. Here the reads asked for while another read is on its way wait for it and then go
together, as ``GET /identities?filter=id in [...]`` (:meth:`ZitiClient.get_identities`). Nothing is
cached: every read is made after it was asked for, so it is as fresh as the GET it replaces; a lone read
is the plain GET (no added latency, the same 404).
"""

from __future__ import annotations

import asyncio
import contextvars

from app.ziti.client import MAX_IDS_PER_LIST, JSONObject, ZitiClient
from app.ziti.errors import ZitiNotFound
from app.ziti.filters import survives_controller


class CoalescedReads:
    """``get(identity_id)``: the identity detail now, read together with the other pending reads."""

    def __init__(self, client: ZitiClient) -> None:
        self.client = client
        self._pending: dict[str, list[asyncio.Future[JSONObject]]] = {}
        self._reader: asyncio.Task[None] | None = None

    async def get(self, identity_id: str) -> JSONObject:
        """Like :meth:`ZitiClient.get_identity`: the detail, or :class:`ZitiNotFound`."""
        if not survives_controller(identity_id):
            return await self.client.get_identity(identity_id)
        future: asyncio.Future[JSONObject] = asyncio.get_running_loop().create_future()
        self._pending.setdefault(identity_id, []).append(future)
        if self._reader is None or self._reader.done():
            self._reader = asyncio.create_task(self._read(), context=contextvars.Context())
        return await future

    async def close(self) -> None:
        """Stop the reader (the worker is stopping) and return once it has ended; its callers are
        cancelled."""
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)

    async def _read(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, {}
            ids = list(batch)
            chunks = [ids[i : i + MAX_IDS_PER_LIST] for i in range(0, len(ids), MAX_IDS_PER_LIST)]
            await asyncio.gather(*(self._read_chunk(chunk, batch) for chunk in chunks))

    async def _read_chunk(self, ids: list[str], batch: dict[str, list[asyncio.Future[JSONObject]]]) -> None:
        try:
            if len(ids) == 1:
                try:
                    found = {ids[0]: await self.client.get_identity(ids[0])}
                except ZitiNotFound:
                    found = {}
            else:
                found = await self.client.get_identities(ids)
        except Exception as error:  # noqa: BLE001 - every waiting converge gets the error
            for identity_id in ids:
                for future in batch[identity_id]:
                    if not future.done():
                        future.set_exception(error)
            return
        except BaseException:
            for identity_id in ids:
                for future in batch[identity_id]:
                    future.cancel()
            raise
        for identity_id in ids:
            for future in batch[identity_id]:
                if future.done():
                    continue
                if identity_id in found:
                    future.set_result(found[identity_id])
                else:
                    missing = ZitiNotFound(
                        "identity not found", status=404, code="NOT_FOUND", method="GET", path="/identities"
                    )
                    future.set_exception(missing)
