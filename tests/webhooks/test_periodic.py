"""The loop shared by the IdP pulls and the webhook retry queue (app/webhooks/periodic.py)."""

from __future__ import annotations

import asyncio

from app.webhooks.periodic import Periodic


class Flaky(Periodic):
    interval = 0.01

    def __init__(self, first_delay: bool = False) -> None:
        super().__init__("flaky")
        self.first_delay = first_delay
        self.runs = 0
        self.ran_twice = asyncio.Event()

    async def run_once(self) -> None:
        self.runs += 1
        if self.runs == 2:
            self.ran_twice.set()
        if self.runs == 1:
            raise ConnectionError("database gone")  # an outage must not end the loop


async def test_an_error_in_one_run_does_not_end_the_loop_and_stop_ends_it() -> None:
    job = Flaky()
    job.start()
    await asyncio.wait_for(job.ran_twice.wait(), timeout=5)
    await job.stop()
    runs = job.runs
    await asyncio.sleep(0.05)
    assert runs >= 2 and job.runs == runs


async def test_first_delay_waits_one_interval_before_the_first_run() -> None:
    job = Flaky(first_delay=True)
    job.interval = 30.0
    job.start()
    await asyncio.sleep(0.05)
    assert job.runs == 0
    await job.stop()
