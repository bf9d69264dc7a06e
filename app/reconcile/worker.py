"""Runs the reconciler in the background, woken as soon as a write commits.

Every SCIM or webhook write leaves a dirty mark in its own transaction and wakes this worker (in this
process directly; on PostgreSQL also through ``LISTEN/NOTIFY``, so another replica may take it). The
worker keeps up to ``batch`` users converging at once and claims more as soon as one finishes, so a
burst of writes becomes a steady stream of controller calls bounded by the client's ``max_in_flight``.
Repeated marks of one user coalesce in its single dirty row (a generation counter), so a user changed
ten times while converging is converged once more, not ten times.

Fewer controller calls and transactions for the same work: a user who has no identity yet waits until
its source pauses (``create_settle``, :func:`app.store.queue.claim_due`), so that an initial sync's
group memberships go into the create instead of a PATCH per group; slots are refilled a quarter at a
time (one claim transaction per batch, not per user); the converges running together share their
bookkeeping transactions (:class:`app.store.group_commit.GroupCommit`) and their re-reads of the
controller (:class:`app.ziti.reads.CoalescedReads`).

A wake-up is answered after :data:`GATHER` (20 ms): a burst of writes, each waking the worker, then
costs one look at the queue and one claim instead of one per write.

Nothing else has to remember work: a restart, a crash or a controller outage only delays convergence
(level-triggered, nothing lost); a poll every ``poll`` seconds picks up what no wake-up announced
(retries coming due, another replica's lost notification).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable

from app.observability import audit
from app.reconcile.reconciler import Outcome, Reconciler
from app.reconcile.safety import Safety
from app.store import queue
from app.store.notify import listen

log = logging.getLogger("ziti_scim.reconcile")

GATHER = 0.02
"""Seconds the worker waits after a wake-up before it claims, unless a write waits for its user
(``wait_for_sync``): the writes committing meanwhile are claimed, read and settled with it."""


SETTLE_MARGIN = 0.005
"""Seconds past the end of a source's pause before looking (the queue compares with the marks' times)."""


class Worker:
    def __init__(
        self,
        reconciler: Reconciler,
        *,
        batch: int = 64,
        poll: float = 1.0,
        gather: float = GATHER,
        audit_retention_days: float = 90.0,
    ) -> None:
        self.reconciler = reconciler
        self.audit_retention_days = audit_retention_days
        self._last_prune = 0.0
        self.batch = batch
        self.poll = poll
        self.gather = gather
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._inflight: set[asyncio.Task[Outcome]] = set()
        self._waiters: dict[tuple[str, str], list[asyncio.Future[Outcome]]] = {}
        self._backlog = False
        """Whether the last claim filled every free slot (more may be due than was taken)."""
        self._settled_at: float | None = None
        """When (loop time) the latest write of a settling source that woke nobody stops holding its new
        users: the worker looks then, not at its next poll (:meth:`settling`)."""
        self.paused = False

    def start(self) -> None:
        if not self._tasks:
            self._tasks = [
                asyncio.create_task(self._run(), name="ziti-scim-reconciler"),
                asyncio.create_task(self._renew(), name="ziti-scim-lease-renewal"),
            ]
            if not self.reconciler.db.is_sqlite:
                self._tasks.append(
                    asyncio.create_task(listen(self.reconciler.db, self.wake), name="ziti-scim-listen")
                )

    async def _renew(self) -> None:
        while True:
            await asyncio.sleep(queue.LEASE_SECONDS / 4)
            try:
                held = list(self.reconciler.held.values())
                if held:
                    async with self.reconciler.db.transaction(write=True) as tx:
                        await queue.renew(tx, held)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001
                log.exception("lease renewal failed; retrying")

    @property
    def settle(self) -> dict[str, float]:
        """Each source's ``create_settle``: new users wait for a pause in its writes."""
        return {name: s.create_settle for name, s in self.reconciler.settings.items() if s.create_settle > 0}

    async def _paused(self, safety: Safety | None) -> bool:
        return self.paused or (safety is not None and await safety.paused())

    def _next_look(self, now: float | None = None) -> float:
        """Seconds until the next look: the poll interval, or sooner when a settling source's pause ends.
        ``now``: the event loop's time (read from the running loop if not given)."""
        interval = self._poll_interval()
        if self._settled_at is None:
            return interval
        remaining = self._settled_at - (asyncio.get_running_loop().time() if now is None else now)
        if remaining < 0:
            self._settled_at = None  # the look just made was after it
            return interval
        return min(interval, remaining + SETTLE_MARGIN)

    def _poll_interval(self) -> float:
        # A settling create is due once its source paused: nothing wakes the worker then, so look often.
        settles = self.settle.values()
        return min([self.poll, *(max(0.05, seconds / 2) for seconds in settles)])

    async def stop(self) -> None:
        for loop_task in self._tasks:
            loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loop_task
        self._tasks = []
        for task in list(self._inflight):
            task.cancel()
        if self._inflight:
            await asyncio.gather(*self._inflight, return_exceptions=True)
        await self.reconciler.states.close()
        await self.reconciler.reads.close()
        await self.reconciler.commits.close()
        for futures in self._waiters.values():
            for future in futures:
                future.cancel()
        self._waiters.clear()

    @property
    def idle(self) -> bool:
        """Whether no user is being converged in this process right now."""
        return not self._inflight

    def wake(self) -> None:
        """Look for due work now (a write committed, or another replica announced one)."""
        self._wake.set()

    def settling(self, source: str, now: float | None = None) -> None:
        """A write of ``source`` marked only users without an identity, and woke nobody: they are due once
        the source paused ``create_settle`` seconds, so look right then (unless writes go on), not up to a
        poll interval later. ``now``: the event loop's time (read from the running loop if not given)."""
        seconds = self.settle.get(source)
        if seconds:
            self._settled_at = (asyncio.get_running_loop().time() if now is None else now) + seconds

    async def wait_for(self, users: Iterable[tuple[str, str]], timeout: float) -> None:
        """Wait until this process finished converging these users once, or ``timeout`` passed.

        Only for the optional short inline wait of a source (``wait_for_sync``): the work itself goes on
        in the background either way, and another replica may be the one converging.
        """
        loop = asyncio.get_running_loop()
        keys = list(users)  # walked twice: to register and to unregister
        futures: list[asyncio.Future[Outcome]] = []
        for key in keys:
            future: asyncio.Future[Outcome] = loop.create_future()
            self._waiters.setdefault(key, []).append(future)
            futures.append(future)
        self.wake()
        try:
            if futures:
                await asyncio.wait(futures, timeout=timeout)
        finally:
            for key, future in zip(keys, futures, strict=True):
                waiting = self._waiters.get(key)
                if waiting is not None and future in waiting:
                    waiting.remove(future)
                    if not waiting:
                        del self._waiters[key]

    async def _converge(self, claim: queue.Claim) -> Outcome:
        outcome = await self.reconciler.converge_claimed(claim)
        for future in self._waiters.pop((claim.source, claim.user_id), []):
            if not future.done():
                future.set_result(outcome)
        return outcome

    def _spawn(self, claim: queue.Claim) -> asyncio.Task[Outcome]:
        task = asyncio.ensure_future(self._converge(claim))
        self._inflight.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Outcome]) -> None:
        self._inflight.discard(task)
        if self._backlog:
            self._wake.set()  # a free slot and more may be due: claim the next user now
        if not task.cancelled() and task.exception() is not None:
            log.error("converge failed unexpectedly", exc_info=task.exception())

    async def drain(self, timeout: float = 60.0) -> None:
        """Converge everything this process can claim now (``sync``; rows another process holds are
        waited for by :func:`app.reconcile.sync.settle`)."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while loop.time() < end:
            claims = await queue.claim_due(self.reconciler.db, self.batch)
            if not claims:
                if self._inflight:
                    await asyncio.wait(set(self._inflight), timeout=max(0.0, end - loop.time()))
                    continue
                return
            await asyncio.gather(*(self._converge(claim) for claim in claims))

    async def _housekeeping(self) -> None:
        loop = asyncio.get_running_loop()
        if loop.time() - self._last_prune > 3600:
            self._last_prune = loop.time()
            removed = await audit.prune(self.reconciler.db, self.audit_retention_days)
            if removed:
                log.info("pruned %d audit rows older than %s days", removed, self.audit_retention_days)

    async def _run(self) -> None:
        while True:
            # Cleared before looking, so that a wake-up arriving during the claim is not lost.
            self._wake.clear()
            try:
                await self._housekeeping()
                free = self.batch - len(self._inflight)
                safety = self.reconciler.safety
                claims: list[queue.Claim] = []
                # Refilled a quarter of the slots at a time: one claim transaction per user would cost
                # as much as the converge's own bookkeeping.
                refill = free >= max(1, self.batch // 4) or not self._inflight
                if free > 0 and refill and not await self._paused(safety):
                    claims = await queue.claim_due(self.reconciler.db, free, self.settle)
                for claim in claims:
                    self._spawn(claim)
                self._backlog = free <= 0 or not refill or len(claims) == free
                if claims and len(claims) == free:
                    continue  # there may be more due right now
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the loop must survive a database hiccup
                log.exception("reconcile loop error; retrying")
            woken = False
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self._next_look())
                woken = True
            if woken and self.gather > 0 and not self._waiters:
                # Let a burst of writes gather: one look, one claim and one state read for all of them.
                await asyncio.sleep(self.gather)
