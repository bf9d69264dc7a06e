"""An injectable clock for the tests that pin "now" (signed timestamps, token expiry, retry delays)."""

from __future__ import annotations

__all__ = ["FrozenClock"]


class FrozenClock:
    """Injectable clock: returns ``now`` until moved."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
