"""Section 3: add one member to a 1k, 10k and 50k-member group with PATCH.

RFC 7644 §3.5.2: a PATCH that answers 200 returns the whole resource, so the plain PATCH's response
carries every member; ``?excludedAttributes=members`` (RFC 7644 §3.9) leaves them out, which is what a
client that does not need them should ask for. Both are measured, plus the GET of the whole group that
authentik's full sync does before its membership diff (``patch_compare_users``).
"""

from __future__ import annotations

import asyncio
import statistics
from typing import Any

from bench.common import PATCH_OP, dumps
from bench.load import client, timed
from bench.procs import Workdir
from bench.results import Results
from bench.seed import Seeded, seed
from bench.targets import LABELS, Target, ziti_target

SIZES = {"g1k": 1_000, "g10k": 10_000, "g50k": 50_000}
GOAL_MS = 20.0
VARIANTS = {
    "PATCH add 1 member (response: whole group)": "",
    "PATCH add 1 member ?excludedAttributes=members": "?excludedAttributes=members",
}


def add_one(member_id: str) -> bytes:
    return dumps(
        {
            "schemas": [PATCH_OP],
            "Operations": [{"op": "add", "path": "members", "value": [{"value": member_id}]}],
        }
    )


async def measure(
    target: Target, seeded: Seeded, pool: list[str], reps: dict[str, int]
) -> dict[tuple[str, str], Any]:
    """{(group, operation): (latency samples in ms, median response bytes, server CPU ms per request)}"""
    out: dict[tuple[str, str], Any] = {}
    async with client(target.base, target.headers) as http:
        for group, size in SIZES.items():
            group_id = seeded.group_ids[group]
            for variant, query in VARIANTS.items():
                samples, sizes = [], []
                # A warm-up request first, except where one request costs seconds (the whole-group responses).
                warm = 1 if query or size <= 1_000 else 0
                cpu = 0.0
                for rep in range(reps[variant] + warm):
                    if rep == warm:
                        cpu = target.server.cpu()
                    took, response = await timed(
                        http, "PATCH", f"/Groups/{group_id}{query}", add_one(pool.pop())
                    )
                    if response.status_code != 200:
                        raise RuntimeError(f"PATCH {group}: {response.status_code} {response.text[:300]}")
                    if rep >= warm:
                        samples.append(took * 1000)
                        sizes.append(len(response.content))
                cpu = (target.server.cpu() - cpu) / len(samples) * 1000
                out[(group, variant)] = (samples, statistics.median(sizes), cpu)
            samples, sizes = [], []
            warm = 1 if size <= 1_000 else 0
            cpu = 0.0
            for rep in range(reps["get"] + warm):
                if rep == warm:
                    cpu = target.server.cpu()
                took, response = await timed(http, "GET", f"/Groups/{group_id}")
                if response.status_code != 200:
                    raise RuntimeError(f"GET {group}: {response.status_code}")
                if rep >= warm:
                    samples.append(took * 1000)
                    sizes.append(len(response.content))
                    members = len(response.json().get("members", []))
            cpu = (target.server.cpu() - cpu) / len(samples) * 1000
            out[(group, "GET whole group")] = (samples, statistics.median(sizes), cpu)
            if members < size:
                raise RuntimeError(f"{group}: {members} members, expected at least {size}")
    return out


def run(results: Results, databases: list[str], workdir: Workdir, quick: bool, log: Any) -> None:
    section = results.section("groups", "3. Adding one member to a large group")
    reps = {
        list(VARIANTS)[0]: 2 if quick else 5,
        list(VARIANTS)[1]: 10 if quick else 40,
        "get": 1 if quick else 3,
    }
    section.note(
        f"Sequential requests, 1 client; samples per cell: {reps[list(VARIANTS)[0]]} (whole-group "
        f"response), {reps[list(VARIANTS)[1]]} (excludedAttributes), {reps['get']} (GET), after 1 "
        "warm-up each. Each PATCH adds a different user that is not yet a member."
    )
    section.note(f"Goal (product owner): median under {GOAL_MS:.0f} ms at 50k members.")
    measured: dict[str, dict[tuple[str, str], Any]] = {}
    pool_size = 3 * (sum(v for k, v in reps.items() if k != "get") + 2)
    if quick and len(databases) > 1:
        section.note(f"--quick: {databases[0]} only.")
    for db in databases[:1] if quick else databases:
        target = ziti_target(db, workdir, "groups")
        assert target.database_url is not None
        try:
            log(
                f"  groups: seeding {LABELS[target.name]} with "
                f"{max(SIZES.values()) + pool_size:,} users and 3 groups"
            )
            seeded = seed(target.database_url, "m", 0, max(SIZES.values()) + pool_size, groups=SIZES)
            pool = seeded.user_ids[max(SIZES.values()) :]
            target.start()
            measured[db] = asyncio.run(measure(target, seeded, pool, reps))
        finally:
            target.cleanup()
    ops = [*VARIANTS, "GET whole group"]
    table = section.table(
        "Median latency, ms (slowest sample in brackets); response size at 50k members",
        [
            "database",
            "operation",
            *[f"{n:,} members" for n in SIZES.values()],
            "response at 50k",
            f"goal <{GOAL_MS:.0f} ms at 50k",
        ],
    )
    for db, cells in measured.items():
        for op in ops:
            row: list[Any] = [db, op]
            for group, size in SIZES.items():
                samples, body, cpu = cells[(group, op)]
                median = statistics.median(samples)
                goal = ("<", GOAL_MS) if size == 50_000 and op != "GET whole group" else None
                section.metric("latency_median", median, "ms", goal=goal, database=db, op=op, members=size)
                section.metric("latency_max", max(samples), "ms", database=db, op=op, members=size)
                section.metric("response_bytes", body, "bytes", database=db, op=op, members=size)
                section.metric("server_cpu_per_request", cpu, "ms", database=db, op=op, members=size)
                row.append(f"{median:.1f} ({max(samples):.0f})")
            body_50k = cells[("g50k", op)][1]
            row.append(f"{body_50k / 1024:,.0f} KiB" if body_50k >= 10_240 else f"{body_50k / 1024:.1f} KiB")
            median_50k = statistics.median(cells[("g50k", op)][0])
            row.append("–" if op == "GET whole group" else ("met" if median_50k < GOAL_MS else "NOT met"))
            table.add(*row)
    cpu_table = section.table(
        "Server CPU per request, ms (10 ms clock resolution; less sensitive than latency to "
        "other load on the machine)",
        ["database", "operation", *[f"{n:,} members" for n in SIZES.values()]],
    )
    for db, cells in measured.items():
        for op in ops:
            cpu_table.add(db, op, *[cells[(group, op)][2] for group in SIZES])
