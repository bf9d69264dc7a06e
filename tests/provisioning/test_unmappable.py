"""Issue 9 item 4: a user the mapping cannot turn into an identity is stored, skipped, then provisioned.

The ``generic`` preset takes the identity's externalId from the primary email, while RFC 7643 makes
``emails`` optional: ``{"userName": "x"}`` is stored and answered 201 with ``provisioningState: skipped``
(default ``unmappable = "store"``), and the write that brings the email creates the identity.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest

from app.constants import STATUS_EXTENSION as STATUS
from app.diagnostics.doctor import run_doctor
from app.server import create_app
from tests.provisioning.conftest import Stack, make_stack_config
from tests.support.idp import TestIdp
from tests.support.live import live_server
from ziti_emulator import EmulatorThread

USER = "urn:ietf:params:scim:schemas:core:2.0:User"
PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
MISSING = "emails[primary eq true].value"


def skipped_gauge(stack: Stack, source: str) -> float:
    metrics = httpx.get(stack.scim_url.removesuffix("/scim/v2") + "/metrics", timeout=30)
    assert metrics.status_code == 200
    found = re.search(rf'^ziti_scim_skipped_users{{source="{re.escape(source)}"}} (\S+)$', metrics.text, re.M)
    assert found, "the skipped-users gauge is missing from /metrics"
    return float(found.group(1))


async def skipped_findings(database_url: str, source: str, emulator: EmulatorThread) -> list[str]:
    config = make_stack_config(database_url, source, emulator.url)
    report = await run_doctor(config)
    return [f.message for f in report.findings.items if f.code == "provisioning-skipped"]


async def test_user_without_email_is_stored_skipped_then_provisioned_by_the_patch_that_adds_it(
    stack: Stack, database_url: str, source_name: str
) -> None:
    with stack.client() as scim:
        created = scim.post("/Users", json={"schemas": [USER], "userName": "no-mail"})
        assert created.status_code == 201, created.text
        (body,) = stack.settle()  # converged after the answer
        assert body[STATUS]["provisioningState"] == "skipped"
        assert MISSING in body[STATUS]["lastError"] and "identityId" not in body[STATUS]
        stored = scim.get(f"/Users/{body['id']}")
        assert stored.status_code == 200 and stored.json()[STATUS]["provisioningState"] == "skipped"
    assert [i for i in stack.state.identities.values() if i.name == "no-mail"] == []
    assert skipped_gauge(stack, source_name) == 1
    listed = await skipped_findings(database_url, source_name, stack.emulator)
    assert len(listed) == 1 and "no-mail" in listed[0] and MISSING in listed[0]

    with stack.client() as scim:
        patched = scim.patch(
            f"/Users/{body['id']}",
            json={
                "schemas": [PATCH],
                "Operations": [{"op": "add", "path": "emails", "value": [{"value": "NoMail@example.com", "primary": True}]}],
            },
        )
    assert patched.status_code == 200, patched.text
    (settled,) = stack.settle()
    extension = settled[STATUS]
    assert extension["provisioningState"] == "synced" and "lastError" not in extension
    identity = stack.identity("nomail@example.com")
    assert identity is not None and identity.id == extension["identityId"] and identity.name == "no-mail"
    assert skipped_gauge(stack, source_name) == 0
    assert await skipped_findings(database_url, source_name, stack.emulator) == []


def test_a_mapped_user_that_loses_its_email_keeps_its_identity_and_is_skipped(stack: Stack) -> None:
    with stack.client() as scim:
        created = scim.post(
            "/Users",
            json={"schemas": [USER], "userName": "lena", "emails": [{"value": "lena@example.com", "primary": True}]},
        )
        assert created.status_code == 201
        (lena,) = stack.settle()
        assert lena[STATUS]["provisioningState"] == "synced"
        identity_id = lena[STATUS]["identityId"]
        replaced = scim.put(f"/Users/{created.json()['id']}", json={"schemas": [USER], "userName": "lena"})
        assert replaced.status_code == 200, replaced.text
        (lena,) = stack.settle()
        assert lena[STATUS]["provisioningState"] == "skipped"
        assert lena[STATUS]["identityId"] == identity_id
        # Its externalId stays claimed: another user cannot take it while the identity still carries it.
        other = scim.post(
            "/Users",
            json={"schemas": [USER], "userName": "lena2", "emails": [{"value": "lena@example.com", "primary": True}]},
        )
        assert other.status_code == 409 and other.json()["scimType"] == "uniqueness"
    kept = stack.state.identities[identity_id]
    assert (kept.name, kept.external_id) == ("lena", "lena@example.com")


@pytest.fixture
def strict_stack(emulator: EmulatorThread, idp: TestIdp, database_url: str, source_name: str) -> Iterator[Stack]:
    app = create_app(make_stack_config(database_url, source_name, emulator.url, unmappable="refuse"))
    with live_server(app) as url:
        yield Stack(scim_url=f"{url}/scim/v2", emulator=emulator, idp=idp, app=app)


def test_unmappable_refuse_answers_400_naming_the_attribute_and_stores_nothing(strict_stack: Stack) -> None:
    with strict_stack.client() as scim:
        refused = scim.post("/Users", json={"schemas": [USER], "userName": "no-mail"})
        assert refused.status_code == 400
        assert refused.json()["scimType"] == "invalidValue"
        assert MISSING in refused.json()["detail"]
        assert scim.get("/Users", params={"filter": 'userName eq "no-mail"'}).json()["totalResults"] == 0
