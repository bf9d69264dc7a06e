"""A background job run every ``interval`` seconds: the IdP pulls and the webhook retry queue.

One loop for all of them, so that each survives what it cannot control (a database or IdP outage is
logged and the next run comes) and stops the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

log = logging.getLogger("ziti_scim.webhooks")


class Periodic:
    """Calls :meth:`run_once` every :attr:`interval` seconds between :meth:`start` and :meth:`stop`.

    ``first_delay``: wait one interval before the first run (instead of running at start).
    """

    interval: float
    first_delay: bool = False

    def __init__(self, name: str) -> None:
        self._name = name
        self._task: asyncio.Task[None] | None = None

    async def run_once(self) -> Any:
        raise NotImplementedError

    async def _loop(self) -> None:
        if self.first_delay:
            await asyncio.sleep(self.interval)
        while True:
            try:
                await self.run_once()
            except Exception:  # noqa: BLE001 - an outage must not end the loop: the next run repairs
                log.warning("%s failed; next run in %ss", self._name, self.interval, exc_info=True)
            await asyncio.sleep(self.interval)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name=self._name)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
