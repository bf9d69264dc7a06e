"""Auth policy writes and the built-in ``default`` policy.

Implements ``docs/controller-api.md`` §5: detail shape ``{name, primary:{cert, updb, extJwt}, secondary}``;
the system policy ``default`` allows cert, updb and ext-jwt with ``allowedSigners: []`` (= any enabled
signer); identities without an explicit ``authPolicyId`` use it. Deleting a policy still used by identities
gives 409; the default policy cannot be deleted.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from .bodyfields import Body, check_flat_tags
from .entities import AuthPolicy
from .errors import (
    can_not_delete_referenced,
    duplicate_error,
    entity_can_not_be_deleted,
    field_cause,
    field_error,
    not_found,
)
from .ids import new_id

if TYPE_CHECKING:
    from .state import EmulatorState

STORE = "authPolicies"

DEFAULT_PRIMARY: dict[str, Any] = {
    "cert": {"allowed": True, "allowExpiredCerts": True},
    "updb": {
        "allowed": True,
        "minPasswordLength": 5,
        "requireSpecialChar": False,
        "requireNumberChar": False,
        "requireMixedCase": False,
        "maxAttempts": 0,
        "lockoutDurationMinutes": 0,
    },
    "extJwt": {"allowed": True, "allowedSigners": []},
}
DEFAULT_SECONDARY: dict[str, Any] = {"requireTotp": False, "requireExtJwtSigner": None}


def default_policy(now: float) -> AuthPolicy:
    return AuthPolicy(
        id="default",
        name="Default",
        created_at=now,
        updated_at=now,
        primary=copy.deepcopy(DEFAULT_PRIMARY),
        secondary=dict(DEFAULT_SECONDARY),
        is_system=True,
    )


def _merge(base: dict[str, Any], patch: dict[str, Any], path: str) -> dict[str, Any]:
    """Overlay ``patch`` on ``base`` two levels deep; ``null`` leaves a value unchanged."""
    out = copy.deepcopy(base)
    for key, value in patch.items():
        if value is None or key not in base:
            continue
        if isinstance(base[key], dict):
            if not isinstance(value, dict):
                raise field_error(f"{path}.{key}", f"{path}.{key} in body must be of type object", value)
            for sub, sub_value in value.items():
                if sub_value is not None and sub in base[key]:
                    out[key][sub] = sub_value
        else:
            out[key] = value
    return out


def _check_signers(state: EmulatorState, primary: dict[str, Any], secondary: dict[str, Any]) -> None:
    signers = primary["extJwt"].get("allowedSigners") or []
    if not isinstance(signers, list) or not all(isinstance(s, str) for s in signers):
        raise field_error(
            "primary.extJwt.allowedSigners", "allowedSigners must be a list of signer ids", signers
        )
    primary["extJwt"]["allowedSigners"] = list(signers)
    for signer_id in [*signers, secondary.get("requireExtJwtSigner")]:
        if signer_id is not None and signer_id not in state.signers:
            cause = field_cause(
                "allowedSigners", f"externalJwtSigner with id {signer_id} not found", signer_id
            )
            raise not_found(cause)


def _parts(body: Body, base_primary: dict[str, Any], base_secondary: dict[str, Any]) -> tuple[Any, Any]:
    primary = _merge(base_primary, body.map_("primary") or {}, "primary")
    secondary = _merge(base_secondary, body.map_("secondary") or {}, "secondary")
    if "requireExtJwtSigner" in (body.map_("secondary") or {}):
        secondary["requireExtJwtSigner"] = (body.map_("secondary") or {}).get("requireExtJwtSigner")
    return primary, secondary


def create_auth_policy(state: EmulatorState, data: Any) -> AuthPolicy:
    body = Body(data, "authPolicy", "AuthPolicyCreate")
    name = body.str_("name", required=True)
    if body.map_("primary") is None:
        raise field_error("primary", "primary in body is required", None)
    if body.map_("secondary") is None:
        raise field_error("secondary", "secondary in body is required", None)
    tags = body.map_("tags") or {}
    check_flat_tags(tags, STORE)
    assert name is not None
    primary, secondary = _parts(body, DEFAULT_PRIMARY, DEFAULT_SECONDARY)
    with state.lock:
        _check_signers(state, primary, secondary)
        if any(p.name == name for p in state.auth_policies.values()):
            raise duplicate_error(STORE, "name", name)
        now = state.now()
        policy = AuthPolicy(new_id(), name, now, now, primary, secondary, tags)
        state.auth_policies[policy.id] = policy
    return policy


def get_auth_policy(state: EmulatorState, policy_id: str) -> AuthPolicy:
    policy = state.auth_policies.get(policy_id)
    if policy is None:
        raise not_found()
    return policy


def update_auth_policy(state: EmulatorState, policy_id: str, data: Any, *, patch: bool) -> AuthPolicy:
    body = Body(data, "authPolicy", "AuthPolicyPatch" if patch else "AuthPolicyUpdate")
    name = body.str_("name", required=not patch)
    tags = body.map_("tags")
    check_flat_tags(tags or {}, STORE)
    with state.lock:
        policy = get_auth_policy(state, policy_id)
        base_primary = policy.primary if patch else DEFAULT_PRIMARY
        base_secondary = policy.secondary if patch else DEFAULT_SECONDARY
        primary, secondary = _parts(body, base_primary, base_secondary)
        _check_signers(state, primary, secondary)
        if name is not None and name != policy.name:
            if not name or any(p.name == name for p in state.auth_policies.values() if p.id != policy_id):
                return policy  # controller-api.md §3.5: the generic rename check drops the update silently
            policy.name = name
        policy.primary, policy.secondary = primary, secondary
        if tags is not None or not patch:
            policy.tags = tags or {}
        policy.updated_at = state.now()
    return policy


def delete_auth_policy(state: EmulatorState, policy_id: str) -> None:
    with state.lock:
        policy = get_auth_policy(state, policy_id)
        if policy.is_system:
            raise entity_can_not_be_deleted("the default auth policy is a system entity")
        users = sorted(i.id for i in state.identities.values() if i.auth_policy_id == policy_id)
        if users:
            raise can_not_delete_referenced("authPolicy", "identity", users, "authPolicyId")
        del state.auth_policies[policy_id]
