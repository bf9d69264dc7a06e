"""Issue 6, resilience 2: the service (a subprocess on a SQLite file) is killed with SIGKILL at random
points of a sync while the worker is busy with a slow controller, and restarted, several times. The
sync converges, nothing acknowledged is lost, and nothing is done twice."""

from __future__ import annotations

import random
import signal
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import httpx

from tests.resilience.res_support import (
    Controller,
    Sync,
    assert_converged,
    report,
    run_plan,
    running_controller,
    wait_converged,
)
from tests.seeds import test_seed
from tests.support.configfile import command, environment, write_config
from tests.support.emulator import ADMIN_PASSWORD
from tests.support.live import free_port
from tests.support.stack import TOKEN

KILLS = 3


def _up(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_sigkill_during_sync_converges_without_loss_or_duplicates(tmp_path: Path, source_name: str) -> None:
    seed = test_seed("sigkill-during-sync")
    rng = random.Random(seed + 1)  # the kill points; the plan has its own (two threads, one seed each)
    started = time.monotonic()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with running_controller() as controller:
        config = write_config(
            tmp_path / "config.toml",
            database_url=str(tmp_path / "kill.db"),
            source=source_name,
            ziti_url=controller.url,
            port=port,
            # The plan disables and deletes more than the default mass-deprovision brake lets through.
            extra="\n[safety]\nbrake_max = 100000\nbrake_min = 100000\n",
        )
        env = environment(source_name, TOKEN, ADMIN_PASSWORD)
        log = (tmp_path / "service.log").open("ab")

        def start() -> subprocess.Popen[bytes]:
            process = subprocess.Popen(
                command("serve", "--config", str(config)), env=env, stdout=log, stderr=log
            )
            deadline = time.monotonic() + 60
            while not _up(base):
                assert process.poll() is None, (
                    f"the service exited: {(tmp_path / 'service.log').read_text()[-2000:]}"
                )
                assert time.monotonic() < deadline, "the service did not start"
                time.sleep(0.05)
            return process

        # A slow controller: every answer takes 50 ms, so the worker always has converges in flight.
        controller.state.faults.latency = 0.05
        process = start()
        sync = Sync(f"{base}/scim/v2", domain=f"{source_name}.Example.COM", resilient=True, give_up_after=90)
        failure: list[BaseException] = []

        def drive() -> None:
            try:
                run_plan(sync, random.Random(seed), users=32, groups=3, changes=16, deletes=4)
            except BaseException as error:  # noqa: BLE001 - reported by the main thread
                failure.append(error)

        driver = threading.Thread(target=drive, daemon=True)
        driver.start()
        kills: list[str] = []
        try:
            for _ in range(KILLS):
                # A random point: as soon as a random number of further SCIM operations has started (the
                # plan has more operations than the kills can consume, so a fast machine cannot finish it
                # first, and a slow one only takes longer: the same kill points either way).
                target = sync.operations + rng.randint(3, 15)
                while sync.operations < target and driver.is_alive():
                    time.sleep(0.005)
                if not driver.is_alive():
                    break
                process.send_signal(signal.SIGKILL)
                process.wait(timeout=30)
                kills.append(f"op{sync.operations}")
                time.sleep(rng.uniform(0.0, 0.5))
                process = start()
            driver.join(timeout=120)
            assert not driver.is_alive(), "the sync did not finish"
            assert not failure, failure
            controller.state.faults.latency = 0
            verdict = wait_converged(sync.client, controller, source_name, sync.expected, timeout=60)
            if not verdict.ok:
                _explain(
                    tmp_path / "kill.db",
                    controller,
                    source_name,
                    set(sync.expected.user_ids.values())
                    - {sync.expected.user_ids[k] for k in sync.expected.users},
                    kills,
                    seed,
                )
            assert_converged(verdict, controller, sync.expected)
        finally:
            sync.close()
            process.terminate()
            process.wait(timeout=30)
            log.close()
        with controller.state.lock:
            ours = [
                i for i in controller.state.identities.values() if i.tags.get("scimSource") == source_name
            ]
    assert len(kills) == KILLS, f"the sync ended before {KILLS} kills: {kills}"
    assert len(ours) == len(sync.expected.users)
    report(
        "sigkill-restart[sqlite]",
        operations=sync.operations,
        kills=len(kills),
        kill_points="/".join(kills),
        retried_requests=sync.retries,
        users=verdict.users,
        identities_verified=verdict.identities_verified,
        duplicates=verdict.duplicates,
        identities_created=controller.recorder.created(),
        duplicate_creates=len(controller.recorder.duplicate_creates()),
        leftovers=verdict.leftovers,
        total_s=round(time.monotonic() - started, 1),
        seed=seed,
    )


def _explain(
    database: Path, controller: Controller, source: str, deleted: set[str], kills: list[str], seed: int
) -> None:
    """On a failure: what the audit log says about each identity of a deleted user left behind."""
    print(f"kills={kills} seed={seed}")
    with controller.state.lock:
        stray = [
            i
            for i in controller.state.identities.values()
            if i.tags.get("scimSource") == source and i.tags.get("scimId") in deleted
        ]
    with sqlite3.connect(database) as db:
        for identity in stray:
            rows = db.execute(
                "SELECT at, action, outcome, identity_id, operation, error FROM audit WHERE user_id = ? ORDER BY id",
                (identity.tags.get("scimId"),),
            ).fetchall()
            print(identity.name, identity.id, identity.created_at, rows)
