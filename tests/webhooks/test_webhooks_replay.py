"""InMemoryReplayGuard semantics (the contract a database-backed guard must also meet)."""

from __future__ import annotations

import pytest

from app.webhooks import InMemoryReplayGuard, ReplayGuard, WebhookRejected
from app.webhooks.replay import claim_delivery
from tests.support.clock import FrozenClock


async def test_remember_seen_expiry_and_forget() -> None:
    clock = FrozenClock(1000)
    guard = InMemoryReplayGuard(clock=clock)
    assert isinstance(guard, ReplayGuard)
    assert not await guard.seen("a")
    assert await guard.remember("a", 1010)
    assert await guard.seen("a")
    assert not await guard.remember("a", 1020)  # already present: atomic insert fails
    clock.advance(10)
    assert not await guard.seen("a")  # expired at 1010
    assert await guard.remember("a", 1030)
    await guard.forget("a")
    assert not await guard.seen("a")
    await guard.forget("never-stored")


async def test_claim_delivery() -> None:
    guard = InMemoryReplayGuard(clock=FrozenClock(0))
    await claim_delivery(guard, "k", 100)
    with pytest.raises(WebhookRejected) as err:
        await claim_delivery(guard, "k", 100)
    assert (err.value.status, err.value.reason) == (401, "replayed delivery")


async def test_bounded_size_evicts_expired_then_soonest_expiring() -> None:
    clock = FrozenClock(0)
    guard = InMemoryReplayGuard(clock=clock, max_entries=3)
    await guard.remember("old", 5)
    await guard.remember("b", 100)
    await guard.remember("c", 200)
    clock.advance(10)  # "old" expired
    await guard.remember("d", 300)
    assert len(guard) == 3 and not await guard.seen("old")
    await guard.remember("e", 400)  # nothing expired: drop the one expiring first ("b")
    assert len(guard) == 3
    assert [await guard.seen(k) for k in ("b", "c", "d", "e")] == [False, True, True, True]
    with pytest.raises(ValueError):
        InMemoryReplayGuard(max_entries=0)
