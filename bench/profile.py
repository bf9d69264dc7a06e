"""Profile the ziti-scim server process (py-spy) while the bench drives one scenario.

    python -m bench.profile SCENARIO [--db sqlite|postgres] [--seconds 15] [--top 30] [--clients N] [--out FILE]

Scenarios, without a controller (10,000 seeded users): ``get`` (GET /Users/{id}, 1 client), ``filter``
(``userName eq``, 1 client), ``patch`` (PATCH displayName, 8 clients), ``put`` (PUT of the whole user, 8
clients), ``create`` (POST /Users, 8 clients); with the controller emulator (a separate process) and
provisioning on, as section 1 of the bench measures them: ``create-provisioned`` (1 client),
``get-provisioned``, ``filter-provisioned``, ``patch-provisioned``, ``put-provisioned`` (8 clients, on
500 users created and converged first), ``group-add-provisioned`` (one PATCH adding 100 members),
``converge`` (the convergence worker alone: ``--users`` users, default 3,000, created by 8 clients and held
by ``create_settle``, profiled while their identities are created), ``sync-groups`` (the group phase of an initial sync: ``--users`` users created and still settling, then
``POST /Groups`` and one PATCH adding 100 of them, in turn, 1 client); ``group-get-50k`` (GET of a
50k-member group). ``--clients N`` overrides the number of clients.
Needs ``py-spy`` (``pip install py-spy``). Prints the functions with the most samples, inclusive and
self; the raw collapsed stacks are written to ``--out`` (flamegraph.pl / speedscope can read them).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import dumps, external_id, group_body, replace_display_body, user_body, user_name
from bench.load import client, run_load, timed
from bench.procs import Server, Workdir
from bench.s5_e2e import Stack, patch_bodies, start_stack
from bench.seed import seed
from bench.targets import Target, ziti_target

OUTER = (
    "runpy",
    "bench/serve.py",
    "uvicorn/main.py",
    "uvicorn/server.py",
    "uvicorn/_compat.py",
    "asyncio/runners.py",
    "asyncio/base_events.py",
    "threading.py",
)
"""Frames every sample goes through, left out of the inclusive list."""


def summarize(path: Path, top: int) -> str:
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        samples = int(count)
        total += samples
        frames = stack.split(";")
        own[frames[-1]] += samples
        for frame in dict.fromkeys(f.rsplit(":", 1)[0] for f in frames):
            if not any(part in frame for part in OUTER):
                inclusive[frame] += samples
    lines = [f"{total} samples", "-- inclusive (function (file)) --"]
    lines += [f"{100 * n / total:5.1f}%  {f}" for f, n in inclusive.most_common(top)]
    lines += ["-- self (function (file:line)) --"]
    lines += [f"{100 * n / total:5.1f}%  {f}" for f, n in own.most_common(top)]
    return "\n".join(lines)


def record(server: Server, seconds: float, out: Path, gil: bool = False) -> subprocess.Popen[bytes]:
    """py-spy on ``server``; ``gil``: only the thread holding the GIL (where CPU goes, not who waits)."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    process = subprocess.Popen(
        [
            spy,
            "record",
            "-p",
            str(server.pid),
            "-d",
            str(int(seconds)),
            "-r",
            "200",
            "-f",
            "raw",
            "-o",
            str(out),
            "--nonblocking",
            *(["--gil"] if gil else []),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(1.0)
    return process


SCENARIOS = (
    "get",
    "filter",
    "patch",
    "put",
    "create",
    "create-provisioned",
    "get-provisioned",
    "filter-provisioned",
    "patch-provisioned",
    "put-provisioned",
    "group-add-provisioned",
    "sync-groups",
    "converge",
    "group-get-50k",
)
DEFAULT_CLIENTS = {"get": 1, "filter": 1, "create-provisioned": 1, "sync-groups": 1}
"""Concurrent clients of each request scenario when ``--clients`` is not given (otherwise 8)."""
POOL = 500
"""Users created (and converged) before a provisioned get/filter/patch/put scenario."""


def requests_of(scenario: str, context: dict[str, Any]) -> Callable[[int], tuple[str, str, bytes | None]]:
    """The i-th request of a scenario (the same shapes as section 1 of the bench)."""
    kind = scenario.removesuffix("-provisioned")
    if kind == "create":
        return lambda i: ("POST", "/Users", dumps(user_body("prof", i)))
    pool: list[tuple[int, str]] = context["pool"]
    prefix: str = context["prefix"]
    if kind == "get":
        return lambda i: ("GET", f"/Users/{pool[i % len(pool)][1]}", None)
    if kind == "filter":

        def search(i: int) -> tuple[str, str, None]:
            query = urllib.parse.quote(f'userName eq "{user_name(prefix, pool[(i * 7919) % len(pool)][0])}"')
            return "GET", f"/Users?filter={query}", None

        return search
    if kind == "patch":
        return lambda i: ("PATCH", f"/Users/{pool[i % len(pool)][1]}", dumps(replace_display_body(f"p {i}")))

    def put(i: int) -> tuple[str, str, bytes]:
        index, resource_id = pool[i % len(pool)]
        return "PUT", f"/Users/{resource_id}", dumps({"id": resource_id, **user_body(prefix, index, f"put {i}")})

    return put


async def drive(
    scenario: str, target: Target, context: dict[str, Any], until: float, clients: int | None = None
) -> str:
    done = 0
    if scenario == "group-add-provisioned":
        ids, group = context["ids"], context["group"]
        async with client(target.base, target.headers) as http:
            while time.perf_counter() < until and done + 100 <= len(ids):
                for body in patch_bodies(ids[done : done + 100]):
                    await timed(http, "PATCH", f"/Groups/{group}", body)
                done += 100
    elif scenario == "sync-groups":
        ids = context["ids"]
        posts: list[float] = []
        patches: list[float] = []
        async with client(target.base, target.headers) as http:
            while time.perf_counter() < until:
                took, response = await timed(http, "POST", "/Groups", dumps(group_body(f"sync-{done:04d}")))
                posts.append(took)
                members = [ids[(done * 100 + k * 7) % len(ids)] for k in range(100)]
                for body in patch_bodies(list(dict.fromkeys(members))):
                    took, _ = await timed(http, "PATCH", f"/Groups/{response.json()['id']}", body)
                    patches.append(took)
                done += 1
        return (
            f"{done} groups (POST p50 {sorted(posts)[len(posts) // 2] * 1000:.1f} ms, "
            f"PATCH +100 members p50 {sorted(patches)[len(patches) // 2] * 1000:.1f} ms)"
        )
    elif scenario == "group-get-50k":
        async with client(target.base, target.headers) as http:
            while time.perf_counter() < until:
                await timed(http, "GET", f"/Groups/{context['group']}")
                done += 1
    else:
        concurrency = clients or DEFAULT_CLIENTS.get(scenario, 8)
        make = requests_of(scenario, context)
        expect = (201,) if scenario.startswith("create") else (200,)
        while time.perf_counter() < until:
            result = await run_load(
                target.base, target.headers, make, 50 * concurrency, concurrency, start=done, expect=expect
            )
            assert result.errors == 0, result.first_error
            done += result.count
    return f"{done} operations"


async def create_users(target: Target, prefix: str, count: int) -> list[tuple[int, str]]:
    """``count`` users created through SCIM by 8 clients: (index, id) of each, in index order."""
    created: list[tuple[int, str]] = []
    result = await run_load(
        target.base,
        target.headers,
        lambda i: ("POST", "/Users", dumps(user_body(prefix, i))),
        count,
        8,
        expect=(201,),
        keep=lambda i, r: created.append((i, r.json()["id"])),
    )
    assert result.errors == 0, result.first_error
    return sorted(created)


async def create_pool(target: Target, context: dict[str, Any]) -> None:
    """:data:`POOL` users created through SCIM (a provisioned scenario's users)."""
    context["pool"], context["prefix"] = await create_users(target, "pp", POOL), "pp"


def profile_converge(stack: Stack, args: argparse.Namespace) -> int:
    """Create ``args.users`` users (held: their source has not paused yet), then profile the server
    while the worker creates their identities; print the converge's CPU per user."""
    count = args.users or 3_000
    stack.controller.expect({external_id("cv", i): [] for i in range(count)})
    stack.controller.reset()
    asyncio.run(create_users(stack.target, "cv", count))
    spy = record(stack.target.server, args.seconds, args.out, args.gil)
    began, cpu = time.perf_counter(), stack.target.server.cpu()
    done, state = stack.controller.wait_converged(timeout=600)
    elapsed, cpu = time.perf_counter() - began, stack.target.server.cpu() - cpu
    print(f"{state['matched']:,} of {count:,} users converged in {elapsed:.1f} s ({count / elapsed:.0f}/s);",
          f"server CPU {1000 * cpu / count:.2f} ms per user" + ("" if done else " (NOT converged)"))
    spy.wait()
    print(summarize(args.out, args.top))
    print(f"raw stacks: {args.out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile")
    parser.add_argument("scenario", choices=SCENARIOS)
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument(
        "--clients", type=int, help="concurrent clients (default 8; 1 for get, filter, create-provisioned, sync-groups)"
    )
    parser.add_argument(
        "--users",
        type=int,
        default=None,
        help="users created before sync-groups (default 10,000) or converge (default 3,000)",
    )
    parser.add_argument(
        "--gil", action="store_true", help="sample only the thread holding the GIL (CPU, not waiting)"
    )
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "ziti-scim-profile.txt")
    args = parser.parse_args(argv)
    workdir = Workdir()
    context: dict[str, Any] = {}
    stack = None
    try:
        if args.scenario == "sync-groups":
            # The users stay settling for the whole profile, as during an initial sync's group phase.
            os.environ["ZITI_SCIM_BENCH_OPTIONS"] = json.dumps({"create_settle": 60})
        if args.scenario.endswith("provisioned") or args.scenario in ("sync-groups", "converge"):
            stack = start_stack(args.db, workdir, "profile")
            target = stack.target
            if args.scenario == "sync-groups":
                context["ids"] = [user_id for _, user_id in asyncio.run(create_users(target, "sg", args.users or 10_000))]
            if args.scenario == "group-add-provisioned":

                async def prepare() -> None:
                    context["ids"] = [user_id for _, user_id in await create_users(target, "pm", 1000)]
                    async with client(target.base, target.headers) as http:
                        response = await http.post(
                            "/Groups",
                            content=dumps(
                                {
                                    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                                    "displayName": "prof",
                                }
                            ),
                        )
                        assert response.status_code == 201, response.text
                        context["group"] = response.json()["id"]

                asyncio.run(prepare())
                stack.controller.wait_quiet()
            elif args.scenario.endswith("provisioned") and args.scenario != "create-provisioned":
                asyncio.run(create_pool(target, context))
                stack.controller.wait_quiet()
        else:
            target = ziti_target(args.db, workdir, "profile")
            assert target.database_url is not None
            if args.scenario == "group-get-50k":
                seeded = seed(target.database_url, "pg", 0, 50_000, groups={"g": 50_000})
                context["group"] = seeded.group_ids["g"]
            else:
                ids = seed(target.database_url, "pu", 0, 10_000).user_ids
                context["pool"], context["prefix"] = list(enumerate(ids)), "pu"
            target.start()
        if args.scenario == "converge":
            assert stack is not None
            return profile_converge(stack, args)
        spy = record(target.server, args.seconds, args.out, args.gil)
        began, cpu = time.perf_counter(), target.server.cpu()
        done = asyncio.run(drive(args.scenario, target, context, began + args.seconds - 1.5, args.clients))
        elapsed, cpu = time.perf_counter() - began, target.server.cpu() - cpu
        count = int(done.split()[0])
        print(done, "in", f"{elapsed:.1f} s", f"({count / elapsed:.0f}/s);",
              f"server CPU {1000 * cpu / max(count, 1):.2f} ms per operation")
        spy.wait()
        print(summarize(args.out, args.top))
        print(f"raw stacks: {args.out}")
    finally:
        if stack is not None:
            stack.stop()
        else:
            target.cleanup()
        workdir.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
