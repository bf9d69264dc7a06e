"""CPU-heavy work run in a worker thread, with a short GIL switch interval while it runs.

Validating or publishing a 50,000-member group, or applying a PATCH of a thousand operations, takes
seconds of CPU. Run on the event loop it would stall every other request and the health probes; in a
worker thread it still holds the GIL, and the event loop gets it back only every switch interval
(Python's default: 5 ms), several times per request it serves. While such work runs the interval is
lowered to 1 ms, so that ``/healthz`` and the usual requests keep answering; it is restored when the
last one ends, because the extra GIL hand-overs cost CPU on every request otherwise (measured with
``bench``: a few percent more server CPU per request at 1 ms on ordinary traffic).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

SWITCH_INTERVAL = 0.001
_running = 0
_saved = 0.0


async def off_loop(function: Callable[..., T], *args: Any) -> T:
    """``function(*args)`` in a worker thread, the switch interval lowered meanwhile."""
    global _running, _saved
    if _running == 0:
        _saved = sys.getswitchinterval()
        sys.setswitchinterval(min(_saved, SWITCH_INTERVAL))
    _running += 1
    try:
        return await asyncio.to_thread(function, *args)
    finally:
        _running -= 1
        if _running == 0:
            sys.setswitchinterval(_saved)


async def off_loop_if(large: bool, function: Callable[..., T], *args: Any) -> T:
    """``function(*args)``: off the loop (:func:`off_loop`) when ``large``, else right here (for a
    usual-sized resource a thread hop costs more than the call itself)."""
    if large:
        return await off_loop(function, *args)
    return function(*args)
