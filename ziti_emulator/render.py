"""JSON shapes of the emulated entities (detail and list items share a shape).

Implements ``docs/controller-api.md`` §1 "Envelopes" (``_links``, ``entityRef``), §2.1
(``currentApiSessionDetail``), §3.4 (identity detail: ``externalId`` null when unset, ``typeId`` ``Default``,
``permissions`` null in 1.6, ``roleAttributes`` null when empty in 1.6 and ``[]`` in 2.0,
``disabledAt``/``disabledUntil`` only when set), §4 (``externalJwtSignerDetail``; the 2.0-only ``enroll*``
fields are not returned by 1.6) and §5/§6.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .entities import ApiSession, AuthPolicy, ExtJwtSigner, Identity, Policy
from .ids import format_time

if TYPE_CHECKING:
    from .state import EmulatorState

JSON = dict[str, Any]

_IDENTITY_LINKS = (
    "edge-router-policies",
    "edge-routers",
    "service-policies",
    "services",
    "posture-data",
    "failed-service-requests",
    "authenticators",
    "enrollments",
    "service-configs",
)


def links(collection: str, entity_id: str, *subs: str) -> JSON:
    self_href = f"./{collection}/{entity_id}"
    out: JSON = {"self": {"href": self_href}}
    for sub in subs:
        out[sub] = {"href": f"{self_href}/{sub}"}
    return out


def entity_ref(entity: str, entity_id: str, name: str) -> JSON:
    return {"entity": entity, "id": entity_id, "name": name, "_links": links(entity, entity_id)}


def _base(entity_id: str, created: float, updated: float, tags: JSON, link_map: JSON) -> JSON:
    return {
        "id": entity_id,
        "createdAt": format_time(created),
        "updatedAt": format_time(updated),
        "tags": dict(tags),
        "_links": link_map,
    }


def identity(state: EmulatorState, ident: Identity) -> JSON:
    link_map = links("identities", ident.id, *_IDENTITY_LINKS)
    link_map["auth-policies"] = {"href": f"./auth-policies/{ident.auth_policy_id}"}
    policy = state.auth_policies.get(ident.auth_policy_id)
    authenticators: JSON = {}
    if ident.updb_id is not None:
        authenticators["updb"] = {"id": ident.updb_id, "username": ident.updb_username}
    role_attributes: list[str] | None = list(ident.role_attributes)
    if state.flavor == "1.6" and not role_attributes:
        role_attributes = None
    now = state.now()
    out = _base(ident.id, ident.created_at, ident.updated_at, ident.tags, link_map)
    out.update(
        {
            "name": ident.name,
            "type": entity_ref("identity-types", ident.type_id, ident.type_id),
            "typeId": ident.type_id,
            "isAdmin": ident.is_admin,
            "isDefaultAdmin": ident.is_default_admin,
            "externalId": ident.external_id,
            "roleAttributes": role_attributes,
            "authPolicyId": ident.auth_policy_id,
            "authPolicy": entity_ref("auth-policies", ident.auth_policy_id, policy.name if policy else ""),
            "authenticators": authenticators,
            "enrollment": dict(ident.enrollments),
            "envInfo": {},
            "sdkInfo": {},
            "hasApiSession": state.has_session(ident.id),
            "hasEdgeRouterConnection": False,
            "edgeRouterConnectionStatus": "offline",
            "isMfaEnabled": False,
            "disabled": ident.is_disabled(now),
            "defaultHostingPrecedence": ident.default_hosting_precedence,
            "defaultHostingCost": ident.default_hosting_cost,
            "serviceHostingPrecedences": dict(ident.service_hosting_precedences),
            "serviceHostingCosts": dict(ident.service_hosting_costs),
            "appData": dict(ident.app_data),
            "interfaces": None,
            "permissions": list(ident.permissions) if ident.permissions and state.flavor != "1.6" else None,
        }
    )
    if ident.disabled_at is not None:
        out["disabledAt"] = format_time(ident.disabled_at)
        out["disabledUntil"] = format_time(ident.disabled_until) if ident.disabled_until is not None else None
    return out


def auth_policy(policy: AuthPolicy) -> JSON:
    out = _base(
        policy.id, policy.created_at, policy.updated_at, policy.tags, links("auth-policies", policy.id)
    )
    primary = {k: dict(v) for k, v in policy.primary.items()}
    primary["extJwt"]["allowedSigners"] = list(policy.allowed_signers)
    out.update({"name": policy.name, "primary": primary, "secondary": dict(policy.secondary)})
    return out


def signer(state: EmulatorState, s: ExtJwtSigner) -> JSON:
    out = _base(s.id, s.created_at, s.updated_at, s.tags, links("external-jwt-signers", s.id))
    out.update(
        {
            "name": s.name,
            "enabled": s.enabled,
            "issuer": s.issuer,
            "audience": s.audience,
            "certPem": s.cert_pem,
            "jwksEndpoint": s.jwks_endpoint,
            "kid": s.kid,
            "fingerprint": s.fingerprint,
            "commonName": s.common_name,
            "notBefore": format_time(s.not_before) if s.not_before is not None else None,
            "notAfter": format_time(s.not_after) if s.not_after is not None else None,
            "claimsProperty": s.claims_property,
            "useExternalId": s.use_external_id,
            "externalAuthUrl": s.external_auth_url,
            "clientId": s.client_id,
            "scopes": list(s.scopes),
            "targetToken": s.target_token,
        }
    )
    if state.flavor != "1.6":
        out.update(
            {
                "enrollToCertEnabled": s.enroll_to_cert_enabled,
                "enrollToTokenEnabled": s.enroll_to_token_enabled,
                "enrollNameClaimsSelector": s.enroll_name_claims_selector,
                "enrollAttributeClaimsSelector": s.enroll_attribute_claims_selector,
                "enrollAuthPolicyId": s.enroll_auth_policy_id,
            }
        )
    return out


def client_signer(state: EmulatorState, s: ExtJwtSigner) -> JSON:
    """The unauthenticated client-API view (``clientExternalJwtSignerDetail``)."""
    out = _base(s.id, s.created_at, s.updated_at, s.tags, links("external-jwt-signers", s.id))
    out.update(
        {
            "name": s.name,
            "audience": s.audience,
            "clientId": s.client_id,
            "externalAuthUrl": s.external_auth_url,
            "scopes": list(s.scopes),
            "targetToken": s.target_token,
        }
    )
    if state.flavor != "1.6":
        out["enrollToCertEnabled"] = s.enroll_to_cert_enabled
        out["enrollToTokenEnabled"] = s.enroll_to_token_enabled
    return out


def _named_roles(state: EmulatorState, roles: list[str]) -> list[JSON]:
    out = []
    for role in roles:
        name = role
        if role.startswith("@"):
            ident = state.identities.get(role[1:])
            name = "@" + ident.name if ident else role
        out.append({"role": role, "name": name})
    return out


def policy(state: EmulatorState, p: Policy) -> JSON:
    collection = "service-policies" if p.kind == "service" else "edge-router-policies"
    out = _base(p.id, p.created_at, p.updated_at, p.tags, links(collection, p.id))
    out.update(
        {
            "name": p.name,
            "semantic": p.semantic,
            "identityRoles": list(p.identity_roles),
            "identityRolesDisplay": _named_roles(state, p.identity_roles),
        }
    )
    if p.kind == "service":
        out.update(
            {
                "type": p.type,
                "serviceRoles": list(p.service_roles),
                "serviceRolesDisplay": _named_roles(state, p.service_roles),
                "postureCheckRoles": list(p.posture_check_roles),
                "postureCheckRolesDisplay": _named_roles(state, p.posture_check_roles),
            }
        )
    else:
        out.update(
            {
                "edgeRouterRoles": list(p.edge_router_roles),
                "edgeRouterRolesDisplay": _named_roles(state, p.edge_router_roles),
                "isSystem": p.is_system,
            }
        )
    return out


def api_session(state: EmulatorState, s: ApiSession) -> JSON:
    """``currentApiSessionDetail`` (controller-api.md §2.1)."""
    ident = state.identities.get(s.identity_id)
    name = ident.name if ident else ""
    link_map = {"self": {"href": "./current-api-session"}, "current-identity": {"href": "./current-identity"}}
    out = _base(s.id, s.created_at, s.last_activity_at, {}, link_map)
    out.update(
        {
            "token": s.token,
            "identityId": s.identity_id,
            "identity": entity_ref("identities", s.identity_id, name),
            "ipAddress": s.ip_address,
            "configTypes": list(s.config_types),
            "authQueries": [],
            "isMfaRequired": False,
            "isMfaComplete": False,
            "authenticatorId": s.authenticator_id,
            "isCertExtendable": False,
            "isCertExtendRequested": False,
            "isCertKeyRollRequested": False,
            "improperClientCertChain": False,
            "lastActivityAt": format_time(s.last_activity_at),
            "cachedLastActivityAt": format_time(s.last_activity_at),
            "expiresAt": format_time(state.expires_at(s)),
            "expirationSeconds": int(state.session_timeout),
        }
    )
    return out
