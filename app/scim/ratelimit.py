"""Per-source rate limiting (token bucket), answered with 429 and ``Retry-After`` (RFC 6585 §4)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from scim2_models import SCIMException


class TooManyRequests(SCIMException):
    status = 429
    _default_detail = "Too many requests for this source; retry later"


class TokenBucket:
    def __init__(self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self.tokens = burst
        self.updated = clock()

    def take(self) -> float:
        """Take one token; return 0 if granted, else the seconds until one is available."""
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate


def retry_after(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))
