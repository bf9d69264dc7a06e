"""Replay protection for webhook deliveries.

A verifier derives a key from the *authenticated* content of a delivery (signature input, event id) and
claims it here; a second delivery with the same key inside the retention window is rejected. The
application supplies a persistent implementation (database table with a unique key and an expiry
column); :class:`InMemoryReplayGuard` serves a single process and the tests.
"""

from __future__ import annotations

import heapq
import time
from typing import Protocol, runtime_checkable

from app.webhooks.common import Clock
from app.webhooks.errors import WebhookRejected

__all__ = ["InMemoryReplayGuard", "ReplayGuard", "claim_delivery"]


@runtime_checkable
class ReplayGuard(Protocol):
    """Storage of already accepted delivery keys until they expire."""

    async def seen(self, key: str) -> bool:
        """True if ``key`` was remembered and has not expired yet."""
        ...

    async def remember(self, key: str, expires_at: float) -> bool:
        """Store ``key`` until ``expires_at`` (Unix seconds).

        Returns False if the key was already present and unexpired. A database implementation should
        make this an atomic insert (unique constraint / ``ON CONFLICT DO NOTHING``) so that two concurrent
        deliveries of the same key cannot both be accepted.
        """
        ...

    async def forget(self, key: str) -> None:
        """Drop ``key`` (the delivery was not processed; let the IdP's retry through)."""
        ...


class InMemoryReplayGuard:
    """Process-local :class:`ReplayGuard` bounded to ``max_entries`` keys.

    Expired keys are purged lazily; when the bound is still exceeded the keys closest to expiry are
    evicted first (they are the ones the timestamp window would reject soonest anyway).
    """

    def __init__(self, *, clock: Clock = time.time, max_entries: int = 100_000) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be positive")
        self._clock = clock
        self._max = max_entries
        self._keys: dict[str, float] = {}

    def __len__(self) -> int:
        return len(self._keys)

    async def seen(self, key: str) -> bool:
        expires = self._keys.get(key)
        if expires is None:
            return False
        if expires <= self._clock():
            del self._keys[key]
            return False
        return True

    async def remember(self, key: str, expires_at: float) -> bool:
        # No await inside: check-and-set is atomic with respect to other coroutines.
        now = self._clock()
        current = self._keys.get(key)
        if current is not None and current > now:
            return False
        self._keys[key] = expires_at
        if len(self._keys) > self._max:
            self._shrink(now)
        return True

    async def forget(self, key: str) -> None:
        self._keys.pop(key, None)

    def _shrink(self, now: float) -> None:
        for k in [k for k, exp in self._keys.items() if exp <= now]:
            del self._keys[k]
        excess = len(self._keys) - self._max
        if excess > 0:
            for k, _ in heapq.nsmallest(excess, self._keys.items(), key=lambda kv: kv[1]):
                del self._keys[k]


async def claim_delivery(guard: ReplayGuard, key: str, expires_at: float) -> None:
    """Remember ``key`` or raise ``WebhookRejected`` if this delivery was already accepted."""
    if await guard.seen(key) or not await guard.remember(key, expires_at):
        raise WebhookRejected("replayed delivery")
