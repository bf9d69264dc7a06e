"""An injectable clock for the tests that pin "now" (signed timestamps, token expiry, retry delays, leases)."""

from __future__ import annotations

__all__ = ["FrozenClock"]


class FrozenClock:
    """Injectable clock: returns ``now`` until moved. Called (``clock()``) where a clock function is
    injected, or in place of the ``time`` module where only ``time.time()`` is read (``app.store.queue``)."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def time(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
