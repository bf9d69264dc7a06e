"""Issue 5: one structured JSON line per request and per controller action; secrets never appear."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import httpx

from app.constants import STATUS_EXTENSION as STATUS
from tests.provisioning.conftest import ADMIN_PASSWORD, TOKEN
from tests.support.configfile import command, environment, write_config
from tests.support.live import free_port
from ziti_emulator import EmulatorThread

USER = "urn:ietf:params:scim:schemas:core:2.0:User"


def test_json_lines_for_requests_and_controller_actions_without_secrets(
    emulator: EmulatorThread, sqlite_url: str, source_name: str, tmp_path: Path
) -> None:
    """What ``ziti-scim serve`` itself writes: every line one JSON object, no secret in any."""
    user_password = "Okta-Sends-This-Pa55!"
    port = free_port()
    config = write_config(
        tmp_path / "serve.toml", database_url=sqlite_url, source=source_name, ziti_url=emulator.url, port=port
    )
    log_path = tmp_path / "serve.log"
    with log_path.open("w") as log_file:
        process = subprocess.Popen(
            command("serve", "--config", str(config)),
            env=environment(source_name, TOKEN, ADMIN_PASSWORD),
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 60
            while not _healthy(url):
                assert process.poll() is None and time.monotonic() < deadline, log_path.read_text()
                time.sleep(0.1)
            headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/scim+json"}
            created = httpx.post(
                f"{url}/scim/v2/Users",
                headers=headers,
                json={"schemas": [USER], "userName": "logged", "password": user_password,
                      "emails": [{"value": "logged@example.com"}]},
                timeout=30,
            )
            assert created.status_code == 201
            httpx.get(f"{url}/scim/v2/Users", headers={"Authorization": "Bearer not-a-valid-token-at-all"})
            user = f"{url}/scim/v2/Users/{created.json()['id']}"
            while httpx.get(user, headers=headers, timeout=30).json()[STATUS]["provisioningState"] != "synced":
                assert time.monotonic() < deadline, "the user was not converged"  # after the answer
                time.sleep(0.05)
        finally:
            process.terminate()
            process.wait(timeout=30)
    lines = [line for line in log_path.read_text().splitlines() if line.strip()]
    entries = [json.loads(line) for line in lines]  # every line the service writes is one JSON object
    requests = [e for e in entries if e["message"] == "scim request"]
    actions = [e for e in entries if e["message"] == "controller action"]
    assert any(e["method"] == "POST" and e["status"] == 201 and e["request_id"] for e in requests)
    assert any(e["status"] == 401 for e in requests)
    assert [(e["action"], e["outcome"]) for e in actions] == [("create", "done")]
    assert actions[0]["request_id"] == created.headers["X-Request-Id"]
    everything = "\n".join(lines)
    for secret in (TOKEN, ADMIN_PASSWORD, user_password, "not-a-valid-token-at-all"):
        assert secret not in everything


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
