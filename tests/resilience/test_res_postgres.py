"""Issue 6, resilience 2: PostgreSQL restarts in the middle of a sync.

The shared server cannot be restarted (other sessions use it), so the test gets its own database and
reaches it through a TCP proxy: the "restart" closes every connection, refuses new ones for a while,
and terminates the database's backends (``pg_terminate_backend``). Requests during the outage must get
a SCIM 503 with Retry-After (never a 500), nothing may be half-applied, and the sync converges after.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from app.server import create_app
from tests.conftest import PG_ADMIN_URL
from tests.resilience.res_proxy import TcpProxy
from tests.resilience.res_support import (
    ERROR,
    HEADERS,
    PATCH,
    Sync,
    assert_converged,
    fast_ziti_client,
    report,
    run_plan,
    running_controller,
    stack_config,
    wait_converged,
)
from tests.support.live import live_server

OUTAGE_SECONDS = 1.5


def _admin(query: str, *args: Any) -> Any:
    import asyncpg  # type: ignore[import-untyped]

    async def run() -> Any:
        connection = await asyncpg.connect(PG_ADMIN_URL)
        try:
            return await connection.fetch(query, *args)
        finally:
            await connection.close()

    return asyncio.run(run())


@pytest.fixture
def own_database(postgres_template: str) -> Iterator[str]:
    """A migrated database of this test only (``postgres_template`` skips without PostgreSQL)."""
    name = f"ziti_scim_res_{uuid.uuid4().hex[:12]}"
    _admin(f'CREATE DATABASE "{name}" TEMPLATE "{postgres_template}"')
    try:
        yield name
    finally:
        _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def terminate_backends(database: str) -> int:
    """Every backend of the test's database (from the admin database, as the test's own may refuse)."""
    rows = _admin(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
        database,
    )
    return len(rows)


def _is_scim_503(response: httpx.Response) -> bool:
    return (
        response.status_code == 503
        and "Retry-After" in response.headers
        and ERROR in response.json().get("schemas", [])
        and "Traceback" not in response.text
    )


@pytest.mark.postgres
@pytest.mark.parametrize(
    "outage",
    ["backends-terminated", "connections-refused"],
)
def test_postgres_restart_during_sync(outage: str, own_database: str, source_name: str) -> None:
    """``backends-terminated``: the backends are terminated and the database refuses new sessions
    (``ALLOW_CONNECTIONS false``, a PostgreSQL error); ``connections-refused``: as a restarting server,
    TCP connections are refused (the proxy stops listening). Regression for the latter: asyncpg's
    ConnectionRefusedError (an OSError SQLAlchemy does not wrap) used to be answered 500."""
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    started = time.monotonic()
    host, port = "127.0.0.1", 5432
    with TcpProxy((host, port)) as proxy, running_controller() as controller:
        controller.state.faults.latency = 0.02  # the worker is busy when the database goes away
        url = PG_ADMIN_URL.rsplit("@", 1)[0] + f"@127.0.0.1:{proxy.port}/{own_database}"
        app = create_app(
            stack_config(url, source_name, controller.url, deadline=0.2), ziti_client=fast_ziti_client(controller.url)
        )
        with live_server(app) as base:
            sync = Sync(f"{base}/scim/v2", domain=f"{source_name}.Example.COM")
            raw = httpx.Client(base_url=f"{base}/scim/v2", headers=HEADERS, timeout=30)
            try:
                run_plan(sync, rng, users=30, groups=3, changes=10, deletes=2, parallel=4)
                expected = sync.expected
                keys = sorted(expected.users)
                atomic_members = keys[:3]
                sync.create_group("atomic", [])
                atomic_id = expected.group_ids["atomic"]

                # Writes in flight when the database goes away: each is all or nothing.
                stop = threading.Event()
                inflight: list[tuple[str, int, bool]] = []

                def churn() -> None:
                    adding = True
                    while not stop.is_set():
                        ops = (
                            [{"op": "add", "path": "members",
                              "value": [{"value": expected.user_ids[k]} for k in atomic_members]}]
                            if adding
                            else [{"op": "remove", "path": f'members[value eq "{expected.user_ids[k]}"]'}
                                  for k in atomic_members]
                        )
                        try:
                            r = raw.patch(f"/Groups/{atomic_id}", json={"schemas": [PATCH], "Operations": ops})
                        except httpx.TransportError:
                            continue
                        inflight.append(("add" if adding else "remove", r.status_code, _is_scim_503(r)))
                        adding = not adding

                churner = threading.Thread(target=churn, daemon=True)
                churner.start()
                time.sleep(0.3)

                # The restart: connections dropped and refused, backends terminated.
                before = {k: (expected.users[k].roles, set(expected.groups[g]))
                          for k, g in [(keys[0], sorted(expected.groups)[0])]}
                if outage == "connections-refused":
                    proxy.stop()
                else:
                    _admin(f'ALTER DATABASE "{own_database}" ALLOW_CONNECTIONS false')
                terminated = terminate_backends(own_database)
                down_since = time.monotonic()
                probes = {
                    "create": lambda: raw.post("/Users", json=sync.user_spec("outage-new").resource()),
                    "patch-user": lambda: raw.patch(
                        f"/Users/{expected.user_ids[keys[0]]}",
                        json={"schemas": [PATCH],
                              "Operations": [{"op": "replace", "path": "roles", "value": [{"value": "outage"}]}]},
                    ),
                    "patch-group": lambda: raw.patch(
                        f"/Groups/{expected.group_ids[sorted(expected.groups)[0]]}",
                        json={"schemas": [PATCH], "Operations": [
                            {"op": "add", "path": "members", "value": [{"value": expected.user_ids[k]} for k in keys]}
                        ]},
                    ),
                    "put-user": lambda: raw.put(
                        f"/Users/{expected.user_ids[keys[1]]}",
                        json={**expected.users[keys[1]].resource(), "displayName": "outage"},
                    ),
                    "delete-user": lambda: raw.delete(f"/Users/{expected.user_ids[keys[2]]}"),
                    "get-user": lambda: raw.get(f"/Users/{expected.user_ids[keys[0]]}"),
                    "filter": lambda: raw.get("/Users", params={"filter": 'userName sw "u"'}),
                }
                answers: dict[str, list[int]] = {name: [] for name in probes}
                while time.monotonic() - down_since < OUTAGE_SECONDS:
                    for name, probe in probes.items():
                        response = probe()
                        assert _is_scim_503(response), f"{name} during the outage: {response.status_code} {response.text[:300]}"
                        answers[name].append(response.status_code)
                if outage == "connections-refused":
                    proxy.start()
                else:
                    _admin(f'ALTER DATABASE "{own_database}" ALLOW_CONNECTIONS true')
                time.sleep(0.5)
                stop.set()
                churner.join(timeout=30)

                # Nothing the outage refused was applied, and the in-flight writes were all or nothing.
                assert sync.find_id("Users", "userName", "outage-new") is None
                user0 = raw.get(f"/Users/{expected.user_ids[keys[0]]}").json()
                assert sorted(r["value"] for r in user0.get("roles", [])) == before[keys[0]][0]
                assert raw.get(f"/Users/{expected.user_ids[keys[1]]}").json()["displayName"] != "outage"
                assert raw.get(f"/Users/{expected.user_ids[keys[2]]}").status_code == 200
                group0 = raw.get(f"/Groups/{expected.group_ids[sorted(expected.groups)[0]]}").json()
                assert {m["value"] for m in group0.get("members", [])} == {
                    expected.user_ids[k] for k in before[keys[0]][1]
                }
                atomic = {m["value"] for m in raw.get(f"/Groups/{atomic_id}").json().get("members", [])}
                full = {expected.user_ids[k] for k in atomic_members}
                assert atomic in (set(), full), f"a group PATCH was half-applied: {len(atomic)} of {len(full)}"
                statuses = {status for _, status, _ in inflight}
                assert statuses <= {200, 503}, inflight
                assert all(ok for _, status, ok in inflight if status == 503)
                expected.groups["atomic"] = set(atomic_members) if atomic == full else set()

                # The IdP retries what was refused, then the sync goes on.
                sync.create_user(sync.user_spec("outage-new"))
                sync.set_roles(keys[0], ["outage"])
                sync.patch_members(sorted(expected.groups)[0], add=keys[3:6])
                sync.replace_user(keys[1], "after outage", ["vpn"])
                sync.delete_user(keys[2])
                run_plan(sync, rng, users=10, groups=1, changes=10, deletes=2, prefix="v")
                controller.state.faults.latency = 0
                recovered = time.monotonic()
                verdict = wait_converged(sync.client, controller, source_name, expected, timeout=60)
                converge_seconds = time.monotonic() - recovered
                assert_converged(verdict, controller, expected)
            finally:
                stop_event = locals().get("stop")
                if isinstance(stop_event, threading.Event):
                    stop_event.set()
                raw.close()
                sync.close()
    refused = sum(len(v) for v in answers.values())
    report(
        f"postgres-restart[{outage}]",
        operations=sync.operations + refused + len(inflight),
        refused_with_503=refused,
        inflight_writes=len(inflight),
        inflight_503=sum(1 for _, status, _ in inflight if status == 503),
        backends_terminated=terminated,
        users=verdict.users,
        identities_verified=verdict.identities_verified,
        duplicates=verdict.duplicates,
        leftovers=verdict.leftovers,
        half_applied=0,
        converged_after_s=round(converge_seconds, 1),
        total_s=round(time.monotonic() - started, 1),
        seed=seed,
    )
