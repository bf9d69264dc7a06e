"""Section 2: do lookups stay flat as the directory grows? 1k, 10k and 100k users in SQLite, seeded
straight into the tables, measured over HTTP (one client, so that latency is the server's, not a queue)."""

from __future__ import annotations

import asyncio
import random
import urllib.parse
from typing import Any

from bench.common import external_id, user_name
from bench.load import LoadResult, run_load
from bench.procs import Workdir
from bench.results import Results
from bench.seed import Seeded, seed
from bench.targets import Target, ziti_target

PREFIX = "g"


async def measure(
    target: Target, seeded: Seeded, size: int, requests: int, warmup: int
) -> dict[str, LoadResult]:
    rng = random.Random(size)
    picks = [rng.randrange(size) for _ in range(requests + warmup)]

    def by_user_name(i: int) -> tuple[str, str, None]:
        query = urllib.parse.quote(f'userName eq "{user_name(PREFIX, picks[i])}"')
        return "GET", f"/Users?filter={query}", None

    def by_external_id(i: int) -> tuple[str, str, None]:
        query = urllib.parse.quote(f'externalId eq "{external_id(PREFIX, picks[i])}"')
        return "GET", f"/Users?filter={query}", None

    def by_id(i: int) -> tuple[str, str, None]:
        return "GET", f"/Users/{seeded.user_ids[picks[i]]}", None

    def first_page(i: int) -> tuple[str, str, None]:
        return "GET", "/Users?startIndex=1&count=100", None

    out: dict[str, LoadResult] = {}
    for name, make in (
        ("filter userName eq", by_user_name),
        ("filter externalId eq", by_external_id),
        ("GET /Users/{id}", by_id),
        ("list, first page of 100", first_page),
    ):
        # A list page costs ~100x a lookup: fewer of them keep the section short.
        count = requests if make is not first_page else max(10, requests // 4)
        cpu = target.server.cpu()
        out[name] = await run_load(target.base, target.headers, make, count, 1, expect=(200,), warmup=warmup)
        out[name].server_cpu = (target.server.cpu() - cpu) / (count + warmup)
    return out


def run(results: Results, databases: list[str], workdir: Workdir, quick: bool, log: Any) -> None:
    section = results.section("growth", "2. Lookups as the directory grows (SQLite)")
    sizes = [1_000, 10_000, 100_000]
    requests, warmup = (60, 10) if quick else (250, 30)
    section.note(
        f"{requests} requests per cell ({max(10, requests // 4)} for the list page), 1 client, random "
        "existing users; median (p50) and p99 latency. "
        "Users are seeded straight into the tables (bulk SQL, same rows as the storage writes)."
    )
    section.note(
        "The list page is informative: SCIM's totalResults needs a COUNT over the source's users, which "
        "grows with the directory by design."
    )
    target = ziti_target("sqlite", workdir, "growth")
    assert target.database_url is not None
    seeded = Seeded()
    measured: dict[int, dict[str, LoadResult]] = {}
    stored = 0
    for size in sizes:
        log(f"  growth: seeding to {size:,} users")
        seed(target.database_url, PREFIX, stored, size - stored, seeded=seeded)
        stored = size
        target.start()
        try:
            measured[size] = asyncio.run(measure(target, seeded, size, requests, warmup))
            memory = target.server.memory_kb()
        finally:
            target.stop()
        section.metric("server_rss", memory["VmRSS"] / 1024, "MB", users=size)
        for name, result in measured[size].items():
            section.metric("latency_p50", result.p50, "ms", op=name, users=size)
            section.metric("latency_p99", result.p99, "ms", op=name, users=size)
            section.metric("server_cpu_per_request", result.server_cpu * 1000, "ms", op=name, users=size)
            section.metric("errors", result.errors, "count", op=name, users=size)
            if result.errors:
                section.note(f"{name} at {size}: {result.errors} errors, first: {result.first_error}")
    section.metric("seed_seconds", seeded.seconds, "s", users=sizes[-1])
    table = section.table(
        "Median latency (p99 in brackets), ms; growth = median at 100k / median at 1k (flat is about 1)",
        ["lookup", *[f"{s:,} users" for s in sizes], "growth 100k/1k"],
    )
    for name in measured[sizes[0]]:
        cells = [f"{measured[s][name].p50:.2f} ({measured[s][name].p99:.1f})" for s in sizes]
        growth = measured[sizes[-1]][name].p50 / measured[sizes[0]][name].p50
        section.metric("growth_ratio", growth, "x", op=name, users_from=sizes[0], users_to=sizes[-1])
        table.add(name, *cells, growth)
    cpu_table = section.table(
        "Server CPU per request, ms (less sensitive than latency to other load on the machine)",
        ["lookup", *[f"{s:,} users" for s in sizes], "growth 100k/1k"],
    )
    for name in measured[sizes[0]]:
        per = [measured[s][name].server_cpu * 1000 for s in sizes]
        section.metric(
            "cpu_growth_ratio", per[-1] / per[0], "x", op=name, users_from=sizes[0], users_to=sizes[-1]
        )
        cpu_table.add(name, *per, per[-1] / per[0])
    target.cleanup()
