"""The provisioning status has its own readOnly extension; the writable ziti extension reads back as written.

A client that sends the status back (inside the Status extension, or inside the ziti extension where
earlier versions showed it) is not refused whatever the source's ``unknown`` policy: the values are
ignored (RFC 7643 §2.2 ``readOnly``). A PATCH whose path names one status attribute gets 400
``mutability`` (RFC 7644 §3.5.2).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import httpx
import pytest

from app.constants import STATUS_ATTRIBUTES, STATUS_EXTENSION, ZITI_EXTENSION
from tests.provisioning.conftest import Stack

USER = "urn:ietf:params:scim:schemas:core:2.0:User"
PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
LEGACY = {"roleAttributes": "ops", "identityId": "forged", "provisioningState": "failed", "lastError": "forged"}
FORGED_STATUS = {"identityId": "forged", "provisioningState": "failed"}


def patch(scim: httpx.Client, user_id: str, *operations: dict[str, Any]) -> httpx.Response:
    return scim.patch(f"/Users/{user_id}", json={"schemas": [PATCH], "Operations": list(operations)})


def test_discovery_publishes_the_status_extension_apart(option_stack: Callable[..., AbstractContextManager[Stack]]) -> None:
    with option_stack() as stack, stack.client() as scim:
        status = scim.get(f"/Schemas/{STATUS_EXTENSION}").json()
        ziti = scim.get(f"/Schemas/{ZITI_EXTENSION}").json()
        (user_type,) = [r for r in scim.get("/ResourceTypes").json()["Resources"] if r["name"] == "User"]
    assert {a["name"]: a["mutability"] for a in status["attributes"]} == dict.fromkeys(STATUS_ATTRIBUTES, "readOnly")
    assert [(a["name"], a["mutability"]) for a in ziti["attributes"]] == [("roleAttributes", "readWrite")]
    assert {"schema": STATUS_EXTENSION, "required": False} in user_type["schemaExtensions"]
    assert {"schema": ZITI_EXTENSION, "required": False} in user_type["schemaExtensions"]


@pytest.mark.parametrize("unknown", ["ignore", "forbid", "keep"])
def test_a_client_sending_the_status_back_is_ignored_not_refused(
    option_stack: Callable[..., AbstractContextManager[Stack]], unknown: str
) -> None:
    with option_stack(policy={"unknown": unknown}) as stack, stack.client() as scim:
        created = scim.post(
            "/Users",
            json={
                "schemas": [USER, ZITI_EXTENSION, STATUS_EXTENSION],
                "userName": "stat",
                "emails": [{"value": "stat@example.com", "primary": True}],
                ZITI_EXTENSION: LEGACY,
                STATUS_EXTENSION: FORGED_STATUS,
            },
        )
        assert created.status_code == 201, created.text
        body = created.json()
        identity = stack.identity("stat@example.com")
        assert identity is not None
        expected_status = {"provisioningState": "synced", "identityId": identity.id}
        assert body[ZITI_EXTENSION] == {"roleAttributes": "ops"}
        assert body[STATUS_EXTENSION] == expected_status
        assert STATUS_EXTENSION in body["schemas"]
        user_id = body["id"]

        echoed = scim.get(f"/Users/{user_id}").json()
        echoed[ZITI_EXTENSION] = {**echoed[ZITI_EXTENSION], **LEGACY}
        echoed[STATUS_EXTENSION] = FORGED_STATUS
        replaced = scim.put(f"/Users/{user_id}", json=echoed)
        assert replaced.status_code == 200, replaced.text

        for operation in (
            {"op": "replace", "path": ZITI_EXTENSION, "value": LEGACY},
            {"op": "replace", "value": {ZITI_EXTENSION: LEGACY}},
            {"op": "replace", "path": STATUS_EXTENSION, "value": FORGED_STATUS},
            {"op": "replace", "value": {STATUS_EXTENSION.upper(): FORGED_STATUS}},
            {"op": "remove", "path": STATUS_EXTENSION},
        ):
            patched = patch(scim, user_id, operation)
            assert patched.status_code == 200, (operation, patched.text)
            assert patched.json()[ZITI_EXTENSION] == {"roleAttributes": "ops"}, operation
            assert patched.json()[STATUS_EXTENSION] == expected_status, operation

        for path in (f"{STATUS_EXTENSION}:provisioningState", f"{ZITI_EXTENSION}:identityId"):
            refused = patch(scim, user_id, {"op": "replace", "path": path, "value": "forged"})
            assert refused.status_code == 400 and refused.json()["scimType"] == "mutability", refused.text

        stored = scim.get(f"/Users/{user_id}").json()
    assert stored[ZITI_EXTENSION] == {"roleAttributes": "ops"}
    assert stored[STATUS_EXTENSION] == expected_status
    assert "ops" in stack.state.identities[identity.id].role_attributes


def test_the_writable_extension_reads_back_exactly_as_patched(option_stack: Callable[..., AbstractContextManager[Stack]]) -> None:
    with option_stack() as stack, stack.client() as scim:
        created = scim.post("/Users", json={"schemas": [USER], "userName": "bare"})
        assert created.status_code == 201, created.text
        assert created.json()[STATUS_EXTENSION]["provisioningState"] == "skipped"
        patched = patch(scim, created.json()["id"], {"op": "add", "path": ZITI_EXTENSION, "value": {"roleAttributes": "lab"}})
        assert patched.status_code == 200, patched.text
        assert patched.json()[ZITI_EXTENSION] == {"roleAttributes": "lab"}
        assert patched.json()[STATUS_EXTENSION]["provisioningState"] == "skipped"
        removed = patch(scim, created.json()["id"], {"op": "remove", "path": ZITI_EXTENSION})
        assert removed.status_code == 200, removed.text
        assert ZITI_EXTENSION not in removed.json() and removed.json()[STATUS_EXTENSION]["provisioningState"] == "skipped"
