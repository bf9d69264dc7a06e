"""Helpers for the webhook protocol tests: recorded IdP traces, a frozen clock."""

from __future__ import annotations

import json
from typing import Any

from tests.paths import WEBHOOK_TRACES

TRACES = WEBHOOK_TRACES


def load_trace(idp: str, name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((TRACES / idp / name).read_text(encoding="utf-8"))
    return data


def trace_names(idp: str, pattern: str = "*.json") -> list[str]:
    return sorted(p.name for p in (TRACES / idp).glob(pattern))


class FrozenClock:
    """Injectable clock: returns ``now`` until moved."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
