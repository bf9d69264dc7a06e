"""Issue 9 item 4 acceptance, on ``ziti-scim demo`` itself: a user without an email, then PATCHed.

Stored at once (201, ``provisioningState: skipped``, ``lastError`` naming the missing email), counted
in ``/metrics`` and listed by ``ziti-scim doctor``; the PATCH that adds the email creates the identity,
and both the gauge and doctor follow.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import httpx

from app.constants import STATUS_EXTENSION as STATUS
from tests.first_run.demo_process import Demo, running_demo

USER = "urn:ietf:params:scim:schemas:core:2.0:User"
PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
MISSING = "emails[primary eq true].value"


def skipped_gauge(demo: Demo) -> float:
    text = httpx.get(f"{demo.url}/metrics", timeout=30).text
    found = re.search(r'^ziti_scim_skipped_users\{source="demo"\} (\S+)$', text, re.M)
    assert found, text
    return float(found.group(1))


def doctor(demo: Demo, folder: Path) -> list[dict[str, object]]:
    """``ziti-scim doctor --json`` with a configuration describing the running demo."""
    config = folder / "doctor.toml"
    config.write_text(
        f'[database]\nurl = "{folder / "ziti-scim-demo.db"}"\n'
        f'[ziti]\nurl = "{demo.management.removesuffix("/edge/management/v1")}"\n'
        'password_env = "DEMO_ADMIN_PASSWORD"\n'
        '[sources.demo]\nkind = "generic"\n'
    )
    env = {**os.environ, "DEMO_ADMIN_PASSWORD": demo.password, "ZITI_SCIM_SOURCE_DEMO_TOKENS": demo.token}
    done = subprocess.run(
        [sys.executable, "-m", "app", "doctor", "--config", str(config), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    report = json.loads(done.stdout)
    return [f for f in report["findings"] if f["code"] == "provisioning-skipped"]


def test_user_without_email_is_skipped_then_provisioned_on_the_demo(tmp_path: Path) -> None:
    with running_demo([sys.executable, "-m", "app"], tmp_path, "--port", "0", "--ziti-port", "0") as demo:
        headers = {"Authorization": f"Bearer {demo.token}", "Content-Type": "application/scim+json"}
        with httpx.Client(base_url=demo.scim, headers=headers, timeout=30) as scim:
            created = scim.post("/Users", json={"schemas": [USER], "userName": "nomail"})
            assert created.status_code == 201, created.text
            assert created.json()[STATUS]["provisioningState"] == "skipped"
            assert MISSING in created.json()[STATUS]["lastError"]
            assert skipped_gauge(demo) == 1
            listed = doctor(demo, tmp_path)
            assert len(listed) == 1 and "nomail" in str(listed[0]["message"]), listed

            add = {"op": "add", "path": "emails", "value": [{"value": "nomail@example.com", "primary": True}]}
            patched = scim.patch(f"/Users/{created.json()['id']}", json={"schemas": [PATCH], "Operations": [add]})
            assert patched.status_code == 200, patched.text
            extension = patched.json()[STATUS]
            assert extension["provisioningState"] == "synced" and "lastError" not in extension
        session = httpx.post(
            f"{demo.management}/authenticate",
            params={"method": "password"},
            json={"username": "admin", "password": demo.password},
            timeout=30,
        ).json()["data"]["token"]
        identities = httpx.get(
            f"{demo.management}/identities",
            params={"filter": 'externalId="nomail@example.com"'},
            headers={"zt-session": session},
            timeout=30,
        ).json()["data"]
        assert [(i["id"], i["name"]) for i in identities] == [(extension["identityId"], "nomail")]
        assert skipped_gauge(demo) == 0
        assert doctor(demo, tmp_path) == []
