"""Issue 5 acceptance 5: two ziti-scim processes on one PostgreSQL share the work without losing an
update or creating a duplicate identity."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.constants import STATUS_EXTENSION as STATUS
from app.server import create_app
from tests.provisioning.conftest import ADMIN_PASSWORD, TOKEN, make_stack_config
from tests.support.configfile import command, environment, write_config
from tests.support.live import free_port, live_server, wait_healthy
from ziti_emulator import EmulatorThread

USER = "urn:ietf:params:scim:schemas:core:2.0:User"
PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
USERS = 30


@pytest.fixture
def replicas(
    emulator: EmulatorThread, postgres_url: str, source_name: str, tmp_path: Path
) -> Iterator[list[str]]:
    env = environment(source_name, TOKEN, ADMIN_PASSWORD)
    processes, urls, logs = [], [], []
    for index in range(2):
        port = free_port()
        config = write_config(
            tmp_path / f"replica{index}.toml",
            database_url=postgres_url,
            source=source_name,
            ziti_url=emulator.url,
            port=port,
        )
        logs.append(tmp_path / f"replica{index}.log")
        with logs[-1].open("wb") as log:
            processes.append(
                subprocess.Popen(command("serve", "--config", str(config)), env=env, stdout=log, stderr=log)
            )
        urls.append(f"http://127.0.0.1:{port}")
    try:
        for index, (url, process) in enumerate(zip(urls, processes, strict=True)):
            try:
                wait_healthy(url, process, what=f"replica {index}")
            except AssertionError as error:
                raise AssertionError(f"{error}; its log ends: {logs[index].read_text()[-2000:]}") from None
        yield urls
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=30)


@pytest.mark.postgres
def test_two_processes_on_one_postgres(replicas: list[str], emulator: EmulatorThread) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/scim+json"}

    async def scenario() -> dict[str, str]:
        clients = [
            httpx.AsyncClient(base_url=f"{url}/scim/v2", headers=headers, timeout=60) for url in replicas
        ]
        try:
            created = await asyncio.gather(
                *(
                    clients[i % 2].post(
                        "/Users",
                        json={
                            "schemas": [USER],
                            "userName": f"r{i}",
                            "emails": [{"value": f"r{i}@example.com"}],
                        },
                    )
                    for i in range(USERS)
                )
            )
            assert all(r.status_code == 201 for r in created)
            ids = {f"r{i}@example.com": r.json()["id"] for i, r in enumerate(created)}
            # Both processes change the same users concurrently; each user's last write must win.
            for round_ in range(3):
                await asyncio.gather(
                    *(
                        clients[(i + round_) % 2].patch(
                            f"/Users/{uid}",
                            json={
                                "schemas": [PATCH],
                                "Operations": [
                                    {
                                        "op": "replace",
                                        "path": "roles",
                                        "value": [{"value": f"round-{round_}"}],
                                    }
                                ],
                            },
                        )
                        for i, uid in enumerate(ids.values())
                    )
                )
            return ids
        finally:
            for client in clients:
                await client.aclose()

    ids = asyncio.run(scenario())
    deadline = time.monotonic() + 60
    with httpx.Client(base_url=f"{replicas[0]}/scim/v2", headers=headers, timeout=30) as scim:
        while True:
            states = [scim.get(f"/Users/{uid}").json()[STATUS]["provisioningState"] for uid in ids.values()]
            if all(state == "synced" for state in states):
                break
            assert time.monotonic() < deadline, states
            time.sleep(0.2)
    for external_id in ids:
        matches = [i for i in emulator.state.identities.values() if i.external_id == external_id]
        assert len(matches) == 1, f"{external_id}: {len(matches)} identities"
        assert matches[0].role_attributes == ["round-2"], (external_id, matches[0].role_attributes)


@pytest.mark.postgres
def test_a_write_on_one_replica_wakes_the_other_through_notify(
    emulator: EmulatorThread, postgres_url: str, source_name: str
) -> None:
    """LISTEN/NOTIFY: a replica whose worker is paused takes the write; the other converges it at once,
    long before its own poll would have found it."""
    config = make_stack_config(postgres_url, source_name, emulator.url)
    writer, converger = create_app(config), create_app(config)
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/scim+json"}
    with live_server(writer) as writer_url, live_server(converger):
        writer.state.services.provisioner.worker.paused = True
        worker = converger.state.services.provisioner.worker
        worker.poll = 120.0
        with httpx.Client(base_url=f"{writer_url}/scim/v2", headers=headers, timeout=30) as scim:
            for name in ("first", "second"):
                # The first may be found by the poll still under way; the second only by a notification.
                created = scim.post(
                    "/Users",
                    json={"schemas": [USER], "userName": name, "emails": [{"value": f"{name}@example.com"}]},
                )
                assert created.status_code == 201
                deadline = time.monotonic() + 20
                while emulator.state.identity_by_external_id(f"{name}@example.com") is None or not worker.idle:
                    assert time.monotonic() < deadline, f"{name} was not converged by the other replica"
                    time.sleep(0.02)
