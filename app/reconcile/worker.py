"""Runs the reconciler: inline after each SCIM write (within a deadline), and in the background.

The background loop claims due dirty marks in batches; nothing else has to remember work, so a
restart, a crash or a controller outage only delays convergence (level-triggered, nothing lost).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine, Iterable
from typing import Any

from app.observability import audit
from app.reconcile import queue
from app.reconcile.reconciler import Outcome, Reconciler

log = logging.getLogger("ziti_scim.reconcile")


class Worker:
    def __init__(
        self,
        reconciler: Reconciler,
        *,
        batch: int = 64,
        poll: float = 1.0,
        audit_retention_days: float = 90.0,
    ) -> None:
        self.reconciler = reconciler
        self.audit_retention_days = audit_retention_days
        self._last_prune = 0.0
        self.batch = batch
        self.poll = poll
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._renewer: asyncio.Task[None] | None = None
        self._inflight: set[asyncio.Task[Outcome]] = set()
        self.paused = False

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="ziti-scim-reconciler")
            self._renewer = asyncio.create_task(self._renew(), name="ziti-scim-lease-renewal")

    async def _renew(self) -> None:
        while True:
            await asyncio.sleep(queue.LEASE_SECONDS / 4)
            try:
                await queue.renew(self.reconciler.db, list(self.reconciler.held.values()))
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001
                log.exception("lease renewal failed; retrying")

    async def stop(self) -> None:
        for loop_task in (self._task, self._renewer):
            if loop_task is not None:
                loop_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await loop_task
        self._task = self._renewer = None
        for task in list(self._inflight):
            task.cancel()
        if self._inflight:
            await asyncio.gather(*self._inflight, return_exceptions=True)

    def wake(self) -> None:
        self._wake.set()

    def _spawn(self, coroutine: Coroutine[Any, Any, Outcome]) -> asyncio.Task[Outcome]:
        task = asyncio.ensure_future(coroutine)
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)
        return task

    async def converge_now(self, users: Iterable[tuple[str, str]], deadline: float) -> None:
        """Converge these users now; return at the deadline, leaving the rest running (not lost)."""
        if self.paused:
            return
        tasks = [self._spawn(self.reconciler.converge(source, user_id)) for source, user_id in users]
        if tasks:
            await asyncio.wait(tasks, timeout=deadline)

    async def drain(self, timeout: float = 60.0) -> None:
        """Converge everything that is due now (the ``sync`` command and tests)."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while loop.time() < end:
            claims = await queue.claim_due(self.reconciler.db, self.batch)
            if not claims:
                if self._inflight:
                    await asyncio.wait(set(self._inflight), timeout=max(0.0, end - loop.time()))
                    continue
                return
            await asyncio.gather(*(self.reconciler.converge_claimed(claim) for claim in claims))

    async def _housekeeping(self) -> None:
        loop = asyncio.get_running_loop()
        if loop.time() - self._last_prune > 3600:
            self._last_prune = loop.time()
            removed = await audit.prune(self.reconciler.db, self.audit_retention_days)
            if removed:
                log.info("pruned %d audit rows older than %s days", removed, self.audit_retention_days)

    async def _run(self) -> None:
        while True:
            try:
                await self._housekeeping()
                safety = self.reconciler.safety
                if self.paused or (safety is not None and await safety.paused()):
                    claims = []
                else:
                    claims = await queue.claim_due(self.reconciler.db, self.batch)
                if claims:
                    await asyncio.gather(*(self._spawn(self.reconciler.converge_claimed(c)) for c in claims))
                    continue
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the loop must survive a database hiccup
                log.exception("reconcile loop error; retrying")
            self._wake.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.poll)
