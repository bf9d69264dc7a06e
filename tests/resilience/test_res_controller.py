"""Issue 6, resilience 1: the controller is down, flapping, slow past the client's deadline, or answering
429/5xx storms during a sync; once it is healthy again every user converges, with no duplicate identity
and no identity left that should not exist."""

from __future__ import annotations

import random
import time

import pytest

from app.server import create_app
from tests.resilience.res_support import (
    Controller,
    Flapper,
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

USERS, GROUPS, CHANGES, DELETES = 60, 5, 25, 6
PLAN = {"users": USERS, "groups": GROUPS, "changes": CHANGES, "deletes": DELETES, "parallel": 4}
FAULT_STATUSES = {429, 502, 503, 504}


def storm(controller: Controller) -> None:
    """Interleaved storms on identity creates and patches (Retry-After on the 429s)."""
    faults = controller.state.faults
    for _ in range(12):
        faults.inject(429, 4, method="POST", path_contains="/identities", retry_after=1)
        faults.inject(503, 3, method="POST", path_contains="/identities")
        faults.inject(502, 2, method="POST", path_contains="/identities")
        faults.inject(504, 2, method="POST", path_contains="/identities")
        faults.inject(502, 3, method="PATCH", path_contains="/identities")
        faults.inject(503, 3, method="PATCH", path_contains="/identities")
        faults.inject(504, 3, method="PATCH", path_contains="/identities")
        faults.inject(429, 3, method="PATCH", path_contains="/identities", retry_after=1)


@pytest.mark.parametrize("fault", ["down", "flapping", "slow", "storm"])
def test_controller_fault_during_sync_converges(fault: str, database_url: str, source_name: str) -> None:
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    started = time.monotonic()
    with running_controller() as controller:
        # Slow: every controller answer takes 0.6 s, past this client's 0.3 s per-attempt timeout.
        ziti = fast_ziti_client(controller.url, timeout=0.3 if fault == "slow" else 1.0)
        app = create_app(stack_config(database_url, source_name, controller.url, deadline=0.1), ziti_client=ziti)
        with live_server(app) as url:
            sync = Sync(f"{url}/scim/v2", domain=f"{source_name}.Example.COM")
            try:
                faults = controller.state.faults
                if fault == "down":
                    faults.set_down(True)
                elif fault == "slow":
                    faults.latency = 0.6
                elif fault == "storm":
                    storm(controller)
                if fault == "flapping":
                    with Flapper(controller.state, 0.3) as flapper:
                        run_plan(sync, rng, **PLAN)  # type: ignore[arg-type]
                    flips = flapper.flips
                else:
                    run_plan(sync, rng, **PLAN)  # type: ignore[arg-type]
                    flips = 0
                synced_during_fault = sum(
                    1 for i in controller.state.identities.values() if i.tags.get("scimSource") == source_name
                )
                faults.clear()
                recovered = time.monotonic()
                verdict = wait_converged(sync.client, controller, source_name, sync.expected, timeout=90)
                converge_seconds = time.monotonic() - recovered
                faulted = sum(1 for r in controller.state.requests if r.status in FAULT_STATUSES)
                timeouts = ziti.stats.transport_errors
                assert_converged(verdict, controller, sync.expected)
            finally:
                sync.close()
    # The fault really hit the provisioning: answers refused, or attempts timed out.
    assert faulted + timeouts > 0
    if fault == "down":
        assert synced_during_fault == 0
    report(
        f"controller-{fault}[{'sqlite' if '://' not in database_url else 'postgres'}]",
        operations=sync.operations,
        users=verdict.users,
        identities_verified=verdict.identities_verified,
        duplicates=verdict.duplicates,
        leftovers=verdict.leftovers,
        controller_faults=faulted,
        client_timeouts=timeouts,
        flips=flips,
        identities_created=controller.recorder.created(),
        identities_deleted=sum(
            1 for r in controller.state.requests if r.method == "DELETE" and "/identities/" in r.path and r.status == 200
        ),
        converged_after_s=round(converge_seconds, 1),
        total_s=round(time.monotonic() - started, 1),
        seed=seed,
    )
