"""Identity writes: create, PUT, PATCH, delete, disable, enable.

Follows ``controller/internal/routes/identity_router.go``, ``controller/model/identity_manager.go`` and
``controller/model/base_manager.go updateEntity`` as written up in ``docs/controller-api.md``: §3.3 (create
fields and defaults), §3.5 (PUT = full replace that also re-enables, PATCH = keys present only, the silent
rename no-op), §3.6 (delete/disable/enable, sessions killed on disable) and §3.7 (uniqueness: 400 on create,
500 for an externalId collision on update, no 409s).
"""

from __future__ import annotations

import logging
import secrets
from typing import TYPE_CHECKING, Any, Literal

import jwt

from .bodyfields import Body, check_flat_tags, updated_fields
from .entities import Identity
from .errors import (
    duplicate_error,
    entity_can_not_be_deleted,
    field_cause,
    field_error,
    not_found,
    unhandled,
)
from .ids import format_time, new_id, new_token

if TYPE_CHECKING:
    from .state import EmulatorState

log = logging.getLogger("ziti_emulator")

IDENTITY_TYPES = ("User", "Device", "Service", "Router", "Default")
PRECEDENCES = ("default", "required", "failed")
STORE = "identities"
ENROLLMENT_MINUTES = 180


def validate_role_attributes(attrs: list[str]) -> None:
    """controller-api.md §3.3: an entity's own role attributes are bare strings; ``#``/``@`` prefixes are
    rejected."""
    for attr in attrs:
        for prefix in ("#", "@"):
            if attr.startswith(prefix):
                raise field_error(
                    "roleAttributes", f"role attributes may not be prefixed with {prefix}", attr
                )


def _external_id(value: str | None) -> str | None:
    """controller-api.md §3.3: ``""`` or whitespace is stored as null."""
    return value if value is not None and value.strip() else None


def _auth_policy_id(state: EmulatorState, value: str | None) -> str:
    policy_id = value or "default"
    if policy_id not in state.auth_policies:
        # controller-api.md §3.3 (derived): the FK index answers NOT_FOUND
        raise not_found(field_cause("authPolicyId", f"authPolicy with id {policy_id} not found", policy_id))
    return policy_id


def _hosting(body: Body) -> tuple[str | None, int | None, dict[str, Any] | None, dict[str, Any] | None]:
    precedence = body.enum("defaultHostingPrecedence", PRECEDENCES)
    cost = body.int_("defaultHostingCost")
    if cost is not None and not 0 <= cost <= 65535:
        raise field_error(
            "defaultHostingCost", "defaultHostingCost in body should be less than or equal to 65535", cost
        )
    return precedence, cost, body.map_("serviceHostingPrecedences"), body.map_("serviceHostingCosts")


def _enrollment(identity: Identity, spec: dict[str, Any], now: float) -> dict[str, Any]:
    """controller-api.md §3.3 ``enrollment``: only one is created, precedence ott, ottca, updb."""
    if spec.get("ott") is True:
        method = "ott"
    elif isinstance(spec.get("ottca"), str):
        method = "ottca"
    elif isinstance(spec.get("updb"), str):
        method = "updb"
    else:
        return {}
    token = new_token()
    expires = now + ENROLLMENT_MINUTES * 60
    claims = {
        "em": method,
        "iss": "https://ziti-emulator",
        "sub": identity.id,
        "jti": token,
        "exp": int(expires),
    }
    record: dict[str, Any] = {
        "id": new_id(),
        "token": token,
        "jwt": jwt.encode(claims, secrets.token_bytes(32), algorithm="HS256"),
        "expiresAt": format_time(expires),
    }
    if method == "ottca":
        record["caId"] = spec["ottca"]
    if method == "updb":
        record["username"] = spec["updb"]
    return {method: record}


def _check_unique(
    state: EmulatorState, field: Literal["name", "externalId"], value: str, exclude: str | None = None
) -> bool:
    holder = state.holder(field, value)
    return holder is None or holder.id == exclude


def create_identity(state: EmulatorState, data: Any, *, out_of_band: bool = False) -> Identity:
    body = Body(data, "identity", "IdentityCreate")
    name = body.str_("name", required=True)
    body.enum("type", IDENTITY_TYPES, required=True)
    is_admin = body.bool_("isAdmin", required=True)
    external_id = _external_id(body.str_("externalId"))
    role_attributes = body.str_list("roleAttributes") or []
    tags = body.map_("tags") or {}
    app_data = body.map_("appData") or {}
    precedence, cost, precedences, costs = _hosting(body)
    permissions = body.str_list("permissions")
    enrollment = body.map_("enrollment") or {}
    auth_policy_value = body.str_("authPolicyId")
    assert name is not None and is_admin is not None
    validate_role_attributes(role_attributes)
    check_flat_tags(tags, STORE)
    with state.lock:
        now = state.now()
        if name == "":
            raise unhandled("index on identities.name does not allow null or empty values")
        if not _check_unique(state, "name", name):
            raise duplicate_error(STORE, "name", name)
        if external_id is not None and not _check_unique(state, "externalId", external_id):
            raise duplicate_error(STORE, "externalId", external_id)
        identity = Identity(
            id=new_id(),
            name=name,
            created_at=now,
            updated_at=now,
            is_admin=is_admin,
            external_id=external_id,
            role_attributes=role_attributes,
            auth_policy_id=_auth_policy_id(state, auth_policy_value),
            tags=tags,
            app_data=app_data,
            default_hosting_precedence=precedence or "default",
            default_hosting_cost=cost or 0,
            service_hosting_precedences=precedences or {},
            service_hosting_costs=costs or {},
            # 1.6.20 ignores permissions (controller-api.md §3.3)
            permissions=permissions if state.flavor != "1.6" else None,
        )
        identity.enrollments = _enrollment(identity, enrollment, now)
        state.identities[identity.id] = identity
        state.index(identity)
    log.info("identity created%s: id=%s name=%s", " out of band" if out_of_band else "", identity.id, name)
    return identity


def get_identity(state: EmulatorState, identity_id: str) -> Identity:
    identity = state.identities.get(identity_id)
    if identity is None:
        raise not_found()
    return identity


def update_identity(state: EmulatorState, identity_id: str, data: Any, *, patch: bool) -> Identity:
    """PUT (``patch=False``) or PATCH; returns the identity (unchanged on the silent rename no-op)."""
    body = Body(data, "identity", "IdentityPatch" if patch else "IdentityUpdate")
    # PATCH: null leaves a field unchanged (api/json_fields.go GetJsonFields); "" clears externalId
    clears = state.profile.empty_map_patch_clears
    present = updated_fields(body.data, empty_map_counts=clears) if patch else None

    def given(key: str) -> bool:
        return present is None or key in present

    name = body.str_("name", required=not patch)
    id_type = body.enum("type", IDENTITY_TYPES, required=not patch)
    is_admin = body.bool_("isAdmin", required=not patch)
    external_id = _external_id(body.str_("externalId"))
    role_attributes = body.str_list("roleAttributes") or []
    tags = body.map_("tags") or {}
    app_data = body.map_("appData") or {}
    precedence, cost, precedences, costs = _hosting(body)
    permissions = body.str_list("permissions")
    auth_policy_value = body.str_("authPolicyId")
    with state.lock:
        identity = get_identity(state, identity_id)
        if id_type == "Router" and identity.type_id != "Router":
            raise field_error("type", "identity type can not be changed to Router", id_type)
        if given("name"):
            new_name = name or ""
            if new_name != identity.name and (
                new_name == "" or not _check_unique(state, "name", new_name, identity.id)
            ):
                # controller-api.md §3.5 silent rename bug: the name check fails and the whole update is
                # dropped with a 200
                log.info(
                    "identity %s: rename to %r rejected silently (empty or duplicate)", identity.id, new_name
                )
                return identity
        if given("roleAttributes"):
            validate_role_attributes(role_attributes)
        if given("tags"):
            check_flat_tags(tags, STORE)
        policy_id = (
            _auth_policy_id(state, auth_policy_value) if given("authPolicyId") else identity.auth_policy_id
        )
        if (
            given("externalId")
            and external_id is not None
            and not _check_unique(state, "externalId", external_id, identity.id)
        ):
            # controller-api.md §3.7: updates do not map unique-index errors, so they surface as 500
            raise unhandled(f"duplicate value '{external_id}' in unique index on {STORE} store")
        state.unindex(identity)
        if given("name"):
            identity.name = name or identity.name
        if given("isAdmin"):
            identity.is_admin = bool(is_admin)
        if given("externalId"):
            identity.external_id = external_id
        state.index(identity)
        if given("roleAttributes"):
            identity.role_attributes = role_attributes
        if given("tags"):
            identity.tags = tags
        if given("appData"):
            identity.app_data = app_data
        identity.auth_policy_id = policy_id
        if given("defaultHostingPrecedence"):
            identity.default_hosting_precedence = precedence or "default"
        if given("defaultHostingCost"):
            identity.default_hosting_cost = cost or 0
        if given("serviceHostingPrecedences"):
            identity.service_hosting_precedences = precedences or {}
        if given("serviceHostingCosts"):
            identity.service_hosting_costs = costs or {}
        if given("permissions") and state.flavor != "1.6":
            identity.permissions = permissions
        if not patch:
            # controller-api.md §3.5 (derived): PUT resets disabledAt/disabledUntil too, i.e. re-enables the
            # identity
            identity.disabled_at = None
            identity.disabled_until = None
        identity.updated_at = state.now()
    return identity


def delete_identity(state: EmulatorState, identity_id: str) -> None:
    with state.lock:
        identity = get_identity(state, identity_id)
        if identity.is_default_admin:
            raise entity_can_not_be_deleted("the default admin identity can not be deleted")
        del state.identities[identity_id]
        state.unindex(identity)
        state.drop_sessions(identity_id)
        ref = "@" + identity_id
        for policy in [*state.service_policies.values(), *state.edge_router_policies.values()]:
            if ref in policy.identity_roles:
                policy.identity_roles = [r for r in policy.identity_roles if r != ref]


def disable_identity(state: EmulatorState, identity_id: str, data: Any) -> None:
    body = Body(data, "disable", "DisableParams")
    minutes = body.int_("durationMinutes", required=True)
    assert minutes is not None
    with state.lock:
        identity = get_identity(state, identity_id)
        now = state.now()
        identity.disabled_at = now
        identity.disabled_until = now + minutes * 60 if minutes > 0 else None
        identity.updated_at = now
        killed = state.drop_sessions(identity_id)
    log.info("identity %s disabled (%s min); %d api session(s) removed", identity_id, minutes, killed)


def enable_identity(state: EmulatorState, identity_id: str) -> None:
    with state.lock:
        identity = get_identity(state, identity_id)
        identity.disabled_at = None
        identity.disabled_until = None
        identity.updated_at = state.now()
