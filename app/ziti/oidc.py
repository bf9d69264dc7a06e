"""OIDC API sessions: how the 2.x SDKs and CLI log in to the controller's own ``/oidc`` endpoints.

The legacy ``zt-session`` token lives in the issuing controller's local store, not in raft
(``controller/model/api_session_manager.go``), so behind a load balancer in front of an HA cluster most calls
land on a node that does not know it. OIDC access tokens are JWTs signed with the cluster's key and accepted
by every node (``controller/env/appenv.go ProcessJwt``); the 2.0 changelog requires them for HA.

Flow (``controller/oidc_auth``: ``provider.go newHttpRouter``, ``login.go authenticate``, zitadel/oidc
``op.DefaultEndpoints``), authorization code with PKCE S256 for the ``openziti`` native client:

1. ``GET /oidc/authorize?client_id=openziti&response_type=code&scope=openid offline_access&redirect_uri=
   http://127.0.0.1:<port>/auth/callback&code_challenge=..&code_challenge_method=S256&state=..`` → 302 to
   ``/oidc/login/username?authRequestID=<id>``;
2. ``POST /oidc/login/password`` (or ``/oidc/login/cert`` with the TLS client certificate), JSON
   ``{"id": <id>, "username", "password"}`` → 302 to ``/oidc/authorize/callback?id=<id>``; a 200 with
   ``authQueries`` means secondary authentication (TOTP, a second ext-jwt) is required;
3. ``GET /oidc/authorize/callback?id=<id>`` → 302 to ``<redirect_uri>?code=..&state=..`` (not followed);
4. ``POST /oidc/oauth/token`` (form) ``grant_type=authorization_code`` with ``code_verifier`` →
   ``access_token``, ``refresh_token``, ``expires_in``;
5. requests carry ``Authorization: Bearer <access_token>``; before it expires ``grant_type=refresh_token``
   renews it, and a failed refresh falls back to a new login.

Auth requests are node-local (``oidc_auth/storage.go``), so steps 1-4 must reach the same node: they are sent
one after the other on the client's connection pool, and a flow that a different node answers ("unknown auth
request") is started again, at most :data:`LOGIN_ATTEMPTS` times.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx

__all__ = ["CLIENT_ID", "LOGIN_ATTEMPTS", "REDIRECT_URI", "OidcTokens", "OidcFlowError", "OidcLogin"]

CLIENT_ID = "openziti"  # common/oidc_tokens.go ClaimClientIdOpenZiti
REDIRECT_URI = "http://127.0.0.1:20314/auth/callback"  # matches http://127.0.0.1:*/auth/callback
SCOPE = "openid offline_access"
LOGIN_ATTEMPTS = 4

Send = Callable[
    [str, str, str, Mapping[str, str] | None, bytes | None, Mapping[str, str]], Awaitable[httpx.Response]
]
"""``send(method, template, url, params, content, headers)``: one HTTP attempt, redirects not followed."""


class OidcFlowError(Exception):
    """The login flow failed.

    ``credentials``: the controller refused the login (401/403 at ``/oidc/login``); ``final``: starting again
    cannot help (secondary authentication required).
    """

    def __init__(
        self, message: str, *, status: int | None = None, credentials: bool = False, final: bool = False
    ) -> None:
        super().__init__(message)
        self.status = status
        self.credentials = credentials
        self.final = final


@dataclass(frozen=True, slots=True)
class OidcTokens:
    access_token: str = field(repr=False)
    refresh_token: str | None = field(repr=False)
    expires_in: float | None


def _pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def _tokens(response: httpx.Response) -> OidcTokens:
    try:
        data = json.loads(response.content)
    except ValueError:
        data = None
    if response.status_code != 200 or not isinstance(data, dict):
        error = data.get("error") if isinstance(data, dict) else None
        status = response.status_code
        raise OidcFlowError(f"token endpoint answered HTTP {status} ({error or 'no error'})", status=status)
    access, refresh, expires = data.get("access_token"), data.get("refresh_token"), data.get("expires_in")
    if not isinstance(access, str) or not access:
        raise OidcFlowError("token endpoint answered without access_token", status=200)
    return OidcTokens(
        access_token=access,
        refresh_token=refresh if isinstance(refresh, str) and refresh else None,
        expires_in=(
            float(expires) if isinstance(expires, int | float) and not isinstance(expires, bool) else None
        ),
    )


class OidcLogin:
    """Runs the flow above against ``root`` (``https://host:port``) through ``send``."""

    def __init__(self, root: str, send: Send) -> None:
        self._root = root.rstrip("/")
        self._send = send

    def _url(self, location: str) -> str:
        return location if "://" in location else self._root + location

    async def login(self, method: str, body: Mapping[str, str]) -> OidcTokens:
        """Log in with ``method`` (``password`` or ``cert``) and ``body`` (username/password or nothing)."""
        last: OidcFlowError | None = None
        for _ in range(LOGIN_ATTEMPTS):
            try:
                return await self._login_once(method, body)
            except OidcFlowError as err:
                if err.final:
                    raise
                last = err  # e.g. another HA node answered a step: its auth request is node-local
        assert last is not None
        raise last

    async def _login_once(self, method: str, body: Mapping[str, str]) -> OidcTokens:
        verifier, challenge = _pkce()
        state = secrets.token_urlsafe(16)
        params = {
            "client_id": CLIENT_ID,
            "response_type": "code",
            "scope": SCOPE,
            "redirect_uri": REDIRECT_URI,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "state": state,
        }
        authorize = await self._send(
            "GET", "/oidc/authorize", self._root + "/oidc/authorize", params, None, {}
        )
        location = authorize.headers.get("location", "")
        if authorize.status_code not in (302, 303) or not location:
            status = authorize.status_code
            raise OidcFlowError(f"/oidc/authorize answered HTTP {status}", status=status)
        query = parse_qs(urlsplit(location).query)
        request_id = (query.get("authRequestID") or query.get("id") or [""])[0]
        if not request_id:
            raise OidcFlowError("/oidc/authorize redirected without an auth request id")

        payload = json.dumps({"id": request_id, **body}).encode()
        login = await self._send(
            "POST",
            f"/oidc/login/{method}",
            f"{self._root}/oidc/login/{method}",
            None,
            payload,
            {"Content-Type": "application/json", "Accept": "application/json"},
        )
        if login.status_code == 200:
            raise OidcFlowError(
                "the controller asks for secondary authentication (authQueries: TOTP or a second JWT); "
                "give ziti-scim an identity whose auth policy needs no MFA",
                status=200,
                credentials=True,
                final=True,
            )
        if login.status_code in (302, 303) and login.headers.get("location"):
            callback = await self._send(
                "GET", "/oidc/authorize/callback", self._url(login.headers["location"]), None, None, {}
            )
        elif login.status_code in (401, 403):
            raise OidcFlowError(
                f"OIDC login answered HTTP {login.status_code}", status=login.status_code, credentials=True
            )
        else:
            raise OidcFlowError(f"OIDC login answered HTTP {login.status_code}", status=login.status_code)

        redirect = urlsplit(callback.headers.get("location", ""))
        got = parse_qs(redirect.query)
        code = (got.get("code") or [""])[0]
        if callback.status_code not in (302, 303) or not code:
            status = callback.status_code
            raise OidcFlowError(f"/oidc/authorize/callback answered HTTP {status}", status=status)
        if (got.get("state") or [""])[0] != state:
            raise OidcFlowError("OIDC state mismatch in the authorization redirect")
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT_URI,
            "code_verifier": verifier,
            "client_id": CLIENT_ID,
        }
        return _tokens(await self._token(form))

    async def refresh(self, refresh_token: str) -> OidcTokens:
        form = {"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": CLIENT_ID}
        return _tokens(await self._token(form))

    async def _token(self, form: Mapping[str, str]) -> httpx.Response:
        return await self._send(
            "POST",
            "/oidc/oauth/token",
            self._root + "/oidc/oauth/token",
            None,
            urlencode(form).encode(),
            {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"},
        )
