"""Service policies and edge-router policies: writes, role validation and matching.

Implements ``docs/controller-api.md`` §6: role entries must start with ``#`` (attribute) or ``@`` (entity id);
``#all`` must be the only entry; ``@`` identity ids must exist ("no identities found with the given ids"). A
policy matches an identity when the identity's id is among the ``@`` ids, ``#all`` is present, or (``AllOf``)
it has all the ``#`` attributes of a non-empty set, or (``AnyOf``) at least one of them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .bodyfields import Body, check_flat_tags
from .entities import Identity, Policy
from .errors import duplicate_error, field_error, not_found
from .ids import new_id

if TYPE_CHECKING:
    from .state import EmulatorState

SEMANTICS = ("AllOf", "AnyOf")
DIAL_BIND = ("Dial", "Bind")
KINDS = {
    "service": (
        "servicePolicies",
        "policy",
        "ServicePolicy",
        ("identityRoles", "serviceRoles", "postureCheckRoles"),
    ),
    "edge-router": ("edgeRouterPolicies", "policy", "EdgeRouterPolicy", ("identityRoles", "edgeRouterRoles")),
}
_ATTR = {
    "identityRoles": "identity_roles",
    "serviceRoles": "service_roles",
    "postureCheckRoles": "posture_check_roles",
    "edgeRouterRoles": "edge_router_roles",
}


def store_of(state: EmulatorState, kind: str) -> dict[str, Policy]:
    return state.service_policies if kind == "service" else state.edge_router_policies


def validate_roles(state: EmulatorState, field: str, roles: list[str]) -> None:
    if len(roles) > 1 and "#all" in roles:
        raise field_error(field, "if using #all, it should be the only role specified", roles)
    invalid = [r for r in roles if not r.startswith(("#", "@"))]
    if invalid:
        reason = (
            "role entries must prefixed with # (to indicate role attributes) or @ (to indicate a name or id)"
        )
        raise field_error(field, reason, invalid)
    if field == "identityRoles":
        missing = [r[1:] for r in roles if r.startswith("@") and r[1:] not in state.identities]
        if missing:
            raise field_error(field, "no identities found with the given ids", missing)


def matches(policy: Policy, identity: Identity) -> bool:
    roles = [r[1:] for r in policy.identity_roles if r.startswith("#")]
    ids = [r[1:] for r in policy.identity_roles if r.startswith("@")]
    if identity.id in ids or "all" in roles:
        return True
    if not roles:
        return False
    attrs = set(identity.role_attributes)
    if policy.semantic == "AnyOf":
        return any(r in attrs for r in roles)
    return all(r in attrs for r in roles)


def _apply(state: EmulatorState, policy: Policy, body: Body, given: set[str] | None) -> None:
    def want(key: str) -> bool:
        return given is None or key in given

    if want("semantic"):
        policy.semantic = body.enum("semantic", SEMANTICS) or "AllOf"
    if policy.kind == "service" and want("type"):
        policy.type = body.enum("type", DIAL_BIND) or policy.type
    for key in KINDS[policy.kind][3]:
        if want(key):
            roles = body.str_list(key) or []
            validate_roles(state, key, roles)
            setattr(policy, _ATTR[key], roles)
    if want("tags"):
        tags = body.map_("tags") or {}
        check_flat_tags(tags, KINDS[policy.kind][0])
        policy.tags = tags


def create_policy(state: EmulatorState, kind: str, data: Any) -> Policy:
    store_name, param, model, _ = KINDS[kind]
    body = Body(data, param, model + "Create")
    name = body.str_("name", required=True)
    body.enum("semantic", SEMANTICS, required=True)
    if kind == "service":
        body.enum("type", DIAL_BIND, required=True)
    assert name is not None
    with state.lock:
        now = state.now()
        policy = Policy(kind=kind, id=new_id(), name=name, created_at=now, updated_at=now)
        _apply(state, policy, body, None)
        store = store_of(state, kind)
        if any(p.name == name for p in store.values()):
            raise duplicate_error(store_name, "name", name)
        store[policy.id] = policy
    return policy


def get_policy(state: EmulatorState, kind: str, policy_id: str) -> Policy:
    policy = store_of(state, kind).get(policy_id)
    if policy is None:
        raise not_found()
    return policy


def update_policy(state: EmulatorState, kind: str, policy_id: str, data: Any, *, patch: bool) -> Policy:
    _, param, model, _ = KINDS[kind]
    body = Body(data, param, model + ("Patch" if patch else "Update"))
    name = body.str_("name", required=not patch)
    if not patch:
        body.enum("semantic", SEMANTICS, required=True)
        if kind == "service":
            body.enum("type", DIAL_BIND, required=True)
    with state.lock:
        policy = get_policy(state, kind, policy_id)
        store = store_of(state, kind)
        if name is not None and name != policy.name:
            if not name or any(p.name == name for p in store.values() if p.id != policy_id):
                return policy  # controller-api.md §3.5: silent no-op on a rename collision
        staged = Policy(**policy.__dict__)
        _apply(state, staged, body, set(body.data) if patch else None)
        staged.name = name or policy.name
        staged.updated_at = state.now()
        store[policy_id] = staged
    return staged


def delete_policy(state: EmulatorState, kind: str, policy_id: str) -> None:
    with state.lock:
        get_policy(state, kind, policy_id)
        del store_of(state, kind)[policy_id]
