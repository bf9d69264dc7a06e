"""A SCIM write whose transaction PostgreSQL rolls back to break a deadlock is run again, not answered 503.

Seen in a full run: a group created with its members marks them dirty while the reconciler settles some of
the same rows in another order; PostgreSQL aborts one transaction (SQLSTATE 40P01). Nothing of it was
applied, so :meth:`app.scim.router.SourceApplication.serve` runs the request again.
"""

from __future__ import annotations

import asyncio
import time

import asyncpg  # type: ignore[import-untyped]
import httpx
import pytest

from app.server import create_app
from tests.provisioning.test_lifecycle import GROUP, user
from tests.support.live import live_server
from tests.support.stack import TOKEN, make_stack_config
from ziti_emulator import EmulatorThread

pytestmark = pytest.mark.postgres

LOCK_ROW = "SELECT 1 FROM dirty WHERE source = $1 AND user_id = $2 FOR UPDATE"


async def _someone_waits_for_a_lock(connection: asyncpg.Connection, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    query = (
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
    )
    while not await connection.fetchval(query):
        assert time.monotonic() < deadline, "the SCIM write never waited for the row this test holds"
        await asyncio.sleep(0.02)


async def test_a_write_that_loses_a_deadlock_is_run_again(
    postgres_url: str, source_name: str, emulator: EmulatorThread
) -> None:
    # New users settle for a minute: their dirty rows stay in place, unclaimed, for the whole test.
    config = make_stack_config(postgres_url, source_name, emulator.url, create_settle=60.0)
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/scim+json"}
    with live_server(create_app(config)) as url:
        async with httpx.AsyncClient(base_url=f"{url}/scim/v2", headers=headers, timeout=60) as scim:
            ids = []
            for name in ("first", "second"):
                created = await scim.post("/Users", json=user(name, f"{name}@example.com"))
                assert created.status_code == 201, created.text
                ids.append(created.json()["id"])
            low, high = sorted(ids)
            other = await asyncpg.connect(postgres_url)
            try:
                # Only the SCIM write's backend may find the cycle (after the default 1 s): were this
                # session to check first, as a starved SCIM backend on a loaded machine lets it, this
                # transaction would be the one aborted and the write would never need to run again.
                await other.execute("SET deadlock_timeout = '60s'")
                transaction = other.transaction()
                await transaction.start()
                assert await other.fetchval(LOCK_ROW, source_name, high) == 1
                # The group's create marks its members in key order: it takes `low`, then waits for `high`.
                group = {"schemas": [GROUP], "displayName": "crew", "members": [{"value": i} for i in ids]}
                answer = asyncio.create_task(scim.post("/Groups", json=group))
                await _someone_waits_for_a_lock(other)
                # Now this transaction waits for `low`: a cycle. The SCIM write waited first, so
                # PostgreSQL's deadlock check (after deadlock_timeout) aborts it, and this lock is granted.
                assert await other.fetchval(LOCK_ROW, source_name, low) == 1
                await transaction.commit()
            finally:
                await other.close()
            created = await answer
            assert created.status_code == 201, created.text
            found = await scim.get("/Groups", params={"filter": 'displayName eq "crew"'})
            assert [g["id"] for g in found.json()["Resources"]] == [created.json()["id"]]
            assert sorted(m["value"] for m in created.json()["members"]) == sorted(ids)
