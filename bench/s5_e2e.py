"""Section 5: end to end with the controller emulator — SCIM requests in, OpenZiti identities out.

The emulator runs in its own process behind a counting middleware (``bench/emulator_app.py``): every
controller call is counted by method and path template, and the number of calls in flight at once is
tracked. Convergence is read from the emulator: an identity counts once it exists with exactly the
expected role attributes.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import httpx

from bench.common import EMULATOR_PASSWORD, add_members_body, dumps, external_id, group_body, user_body
from bench.load import LoadResult, client, run_load, timed
from bench.procs import Server, Workdir
from bench.results import Results, Section
from bench.targets import LABELS, Target, ziti_target

IDENTITIES = "/edge/management/v1/identities"
AUTHENTICATE = "POST /edge/management/v1/authenticate"
MAX_BODY = 1024 * 1024
MAX_IN_FLIGHT = 8


class Controller:
    """The bench's view of the emulator: counters, latency knob, convergence."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.http = httpx.Client(base_url=server.url + "/__bench", timeout=60)

    def reset(self) -> None:
        self.http.post("/reset").raise_for_status()

    def latency(self, seconds: float) -> None:
        self.http.post("/latency", json={"seconds": seconds}).raise_for_status()

    def stats(self) -> dict[str, Any]:
        return dict(self.http.get("/stats").json())

    def expect(self, expected: dict[str, list[str]], add: bool = False) -> None:
        self.http.post(
            "/expect", params={"add": "1"} if add else None, content=json.dumps(expected)
        ).raise_for_status()

    def converged(self) -> dict[str, int]:
        return dict(self.http.get("/converged").json())

    def wait_converged(self, timeout: float) -> tuple[float | None, dict[str, int]]:
        """Poll until every expected identity matches; the time it did (None on timeout)."""
        deadline = time.perf_counter() + timeout
        while True:
            state = self.converged()
            now = time.perf_counter()
            if state["matched"] >= state["expected"]:
                return now, state
            if now > deadline:
                return None, state
            time.sleep(0.05)

    def wait_quiet(self, quiet: float = 1.5, timeout: float = 120.0) -> dict[str, Any]:
        """Wait until no controller call arrived for ``quiet`` seconds, then return the counters."""
        deadline = time.perf_counter() + timeout
        last = self.stats()
        since = time.perf_counter()
        while time.perf_counter() < deadline:
            time.sleep(0.25)
            stats = self.stats()
            if stats["total"] != last["total"] or stats["in_flight"]:
                last, since = stats, time.perf_counter()
            elif time.perf_counter() - since >= quiet:
                return stats
        return last

    def close(self) -> None:
        self.http.close()


def calls(stats: dict[str, Any]) -> tuple[int, int, Counter[str]]:
    """(controller calls excluding logins, logins, calls by kind)."""
    by_kind = Counter({k: v for k, v in stats["calls"].items()})
    logins = by_kind.pop(AUTHENTICATE, 0)
    return sum(by_kind.values()), logins, by_kind


@dataclass
class Stack:
    emulator: Server
    target: Target
    controller: Controller

    def stop(self) -> None:
        self.controller.close()
        self.target.cleanup()
        self.emulator.stop()


def start_stack(db: str, workdir: Workdir, name: str) -> Stack:
    emulator = Server("emulator", log_name=f"emulator-{name}").start()
    target = ziti_target(
        db,
        workdir,
        name,
        "--ziti-url",
        emulator.url,
        "--source-kind",
        "authentik",
        "--max-in-flight",
        str(MAX_IN_FLIGHT),
    )
    target.start()
    return Stack(emulator, target, Controller(emulator))


def describe(by_kind: Counter[str]) -> str:
    return ", ".join(f"{kind} ×{count}" for kind, count in by_kind.most_common()) or "none"


def _converge_metrics(
    section: Section,
    phase: str,
    began: float,
    done: float | None,
    state: dict[str, int],
    count: int,
    unit_name: str,
    **labels: Any,
) -> float | None:
    seconds = (done - began) if done is not None else None
    section.metric("time_to_converge", seconds, "s", phase=phase, **labels)
    section.metric("converged", state["matched"], "count", phase=phase, expected=state["expected"], **labels)
    if seconds:
        section.metric(f"{unit_name}_per_second", count / seconds, f"{unit_name}/s", phase=phase, **labels)
    if done is None:
        section.note(
            f"{phase}: NOT converged within the timeout ({state['matched']:,} of {state['expected']:,})."
        )
    return seconds


async def post_users(stack: Stack, prefix: str, count: int, concurrency: int) -> tuple[LoadResult, list[str]]:
    ids: dict[int, str] = {}

    def create(i: int) -> tuple[str, str, bytes]:
        return "POST", "/Users", dumps(user_body(prefix, i))

    result = await run_load(
        stack.target.base,
        stack.target.headers,
        create,
        count,
        concurrency,
        expect=(201,),
        keep=lambda i, r: ids.__setitem__(i, r.json()["id"]),
    )
    return result, [ids[i] for i in sorted(ids)]


def emulator_reference(count: int, concurrency: int) -> LoadResult:
    """The emulator's own identity-create rate: ``count`` creates sent straight to a fresh emulator process
    with ``concurrency`` clients, the bodies ziti-scim would send (name, externalId, tags, no roles)."""
    emulator = Server("emulator", log_name="emulator-reference").start()
    try:
        login = httpx.post(
            f"{emulator.url}/edge/management/v1/authenticate",
            params={"method": "password"},
            json={"username": "admin", "password": EMULATOR_PASSWORD},
            timeout=30,
        )
        login.raise_for_status()
        token = login.json()["data"]["token"]

        def create(i: int) -> tuple[str, str, bytes]:
            body = {
                "type": "User",
                "isAdmin": False,
                "name": f"reference{i:07d}@example.com",
                "externalId": external_id("reference", i),
                "authPolicyId": "default",
                "roleAttributes": [],
                "tags": {"managedBy": "ziti-scim", "scimSource": "bench", "scimId": str(i)},
            }
            return "POST", IDENTITIES, dumps(body)

        return asyncio.run(
            run_load(emulator.url, {"zt-session": token}, create, count, concurrency, expect=(201,))
        )
    finally:
        emulator.stop()


def patch_bodies(member_ids: list[str]) -> list[bytes]:
    """authentik's one-PATCH-per-group member push, split only if the body would exceed the 1 MiB limit."""
    bodies: list[bytes] = []
    chunk = len(member_ids)
    while True:
        bodies = [
            dumps(add_members_body(member_ids[i : i + chunk])) for i in range(0, len(member_ids), chunk)
        ]
        if all(len(b) <= MAX_BODY for b in bodies):
            return bodies
        chunk = (chunk + 1) // 2


def provisioning(results: Results, db: str, workdir: Workdir, quick: bool, log: Any) -> None:
    count = 200 if quick else 5_000
    section = results.section(
        "e2e",
        f"5a. End to end: {count:,} users provisioned, unchanged updates, {count:,} members added to a group",
    )
    if quick:
        section.note(f"--quick: {count:,} users and a {count:,}-member group instead of 5,000.")
    section.note(
        f"ziti-scim on {db}, source kind authentik (externalId = authentik's uid), controller emulator "
        f"in its own process, [ziti] max_in_flight = {MAX_IN_FLIGHT}. Controller calls are counted at "
        "the emulator; logins (POST /authenticate) are counted apart."
    )
    section.note(
        "The emulator checks name and externalId uniqueness with an index, as the real controller "
        "does: its own time is reported as 'emulator busy'."
    )
    table = section.table(
        "Provisioning",
        [
            "phase",
            "SCIM requests",
            "SCIM req/s",
            "p50 ms",
            "p99 ms",
            "converged in s",
            "items/s",
            "controller calls",
            "calls per item",
            "max in flight",
            "server CPU ms/item",
            "emulator busy s",
        ],
    )
    stack = start_stack(db, workdir, "e2e")
    ctl = stack.controller
    prefix = "e"
    try:
        # -- reference: the emulator alone ---------------------------------------------------------------
        log(f"  e2e: the emulator alone, {count:,} identity creates, 8 clients")
        reference = emulator_reference(count, 8)
        section.metric("emulator_create_rate", reference.throughput, "identities/s", phase="reference")
        table.add(
            f"reference: {count:,} identity creates sent straight to the emulator (8 clients)",
            reference.count,
            reference.throughput,
            reference.p50,
            reference.p99,
            None,
            reference.throughput,
            reference.count,
            1.0,
            None,
            None,
            None,
        )

        # -- A: creates ------------------------------------------------------------------------------
        log(f"  e2e: {count:,} users, 8 clients")
        ctl.expect({external_id(prefix, i): [] for i in range(count)})
        ctl.reset()
        began = time.perf_counter()
        cpu = stack.target.server.cpu()
        result, user_ids = asyncio.run(post_users(stack, prefix, count, 8))
        done, state = ctl.wait_converged(timeout=600)
        stats = ctl.wait_quiet()
        cpu = (stack.target.server.cpu() - cpu) / count * 1000
        total, logins, by_kind = calls(stats)
        seconds = _converge_metrics(section, "create", began, done, state, count, "users")
        section.metric("server_cpu_per_item", cpu, "ms", phase="create")
        if seconds:
            section.metric(
                "converged_vs_emulator",
                count / seconds / reference.throughput,
                "ratio",
                goal=(">=", 0.5),
                phase="create",
            )
            section.note(
                f"create: {count / seconds:,.0f} users converged per second, "
                f"{count / seconds / reference.throughput:.2f}× the emulator's own "
                f"{reference.throughput:,.0f} identity creates per second (goal ≥ 0.5×)."
            )
        section.metric("scim_throughput", result.throughput, "req/s", phase="create")
        section.metric("latency_p50", result.p50, "ms", phase="create")
        section.metric("latency_p99", result.p99, "ms", phase="create")
        section.metric("controller_calls", total, "count", phase="create")
        section.metric(
            "controller_calls_per_create", total / count, "calls", goal=("<=", 1.0), phase="create"
        )
        section.metric("controller_logins", logins, "count", phase="create")
        section.metric(
            "max_in_flight", stats["max_in_flight"], "count", goal=("<=", MAX_IN_FLIGHT), phase="create"
        )
        section.metric("errors", result.errors, "count", phase="create")
        section.note(f"create: controller calls: {describe(by_kind)}; logins: {logins}.")
        if result.errors:
            section.note(f"create: {result.errors} errors, first: {result.first_error}")
        table.add(
            f"create {count:,} users (8 clients)",
            result.count,
            result.throughput,
            result.p50,
            result.p99,
            seconds,
            count / seconds if seconds else None,
            total,
            total / count,
            stats["max_in_flight"],
            cpu,
            stats["busy_seconds"],
        )

        # -- B: unchanged PUT ---------------------------------------------------------------------------
        updates = min(count, 1_000)
        log(f"  e2e: {updates:,} unchanged PUTs")
        ctl.reset()
        cpu = stack.target.server.cpu()

        def put(i: int) -> tuple[str, str, bytes]:
            return "PUT", f"/Users/{user_ids[i]}", dumps({"id": user_ids[i], **user_body(prefix, i)})

        result = asyncio.run(
            run_load(stack.target.base, stack.target.headers, put, updates, 8, expect=(200,))
        )
        stats = ctl.wait_quiet()
        cpu = (stack.target.server.cpu() - cpu) / updates * 1000
        section.metric("server_cpu_per_item", cpu, "ms", phase="unchanged put")
        total, logins, by_kind = calls(stats)
        section.metric("scim_throughput", result.throughput, "req/s", phase="unchanged put")
        section.metric("latency_p50", result.p50, "ms", phase="unchanged put")
        section.metric("latency_p99", result.p99, "ms", phase="unchanged put")
        section.metric(
            "controller_calls_per_unchanged_update",
            total / updates,
            "calls",
            goal=("<=", 0.0),
            phase="unchanged put",
        )
        section.metric("errors", result.errors, "count", phase="unchanged put")
        if total:
            section.note(f"unchanged PUT: controller calls: {describe(by_kind)}.")
        table.add(
            f"PUT {updates:,} unchanged users (8 clients)",
            result.count,
            result.throughput,
            result.p50,
            result.p99,
            None,
            None,
            total,
            total / updates,
            stats["max_in_flight"],
            cpu,
            stats["busy_seconds"],
        )

        # -- C: one PATCH adding every user to a group, without and with controller latency ------------------
        roles: list[str] = []
        for latency in (0.0, 0.005):
            name = f"all-users-{int(latency * 1000)}ms"
            roles.append(name)
            log(f"  e2e: add {count:,} members to a group in one PATCH (+{latency * 1000:.0f} ms per call)")

            async def add_group(
                name: str, latency: float, cpu_box: list[float]
            ) -> tuple[float, list[int], list[int], int]:
                async with client(stack.target.base, stack.target.headers) as http:
                    response = await http.post("/Groups", content=dumps(group_body(name)))
                    response.raise_for_status()
                    group_id = response.json()["id"]
                    bodies = patch_bodies(user_ids)
                    ctl.reset()
                    ctl.latency(latency)
                    cpu_box.append(stack.target.server.cpu())
                    began = time.perf_counter()
                    statuses, sizes = [], []
                    for body in bodies:
                        took, response = await timed(http, "PATCH", f"/Groups/{group_id}", body)
                        statuses.append(response.status_code)
                        sizes.append(len(body))
                    return began, statuses, sizes, len(response.content)

            ctl.expect({external_id(prefix, i): roles for i in range(count)})
            cpu_box: list[float] = []
            began, statuses, sizes, response_size = asyncio.run(add_group(name, latency, cpu_box))
            responded = time.perf_counter()
            done, state = ctl.wait_converged(timeout=600)
            stats = ctl.wait_quiet()
            cpu = (stack.target.server.cpu() - cpu_box[0]) / count * 1000
            ctl.latency(0.0)
            total, logins, by_kind = calls(stats)
            phase = f"group add, controller latency {latency * 1000:.0f} ms"
            seconds = _converge_metrics(section, phase, began, done, state, count, "members")
            section.metric("patch_requests", len(statuses), "count", phase=phase, body_bytes=max(sizes))
            section.metric("patch_response_time", responded - began, "s", phase=phase)
            section.metric("patch_response_bytes", response_size, "bytes", phase=phase)
            section.metric("controller_calls", total, "count", phase=phase)
            section.metric("controller_calls_per_member", total / count, "calls", phase=phase)
            section.metric("server_cpu_per_item", cpu, "ms", phase=phase)
            section.metric(
                "max_in_flight", stats["max_in_flight"], "count", goal=("<=", MAX_IN_FLIGHT), phase=phase
            )
            if any(s != 200 for s in statuses):
                section.note(f"{phase}: PATCH statuses {statuses}")
            section.note(
                f"{phase}: {len(statuses)} PATCH request(s) of {max(sizes) / 1024:,.0f} KiB "
                f"({'within' if len(statuses) == 1 else 'split to stay under'} the 1 MiB body limit), "
                f"answered in {responded - began:.2f} s with a {response_size / 1024:,.0f} KiB body; "
                f"controller calls: {describe(by_kind)}."
            )
            table.add(
                f"PATCH +{count:,} members, controller +{latency * 1000:.0f} ms/call",
                len(statuses),
                None,
                (responded - began) * 1000,
                None,
                seconds,
                count / seconds if seconds else None,
                total,
                total / count,
                stats["max_in_flight"],
                cpu,
                stats["busy_seconds"],
            )
    finally:
        stack.stop()


SYNC_BUDGET: float | None = None
"""Seconds of SCIM requests the initial sync may take (None: the mode's default; 0: no limit)."""
USERS_SHARE = 0.55
"""Share of the budget the user creates may use, so that the group phase is always measured too."""


def initial_sync(results: Results, db: str, workdir: Workdir, quick: bool, log: Any) -> None:
    users, groups = (200, 10) if quick else (10_000, 200)
    budget = SYNC_BUDGET if SYNC_BUDGET is not None else (90.0 if quick else 420.0)
    section = results.section(
        "sync", f"5b. Initial sync shaped like authentik's full sync: {users:,} users, {groups} groups"
    )
    if quick:
        section.note(f"--quick: {users:,} users and {groups} groups instead of 10,000 and 200.")
    section.note(
        "One client, sequential requests as authentik's sync task sends them: GET /ServiceProviderConfig, "
        "POST every user, then for each group POST /Groups (no members) followed by one PATCH with one "
        "add operation per member. Each user is in 2 groups (about "
        f"{2 * users // groups:,} members per group). Converged = every identity exists with exactly its "
        "group names as role attributes. ziti-scim runs with its default create_settle (1 s): a new "
        "user's identity is created once the source paused, with its group-derived role attributes."
    )
    if budget:
        section.note(
            f"Time budget ({budget:.0f} s, --sync-budget): user creates stop after {USERS_SHARE:.0%} of it "
            "and "
            "the groups (with the users created so far) use the rest, so both phases are measured; if the "
            "budget ends the sync early, the table says how far it got, convergence is measured for what was "
            "sent and the time of the whole sync is projected from the measured rates."
        )
    stack = start_stack(db, workdir, "sync")
    ctl = stack.controller
    prefix = "s"
    membership: dict[int, list[int]] = {g: [] for g in range(groups)}
    for i in range(users):
        for g in sorted({i % groups, (i * 7 + 3) % groups}):
            membership[g].append(i)

    def expectation(created: int, groups_done: int) -> dict[str, list[str]]:
        roles: dict[int, list[str]] = {i: [] for i in range(created)}
        for g in range(groups_done):
            for i in membership[g]:
                if i < created:
                    roles[i].append(f"group-{g:03d}")
        return {external_id(prefix, i): sorted(r) for i, r in roles.items()}

    try:
        log(f"  sync: {users:,} users, {groups} groups, sequential (budget {budget or 'none'} s)")
        ctl.expect(expectation(users, groups))
        ctl.reset()
        began = time.perf_counter()
        deadline = began + budget if budget else None
        users_deadline = began + budget * USERS_SHARE if budget else None
        cpu = stack.target.server.cpu()
        phase_times: list[float] = []

        async def sync() -> tuple[LoadResult, list[float], list[float], int]:
            async with client(stack.target.base, stack.target.headers) as http:
                (await http.get("/ServiceProviderConfig")).raise_for_status()
            ids: dict[int, str] = {}

            def create(i: int) -> tuple[str, str, bytes]:
                return "POST", "/Users", dumps(user_body(prefix, i))

            created = await run_load(
                stack.target.base,
                stack.target.headers,
                create,
                users,
                1,
                expect=(201,),
                keep=lambda i, r: ids.__setitem__(i, r.json()["id"]),
                deadline=users_deadline,
            )
            phase_times.append(time.perf_counter())
            group_posts: list[float] = []
            group_patches: list[float] = []
            done = 0
            async with client(stack.target.base, stack.target.headers) as http:
                for g in range(groups):
                    if deadline is not None and time.perf_counter() > deadline:
                        break
                    took, response = await timed(http, "POST", "/Groups", dumps(group_body(f"group-{g:03d}")))
                    response.raise_for_status()
                    group_posts.append(took)
                    member_ids = [ids[i] for i in membership[g] if i < len(ids)]
                    for body in patch_bodies(member_ids) if member_ids else []:
                        took, patched = await timed(http, "PATCH", f"/Groups/{response.json()['id']}", body)
                        patched.raise_for_status()
                        group_patches.append(took)
                    done += 1
            return created, group_posts, group_patches, done

        created, group_posts, group_patches, groups_done = asyncio.run(sync())
        scim_done = time.perf_counter()
        users_seconds = phase_times[0] - began
        groups_seconds = scim_done - phase_times[0]
        complete = created.count == users and groups_done == groups
        projected = None
        if not complete:
            ctl.expect(expectation(created.count, groups_done))
            # Group PATCH cost grows with the members sent, which scale with the users created.
            projected = users_seconds * users / max(created.count, 1) + groups_seconds * (
                groups / max(groups_done, 1)
            ) * (users / max(created.count, 1))
            section.note(
                f"BUDGET REACHED: {created.count:,} of {users:,} users and {groups_done} of {groups} groups "
                f"were sent in {scim_done - began:.0f} s; the numbers below are for that part. At the "
                "measured "
                f"rates the whole sync would take about {projected:,.0f} s of SCIM requests (projected, "
                "not measured)."
            )
        done, state = ctl.wait_converged(timeout=120 if quick else 600)
        stats = ctl.wait_quiet()
        server_cpu = stack.target.server.cpu() - cpu
        total, logins, by_kind = calls(stats)
        sent_users = max(created.count, 1)
        seconds = _converge_metrics(section, "initial sync", began, done, state, sent_users, "users")
        requests = 1 + created.count + len(group_posts) + len(group_patches)
        patch_median = sorted(group_patches)[len(group_patches) // 2] * 1000 if group_patches else None
        section.metric("complete", int(complete), "bool", users=users, groups=groups)
        section.metric("users_sent", created.count, "count")
        section.metric("groups_sent", groups_done, "count")
        section.metric("scim_requests", requests, "count")
        section.metric("scim_phase_seconds", scim_done - began, "s")
        section.metric("user_phase_seconds", users_seconds, "s")
        section.metric("group_phase_seconds", groups_seconds, "s")
        section.metric("projected_full_sync_seconds", projected, "s", measured=False)
        section.metric("user_post_p50", created.p50, "ms")
        section.metric("user_post_p99", created.p99, "ms")
        section.metric("group_patch_median", patch_median, "ms")
        section.metric("controller_calls", total, "count")
        section.metric("controller_calls_per_user", total / sent_users, "calls", goal=("<=", 1.1))
        if seconds:
            section.metric("sync_users_per_second", sent_users / seconds, "users/s", goal=(">=", 200.0))
        section.metric("identity_creates", by_kind.get(f"POST {IDENTITIES}", 0), "count")
        section.metric("identity_patches", by_kind.get(f"PATCH {IDENTITIES}/{{id}}", 0), "count")
        section.metric("max_in_flight", stats["max_in_flight"], "count", goal=("<=", MAX_IN_FLIGHT))
        section.metric("server_cpu_per_user", server_cpu / sent_users * 1000, "ms")
        section.metric("emulator_busy", stats["busy_seconds"], "s")
        section.metric("errors", created.errors, "count")
        table = section.table("Initial sync", ["metric", "value"])
        table.add(
            "users / groups sent", f"{created.count:,} / {groups_done}" + ("" if complete else " (budget)")
        )
        table.add("SCIM requests (sequential)", requests)
        table.add(
            "time for the SCIM requests, s (users + groups)",
            f"{scim_done - began:,.1f} ({users_seconds:,.1f} + {groups_seconds:,.1f})",
        )
        if projected is not None:
            table.add(
                f"projected time for all {users:,} users / {groups} groups, s (not measured)", projected
            )
        table.add("time until every identity converged, s", seconds)
        table.add("users converged per second", sent_users / seconds if seconds else None)
        table.add("POST /Users p50 / p99, ms", f"{created.p50:.1f} / {created.p99:.1f}")
        table.add(
            f"group member PATCH (~{2 * len_sent(created.count, users, groups)} members) median, ms",
            patch_median,
        )
        table.add("controller calls (without logins)", total)
        table.add("controller calls per user", total / sent_users)
        table.add(
            "  identity creates / patches",
            f"{by_kind.get(f'POST {IDENTITIES}', 0):,} / {by_kind.get(f'PATCH {IDENTITIES}/{{id}}', 0):,}",
        )
        table.add("max controller calls in flight", stats["max_in_flight"])
        table.add("ziti-scim server CPU per user, ms", server_cpu / sent_users * 1000)
        table.add("emulator busy, s", stats["busy_seconds"])
        section.note(f"controller calls: {describe(by_kind)}; logins: {logins}.")
        if created.errors:
            section.note(f"{created.errors} user POST errors, first: {created.first_error}")
    finally:
        stack.stop()


def len_sent(created: int, users: int, groups: int) -> int:
    """Members per group sent when ``created`` of ``users`` were created."""
    return max(1, min(created, users) // groups)


def run(results: Results, databases: list[str], workdir: Workdir, quick: bool, log: Any) -> None:
    """Section 5a (``--only e2e``)."""
    db = databases[0]
    log(f"  e2e on {LABELS['ziti-' + db]}")
    provisioning(results, db, workdir, quick, log)


def run_sync(results: Results, databases: list[str], workdir: Workdir, quick: bool, log: Any) -> None:
    """Section 5b (``--only sync``)."""
    db = databases[0]
    log(f"  sync on {LABELS['ziti-' + db]}")
    initial_sync(results, db, workdir, quick, log)
