"""In-memory entities of the emulated controller.

Field sets follow ``docs/controller-api.md`` §3.3/§3.4 (identities), §4 (external JWT signers), §5 (auth
policies), §6 (service and edge-router policies) and §2.1 (API sessions). Times are epoch seconds (floats).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

JSON = dict[str, Any]


@dataclass
class Identity:
    id: str
    name: str
    created_at: float
    updated_at: float
    type_id: str = "Default"
    is_admin: bool = False
    is_default_admin: bool = False
    external_id: str | None = None
    role_attributes: list[str] = field(default_factory=list)
    auth_policy_id: str = "default"
    tags: JSON = field(default_factory=dict)
    app_data: JSON = field(default_factory=dict)
    default_hosting_precedence: str = "default"
    default_hosting_cost: int = 0
    service_hosting_precedences: dict[str, Any] = field(default_factory=dict)
    service_hosting_costs: dict[str, Any] = field(default_factory=dict)
    permissions: list[str] | None = None
    disabled_at: float | None = None
    disabled_until: float | None = None
    # updb authenticator (password login); the password is kept in clear: this is a test double.
    updb_id: str | None = None
    updb_username: str | None = None
    updb_password: str | None = None
    enrollments: JSON = field(default_factory=dict)

    def is_disabled(self, now: float) -> bool:
        """controller-api.md §3.4: disabled when disabledAt is set and disabledUntil is unset or in the
        future."""
        return self.disabled_at is not None and (self.disabled_until is None or self.disabled_until > now)


@dataclass
class AuthPolicy:
    id: str
    name: str
    created_at: float
    updated_at: float
    primary: JSON
    secondary: JSON
    tags: JSON = field(default_factory=dict)
    is_system: bool = False

    @property
    def allowed_signers(self) -> list[str]:
        return list(self.primary.get("extJwt", {}).get("allowedSigners") or [])


@dataclass
class ExtJwtSigner:
    id: str
    name: str
    created_at: float
    updated_at: float
    enabled: bool
    issuer: str
    audience: str | None
    cert_pem: str | None = None
    jwks_endpoint: str | None = None
    kid: str | None = None
    claims_property: str = "sub"
    use_external_id: bool = False
    external_auth_url: str | None = None
    client_id: str | None = None
    scopes: list[str] = field(default_factory=list)
    target_token: str = "ACCESS"
    enroll_to_cert_enabled: bool = False
    enroll_to_token_enabled: bool = False
    enroll_name_claims_selector: str = "/sub"
    enroll_attribute_claims_selector: str = ""
    enroll_auth_policy_id: str = "default"
    fingerprint: str | None = None
    common_name: str | None = None
    not_before: float | None = None
    not_after: float | None = None
    tags: JSON = field(default_factory=dict)


@dataclass
class Policy:
    """A service policy (kind ``service``) or edge-router policy (kind ``edge-router``)."""

    kind: str
    id: str
    name: str
    created_at: float
    updated_at: float
    semantic: str = "AllOf"
    type: str | None = None  # Dial / Bind for service policies
    identity_roles: list[str] = field(default_factory=list)
    service_roles: list[str] = field(default_factory=list)
    posture_check_roles: list[str] = field(default_factory=list)
    edge_router_roles: list[str] = field(default_factory=list)
    is_system: bool = False
    tags: JSON = field(default_factory=dict)


@dataclass
class ApiSession:
    id: str
    token: str
    identity_id: str
    created_at: float
    last_activity_at: float
    ip_address: str
    auth_method: str
    authenticator_id: str
    config_types: list[str] = field(default_factory=list)
    node: str = ""  # the HA node that issued it (legacy sessions are node-local)


@dataclass(frozen=True)
class AuthFailure:
    """Why an /authenticate call failed (the controller only logs this; the emulator keeps it)."""

    at: float
    method: str
    reason: str
    details: JSON = field(default_factory=dict)


@dataclass(frozen=True)
class RequestRecord:
    """One request seen by the emulator (no headers or bodies: they may carry secrets)."""

    at: float
    method: str
    path: str
    query: str
    status: int
