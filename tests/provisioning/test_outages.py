"""Acceptance 6: a controller outage or a killed service loses nothing and does nothing twice."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import httpx

from app.constants import STATUS_EXTENSION as STATUS
from app.server import create_app
from tests.provisioning.conftest import ADMIN_PASSWORD, TOKEN, Stack, make_stack_config
from tests.support.configfile import command, environment, write_config
from tests.support.idp import TestIdp
from tests.support.live import free_port, live_server, wait_healthy
from tests.support.waiting import wait_for
from ziti_emulator import EmulatorThread

USER = "urn:ietf:params:scim:schemas:core:2.0:User"


def test_controller_down_during_create_converges_without_another_idp_request(
    emulator: EmulatorThread, database_url: str, source_name: str
) -> None:
    config = make_stack_config(database_url, source_name, emulator.url)
    emulator.state.faults.set_down(True)
    with live_server(create_app(config)) as url:
        headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/scim+json"}
        with httpx.Client(base_url=f"{url}/scim/v2", headers=headers, timeout=30) as scim:
            created = scim.post(
                "/Users",
                json={"schemas": [USER], "userName": "outage", "emails": [{"value": "outage@example.com"}]},
            )
            assert created.status_code == 201
            assert created.json()[STATUS]["provisioningState"] == "pending"
            assert emulator.state.identity_by_external_id("outage@example.com") is None
            emulator.state.faults.set_down(False)
            state = wait_for(
                lambda: (
                    scim.get(f"/Users/{created.json()['id']}").json()[STATUS].get("provisioningState")
                    == "synced"
                ),
                what="the user to converge after the outage",
            )
            assert state
    identities = [i for i in emulator.state.identities.values() if i.external_id == "outage@example.com"]
    assert len(identities) == 1


def test_service_killed_with_pending_work_converges_after_restart(
    emulator: EmulatorThread, tmp_path: Path, source_name: str
) -> None:
    port = free_port()
    config = write_config(
        tmp_path / "config.toml",
        database_url=str(tmp_path / "kill.db"),
        source=source_name,
        ziti_url=emulator.url,
        port=port,
    )
    env = environment(source_name, TOKEN, ADMIN_PASSWORD)
    base = f"http://127.0.0.1:{port}/scim/v2"
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/scim+json"}

    def start() -> subprocess.Popen[bytes]:
        with (tmp_path / "service.log").open("ab") as log:
            process = subprocess.Popen(command("serve", "--config", str(config)), env=env, stdout=log, stderr=log)
        try:
            wait_healthy(f"http://127.0.0.1:{port}", process, what="the service")
        except AssertionError as error:
            raise AssertionError(f"{error}; its log ends: {(tmp_path / 'service.log').read_text()[-2000:]}") from None
        return process

    emulator.state.faults.set_down(True)
    first = start()
    try:
        with httpx.Client(base_url=base, headers=headers, timeout=30) as scim:
            ids = [
                scim.post(
                    "/Users",
                    json={"schemas": [USER], "userName": f"k{i}", "emails": [{"value": f"k{i}@example.com"}]},
                ).json()["id"]
                for i in range(5)
            ]
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    assert not any(
        i.external_id and i.external_id.startswith("k") for i in emulator.state.identities.values()
    )
    emulator.state.faults.set_down(False)
    second = start()
    try:
        with httpx.Client(base_url=base, headers=headers, timeout=30) as scim:
            for user_id in ids:
                wait_for(
                    lambda uid=user_id: (
                        scim.get(f"/Users/{uid}").json()[STATUS]["provisioningState"] == "synced"
                    ),
                    what="convergence after restart",
                )
    finally:
        second.terminate()
        second.wait(timeout=30)
    for i in range(5):
        assert (
            len([x for x in emulator.state.identities.values() if x.external_id == f"k{i}@example.com"]) == 1
        )


def test_the_idp_does_not_wait_for_a_slow_controller(stack: Stack) -> None:
    """By default a SCIM write answers once committed; convergence follows without another request."""
    stack.state.faults.latency = 2.0
    with stack.client() as scim:
        started = time.monotonic()
        created = scim.post(
            "/Users",
            json={"schemas": [USER], "userName": "slow", "emails": [{"value": "slow@example.com"}]},
        )
        elapsed = time.monotonic() - started
    assert created.status_code == 201
    assert created.json()[STATUS]["provisioningState"] == "pending"
    assert elapsed < 2.0, f"the create waited {elapsed:.2f} s for the controller"
    (body,) = stack.settle()
    assert body[STATUS]["provisioningState"] == "synced"
    assert stack.identity("slow@example.com") is not None


def test_wait_for_sync_shows_synced_in_the_create_response(
    emulator: EmulatorThread, idp: TestIdp, database_url: str, source_name: str
) -> None:
    """A source may choose a short inline wait (``wait_for_sync``) to see ``synced`` in the response."""
    app = create_app(make_stack_config(database_url, source_name, emulator.url, wait_for_sync=5.0))
    with live_server(app) as url:
        headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/scim+json"}
        with httpx.Client(base_url=f"{url}/scim/v2", headers=headers, timeout=30) as scim:
            created = scim.post(
                "/Users",
                json={"schemas": [USER], "userName": "quick", "emails": [{"value": "quick@example.com"}]},
            )
    assert created.json()[STATUS]["provisioningState"] == "synced"
    identity = emulator.state.identity_by_external_id("quick@example.com")
    assert identity is not None and created.json()[STATUS]["identityId"] == identity.id
