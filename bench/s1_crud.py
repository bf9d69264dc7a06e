"""Section 1: SCIM create, get, ``userName eq`` filter, PATCH (replace displayName) and PUT, at 1 and 8
concurrent clients, ziti-scim (SQLite, PostgreSQL) side by side with scim2-server's in-memory server."""

from __future__ import annotations

import asyncio
import urllib.parse
from dataclasses import dataclass
from typing import Any

from bench.common import dumps, replace_display_body, user_body, user_name
from bench.load import LoadResult, run_load
from bench.procs import Server, Workdir
from bench.results import Results
from bench.targets import LABELS, Target, reference_target, ziti_target

OPS = ("create", "get", "filter", "patch", "put")
SHORT = {
    "ziti-sqlite": "SQLite",
    "ziti-postgres": "PG",
    "ziti-sqlite-prov": "SQLite+prov",
    "ziti-postgres-prov": "PG+prov",
    "reference": "ref",
}
CONCURRENCY = (1, 8)


@dataclass
class Plan:
    requests: int
    warmup: int


async def measure_target(target: Target, plan: Plan) -> dict[tuple[str, int], LoadResult]:
    """Every (operation, concurrency) cell; ``LoadResult.server_cpu``: the server's CPU seconds in it."""
    prefix = "c"
    ids: dict[int, str] = {}
    out: dict[tuple[str, int], LoadResult] = {}

    def keep(index: int, response: Any) -> None:
        ids[index] = response.json()["id"]

    def create(i: int) -> tuple[str, str, bytes]:
        return "POST", "/Users", dumps(user_body(prefix, i))

    next_index = 0
    for concurrency in CONCURRENCY:
        cpu = target.server.cpu()
        result = await run_load(
            target.base,
            target.headers,
            create,
            plan.requests,
            concurrency,
            expect=(201,),
            keep=keep,
            warmup=plan.warmup,
            start=next_index,
        )
        result.server_cpu = target.server.cpu() - cpu
        next_index += plan.warmup + plan.requests
        out[("create", concurrency)] = result
    pool = sorted(ids.items())

    def get(i: int) -> tuple[str, str, None]:
        return "GET", f"/Users/{pool[i % len(pool)][1]}", None

    def search(i: int) -> tuple[str, str, None]:
        query = urllib.parse.quote(f'userName eq "{user_name(prefix, pool[(i * 7919) % len(pool)][0])}"')
        return "GET", f"/Users?filter={query}", None

    def patch(i: int) -> tuple[str, str, bytes]:
        return "PATCH", f"/Users/{pool[i % len(pool)][1]}", dumps(replace_display_body(f"patched {i}"))

    def put(i: int) -> tuple[str, str, bytes]:
        index, resource_id = pool[i % len(pool)]
        return (
            "PUT",
            f"/Users/{resource_id}",
            dumps({"id": resource_id, **user_body(prefix, index, f"put {i}")}),
        )

    for op, make, expect in (
        ("get", get, (200,)),
        ("filter", search, (200,)),
        ("patch", patch, (200, 204)),
        ("put", put, (200,)),
    ):
        offset = 0
        for concurrency in CONCURRENCY:
            cpu = target.server.cpu()
            out[(op, concurrency)] = await run_load(
                target.base,
                target.headers,
                make,
                plan.requests,
                concurrency,
                expect=expect,
                warmup=plan.warmup,
                start=offset,
            )
            out[(op, concurrency)].server_cpu = target.server.cpu() - cpu
            offset += plan.warmup + plan.requests
    return out


def run(results: Results, databases: list[str], workdir: Workdir, quick: bool, log: Any) -> None:
    section = results.section("crud", "1. SCIM operations: ziti-scim vs scim2-server's in-memory reference")
    plan = Plan(requests=60 if quick else 300, warmup=10 if quick else 30)
    section.note(
        f"{plan.requests} measured requests per cell after {plan.warmup} warm-up requests; each client is "
        "an httpx.AsyncClient with one keep-alive connection; the server runs in its own process."
        + (" --quick: with 60 samples, p99 is the slowest sample." if quick else "")
    )
    section.note(
        "ziti-scim (SQLite) / (PostgreSQL) run without a [ziti] controller (SCIM storage only, the same "
        "work as the reference); '(…, provisioning)' runs with provisioning on against the controller "
        "emulator in a separate process: every create, PATCH and PUT is converged in the background while "
        "the load runs (end-to-end convergence is measured in section 5)."
    )
    section.note("The reference answers PATCH with 204 and no body; ziti-scim answers 200 with the resource.")
    names = [f"ziti-{db}" for db in databases] + [f"ziti-{db}-prov" for db in databases] + ["reference"]
    measured: dict[str, dict[tuple[str, int], LoadResult]] = {}
    for name in names:
        log(f"  crud: {LABELS[name]}")
        emulator = None
        if name == "reference":
            target = reference_target()
        elif name.endswith("-prov"):
            emulator = Server("emulator", log_name="emulator-crud").start()
            db = name.removeprefix("ziti-").removesuffix("-prov")
            target = ziti_target(db, workdir, "crud-prov", "--ziti-url", emulator.url, "--max-in-flight", "8")
            target.name = name
        else:
            target = ziti_target(name.removeprefix("ziti-"), workdir, "crud")
        target.start()
        try:
            measured[name] = asyncio.run(measure_target(target, plan))
        finally:
            target.cleanup()
            if emulator is not None:
                emulator.stop()
        for (op, concurrency), result in measured[target.name].items():
            labels: dict[str, Any] = {"target": target.name, "op": op, "concurrency": concurrency}
            section.metric("throughput", result.throughput, "req/s", **labels)
            section.metric("latency_p50", result.p50, "ms", **labels)
            section.metric("latency_p99", result.p99, "ms", **labels)
            section.metric(
                "server_cpu_per_request",
                result.server_cpu / (result.count + plan.warmup) * 1000,
                "ms",
                **labels,
            )
            section.metric("errors", result.errors, "count", **labels)
            if result.errors:
                section.note(
                    f"{target.name} {op} c={concurrency}: {result.errors} errors, first: {result.first_error}"
                )
    columns = ["operation", "clients"]
    for name in names:
        short = SHORT[name]
        columns += [f"{short} req/s", f"{short} p50 ms", f"{short} p99 ms"]
    zitis = [n for n in names if n != "reference"]
    columns += [f"{SHORT[n]}/ref req/s" for n in zitis]
    table = section.table(
        "Throughput and latency (ratio = ziti-scim / reference; >1 means ziti-scim is faster)", columns
    )
    cpu_table = section.table(
        "Server CPU per request (ms of the server process's user+system time, warm-up included; "
        "independent of the client's own cost)",
        ["operation", "clients", *[LABELS[n] for n in names], *[f"{LABELS[n]} / reference" for n in zitis]],
    )
    for op in OPS:
        for concurrency in CONCURRENCY:
            per = {
                n: measured[n][(op, concurrency)].server_cpu / (plan.requests + plan.warmup) * 1000
                for n in names
            }
            cpu_table.add(
                op, concurrency, *[per[n] for n in names], *[per[n] / per["reference"] for n in zitis]
            )
    for op in OPS:
        for concurrency in CONCURRENCY:
            row: list[Any] = [op, concurrency]
            for name in names:
                r = measured[name][(op, concurrency)]
                row += [r.throughput, r.p50, r.p99]
            reference = measured["reference"][(op, concurrency)].throughput
            for name in zitis:
                ratio = (
                    measured[name][(op, concurrency)].throughput / reference if reference else float("nan")
                )
                section.metric(
                    "throughput_ratio_vs_reference", ratio, "x", target=name, op=op, concurrency=concurrency
                )
                row.append(ratio)
            table.add(*row)
