"""The identity fields a user's mapping asks for: what the reconciler writes and records as applied."""

from __future__ import annotations

from typing import Any

from app.mapping import DesiredIdentity


def target_fields(identity: DesiredIdentity) -> dict[str, Any]:
    """The managed fields of ``identity`` as the controller names them."""
    return {
        "name": identity.name,
        "externalId": identity.external_id,
        "roleAttributes": sorted(identity.role_attributes),
        "authPolicyId": identity.auth_policy_id,
        "isAdmin": identity.is_admin,
    }


def target_of(identity: DesiredIdentity, document: dict[str, Any]) -> dict[str, Any]:
    """:func:`target_fields` and ``disabled`` (the SCIM user's ``active`` is false, RFC 7643 §4.1.1):
    what a converge compares with the record's ``applied["target"]``."""
    return {**target_fields(identity), "disabled": document.get("active") is False}
