"""Section 4: create 10,000 users over loopback HTTP with 8 concurrent clients, and the resident memory
of the ziti-scim server process once 100,000 users are stored."""

from __future__ import annotations

import asyncio
import random
import urllib.parse
from typing import Any

from bench.common import dumps, user_body, user_name
from bench.load import LoadResult, run_load
from bench.procs import Workdir
from bench.results import Results
from bench.seed import seed
from bench.targets import LABELS, Target, reference_target, ziti_target

STORED = 100_000
RSS_GOAL_MB = 150.0
PREFIX = "b"


async def create_all(target: Target, count: int, warmup: int) -> tuple[LoadResult, list[str]]:
    ids: list[str] = []

    def create(i: int) -> tuple[str, str, bytes]:
        return "POST", "/Users", dumps(user_body(PREFIX, i))

    result = await run_load(
        target.base,
        target.headers,
        create,
        count,
        8,
        expect=(201,),
        warmup=warmup,
        keep=lambda i, r: ids.append(r.json()["id"]),
    )
    return result, ids


async def mixed_reads(target: Target, ids: list[str], stored: int, scale: int) -> list[LoadResult]:
    """What a running service sees: lookups, filters, list pages and creates, across the directory."""
    rng = random.Random(7)

    def get(i: int) -> tuple[str, str, None]:
        return "GET", f"/Users/{rng.choice(ids)}", None

    def search(i: int) -> tuple[str, str, None]:
        query = urllib.parse.quote(f'userName eq "{user_name(PREFIX, rng.randrange(stored))}"')
        return "GET", f"/Users?filter={query}", None

    def page(i: int) -> tuple[str, str, None]:
        return "GET", f"/Users?startIndex={1 + rng.randrange(stored - 200)}&count=200", None

    def create(i: int) -> tuple[str, str, bytes]:
        return "POST", "/Users", dumps(user_body("late", i))

    return [
        await run_load(target.base, target.headers, get, 3 * scale, 8, expect=(200,)),
        await run_load(target.base, target.headers, search, 3 * scale, 8, expect=(200,)),
        await run_load(target.base, target.headers, page, scale // 5, 2, expect=(200,)),
        await run_load(target.base, target.headers, create, scale, 8, expect=(201,)),
    ]


def run(results: Results, databases: list[str], workdir: Workdir, quick: bool, log: Any) -> None:
    section = results.section("bulk", "4. Bulk create with 8 clients, and memory with 100,000 users stored")
    count, warmup = (500, 30) if quick else (10_000, 100)
    scale = 30 if quick else 200
    pg_count = 200 if quick else 2_000
    section.note(
        f"{count:,} POST /Users with 8 concurrent clients after {warmup} warm-up creates"
        + (" (--quick: 500 instead of 10,000)" if quick else "")
        + f"; ziti-scim on PostgreSQL does {pg_count:,} (it is here for its memory; its write throughput "
        "is in section 1)."
    )
    section.note(
        f"Memory: the server keeps running after the creates, the database is topped up to {STORED:,} "
        f"users with bulk SQL, then it serves {3 * scale} GET by id, {3 * scale} userName filters, "
        f"{scale // 5} list pages of 200 and {scale} creates across the directory; VmRSS and VmHWM (peak) "
        "come from /proc/<pid>/status of the server process (PostgreSQL's own memory is not included)."
    )
    table = section.table(
        "POST /Users, 8 clients",
        ["server", "creates", "req/s", "p50 ms", "p99 ms", "errors", "server CPU ms/req", "RSS after, MB"],
    )
    memory = section.table(
        f"Server memory with {STORED:,} users stored (goal < {RSS_GOAL_MB:.0f} MB)",
        ["server", "RSS at start, MB", f"RSS with {STORED:,} users, MB", "peak (VmHWM), MB", "goal"],
    )
    targets = [ziti_target(db, workdir, "bulk") for db in databases] + [reference_target()]
    for target in targets:
        log(f"  bulk: {target.label}")
        target.start()
        try:
            start_rss = target.server.memory_kb()["VmRSS"] / 1024
            cpu = target.server.cpu()
            creates = pg_count if target.name == "ziti-postgres" else count
            result, ids = asyncio.run(create_all(target, creates, warmup))
            cpu_per = (target.server.cpu() - cpu) / (creates + warmup) * 1000
            after = target.server.memory_kb()["VmRSS"] / 1024
            labels: dict[str, Any] = {"target": target.name, "users": creates, "concurrency": 8}
            section.metric("throughput", result.throughput, "req/s", **labels)
            section.metric("latency_p50", result.p50, "ms", **labels)
            section.metric("latency_p99", result.p99, "ms", **labels)
            section.metric("errors", result.errors, "count", **labels)
            section.metric("server_cpu_per_request", cpu_per, "ms", **labels)
            section.metric("rss_after_creates", after, "MB", **labels)
            if result.errors:
                section.note(f"{target.name}: {result.errors} errors, first: {result.first_error}")
            table.add(
                LABELS[target.name],
                creates,
                result.throughput,
                result.p50,
                result.p99,
                result.errors,
                cpu_per,
                after,
            )
            if target.name == "reference":
                continue
            assert target.database_url is not None
            stored = creates + warmup
            log(f"  bulk: topping {LABELS[target.name]} up to {STORED:,} users")
            seeded = seed(target.database_url, PREFIX, stored, STORED - stored)
            all_ids = ids + seeded.user_ids
            reads = asyncio.run(mixed_reads(target, all_ids, STORED, scale))
            errors = sum(r.errors for r in reads)
            if errors:
                section.note(
                    f"{target.name}: {errors} errors in the mixed workload: "
                    f"{next(r.first_error for r in reads if r.errors)}"
                )
            status = target.server.memory_kb()
            rss, peak = status["VmRSS"] / 1024, status["VmHWM"] / 1024
            section.metric("rss_start", start_rss, "MB", target=target.name)
            section.metric(
                "rss_with_users", rss, "MB", goal=("<", RSS_GOAL_MB), target=target.name, users=STORED
            )
            section.metric("rss_peak", peak, "MB", goal=("<", RSS_GOAL_MB), target=target.name, users=STORED)
            memory.add(LABELS[target.name], start_rss, rss, peak, "met" if peak < RSS_GOAL_MB else "NOT met")
        finally:
            target.cleanup()
