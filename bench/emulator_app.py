"""The controller emulator wrapped for the benchmark: counts every controller call, measures how many are
in flight at once, and answers ``/__bench/*`` (stats, reset, latency, convergence) for the bench process.

The counters live outside the emulator (an ASGI middleware around it), so they see exactly the requests
ziti-scim's controller client sends, including the ones the emulator answers with an error.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import MutableMapping
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ziti_emulator import EmulatorState, create_emulator_app


def template(path: str) -> str:
    """/edge/management/v1/identities/<id>/x -> /edge/management/v1/identities/{id}/x"""
    parts = path.split("/")
    if len(parts) > 5 and parts[1] == "edge":
        parts[5] = "{id}"
    return "/".join(parts)


class Meter:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.calls: Counter[str] = Counter()
        self.statuses: Counter[int] = Counter()
        self.in_flight = 0
        self.max_in_flight = 0
        self.busy_seconds = 0.0
        self.first_at: float | None = None
        self.last_at: float | None = None

    def snapshot(self) -> dict[str, Any]:
        return {
            "calls": dict(self.calls),
            "total": sum(self.calls.values()),
            "statuses": {str(k): v for k, v in self.statuses.items()},
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
            "busy_seconds": self.busy_seconds,
            "first_at": self.first_at,
            "last_at": self.last_at,
            "now": time.time(),
        }


class BenchEmulator:
    """ASGI app: /__bench/* for the bench, everything else counted and passed to the emulator."""

    def __init__(self, admin_password: str) -> None:
        self.emulator = create_emulator_app(admin_password=admin_password)
        self.state: EmulatorState = self.emulator.state.emulator
        self.meter = Meter()
        self.expected: dict[str, list[str]] = {}
        self.control = Starlette(
            routes=[
                Route("/__bench/stats", self.stats),
                Route("/__bench/reset", self.reset, methods=["POST"]),
                Route("/__bench/latency", self.latency, methods=["POST"]),
                Route("/__bench/expect", self.expect, methods=["POST"]),
                Route("/__bench/converged", self.converged),
            ]
        )

    async def stats(self, request: Request) -> JSONResponse:
        return JSONResponse(self.meter.snapshot())

    async def reset(self, request: Request) -> JSONResponse:
        self.meter.reset()
        return JSONResponse({"ok": True})

    async def latency(self, request: Request) -> JSONResponse:
        self.state.faults.latency = float((await request.json())["seconds"])
        return JSONResponse({"ok": True})

    async def expect(self, request: Request) -> JSONResponse:
        """Replace (or extend, with ?add=1) the expected {externalId: sorted roleAttributes}."""
        body = await request.json()
        if request.query_params.get("add") != "1":
            self.expected = {}
        self.expected.update({k: sorted(v) for k, v in body.items()})
        return JSONResponse({"expected": len(self.expected)})

    async def converged(self, request: Request) -> JSONResponse:
        """How many expected identities exist with exactly the expected role attributes."""
        with self.state.lock:
            by_external = {
                i.external_id: i for i in self.state.identities.values() if i.external_id in self.expected
            }
        matched = sum(
            1
            for external, roles in self.expected.items()
            if external in by_external and sorted(by_external[external].role_attributes) == roles
        )
        return JSONResponse(
            {
                "expected": len(self.expected),
                "present": len(by_external),
                "matched": matched,
                "identities": len(self.state.identities),
            }
        )

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.emulator(scope, receive, send)
            return
        path = str(scope["path"])
        if path.startswith("/__bench/"):
            await self.control(scope, receive, send)
            return
        meter = self.meter
        key = f"{scope['method']} {template(path)}"
        meter.calls[key] += 1
        meter.in_flight += 1
        meter.max_in_flight = max(meter.max_in_flight, meter.in_flight)
        started = time.perf_counter()
        meter.first_at = meter.first_at or time.time()

        async def counting_send(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                meter.statuses[int(message["status"])] += 1
            await send(message)

        try:
            await self.emulator(scope, receive, counting_send)
        finally:
            meter.in_flight -= 1
            meter.busy_seconds += time.perf_counter() - started
            meter.last_at = time.time()
