"""Issue 6, resilience 1: the controller is down, flapping, slow past the client's deadline, or answering
429/5xx storms during a sync; once it is healthy again every user converges, with no duplicate identity
and no identity left that should not exist."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import pytest

from app.reconcile import safety
from app.server import create_app
from app.store.db import Database
from tests.resilience.res_support import (
    STATUS,
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
from tests.seeds import test_seed
from tests.support.live import live_server

PLAN = {"users": 50, "groups": 4, "changes": 22, "deletes": 5, "parallel": 4}
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


@pytest.mark.parametrize(
    ("fault", "database"),
    [
        ("down", "sqlite"),
        pytest.param("flapping", "postgres", marks=pytest.mark.postgres),
        ("slow", "sqlite"),
        pytest.param("slow-answers", "postgres", marks=pytest.mark.postgres),
        ("storm", "sqlite"),
    ],
)
def test_controller_fault_during_sync_converges(
    fault: str, database: str, request: pytest.FixtureRequest, source_name: str
) -> None:
    """Each fault on one database (both are covered across the faults, to bound the time):

    down (503 to everything), flapping (down/up every 0.3 s), slow (every request waits 0.6 s before the
    controller looks at it, past this client's 0.3 s timeout: nothing is applied), slow-answers (the
    controller applies every identity create and delete but answers 0.5 s later: outcomes unknown),
    storm (429 with Retry-After, 502, 503, 504 on identity creates and patches).
    """
    database_url = str(request.getfixturevalue(f"{database}_url"))
    seed = test_seed(f"controller-fault-{fault}-{database}")
    rng = random.Random(seed)
    started = time.monotonic()
    with running_controller() as controller:
        ziti = fast_ziti_client(controller.url, timeout=0.3 if fault.startswith("slow") else 1.0)
        app = create_app(
            stack_config(database_url, source_name, controller.url), ziti_client=ziti
        )
        with live_server(app) as url:
            sync = Sync(f"{url}/scim/v2", domain=f"{source_name}.Example.COM")
            try:
                faults = controller.state.faults
                if fault == "down":
                    faults.set_down(True)
                elif fault == "slow":
                    faults.latency = 0.6
                elif fault == "slow-answers":
                    controller.recorder.response_delay = 0.5
                    controller.recorder.delay_paths = "/identities"
                    # Lost PATCH answers too: a later revert must re-read the identity (no drift).
                    controller.recorder.delay_methods = frozenset({"POST", "PATCH", "DELETE"})
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
                controller.recorder.response_delay = 0
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
        f"controller-{fault}[{database}]",
        operations=sync.operations,
        **verdict.counts,
        controller_faults=faulted,
        client_timeouts=timeouts,
        flips=flips,
        identities_created=controller.recorder.created(),
        identities_deleted=sum(
            1
            for r in controller.state.requests
            if r.method == "DELETE" and "/identities/" in r.path and r.status == 200
        ),
        converged_after_s=round(converge_seconds, 1),
        total_s=round(time.monotonic() - started, 1),
        seed=seed,
    )


# -- a create the controller applied but answered too late (outcome unknown) -------------------------


@contextmanager
def _held(app: Any) -> Iterator[None]:
    """No converge starts in this service inside the block (inline or background); a SCIM write in it
    is stored and marked, and converged after. Makes "before the next attempt" an order, not a race."""
    worker = app.state.services.provisioner.worker
    worker.paused = True
    try:
        yield
    finally:
        worker.paused = False
        worker.wake()


def _late_create(controller: Controller, sync: Sync, key: str) -> None:
    """Create ``key`` while the controller applies creates but answers past the client's timeout."""
    before = controller.recorder.created()
    controller.recorder.response_delay = 0.8
    sync.create_user(sync.user_spec(key, ["vpn"]))
    deadline = time.monotonic() + 60
    while controller.recorder.created() == before:
        assert time.monotonic() < deadline, "the controller never applied the create"
        time.sleep(0.02)
    user = sync.client.get(f"/Users/{sync.expected.user_ids[key]}").json()
    assert user[STATUS]["provisioningState"] == "pending", user


def test_user_deleted_while_its_create_outcome_is_unknown_leaves_no_identity(
    database_url: str, source_name: str
) -> None:
    """Regression: a user deleted while its identity create had an unknown outcome (the controller applied
    it, the answer was lost) left the identity on the controller (an orphan only `ziti-scim sync` removed)."""
    with running_controller() as controller:
        ziti = fast_ziti_client(controller.url, timeout=0.3, attempts=1)
        app = create_app(
            stack_config(database_url, source_name, controller.url), ziti_client=ziti
        )
        with live_server(app) as url:
            sync = Sync(f"{url}/scim/v2", domain=f"{source_name}.Example.COM")
            try:
                sync.create_user(sync.user_spec("warm"))  # opens the controller session
                sync.settle()
                _late_create(controller, sync, "late")
                with _held(app):
                    sync.delete_user("late")  # before the reconciler's next attempt
                    controller.recorder.response_delay = 0
                verdict = wait_converged(sync.client, controller, source_name, sync.expected)
            finally:
                sync.close()
    report(
        "late-create-then-delete",
        operations=sync.operations,
        **verdict.counts,
    )
    # The whole end state: the other user intact, the deleted one's identity gone, nothing else.
    assert verdict.ok, verdict.problems
    assert verdict.identities_verified == 1 and verdict.users == 1
    assert controller.state.identity_by_external_id(sync.expected.deleted["late"].external_id) is None


def test_email_changed_while_the_create_outcome_is_unknown_gives_one_identity(
    database_url: str, source_name: str
) -> None:
    """Regression: a user whose email (the mapped externalId) changed while its create had an unknown outcome
    got a second identity (the first, tagged with the same scimId, was never found again)."""
    with running_controller() as controller:
        ziti = fast_ziti_client(controller.url, timeout=0.3, attempts=1)
        app = create_app(
            stack_config(database_url, source_name, controller.url), ziti_client=ziti
        )
        with live_server(app) as url:
            sync = Sync(f"{url}/scim/v2", domain=f"{source_name}.Example.COM")
            try:
                sync.create_user(sync.user_spec("warm"))
                sync.settle()
                _late_create(controller, sync, "rekey")
                spec = replace(sync.expected.users["rekey"], email=f"REKEYED@{sync.domain}")
                with _held(app):
                    response = sync.call("PUT", f"/Users/{sync.expected.user_ids['rekey']}", spec.resource())
                    assert response.status_code == 200, response.text
                    sync.expected.users["rekey"] = spec
                    controller.recorder.response_delay = 0
                verdict = wait_converged(sync.client, controller, source_name, sync.expected)
            finally:
                sync.close()
    report(
        "late-create-then-rekey",
        operations=sync.operations + 1,
        **verdict.counts,
    )
    assert verdict.ok, verdict.problems


def test_crash_while_an_applied_create_is_unanswered_then_user_deleted_leaves_no_identity(
    sqlite_url: str, source_name: str
) -> None:
    """The service goes away while the controller holds the answer to a create it applied; after the
    restart the user is deleted before any retry (made deterministic by pausing provisioning around the
    restart, as an operator may): the identity must not be left behind. Regression: nothing had been
    recorded, so the deletion never looked for the identity (an orphan until `ziti-scim sync`)."""
    config = stack_config(sqlite_url, source_name, "http://unused")
    with running_controller() as controller:
        config = replace(config, ziti=replace(config.ziti, url=controller.url))
        with live_server(create_app(config)) as url:
            sync = Sync(f"{url}/scim/v2", domain=f"{source_name}.Example.COM")
            sync.create_user(sync.user_spec("warm"))
            sync.settle()
            controller.recorder.response_delay = 5.0
            sync.create_user(sync.user_spec("lost"))
            deadline = time.monotonic() + 60
            while controller.state.identity_by_external_id(sync.expected.users["lost"].external_id) is None:
                assert time.monotonic() < deadline, "the create never reached the controller"
                time.sleep(0.02)
            sync.close()
        # Stopped: the converge waiting for the answer was cancelled, nothing recorded (as after kill -9).
        controller.recorder.response_delay = 0
        asyncio.run(_set_paused(sqlite_url, True))
        with live_server(create_app(config)) as url:
            again = Sync(f"{url}/scim/v2", domain=sync.domain)
            again.expected = sync.expected
            try:
                again.delete_user("lost")
                asyncio.run(_set_paused(sqlite_url, False))
                verdict = wait_converged(again.client, controller, source_name, again.expected)
            finally:
                again.close()
    report(
        "crash-during-applied-create-then-delete",
        operations=sync.operations + again.operations,
        **verdict.counts,
    )
    assert verdict.ok, verdict.problems


def test_crash_after_an_applied_patch_then_change_reverted_leaves_no_drift(
    sqlite_url: str, source_name: str
) -> None:
    """The controller applies a PATCH (roles vpn -> ops) but the service goes away before recording it;
    after the restart the IdP reverts the change (ops -> vpn) before any retry (paused around the
    restart to make the order deterministic): the identity must end with vpn."""
    config = stack_config(sqlite_url, source_name, "http://unused")
    with running_controller() as controller:
        config = replace(config, ziti=replace(config.ziti, url=controller.url))
        with live_server(create_app(config)) as url:
            sync = Sync(f"{url}/scim/v2", domain=f"{source_name}.Example.COM")
            sync.create_user(sync.user_spec("flip", ["vpn"]))
            sync.settle()
            external_id = sync.expected.users["flip"].external_id
            assert _roles(controller, external_id) == ["vpn"]
            controller.recorder.response_delay = 5.0
            controller.recorder.delay_paths = "/identities/"
            sync.set_roles("flip", ["ops"])
            deadline = time.monotonic() + 60
            while _roles(controller, external_id) != ["ops"]:
                assert time.monotonic() < deadline, "the PATCH never reached the controller"
                time.sleep(0.02)
            sync.close()
        # Stopped: the converge waiting for the answer was cancelled, nothing recorded (as after kill -9).
        controller.recorder.response_delay = 0
        asyncio.run(_set_paused(sqlite_url, True))
        with live_server(create_app(config)) as url:
            again = Sync(f"{url}/scim/v2", domain=sync.domain)
            again.expected = sync.expected
            try:
                again.set_roles("flip", ["vpn"])
                asyncio.run(_set_paused(sqlite_url, False))
                verdict = wait_converged(again.client, controller, source_name, again.expected)
            finally:
                again.close()
    report(
        "crash-after-applied-patch-then-revert",
        operations=sync.operations + again.operations,
        **verdict.counts,
    )
    assert verdict.ok, verdict.problems


def test_lost_patch_answer_then_change_reverted_leaves_no_drift(sqlite_url: str, source_name: str) -> None:
    """The same without a crash: the controller applies a PATCH (roles vpn -> ops) but answers past the
    client's timeout (recorded as a failure, retried later); the IdP reverts the change at once. The
    identity must end with vpn."""
    with running_controller() as controller:
        ziti = fast_ziti_client(controller.url, timeout=0.3, attempts=1)
        app = create_app(
            stack_config(sqlite_url, source_name, controller.url), ziti_client=ziti
        )
        with live_server(app) as url:
            sync = Sync(f"{url}/scim/v2", domain=f"{source_name}.Example.COM")
            try:
                sync.create_user(sync.user_spec("flip", ["vpn"]))
                sync.settle()
                external_id = sync.expected.users["flip"].external_id
                controller.recorder.response_delay = 0.8
                controller.recorder.delay_paths = "/identities/"
                # Only the PATCH's answer is late (the reconciler reads the identity before writing it).
                controller.recorder.delay_methods = frozenset({"PATCH"})
                sync.set_roles("flip", ["ops"])
                deadline = time.monotonic() + 10
                while _roles(controller, external_id) != ["ops"]:  # applied, the answer lost
                    assert time.monotonic() < deadline, "the PATCH never reached the controller"
                    time.sleep(0.02)
                with _held(app):
                    controller.recorder.response_delay = 0
                    sync.set_roles("flip", ["vpn"])  # before the retry
                verdict = wait_converged(sync.client, controller, source_name, sync.expected)
            finally:
                sync.close()
    report(
        "lost-patch-answer-then-revert",
        operations=sync.operations,
        **verdict.counts,
    )
    assert verdict.ok, verdict.problems


def _roles(controller: Controller, external_id: str) -> list[str] | None:
    identity = controller.state.identity_by_external_id(external_id)
    return None if identity is None else list(identity.role_attributes)


async def _set_paused(database_url: str, paused: bool) -> None:
    db = Database(database_url)
    try:
        if paused:
            await safety.write_setting(db, safety.PAUSED, {"since": time.time()})
        else:
            await safety.resume(db)
    finally:
        await db.dispose()
