"""The controller's ``/oidc`` endpoints: authorization code + PKCE for ``openziti``/``native`` clients.

Mirrors ``controller/oidc_auth`` (zitadel/oidc ``op.DefaultEndpoints``):

* ``GET /oidc/authorize`` (``provider.go newHttpRouter``): a native client, ``response_type=code``, a
  registered ``redirect_uri`` (``webapis/oidc-api.go``: ``http(s)://127.0.0.1:*/auth/callback``,
  ``http(s)://localhost:*/auth/callback``, ``openziti://auth/callback``) and an S256 ``code_challenge``;
  302 to ``/oidc/login/username?authRequestID=<id>`` (``login.go passwordLoginUrl``).
* ``POST /oidc/login/{username,password,cert}`` (``login.go authenticate``): JSON or form body with
  ``username``/``password`` and ``id`` (or the ``authRequestID``/``id`` query, ``parse.go parsePayload``);
  302 to ``/oidc/authorize/callback?id=<id>``; bad credentials 401; an auth policy with ``requireTotp``
  answers 200 ``{"authQueries": [...]}`` (``login.go renderAuthQueriesJson``; TOTP itself is not emulated).
* ``GET /oidc/authorize/callback`` redirects to ``redirect_uri?code=..&state=..``.
* ``POST /oidc/oauth/token``: ``authorization_code`` (with ``code_verifier``) or ``refresh_token``; errors are
  400 ``{"error": "invalid_grant" | "invalid_request" | "unsupported_grant_type"}``.

Auth requests and codes are node-local in-memory maps (``storage.go HybridStorage.authRequests/codes``);
access and refresh tokens are JWTs signed with the cluster's key, so every node accepts them.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlencode

import jwt
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route, Router

from .ids import new_id, new_session_id

if TYPE_CHECKING:
    from .entities import Identity
    from .state import EmulatorState

CLIENT_IDS = ("openziti", "native")  # common/oidc_tokens.go ClaimClientIdOpenZiti, ClaimLegacyNative
ACCESS_TOKEN_SECONDS = 1800.0  # controller default edge.oidc accessTokenDuration: 30m
REFRESH_TOKEN_SECONDS = 24 * 3600.0
AUTH_REQUEST_SECONDS = 600.0
_REDIRECTS = re.compile(r"^(https?://(127\.0\.0\.1|localhost):\d+/auth/callback|openziti://auth/callback)$")
ISSUER_AUDIENCE = "openziti"


@dataclass
class AuthRequest:
    id: str
    client_id: str
    redirect_uri: str
    state: str
    code_challenge: str
    created_at: float
    identity_id: str | None = None


@dataclass
class OidcNode:
    """One node's in-memory auth requests and codes (``storage.go``: not replicated through raft)."""

    requests: dict[str, AuthRequest] = field(default_factory=dict)
    codes: dict[str, str] = field(default_factory=dict)  # code -> auth request id


class OidcState:
    """The cluster-wide part: the token signing key (shared by all nodes in HA) and per-node maps."""

    def __init__(self) -> None:
        self.key = secrets.token_bytes(32)
        self.lock = threading.Lock()
        self.nodes: dict[str, OidcNode] = {}
        self.logins = 0
        self.refreshes = 0
        self.access_token_seconds = ACCESS_TOKEN_SECONDS

    def node(self, name: str) -> OidcNode:
        with self.lock:
            return self.nodes.setdefault(name, OidcNode())

    def issue(self, identity: Identity, now: float, *, client_id: str, session_id: str) -> dict[str, Any]:
        """Access + refresh token (``oidc_auth/storage.go`` ``CreateAccessAndRefreshTokens``)."""
        base = {
            "iss": "https://ziti-emulator/oidc",
            "sub": identity.id,
            "aud": [ISSUER_AUDIENCE],
            "iat": int(now),
            "z_asid": session_id,
            "client_id": client_id,
        }
        access = {**base, "jti": new_id(), "type": "a", "exp": int(now + self.access_token_seconds)}
        refresh = {**base, "jti": new_id(), "type": "r", "exp": int(now + REFRESH_TOKEN_SECONDS)}
        return {
            "access_token": jwt.encode(access, self.key, algorithm="HS256"),
            "token_type": "Bearer",
            "refresh_token": jwt.encode(refresh, self.key, algorithm="HS256"),
            "expires_in": int(self.access_token_seconds),
            "id_token": jwt.encode({**base, "exp": access["exp"]}, self.key, algorithm="HS256"),
        }

    def decode(self, token: str, *, kind: str, now: float) -> dict[str, Any] | str:
        """The claims of a valid token, or ``"expired"``/``"invalid"``."""
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self.key,
                algorithms=["HS256"],
                options={"verify_exp": False, "verify_aud": False, "verify_iat": False, "verify_nbf": False},
            )
        except jwt.PyJWTError:
            return "invalid"
        if claims.get("type") != kind or not isinstance(claims.get("sub"), str):
            return "invalid"
        exp = claims.get("exp")
        if not isinstance(exp, int | float) or now >= exp:
            return "expired"
        return claims


def _oauth_error(error: str, description: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": error, "error_description": description}, status_code=status)


def _state(request: Request) -> tuple[EmulatorState, str]:
    return request.app.state.emulator, node_of(request)


def node_of(request: Request) -> str:
    """The HA node serving ``request`` ("" for a single controller)."""
    return str(getattr(request.app.state, "emulator_node", ""))


async def authorize(request: Request) -> Response:
    state, node_name = _state(request)
    q = request.query_params
    client_id, redirect_uri = q.get("client_id", ""), q.get("redirect_uri", "")
    if client_id not in CLIENT_IDS:
        return _oauth_error("invalid_client", "unknown client_id")
    if not _REDIRECTS.match(redirect_uri):
        return _oauth_error("invalid_request", "The requested redirect_uri is missing in the client config")
    if q.get("response_type") != "code":
        return _oauth_error("unsupported_response_type", "only the code flow is allowed")
    if not q.get("code_challenge") or q.get("code_challenge_method") != "S256":
        return _oauth_error("invalid_request", "code_challenge (S256) required for native clients")
    req = AuthRequest(
        id=new_id(),
        client_id=client_id,
        redirect_uri=redirect_uri,
        state=q.get("state", ""),
        code_challenge=q["code_challenge"],
        created_at=state.now(),
    )
    node = state.oidc.node(node_name)
    with state.oidc.lock:
        node.requests[req.id] = req
    return RedirectResponse(f"/oidc/login/username?authRequestID={req.id}", status_code=302)


async def _payload(request: Request) -> dict[str, str]:
    raw = await request.body()
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media == "application/json":
        try:
            data = json.loads(raw or b"{}")
        except ValueError:
            return {}
        return {k: v for k, v in data.items() if isinstance(v, str)} if isinstance(data, dict) else {}
    return {k: v[0] for k, v in parse_qs(raw.decode("utf-8", "replace")).items()}


async def login(request: Request) -> Response:
    state, node_name = _state(request)
    method = request.path_params["method"]
    data = await _payload(request)
    req_id = data.get("id") or request.query_params.get("authRequestID") or request.query_params.get("id", "")
    node = state.oidc.node(node_name)
    with state.oidc.lock:
        req = node.requests.get(req_id)
    if req is None or state.now() - req.created_at > AUTH_REQUEST_SECONDS:
        # storage.go GetAuthRequest fails: this node never saw the request (another HA node did)
        details = {"authRequestId": req_id, "node": node_name}
        state.record_auth_failure("oidc", "unknown auth request", details)
        return JSONResponse({"error": "invalid auth request"}, status_code=401)
    if method not in ("username", "password"):
        state.record_auth_failure("oidc", f"login method {method} is not emulated")
        return JSONResponse({"error": "unauthorized"}, status_code=401)
    identity = _password_identity(state, data.get("username", ""), data.get("password", ""))
    if identity is None:
        return JSONResponse(
            {"code": "INVALID_AUTH", "message": "The authentication request failed"}, status_code=401
        )
    with state.oidc.lock:
        req.identity_id = identity.id
    policy = state.auth_policies.get(identity.auth_policy_id)
    if policy is not None and (policy.secondary or {}).get("requireTotp"):
        # login.go renderAuthQueriesJson: secondary auth pending, 200 with the queries (TOTP not emulated)
        query = {"typeId": "MFA", "provider": "ziti", "format": "numeric", "httpMethod": "POST"}
        return JSONResponse({"authQueries": [query]}, headers={"totp-required": "true"})
    return RedirectResponse(f"/oidc/authorize/callback?id={req.id}", status_code=302)


def _password_identity(state: EmulatorState, username: str, password: str) -> Identity | None:
    with state.lock:
        identity = next((i for i in state.identities.values() if i.updb_username == username), None)
        if identity is None or not username or not secrets.compare_digest(
            (identity.updb_password or "").encode(), password.encode()
        ):
            state.record_auth_failure("oidc", "invalid username or password", {"username": username})
            return None
        if identity.is_disabled(state.now()):
            state.record_auth_failure("oidc", "identity is disabled", {"identityId": identity.id})
            return None
        policy = state.auth_policies.get(identity.auth_policy_id)
        if policy is None or not policy.primary.get("updb", {}).get("allowed"):
            state.record_auth_failure("oidc", "auth policy does not allow updb", {"identityId": identity.id})
            return None
        return identity


async def callback(request: Request) -> Response:
    state, node_name = _state(request)
    node = state.oidc.node(node_name)
    with state.oidc.lock:
        req = node.requests.get(request.query_params.get("id", ""))
        if req is None or req.identity_id is None:
            return _oauth_error("invalid_request", "auth request not found or not authenticated")
        code = secrets.token_urlsafe(24)
        node.codes[code] = req.id
    return RedirectResponse(f"{req.redirect_uri}?{urlencode({'code': code, 'state': req.state})}", 302)


def _s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


async def token(request: Request) -> Response:
    state, node_name = _state(request)
    data = await _payload(request)
    grant = data.get("grant_type")
    now = state.now()
    if not grant:
        return _oauth_error("invalid_request", "grant_type missing")
    if grant == "authorization_code":
        node = state.oidc.node(node_name)
        with state.oidc.lock:
            req_id = node.codes.pop(data.get("code", ""), None)
            req = node.requests.pop(req_id, None) if req_id else None
        if req is None or req.identity_id is None:
            return _oauth_error("invalid_grant", "invalid code")
        if data.get("redirect_uri") != req.redirect_uri or data.get("client_id") != req.client_id:
            return _oauth_error("invalid_grant", "redirect_uri or client_id does not match")
        if _s256(data.get("code_verifier", "")) != req.code_challenge:
            return _oauth_error("invalid_grant", "invalid code challenge")
        identity = state.identities.get(req.identity_id)
        if identity is None:
            return _oauth_error("invalid_grant", "identity not found")
        state.oidc.logins += 1
        return JSONResponse(
            state.oidc.issue(identity, now, client_id=req.client_id, session_id=new_session_id()),
            headers={"Cache-Control": "no-store"},
        )
    if grant == "refresh_token":
        claims = state.oidc.decode(data.get("refresh_token", ""), kind="r", now=now)
        if isinstance(claims, str):
            return _oauth_error("invalid_grant", f"refresh token {claims}")
        identity = state.identities.get(str(claims["sub"]))
        if identity is None or identity.is_disabled(now) and state.profile.oidc_checks_disabled:
            return _oauth_error("invalid_grant", "identity not found or disabled")
        state.oidc.refreshes += 1
        return JSONResponse(
            state.oidc.issue(
                identity, now, client_id=str(claims.get("client_id")), session_id=str(claims.get("z_asid"))
            ),
            headers={"Cache-Control": "no-store"},
        )
    return _oauth_error("unsupported_grant_type", f"{grant} is not supported")


async def discovery(request: Request) -> Response:
    base = f"{request.url.scheme}://{request.url.netloc}/oidc"
    return JSONResponse(
        {
            "issuer": base,
            "authorization_endpoint": base + "/authorize",
            "token_endpoint": base + "/oauth/token",
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "code_challenge_methods_supported": ["S256"],
        }
    )


def router() -> Router:
    return Router(
        [
            Route("/authorize", authorize, methods=["GET"]),
            Route("/authorize/callback", callback, methods=["GET"]),
            Route("/login/{method}", login, methods=["POST"]),
            Route("/oauth/token", token, methods=["POST"]),
            Route("/.well-known/openid-configuration", discovery, methods=["GET"]),
        ],
        redirect_slashes=False,
    )
