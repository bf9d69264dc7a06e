"""Issue 3 acceptance: SCIM writes become OpenZiti identities, and ext-jwt login follows the IdP."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from app.constants import STATUS_EXTENSION as STATUS
from app.constants import ZITI_EXTENSION as ZITI
from tests.provisioning.conftest import Stack

USER = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


def wait_until(predicate: Callable[[], Any], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def user(name: str, email: str, **extra: Any) -> dict[str, Any]:
    return {"schemas": [USER], "userName": name, "emails": [{"value": email, "primary": True}], **extra}


def patch(*operations: dict[str, Any]) -> dict[str, Any]:
    return {"schemas": [PATCH], "Operations": list(operations)}


def test_post_user_creates_the_mapped_identity(stack: Stack) -> None:
    """Acceptance 1: exactly the mapped externalId, name, roleAttributes, authPolicyId, and provenance tags."""
    with stack.client() as scim:
        created = scim.post(
            "/Users",
            json=user(
                "alice",
                "Alice@Example.com",
                roles=[{"value": "vpn-users"}],
                **{ZITI: {"roleAttributes": "ops, lab"}},
            ),
        )
    assert created.status_code == 201
    assert created.json()[STATUS]["provisioningState"] == "pending", "the IdP does not wait for the controller"
    (body,) = stack.settle()
    assert body[STATUS]["provisioningState"] == "synced"
    identity = stack.identity("alice@example.com")
    assert identity is not None and body[STATUS]["identityId"] == identity.id
    assert identity.name == "alice"
    assert sorted(identity.role_attributes) == ["lab", "ops", "vpn-users"]
    assert identity.auth_policy_id == "default"
    assert identity.is_admin is False
    assert identity.tags["managedBy"] == "ziti-scim" and identity.tags["scimId"] == body["id"]


def test_seed_scenario_first_login_works_right_after_provisioning(stack: Stack) -> None:
    """Acceptance 2: 'identity not found by externalId' before the SCIM POST, success right after."""
    before = stack.login(email="bob@example.com")
    assert before.status_code == 401
    assert stack.state.last_auth_failure == "identity not found by externalId"
    with stack.client() as scim:
        assert scim.post("/Users", json=user("bob", "bob@example.com")).status_code == 201
    stack.settle()
    after = stack.login(email="bob@example.com")
    assert after.status_code == 200, after.text
    assert after.json()["data"]["identity"]["name"] == "bob"


def test_group_membership_and_rename_follow_into_role_attributes(stack: Stack) -> None:
    """Acceptance 3."""
    with stack.client() as scim:
        uid = scim.post("/Users", json=user("carol", "carol@example.com")).json()["id"]
        gid = scim.post("/Groups", json={"schemas": [GROUP], "displayName": "Engineering"}).json()["id"]
        scim.patch(f"/Groups/{gid}", json=patch({"op": "add", "path": "members", "value": [{"value": uid}]}))
        stack.settle()
        assert stack.identity("carol@example.com").role_attributes == ["Engineering"]
        scim.patch(
            f"/Groups/{gid}", json=patch({"op": "replace", "path": "displayName", "value": "Platform"})
        )
        stack.settle()
        assert stack.identity("carol@example.com").role_attributes == ["Platform"]
        scim.patch(f"/Groups/{gid}", json=patch({"op": "remove", "path": f'members[value eq "{uid}"]'}))
        stack.settle()
        assert stack.identity("carol@example.com").role_attributes == []
        scim.patch(f"/Groups/{gid}", json=patch({"op": "add", "path": "members", "value": [{"value": uid}]}))
        stack.settle()
        assert stack.identity("carol@example.com").role_attributes == ["Platform"]
        assert scim.delete(f"/Groups/{gid}").status_code == 204
        stack.settle()
        assert stack.identity("carol@example.com").role_attributes == []


def test_deactivation_disables_and_reactivation_enables(stack: Stack) -> None:
    """Acceptance 4."""
    with stack.client() as scim:
        uid = scim.post("/Users", json=user("dave", "dave@example.com")).json()["id"]
        stack.settle()
        assert stack.login(email="dave@example.com").status_code == 200
        off = scim.patch(f"/Users/{uid}", json=patch({"op": "replace", "path": "active", "value": False}))
        assert off.status_code == 200 and off.json()["active"] is False
        stack.settle()
        identity = stack.identity("dave@example.com")
        assert identity.disabled_at is not None
        assert not stack.state.has_session(identity.id), "disabling must kill the user's sessions"
        assert stack.login(email="dave@example.com").status_code == 401
        on = scim.patch(f"/Users/{uid}", json=patch({"op": "replace", "path": "active", "value": True}))
        assert on.status_code == 200
        stack.settle()
        assert stack.login(email="dave@example.com").status_code == 200


def test_delete_removes_the_identity_and_never_touches_unmanaged_ones(stack: Stack) -> None:
    """Acceptance 5."""
    bystander = stack.state.create_identity(
        "router-admin", external_id="ops@example.com", role_attributes=["x"]
    )
    before = (bystander.name, bystander.external_id, list(bystander.role_attributes), bystander.tags)
    with stack.client() as scim:
        uid = scim.post("/Users", json=user("erin", "erin@example.com")).json()["id"]
        stack.settle()
        identity_id = stack.identity("erin@example.com").id
        assert scim.delete(f"/Users/{uid}").status_code == 204
    wait_until(lambda: identity_id not in stack.state.identities, "the identity to be deleted")
    assert identity_id not in stack.state.identities
    assert stack.login(email="erin@example.com").status_code == 401
    kept = stack.state.identities[bystander.id]
    assert (kept.name, kept.external_id, list(kept.role_attributes), kept.tags) == before


def test_name_taken_by_an_unmanaged_identity_gets_a_suffix(stack: Stack) -> None:
    stack.state.create_identity("frank")
    with stack.client() as scim:
        assert scim.post("/Users", json=user("frank", "frank@example.com")).status_code == 201
    stack.settle()
    assert stack.identity("frank@example.com").name == "frank-2"
    assert stack.state.identity_by_name("frank").external_id is None


def test_two_users_cannot_claim_the_same_external_id(stack: Stack) -> None:
    with stack.client() as scim:
        first = scim.post("/Users", json=user("gina", "gina@example.com"))
        assert first.status_code == 201
        identity = stack.identity("gina@example.com")
        before = (identity.name, identity.external_id, list(identity.role_attributes), dict(identity.tags))
        count = len(stack.state.identities)
        second = scim.post("/Users", json=user("gina2", "GINA@example.com"))
        assert second.status_code == 409 and second.json()["scimType"] == "uniqueness"
        # Nothing of the refused user is stored or sent: the first keeps its identity untouched.
        assert scim.get("/Users", params={"filter": 'userName eq "gina2"'}).json()["totalResults"] == 0
        assert scim.get(f"/Users/{first.json()['id']}").json()[STATUS]["identityId"] == identity.id
    assert len(stack.state.identities) == count
    assert (identity.name, identity.external_id, list(identity.role_attributes), dict(identity.tags)) == before


def test_adoption_of_an_identity_created_by_token_enrollment(stack: Stack) -> None:
    """Acceptance 7: an identity that already has the externalId (JIT enrollment) is adopted, not duplicated."""
    jit = stack.state.create_identity(
        "hank@example.com", external_id="hank@example.com", role_attributes=["old"]
    )
    with stack.client() as scim:
        created = scim.post("/Users", json=user("hank", "hank@example.com", roles=[{"value": "new"}]))
    assert created.status_code == 201
    (body,) = stack.settle()
    assert body[STATUS]["identityId"] == jit.id
    adopted = stack.state.identities[jit.id]
    assert adopted.tags["managedBy"] == "ziti-scim" and adopted.tags["scimAdopted"] is True
    assert adopted.role_attributes == ["new"] and adopted.name == "hank"
    assert len([i for i in stack.state.identities.values() if i.external_id == "hank@example.com"]) == 1


def test_a_patch_changing_nothing_answers_the_user_with_its_status(stack: Stack) -> None:
    """A PATCH reads the user without its status (its admission gives it); one that changes nothing
    still shows it, and writes nothing (no new version, no controller call)."""
    with stack.client() as scim:
        created = scim.post("/Users", json=user("ivo", "ivo@example.com", displayName="Ivo"))
        (settled,) = stack.settle()
        calls = len(stack.state.requests)
        same = {"schemas": [PATCH], "Operations": [{"op": "replace", "path": "displayName", "value": "Ivo"}]}
        patched = scim.patch(f"/Users/{created.json()['id']}", json=same)
        assert patched.status_code == 200
        assert patched.json()[STATUS] == settled[STATUS] == {
            "provisioningState": "synced",
            "identityId": settled[STATUS]["identityId"],
        }
        assert STATUS in patched.json()["schemas"]
        assert patched.json()["meta"]["version"] == settled["meta"]["version"]
        assert stack.settle()[0][STATUS]["provisioningState"] == "synced"
    assert len(stack.state.requests) == calls


def test_unchanged_update_makes_no_controller_call(stack: Stack) -> None:
    with stack.client() as scim:
        created = scim.post("/Users", json=user("ivy", "ivy@example.com", displayName="Ivy"))
        stack.settle()
        calls = len(stack.state.requests)
        replaced = scim.put(
            f"/Users/{created.json()['id']}", json=user("ivy", "ivy@example.com", displayName="Ivy")
        )
        assert replaced.status_code == 200
        (body,) = stack.settle()
        assert body[STATUS]["provisioningState"] == "synced"
    assert len(stack.state.requests) == calls


def test_a_change_the_identity_does_not_show_is_answered_synced_and_not_converged(stack: Stack) -> None:
    """displayName is not mapped by the default preset: the write is stored, the identity is left alone."""
    with stack.client() as scim:
        created = scim.post("/Users", json=user("jay", "jay@example.com", displayName="Jay"))
        (settled,) = stack.settle()
        calls = len(stack.state.requests)
        uid = created.json()["id"]
        renamed = {"schemas": [PATCH], "Operations": [{"op": "replace", "path": "displayName", "value": "J."}]}
        patched = scim.patch(f"/Users/{uid}", json=renamed)
        assert patched.status_code == 200
        assert patched.json()["displayName"] == "J."
        assert patched.json()[STATUS] == settled[STATUS]
        assert settled[STATUS]["provisioningState"] == "synced"
        assert len(stack.state.requests) == calls, "no controller call, not even a re-read"
        # A change the identity shows is converged as ever.
        moved = {"schemas": [PATCH], "Operations": [{"op": "replace", "path": "userName", "value": "jay2"}]}
        answer = scim.patch(f"/Users/{uid}", json=moved)
        assert answer.json()[STATUS]["provisioningState"] == "pending"
        (body,) = stack.settle()
        assert body[STATUS]["provisioningState"] == "synced"
    assert stack.identity("jay@example.com").name == "jay2"
