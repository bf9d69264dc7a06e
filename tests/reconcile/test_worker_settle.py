"""The worker looks for new users as soon as their source's pause (``create_settle``) ends.

A write marking only users without an identity wakes nobody (nothing of it can be due before the pause);
the worker is told when that pause ends instead, and its next look is then, not at its next poll.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import cast

import pytest

from app.reconcile.reconciler import Reconciler
from app.reconcile.worker import SETTLE_MARGIN, Worker


def _worker(**settles: float) -> Worker:
    settings = {name: SimpleNamespace(create_settle=seconds) for name, seconds in settles.items()}
    return Worker(cast(Reconciler, SimpleNamespace(settings=settings)), poll=5.0)


def test_the_next_look_is_at_the_end_of_the_pause_then_back_to_the_poll() -> None:
    worker = _worker(idp=0.4, other=0.0)
    assert worker._next_look(now=100.0) == pytest.approx(0.2)  # the poll: create_settle / 2
    worker.settling("idp", now=100.0)
    assert worker._next_look(now=100.0) == pytest.approx(0.2)  # the pause ends later than the poll
    assert worker._next_look(now=100.3) == pytest.approx(0.1 + SETTLE_MARGIN)
    worker.settling("idp", now=100.35)  # the source wrote again: its pause ends later
    assert worker._next_look(now=100.5) == pytest.approx(0.2)
    assert worker._next_look(now=100.6) == pytest.approx(0.15 + SETTLE_MARGIN)
    assert worker._next_look(now=100.8) == pytest.approx(0.2)  # past it: the poll again
    assert worker._next_look(now=100.7) == pytest.approx(0.2)  # and it is forgotten


def test_a_source_that_does_not_settle_changes_nothing() -> None:
    worker = _worker(idp=0.0)
    worker.settling("idp", now=100.0)
    worker.settling("unknown", now=100.0)
    assert worker._next_look(now=100.0) == pytest.approx(5.0)
