"""The load generator: N requests from C concurrent clients (each its own ``httpx.AsyncClient`` with one
keep-alive connection), latency of every request measured from send to full response body."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from bench.common import SCIM_HEADERS

# (method, url relative to the base, body bytes or None)
RequestSpec = tuple[str, str, bytes | None]


@dataclass
class LoadResult:
    latencies: list[float]
    elapsed: float
    errors: int = 0
    first_error: str | None = None
    responses: list[Any] = field(default_factory=list)
    server_cpu: float = 0.0

    @property
    def count(self) -> int:
        return len(self.latencies)

    @property
    def throughput(self) -> float:
        return self.count / self.elapsed if self.elapsed > 0 else 0.0

    def percentile(self, q: float) -> float:
        """Nearest-rank percentile, in milliseconds."""
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        rank = max(0, min(len(ordered) - 1, math.ceil(q / 100 * len(ordered)) - 1))
        return ordered[rank] * 1000

    @property
    def p50(self) -> float:
        return self.percentile(50)

    @property
    def p99(self) -> float:
        return self.percentile(99)

    @property
    def mean_ms(self) -> float:
        return sum(self.latencies) / len(self.latencies) * 1000 if self.latencies else float("nan")


def client(base_url: str, headers: dict[str, str] | None = None, connections: int = 1) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=base_url,
        headers={**SCIM_HEADERS, **(headers or {})},
        timeout=httpx.Timeout(120.0),
        limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
    )


async def run_load(
    base_url: str,
    headers: dict[str, str],
    make: Callable[[int], RequestSpec],
    count: int,
    concurrency: int,
    *,
    expect: tuple[int, ...] = (200, 201),
    keep: Callable[[int, httpx.Response], Any] | None = None,
    warmup: int = 0,
    start: int = 0,
    deadline: float | None = None,
) -> LoadResult:
    """Send ``make(start .. start + warmup + count - 1)``; the first ``warmup`` requests are not measured.

    ``keep(index, response)`` is called for every measured response (e.g. to collect created ids).
    No new request starts after ``deadline`` (a ``time.perf_counter()`` value), if given.
    """
    clients = [client(base_url, headers) for _ in range(concurrency)]
    try:
        if warmup:
            await _drive(clients, make, range(start, start + warmup), expect, None, None, None)
        latencies: list[float] = []
        result = LoadResult(latencies=latencies, elapsed=0.0)
        began = time.perf_counter()
        await _drive(
            clients, make, range(start + warmup, start + warmup + count), expect, result, keep, deadline
        )
        result.elapsed = time.perf_counter() - began
        return result
    finally:
        await asyncio.gather(*(c.aclose() for c in clients))


async def _drive(
    clients: list[httpx.AsyncClient],
    make: Callable[[int], RequestSpec],
    indices: range,
    expect: tuple[int, ...],
    result: LoadResult | None,
    keep: Callable[[int, httpx.Response], Any] | None,
    deadline: float | None,
) -> None:
    iterator = iter(indices)

    async def worker(http: httpx.AsyncClient) -> None:
        for index in iterator:
            if deadline is not None and time.perf_counter() > deadline:
                return
            method, url, body = make(index)
            began = time.perf_counter()
            response = await http.request(method, url, content=body)
            took = time.perf_counter() - began
            if result is None:
                continue
            result.latencies.append(took)
            if response.status_code not in expect:
                result.errors += 1
                if result.first_error is None:
                    result.first_error = f"{method} {url} -> {response.status_code} {response.text[:300]}"
            elif keep is not None:
                keep(index, response)

    await asyncio.gather(*(worker(c) for c in clients))


async def timed(
    http: httpx.AsyncClient, method: str, url: str, body: bytes | None = None
) -> tuple[float, httpx.Response]:
    began = time.perf_counter()
    response = await http.request(method, url, content=body)
    return time.perf_counter() - began, response
