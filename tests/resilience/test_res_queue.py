"""Issue 6, resilience 1 (found by the controller-slow scenario): the work queue's lease renewal must not
stall a user that changed while it was being converged."""

from __future__ import annotations

import time

from sqlalchemy import insert, update

from app.store import queue
from app.store.db import Database
from app.store.tables import dirty


async def test_a_renewal_landing_after_the_release_does_not_stall_the_user(
    database_url: str, source_name: str
) -> None:
    """Regression (found by the controller-slow scenario): a lease renewal whose UPDATE lands after
    finish/retry_later released the claim must not claim the row again, or the user stalls for
    LEASE_SECONDS (20 s)."""
    db = Database(database_url)
    try:
        async with db.transaction(write=True) as conn:
            await conn.execute(
                insert(dirty).values(
                    source=source_name, user_id="u1", generation=1, due_at=time.time(), attempts=0
                )
            )
        async with db.transaction(write=True) as tx:
            claim = await queue.claim(tx, source_name, "u1")
        assert claim is not None
        renewer_snapshot = [claim]  # what Worker._renew read from Reconciler.held
        async with db.transaction(write=True) as conn:  # a SCIM write to the user meanwhile
            await conn.execute(
                update(dirty)
                .where(dirty.c.source == source_name, dirty.c.user_id == "u1")
                .values(generation=dirty.c.generation + 1, due_at=time.time())
            )
        async with db.transaction(write=True) as tx:  # the converge ends: the newer generation stays
            await queue.finish(tx, claim)
        async with db.transaction(write=True) as tx:  # the renewal's UPDATE commits just after
            await queue.renew(tx, renewer_snapshot)
        async with db.transaction(write=True) as tx:
            again = await queue.claim(tx, source_name, "u1")
        print(f"scenario=stale-lease-renewal operations=4 reclaimable={again is not None}")
        assert again is not None, "the changed user cannot be claimed until the lease expires"
    finally:
        await db.dispose()
