"""Issue 16: each per-source option that protects access changes what reaches the controller.

``on_delete``, ``adopt``, ``name_conflict``, ``role_allow``/``role_deny`` and ``admin_group`` (README,
"Configuration"): each test here fails when its option is ignored (``python -m tests.mutations``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from app.constants import STATUS_EXTENSION as STATUS
from app.observability import audit
from app.reconcile.ownership import PUBLIC_CONFLICT
from app.store.db import Database
from tests.provisioning.conftest import Stack
from tests.provisioning.test_lifecycle import GROUP, PATCH, patch, user

OptionStack = Callable[..., AbstractContextManager[Stack]]


def snapshot(stack: Stack, identity_id: str) -> tuple[Any, ...]:
    i = stack.state.identities[identity_id]
    return (i.name, i.external_id, list(i.role_attributes), dict(i.tags), i.is_admin, i.disabled_at)


async def conflict_reasons(database_url: str) -> list[str]:
    """Why users were left in ``conflict`` (the audit log: the operator's view, not the SCIM client's)."""
    db = Database(database_url)
    try:
        return [str(e["error"]) for e in await audit.read(db) if e["action"] == "conflict"]
    finally:
        await db.dispose()


def test_on_delete_disable_keeps_the_identity_disabled(option_stack: OptionStack) -> None:
    with option_stack(on_delete="disable") as stack, stack.client() as scim:
        uid = scim.post("/Users", json=user("dora", "dora@example.com", roles=[{"value": "vpn"}])).json()["id"]
        identity = stack.identity("dora@example.com")
        assert stack.login(email="dora@example.com").status_code == 200
        assert scim.delete(f"/Users/{uid}").status_code == 204
        assert scim.get(f"/Users/{uid}").status_code == 404
    kept = stack.state.identities.get(identity.id)
    assert kept is not None, "on_delete = disable must keep the identity"
    assert kept.disabled_at is not None
    assert (kept.name, kept.external_id, kept.role_attributes) == ("dora", "dora@example.com", ["vpn"])
    assert kept.tags["scimId"] == uid  # still ours: a later sync may find and judge it
    assert stack.login(email="dora@example.com").status_code == 401


def test_adopt_refuse_leaves_the_unmanaged_identity_alone(option_stack: OptionStack, database_url: str) -> None:
    with option_stack(adopt="refuse") as stack, stack.client() as scim:
        jit = stack.state.create_identity("hal", external_id="hal@example.com", role_attributes=["old"])
        before = snapshot(stack, jit.id)
        created = scim.post("/Users", json=user("hal", "hal@example.com", roles=[{"value": "new"}]))
        assert created.status_code == 201
        body = created.json()
        assert body[STATUS]["provisioningState"] == "conflict"
        assert body[STATUS]["lastError"] == PUBLIC_CONFLICT  # nothing about the other identity
        assert body[STATUS].get("identityId") is None
    assert any("adopt = refuse" in reason for reason in asyncio.run(conflict_reasons(database_url)))
    assert snapshot(stack, jit.id) == before
    assert [i.id for i in stack.state.identities.values() if i.external_id == "hal@example.com"] == [jit.id]


def test_name_conflict_refuse_creates_no_identity_and_renames_nothing(
    option_stack: OptionStack, database_url: str
) -> None:
    with option_stack(mapping={"name_conflict": "refuse"}) as stack, stack.client() as scim:
        taken = stack.state.create_identity("ivan")
        other = stack.state.create_identity("judy")
        refused = scim.post("/Users", json=user("ivan", "ivan@example.com"))
        assert refused.status_code == 201
        assert refused.json()[STATUS]["provisioningState"] == "conflict"
        assert refused.json()[STATUS]["lastError"] == PUBLIC_CONFLICT
        assert stack.identity("ivan@example.com") is None
        # A rename onto a taken name is refused too: the identity keeps its name.
        kate = scim.post("/Users", json=user("kate", "kate@example.com")).json()
        renamed = scim.patch(
            f"/Users/{kate['id']}", json=patch({"op": "replace", "path": "userName", "value": "judy"})
        )
        assert renamed.status_code == 200 and renamed.json()[STATUS]["provisioningState"] == "conflict"
        assert stack.identity("kate@example.com").name == "kate"
    reasons = asyncio.run(conflict_reasons(database_url))
    assert any("'ivan' is taken" in r for r in reasons) and any("'judy' is taken" in r for r in reasons)
    assert stack.state.identity_by_name("ivan").id == taken.id and taken.external_id is None
    assert stack.state.identity_by_name("judy").id == other.id and other.external_id is None


def test_role_allow_and_deny_filter_what_reaches_the_identity(option_stack: OptionStack) -> None:
    mapping = {"role_allow": ["vpn-*", "staff"], "role_deny": ["*admin*"]}
    with option_stack(mapping=mapping) as stack, stack.client() as scim:
        roles = [{"value": v} for v in ("vpn-users", "vpn-admins", "staff", "ziti-admins", "guest")]
        assert scim.post("/Users", json=user("lena", "lena@example.com", roles=roles)).status_code == 201
    assert sorted(stack.identity("lena@example.com").role_attributes) == ["staff", "vpn-users"]


def test_admin_group_alone_grants_is_admin(option_stack: OptionStack) -> None:
    with option_stack(mapping={"admin_group": "ziti-admins"}) as stack, stack.client() as scim:
        mia = scim.post("/Users", json=user("mia", "mia@example.com")).json()["id"]
        ned = scim.post("/Users", json=user("ned", "ned@example.com")).json()["id"]
        admins = scim.post(
            "/Groups", json={"schemas": [GROUP], "displayName": "ziti-admins", "members": [{"value": mia}]}
        ).json()["id"]
        scim.post("/Groups", json={"schemas": [GROUP], "displayName": "staff", "members": [{"value": ned}]})
        assert stack.identity("mia@example.com").is_admin is True
        assert stack.identity("ned@example.com").is_admin is False
        removed = scim.patch(
            f"/Groups/{admins}",
            json={"schemas": [PATCH], "Operations": [{"op": "remove", "path": f'members[value eq "{mia}"]'}]},
        )
        assert removed.status_code in (200, 204)
    assert stack.identity("mia@example.com").is_admin is False
