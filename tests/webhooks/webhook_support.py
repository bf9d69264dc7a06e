"""Helpers for the webhook protocol tests: recorded IdP traces (the frozen clock: tests/support/clock.py)."""

from __future__ import annotations

import json
from typing import Any

from tests.paths import WEBHOOK_TRACES

__all__ = ["TRACES", "load_trace", "trace_names"]

TRACES = WEBHOOK_TRACES


def load_trace(idp: str, name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((TRACES / idp / name).read_text(encoding="utf-8"))
    return data


def trace_names(idp: str, pattern: str = "*.json") -> list[str]:
    return sorted(p.name for p in (TRACES / idp).glob(pattern))
