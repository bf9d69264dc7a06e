"""Section 1: SCIM create, get, ``userName eq`` filter, PATCH (replace displayName) and PUT, at 1 and 8
concurrent clients, ziti-scim (SQLite, PostgreSQL) side by side with scim2-server's in-memory server."""

from __future__ import annotations

import asyncio
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

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


ROUNDS = 3
"""Each cell is measured in this many rounds, the targets taking turns in each (in a rotating order), so
that a change in the machine's load during the run is shared by all targets instead of landing on one."""


@dataclass
class Plan:
    requests: int
    warmup: int


@dataclass
class Subject:
    """One compared server and the users it created (the pool the other operations work on)."""

    target: Target
    ids: dict[int, str] = field(default_factory=dict)
    emulator: Server | None = None

    @property
    def pool(self) -> list[tuple[int, str]]:
        return sorted(self.ids.items())

    def spec(self, op: str, prefix: str = "c") -> Callable[[int], tuple[str, str, bytes | None]]:
        if op == "create":
            return lambda i: ("POST", "/Users", dumps(user_body(prefix, i)))
        pool = self.pool
        if op == "get":
            return lambda i: ("GET", f"/Users/{pool[i % len(pool)][1]}", None)
        if op == "filter":

            def search(i: int) -> tuple[str, str, None]:
                query = urllib.parse.quote(f'userName eq "{user_name(prefix, pool[(i * 7919) % len(pool)][0])}"')
                return "GET", f"/Users?filter={query}", None

            return search
        if op == "patch":
            return lambda i: (
                "PATCH",
                f"/Users/{pool[i % len(pool)][1]}",
                dumps(replace_display_body(f"patched {i}")),
            )

        def put(i: int) -> tuple[str, str, bytes]:
            index, resource_id = pool[i % len(pool)]
            body = {"id": resource_id, **user_body(prefix, index, f"put {i}")}
            return "PUT", f"/Users/{resource_id}", dumps(body)

        return put

    async def settle(self, timeout: float = 120.0) -> None:
        """With provisioning on: wait until the writes measured so far are converged, so that converging
        them does not run into the next measurement (of this server or of another)."""
        if self.emulator is None:
            return
        deadline = time.perf_counter() + timeout
        async with httpx.AsyncClient(base_url=self.target.server.url, timeout=10) as http:
            while time.perf_counter() < deadline:
                text = (await http.get("/metrics")).text
                pending = [line for line in text.splitlines() if line.startswith("ziti_scim_pending_users ")]
                if pending and float(pending[0].split()[1]) == 0:
                    return
                await asyncio.sleep(0.1)


async def measure_cell(
    subjects: list[Subject], op: str, concurrency: int, plan: Plan, start: int, turn: int
) -> dict[str, LoadResult]:
    """One (operation, concurrency) cell for every subject, in :data:`ROUNDS` rounds taken in turns.

    Indices ``start ..`` are the same for every subject. ``LoadResult.server_cpu``: the server's CPU
    seconds over the cell (warm-up included).
    """
    out = {s.target.name: LoadResult(latencies=[], elapsed=0.0) for s in subjects}
    sizes = [plan.requests // ROUNDS + (1 if r < plan.requests % ROUNDS else 0) for r in range(ROUNDS)]
    index = start
    for round_number, size in enumerate(sizes):
        warmup = plan.warmup if round_number == 0 else 0
        shift = (turn + round_number) % len(subjects)
        for subject in subjects[shift:] + subjects[:shift]:
            keep = (lambda i, r, s=subject: s.ids.__setitem__(i, r.json()["id"])) if op == "create" else None
            cpu = subject.target.server.cpu()
            result = await run_load(
                subject.target.base,
                subject.target.headers,
                subject.spec(op),
                size,
                concurrency,
                expect=EXPECT[op],
                keep=keep,
                warmup=warmup,
                start=index,
            )
            total = out[subject.target.name]
            total.latencies += result.latencies
            total.elapsed += result.elapsed
            total.errors += result.errors
            total.first_error = total.first_error or result.first_error
            total.server_cpu += subject.target.server.cpu() - cpu
            await subject.settle()
        index += warmup + size
    return out


EXPECT = {"create": (201,), "get": (200,), "filter": (200,), "patch": (200, 204), "put": (200,)}


async def measure(subjects: list[Subject], plan: Plan) -> dict[str, dict[tuple[str, int], LoadResult]]:
    """Every cell, the subjects side by side; creates first (the other operations use their users)."""
    measured: dict[str, dict[tuple[str, int], LoadResult]] = {s.target.name: {} for s in subjects}
    turn = 0
    for op in OPS:
        start = 0
        for concurrency in CONCURRENCY:
            cell = await measure_cell(subjects, op, concurrency, plan, start, turn)
            for name, result in cell.items():
                measured[name][(op, concurrency)] = result
            start += plan.warmup + plan.requests
            turn += 1
    return measured


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
        "emulator in a separate process: every create is converged in the background (a PATCH of "
        "displayName and a PUT changing only displayName leave the identity as it is, so they are stored "
        "and answered 'synced' without a converge); what is still pending when a run ends is converged "
        "before the next run starts (of any server), and not counted in req/s (end-to-end convergence is "
        "measured in section 5)."
    )
    section.note(
        f"All servers run at once and are measured side by side: each cell is split into {ROUNDS} rounds and "
        "the servers take turns in each round (rotating who goes first); req/s = requests / time summed over "
        "the rounds. A change of the machine's load during the run hits every server alike."
    )
    section.note("The reference answers PATCH with 204 and no body; ziti-scim answers 200 with the resource.")
    names = [f"ziti-{db}" for db in databases] + [f"ziti-{db}-prov" for db in databases] + ["reference"]
    subjects: list[Subject] = []
    try:
        for name in names:
            log(f"  crud: starting {LABELS[name]}")
            emulator = None
            if name == "reference":
                target = reference_target()
            elif name.endswith("-prov"):
                emulator = Server("emulator", log_name="emulator-crud").start()
                db = name.removeprefix("ziti-").removesuffix("-prov")
                target = ziti_target(
                    db, workdir, f"crud-prov-{db}", "--ziti-url", emulator.url, "--max-in-flight", "8"
                )
                target.name = name
            else:
                target = ziti_target(name.removeprefix("ziti-"), workdir, f"crud-{name}")
            subjects.append(Subject(target, emulator=emulator))
            target.start()
        log(f"  crud: measuring {len(subjects)} servers side by side, {ROUNDS} rounds per cell")
        measured = asyncio.run(measure(subjects, plan))
    finally:
        for subject in subjects:
            subject.target.cleanup()
            if subject.emulator is not None:
                subject.emulator.stop()
    for name in names:
        for (op, concurrency), result in measured[name].items():
            labels: dict[str, Any] = {"target": name, "op": op, "concurrency": concurrency}
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
                    f"{name} {op} c={concurrency}: {result.errors} errors, first: {result.first_error}"
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
