"""Presets applied to the real request bodies captured in the project's shared/traces
(:mod:`tests.paths`).

Each test loads the JSON files (no inline copies) and checks that the preset yields the externalId its
description documents, i.e. the value the paired ext-jwt signer claim will carry.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from app.constants import ENTERPRISE_EXTENSION
from app.mapping import (
    GroupRef,
    MappingConfig,
    MappingError,
    explain_external_id,
    load_mapping,
    map_user,
)
from tests.paths import TRACES, need


def trace(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(need(TRACES / name).read_text(encoding="utf-8"))
    return doc


def body(name: str) -> dict[str, Any]:
    result: dict[str, Any] = trace(name)["body"]
    return result


def group_from(create: str, membership: str, user_id: str) -> GroupRef:
    """A GroupRef built from a group-create trace, after checking a membership trace adds ``user_id``."""
    created = trace(create)
    group_id = created["expected_response"]["body"]["id"] if "expected_response" in created else None
    patch = trace(membership)
    group_id = group_id or patch["path"].rsplit("/", 1)[1]
    members = [m["value"] for op in patch["body"]["Operations"] for m in op["value"]]
    assert user_id in members
    return GroupRef(group_id, created["body"]["displayName"], created["body"].get("externalId"))


def mapped(user: dict[str, Any], preset: str, groups: list[GroupRef] | None = None, **over: Any) -> Any:
    return map_user(user, groups or [], load_mapping({"preset": preset, **over})).identity


# ---------------------------------------------------------------- authentik

AUTHENTIK_JDOE_UID = "d1e178d29df82553538238a6042b7f596ef4d4e188a5d8eea9c54c0a22cc49ef"
AUTHENTIK_JDOE_SCIM_ID = "0b8e6a52-3c1f-4d7e-9a26-5f4b1c8d2e90"


def test_authentik_create_user() -> None:
    group = group_from(
        "authentik/06-create-group.json",
        "authentik/07-create-group-push-members.json",
        AUTHENTIK_JDOE_SCIM_ID,
    )
    identity = mapped(body("authentik/02-create-user.json"), "authentik", [group], admin_group="ziti-admins")
    assert identity.external_id == AUTHENTIK_JDOE_UID  # = OIDC sub in "hashed user ID" mode
    assert identity.name == "jdoe"
    assert identity.role_attributes == ("ziti-admins",)
    assert identity.is_admin is True
    assert identity.type == "User" and identity.auth_policy_id == "default"


def test_authentik_key_survives_rename_and_email_change() -> None:
    created = mapped(body("authentik/02-create-user.json"), "authentik")
    updated = mapped(body("authentik/05-update-user.json"), "authentik")
    deactivated = mapped(body("authentik/12-deactivate-user.json"), "authentik")
    assert created == updated == deactivated
    assert created.fingerprint() == updated.fingerprint()  # nothing for the reconciler to do
    # keyed on email instead, the same update changes the identity
    assert (
        mapped(body("authentik/02-create-user.json"), "generic").fingerprint()
        != mapped(body("authentik/05-update-user.json"), "generic").fingerprint()
    )


def test_authentik_user_without_email() -> None:
    bob = body("authentik/03-create-user-no-email-single-name.json")
    identity = mapped(bob, "authentik", name_template="{name.givenName} {name.familyName}")
    assert identity.external_id == "d0c5c8c5e6162ece0c1554cea7146a0842af20d26faf6efd1aa28e3976327908"
    assert identity.name == "Bob"  # familyName " " does not leave a trailing space
    with pytest.raises(MappingError) as info:
        mapped(bob, "generic")  # emails: [] → the generic preset has no key
    assert info.value.attribute == "emails[primary eq true].value"


def test_authentik_webhook_uid_matches_scim_external_id() -> None:
    user = body("authentik/16-webhook-model-created-user-custom-mapping.json")["user"]
    assert user["uid"] == mapped(body("authentik/02-create-user.json"), "authentik").external_id


# ---------------------------------------------------------------- Entra ID

ENTRA_ALICE_SCIM_ID = "5d48a0a8-e9f0-4aa3-8008-1c2d3e4f5a6b"


def entra_alice_with_roles() -> dict[str, Any]:
    user = body("entra-okta/entra-02-create-user.json")
    (op,) = body("entra-okta/entra-05-roles-add.json")["Operations"]
    assert (op["op"], op["path"]) == ("Add", "roles")
    user["roles"] = list(user["roles"]) + op["value"]  # JSON-encoded role strings, as Entra sends them
    return user


def test_entra_create_user_with_app_roles_and_group() -> None:
    group = group_from(
        "entra-okta/entra-08-create-group.json",
        "entra-okta/entra-09-patch-group-add-member.json",
        ENTRA_ALICE_SCIM_ID,
    )
    result = map_user(
        entra_alice_with_roles(), [group], load_mapping({"preset": "entra", "admin_group": "ziti-admins"})
    )
    assert result.identity.external_id == "alice@contoso.com"  # UPN = preferred_username
    assert result.identity.name == "alice@contoso.com"
    assert result.identity.role_attributes == ("ziti-admin", "ziti-admins", "ziti-user")
    assert result.identity.is_admin is True
    assert result.dropped == () and result.warnings == ()


def test_entra_oid_preset_reads_external_id() -> None:
    # the trace keeps Entra's default externalId (mailNickname); with objectId mapped it carries the oid
    assert mapped(body("entra-okta/entra-02-create-user.json"), "entra-oid").external_id == "alice"


def test_entra_email_patch_rekeys_generic_but_not_entra() -> None:
    user = body("entra-okta/entra-02-create-user.json")
    before_generic, before_entra = mapped(user, "generic"), mapped(user, "entra")
    ops = body("entra-okta/entra-03-patch-user-email.json")["Operations"]
    email_op = next(op for op in ops if op["path"] == 'emails[type eq "work"].value')
    next(e for e in user["emails"] if e["type"] == "work")["value"] = email_op["value"]
    assert before_generic.external_id == "alice@contoso.com"
    assert mapped(user, "generic").external_id == "alice.smith@contoso.com"
    assert mapped(user, "entra") == before_entra


def test_entra_enterprise_extension_path() -> None:
    user = body("entra-okta/entra-02-create-user.json")
    config = MappingConfig(external_id=f"{ENTERPRISE_EXTENSION}:department", name_template="{displayName}")
    identity = map_user(user, [], config).identity
    assert (identity.external_id, identity.name) == ("Platform", "Alice Smith")


# ---------------------------------------------------------------- Okta

OKTA_ALICE_SCIM_ID = "23a35c27-23d3-4c03-b4c5-6443c09e7173"


def test_okta_create_user() -> None:
    created = trace("entra-okta/okta-02-create-user.json")
    assert created["expected_response"]["body"]["id"] == OKTA_ALICE_SCIM_ID
    group = group_from(
        "entra-okta/okta-06-push-group.json",
        "entra-okta/okta-07-patch-group-add-member.json",
        OKTA_ALICE_SCIM_ID,
    )
    identity = mapped(created["body"], "okta", [group])
    assert identity.external_id == "00ujl29u0le5T6Aj10h7"  # Okta user id = access-token uid
    assert identity.name == "alice@example.com"
    assert identity.role_attributes == ("ziti-admins",)
    assert identity.is_admin is False  # no admin_group configured


def test_okta_put_keeps_identity() -> None:
    created = mapped(body("entra-okta/okta-02-create-user.json"), "okta")
    updated = mapped(body("entra-okta/okta-04-put-user.json"), "okta")
    assert created.fingerprint() == updated.fingerprint()
    assert (
        mapped(body("entra-okta/okta-04-put-user.json"), "generic").external_id == "alice.smith@example.com"
    )


# ---------------------------------------------------------------- Asgardeo

ASGARDEO_ALICE_SCIM_ID = "c2f1e9a4-5b7d-4e21-9a0b-6f3e2d1c0b9a"


def test_asgardeo_plain_string_emails() -> None:
    created = trace("asgardeo/scim-01-create-user.json")
    assert created["body"]["emails"] == ["alice@example.com"]
    assert created["expected_response"]["body"]["id"] == ASGARDEO_ALICE_SCIM_ID
    group_body = body("asgardeo/scim-05-create-group.json")
    assert ASGARDEO_ALICE_SCIM_ID in [m["value"] for m in group_body["members"]]
    group = GroupRef(
        trace("asgardeo/scim-05-create-group.json")["expected_response"]["body"]["id"],
        group_body["displayName"],
    )
    result = map_user(created["body"], [group], load_mapping({"preset": "asgardeo"}))
    assert result.identity.external_id == "alice@example.com"
    assert result.identity.name == "alice@example.com"
    assert result.identity.role_attributes == ("ziti-admins",)
    assert result.warnings == ("no element of emails is marked primary; used the first one",)


def test_asgardeo_partial_put_changes_key_to_new_email() -> None:
    assert (
        mapped(body("asgardeo/scim-03-put-user-email-changed.json"), "asgardeo").external_id
        == "alice.smith@example.com"
    )


def test_asgardeo_webhook_email_claim_equals_scim_key() -> None:
    (event,) = body("asgardeo/webhook-02-user-created.json")["events"].values()
    claims = {c["uri"]: c["value"] for c in event["user"]["claims"]}
    scim_key = mapped(body("asgardeo/scim-01-create-user.json"), "asgardeo").external_id
    assert claims["http://wso2.org/claims/emailaddress"] == scim_key


# ---------------------------------------------------------------- ZITADEL (webhook → SCIM-shaped user)


def zitadel_user(event: dict[str, Any]) -> dict[str, Any]:
    """What the ZITADEL webhook adapter is expected to hand the mapper (see zitadel.json description)."""
    payload = event["event_payload"]
    return {
        "externalId": event["aggregateID"],
        "userName": payload["userName"],
        "displayName": payload["displayName"],
        "name": {"givenName": payload["firstName"], "familyName": payload["lastName"]},
        "emails": [{"value": payload["email"], "primary": True}],
    }


def test_zitadel_user_added_and_granted() -> None:
    added = body("zitadel/01-user-human-added.json")
    grant = body("zitadel/02-user-grant-added.json")
    assert grant["event_payload"]["userId"] == added["aggregateID"]
    user = zitadel_user(added)
    user["roles"] = [{"value": key} for key in grant["event_payload"]["roleKeys"]]
    identity = mapped(user, "zitadel")
    assert identity.external_id == "339123456789012345"  # = token sub
    assert identity.name == "alice@example.com"
    assert identity.role_attributes == ("ops", "ziti-admin")


def test_zitadel_email_change_keeps_key() -> None:
    user = zitadel_user(body("zitadel/01-user-human-added.json"))
    before = mapped(user, "zitadel")
    changed = body("zitadel/03-user-human-email-changed.json")
    assert changed["aggregateID"] == user["externalId"]
    user["emails"] = [{"value": changed["event_payload"]["email"], "primary": True}]
    assert mapped(user, "zitadel") == before


# ---------------------------------------------------------------- all SCIM user bodies × generic

SCIM_USER_BODIES = {
    "authentik/02-create-user.json": "jane.doe@example.com",
    "authentik/05-update-user.json": "jane.smith@example.com",
    "entra-okta/entra-02-create-user.json": "alice@contoso.com",
    "entra-okta/okta-02-create-user.json": "alice@example.com",
    "entra-okta/okta-04-put-user.json": "alice.smith@example.com",
    "asgardeo/scim-01-create-user.json": "alice@example.com",
    "asgardeo/scim-03-put-user-email-changed.json": "alice.smith@example.com",
}


@pytest.mark.parametrize(("name", "expected"), sorted(SCIM_USER_BODIES.items()))
def test_generic_preset_on_every_user_body(name: str, expected: str) -> None:
    user = body(name)
    assert mapped(user, "generic").external_id == expected
    assert explain_external_id(user, load_mapping({})).startswith(f"externalId {expected!r} from emails[")
