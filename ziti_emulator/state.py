"""The emulator's in-memory controller state, shared by the server thread and the tests.

Holds the entities, the legacy API sessions (``docs/controller-api.md`` §2.1/§2.5: UUID tokens, sliding idle
timeout, refreshed on every authenticated request, removed on disable/delete), the fault injector, the request
log, the ``spec_violations`` list (§10) and the authentication failure log (the controller only logs why an
``/authenticate`` failed; the emulator keeps the reason, §4 step 6).

Every mutation happens under ``lock`` (an RLock) because tests seed and inspect the state from another thread
than the one running uvicorn.
"""

from __future__ import annotations

import logging
import random
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Literal

from . import auth_policy_ops, identity_ops, signer_ops
from .entities import (
    ApiSession,
    AuthFailure,
    AuthPolicy,
    ExtJwtSigner,
    Identity,
    Policy,
    RequestRecord,
)
from .extjwt import JwksCache
from .faults import FaultInjector
from .ids import new_id, new_session_id, new_token
from .oidc import OidcState
from .profile import ControllerProfile, Version, get_profile
from .spec import LoadedSpec

log = logging.getLogger("ziti_emulator")

Flavor = Literal["1.6", "2.0"]
JSON = dict[str, Any]


class EmulatorState:
    """Everything the emulated controller knows. Exposed as ``app.state.emulator``."""

    def __init__(
        self,
        *,
        admin_username: str = "admin",
        admin_password: str,
        session_timeout: float = 1800.0,
        clock: Callable[[], float] = time.time,
        flavor: Flavor = "2.0",
        version: Version | None = None,
        spec: LoadedSpec | None = None,
        client_spec: LoadedSpec | None = None,
        jwks_verify: ssl.SSLContext | str | bool = True,
    ) -> None:
        self.lock = threading.RLock()
        self.clock = clock
        # ``flavor`` is the older 1.6/2.0 switch; ``version`` picks a full profile (default: the newest)
        self.profile: ControllerProfile = get_profile(version or ("1.6" if flavor == "1.6" else "2.0.3"))
        self.flavor: Flavor = self.profile.major
        self.ha = False  # set when several nodes (apps) share this state: GET /version says HA_CONTROLLER
        self.oidc = OidcState()
        self.rng = random.Random()  # signer choice among signers sharing a kid (2.0.0-2.0.3)
        self.session_timeout = session_timeout
        self.spec = spec
        self.client_spec = client_spec
        self.identities: dict[str, Identity] = {}
        self._unique: dict[tuple[str, str], str] = {}
        """The unique indexes on identities' ``name`` and ``externalId`` (the controller's bbolt indexes,
        ``controller/db/identity_store.go``): ``(field, value) -> id``, kept by :mod:`identity_ops`. An
        entry is a hint checked against the identity (:meth:`holder`), so an identity removed from
        :attr:`identities` directly (tests do) leaves no false duplicate."""
        self.auth_policies: dict[str, AuthPolicy] = {}
        self.signers: dict[str, ExtJwtSigner] = {}
        self.service_policies: dict[str, Policy] = {}
        self.edge_router_policies: dict[str, Policy] = {}
        self.sessions: dict[str, ApiSession] = {}  # by token
        self.spec_violations: list[JSON] = []
        self.auth_failures: list[AuthFailure] = []
        self.requests: deque[RequestRecord] = deque(maxlen=10000)
        self.faults = FaultInjector()
        self.jwks = JwksCache(verify=jwks_verify)
        now = self.now()
        default = auth_policy_ops.default_policy(now)
        self.auth_policies[default.id] = default
        admin = Identity(
            id=new_id(),
            name="Default Admin",
            created_at=now,
            updated_at=now,
            is_admin=True,
            is_default_admin=True,
        )
        self.identities[admin.id] = admin
        self.index(admin)
        self.set_password(admin.id, admin_password, username=admin_username)
        self.default_admin_id = admin.id

    def now(self) -> float:
        return float(self.clock())

    @property
    def default_admin(self) -> Identity:
        return self.identities[self.default_admin_id]

    # ---- API sessions ---------------------------------------------------------------------------------

    def create_session(
        self, identity: Identity, *, method: str, ip: str, authenticator_id: str, node: str = ""
    ) -> ApiSession:
        now = self.now()
        session = ApiSession(
            id=new_session_id(),
            token=new_token(),
            identity_id=identity.id,
            created_at=now,
            last_activity_at=now,
            ip_address=ip,
            auth_method=method,
            authenticator_id=authenticator_id,
            node=node,
        )
        with self.lock:
            self.sessions[session.token] = session
        return session

    def session_for_token(self, token: str, node: str = "") -> ApiSession | None:
        """The live session for ``token``, its activity refreshed; expired sessions are removed.

        Legacy API sessions live in the issuing node's own store, not in raft
        (``controller/model/api_session_manager.go``): another node does not know the token.
        """
        with self.lock:
            session = self.sessions.get(token)
            if session is None or session.node != node:
                return None
            now = self.now()
            if now - session.last_activity_at >= self.session_timeout:
                del self.sessions[token]
                return None
            session.last_activity_at = now
            return session

    def expires_at(self, session: ApiSession) -> float:
        return session.last_activity_at + self.session_timeout

    def drop_sessions(self, identity_id: str) -> int:
        with self.lock:
            tokens = [t for t, s in self.sessions.items() if s.identity_id == identity_id]
            for token in tokens:
                del self.sessions[token]
            return len(tokens)

    def drop_all_sessions(self) -> None:
        """Forget every API session (e.g. to emulate a controller restart)."""
        with self.lock:
            self.sessions.clear()

    def has_session(self, identity_id: str) -> bool:
        with self.lock:
            return any(s.identity_id == identity_id for s in self.sessions.values())

    # ---- diagnostics --------------------------------------------------------------------------------

    def record_auth_failure(self, method: str, reason: str, details: JSON | None = None) -> None:
        failure = AuthFailure(self.now(), method, reason, dict(details or {}))
        with self.lock:
            self.auth_failures.append(failure)
        log.warning("authentication failed: method=%s reason=%s details=%s", method, reason, failure.details)

    @property
    def last_auth_failure(self) -> str | None:
        """Reason of the most recent failed /authenticate, e.g. ``identity not found by externalId``."""
        with self.lock:
            return self.auth_failures[-1].reason if self.auth_failures else None

    def record_violation(self, method: str, path: str, error: str, *, template: str = "") -> None:
        """Record a request that the real controller's spec rejects (``template`` is the spec path)."""
        with self.lock:
            self.spec_violations.append(
                {"method": method, "path": path, "template": template, "error": error}
            )
        log.warning("spec violation: %s %s: %s", method, path, error)

    # ---- out-of-band seeding (as an admin or Ziti's token enrollment would) ------------------------

    def create_identity(
        self,
        name: str,
        *,
        external_id: str | None = None,
        role_attributes: list[str] | None = None,
        auth_policy_id: str | None = None,
        is_admin: bool = False,
        tags: JSON | None = None,
        app_data: JSON | None = None,
        permissions: list[str] | None = None,
    ) -> Identity:
        """Create an identity without going through HTTP (same validation; raises ApiError)."""
        body: JSON = {"name": name, "type": "Default", "isAdmin": is_admin, "externalId": external_id}
        for key, value in (
            ("roleAttributes", role_attributes),
            ("authPolicyId", auth_policy_id),
            ("tags", tags),
            ("appData", app_data),
            ("permissions", permissions),
        ):
            if value is not None:
                body[key] = value
        return identity_ops.create_identity(self, body, out_of_band=True)

    def create_signer(self, body: JSON) -> ExtJwtSigner:
        """Create an external JWT signer from an API-shaped body (camelCase keys)."""
        return signer_ops.create_signer(self, body)

    def create_auth_policy(self, body: JSON) -> AuthPolicy:
        """Create an auth policy from an API-shaped body (camelCase keys)."""
        return auth_policy_ops.create_auth_policy(self, body)

    def set_password(self, identity_id: str, password: str, *, username: str | None = None) -> None:
        """Give an identity a updb authenticator (username defaults to the identity name)."""
        with self.lock:
            identity = self.identities[identity_id]
            identity.updb_id = identity.updb_id or new_id()
            identity.updb_username = username or identity.name
            identity.updb_password = password

    def identity_by_external_id(self, external_id: str) -> Identity | None:
        return self.holder("externalId", external_id)

    def identity_by_name(self, name: str) -> Identity | None:
        return self.holder("name", name)

    # ---- unique indexes ----------------------------------------------------------------------------

    def holder(self, field: Literal["name", "externalId"], value: str) -> Identity | None:
        """The identity whose ``field`` is ``value`` (one lookup, as the controller's unique index)."""
        with self.lock:
            identity = self.identities.get(self._unique.get((field, value), ""))
            if identity is None or _indexed(identity, field) != value:
                self._unique.pop((field, value), None)  # stale: removed or changed behind the index
                return None
            return identity

    def index(self, identity: Identity) -> None:
        """Record ``identity``'s name and externalId in the unique indexes (after a create or update)."""
        with self.lock:
            self._unique[("name", identity.name)] = identity.id
            if identity.external_id is not None:
                self._unique[("externalId", identity.external_id)] = identity.id

    def unindex(self, identity: Identity) -> None:
        """Drop ``identity``'s entries from the unique indexes (before its name or externalId changes)."""
        with self.lock:
            for field in ("name", "externalId"):
                value = _indexed(identity, field)
                if value is not None and self._unique.get((field, value)) == identity.id:
                    del self._unique[(field, value)]


def _indexed(identity: Identity, field: str) -> str | None:
    return identity.name if field == "name" else identity.external_id
