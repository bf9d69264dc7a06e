"""Provisioning against the controller's versions and quirks (docs/controller-versions.md).

* a user whose externalId is ``CORP\\tom`` (a value ``zitiql/util.go ParseZqlString`` mangles in filters) is
  provisioned, found again after a create whose answer was lost, updated and deleted, on 1.6 and 2.0;
* provisioning converges against two HA nodes behind a round-robin balancer (OIDC sessions).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from app.constants import STATUS_EXTENSION as STATUS
from app.server import create_app
from tests.support.emulator import emulator_app, running_emulator
from tests.support.live import live_server
from tests.support.rr_proxy import RoundRobinProxy
from tests.support.stack import TOKEN, make_stack_config
from tests.support.waiting import wait_for
from ziti_emulator import EmulatorThread

USER = "urn:ietf:params:scim:schemas:core:2.0:User"
PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
MAPPING = {"preset": "generic", "external_id": "externalId", "external_id_transform": []}
CORP_TOM = "CORP\\tom"


def scim_client(url: str) -> httpx.Client:
    return httpx.Client(
        base_url=f"{url}/scim/v2",
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/scim+json"},
        timeout=30,
    )


def wait_synced(scim: httpx.Client, user_id: str, timeout: float = 20.0) -> dict[str, Any]:
    """Poll the user until the reconciler reports it synced (retries happen off the request)."""
    deadline = time.monotonic() + timeout
    while True:
        body: dict[str, Any] = scim.get(f"/Users/{user_id}").json()
        if body[STATUS]["provisioningState"] == "synced" or time.monotonic() > deadline:
            return body
        time.sleep(0.05)


@pytest.fixture(params=["1.6", "2.0"])
def versioned_emulator(request: pytest.FixtureRequest) -> Iterator[EmulatorThread]:
    with running_emulator(emulator_app(version=request.param)) as emu:
        yield emu


def test_backslash_external_id_is_provisioned_found_updated_and_deleted(
    versioned_emulator: EmulatorThread, sqlite_url: str, source_name: str
) -> None:
    state = versioned_emulator.state
    # An unrelated identity whose externalId is what the controller reads for "CORP\\\\tom": CORP<TAB>om.
    decoy = state.create_identity("decoy", external_id="CORP\tom")
    app = create_app(make_stack_config(sqlite_url, source_name, versioned_emulator.url, mapping=MAPPING))
    # the create is applied but its answer is lost: the retry must find the identity again
    state.faults.inject(504, 1, method="POST", path_contains="/identities", apply=True)
    with live_server(app) as url, scim_client(url) as scim:
        created = scim.post("/Users", json={"schemas": [USER], "userName": "tom", "externalId": "tom-1"})
        assert created.status_code == 201, created.text
        user_id = created.json()["id"]
        assert wait_synced(scim, user_id)[STATUS]["provisioningState"] == "synced"
        [identity] = [i for i in state.identities.values() if i.tags.get("scimId") == user_id]

        # the externalId check before the PATCH must not mistake the decoy for a holder of CORP\tom
        op = {"op": "replace", "path": "externalId", "value": CORP_TOM}
        patched = scim.patch(f"/Users/{user_id}", json={"schemas": [PATCH], "Operations": [op]})
        assert patched.status_code == 200, patched.text
        assert wait_synced(scim, user_id)[STATUS]["provisioningState"] == "synced"
        assert identity.external_id == CORP_TOM and identity.name == "tom"

        op = {"op": "replace", "path": "active", "value": False}
        patched = scim.patch(f"/Users/{user_id}", json={"schemas": [PATCH], "Operations": [op]})
        assert patched.status_code == 200, patched.text
        assert wait_synced(scim, user_id)[STATUS]["provisioningState"] == "synced"
        assert identity.disabled_at is not None

        assert scim.delete(f"/Users/{user_id}").status_code == 204
        # the delete converges after the answer
        wait_for(lambda: all(i.external_id != CORP_TOM for i in state.identities.values()), what="the delete")
    assert set(state.identities) == {state.default_admin_id, decoy.id}  # the decoy is never touched
    assert decoy.external_id == "CORP\tom" and decoy.disabled_at is None


def test_provisioning_converges_against_two_ha_nodes_behind_a_balancer(
    sqlite_url: str, source_name: str
) -> None:
    app_a = emulator_app(version="2.0")
    app_b = emulator_app(state=app_a.state.emulator, node="b")
    with EmulatorThread(app_a) as a, EmulatorThread(app_b) as b:
        state = a.state
        state.faults.latency = 0.01
        with RoundRobinProxy([("127.0.0.1", a.port), ("127.0.0.1", b.port)]) as proxy:
            app = create_app(make_stack_config(sqlite_url, source_name, proxy.url))
            with live_server(app) as url, scim_client(url) as scim:
                ids = []
                for n in range(8):
                    body = {"schemas": [USER], "userName": f"ha{n}", "emails": [{"value": f"ha{n}@x.test"}]}
                    response = scim.post("/Users", json=body)
                    assert response.status_code == 201, response.text
                    ids.append(response.json()["id"])
                states = [wait_synced(scim, uid)[STATUS]["provisioningState"] for uid in ids]
            assert states == ["synced"] * 8
            assert sorted(i.name for i in state.identities.values() if i.name.startswith("ha")) == [
                f"ha{n}" for n in range(8)
            ]
            assert state.oidc.logins >= 1 and state.sessions == {}  # OIDC, no node-local zt-session
        assert state.spec_violations == []
