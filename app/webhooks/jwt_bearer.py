"""Validation of IdP-issued OAuth 2.0 JWT access tokens (RFC 6750 bearer, RFC 9068 / RFC 7519 claims).

The signature is checked with PyJWT against the IdP's JWKS (RFC 7517), selected by ``kid`` (RFC 7515
§4.1.4). Only asymmetric algorithms are accepted, so ``alg: none`` and HMAC key-confusion tokens fail.
``exp``/``nbf``/``iat`` are checked here against an injectable clock with a small leeway (RFC 7519
§4.1.4-6). Keys are cached; an unknown ``kid`` triggers a JWKS refresh, at most once per
``min_refresh_interval`` so that forged ``kid`` values cannot make us hammer the IdP.

A valid signature only proves the IdP issued the token; what it is *for* is checked too. ``typ`` (RFC 7515
§4.1.9), when the token has one, must be an access-token type (``at+jwt``, RFC 9068 §2.1, or ``JWT``): an
ID token, logout token or DPoP proof is refused. The configuration must name an audience and at least
one of ``required_scopes``, ``required_claims`` (e.g. an app role) or ``allowed_clients`` (the token's
client: ``azp``, ``client_id`` (RFC 9068 §2.2) or Entra's ``appid``): otherwise any token the IdP issues
for that audience, to any of its applications, would be accepted. ``accept_any_client`` opts out,
explicitly.

Every failure raises :class:`TokenRejected`, whose message is always ``"invalid token"``; the private
``reason`` (for logs) never includes the token or any claim value.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
import jwt

from app.constants import ASYMMETRIC_ALGORITHMS
from app.webhooks.common import Clock

__all__ = ["JwksCache", "JwtBearerConfig", "JwtBearerValidator", "TokenRejected"]

ACCESS_TOKEN_TYPES = ("at+jwt", "jwt")
CLIENT_CLAIMS = ("azp", "client_id", "appid")
_KTY_FOR_ALG = {"RS": "RSA", "PS": "RSA", "ES": "EC", "Ed": "OKP"}


class TokenRejected(Exception):
    """The bearer token is not acceptable. ``str(exc)`` is always ``"invalid token"``."""

    status = 401

    def __init__(self, reason: str) -> None:
        super().__init__("invalid token")
        self.reason = reason

    def __repr__(self) -> str:
        return f"TokenRejected(reason={self.reason!r})"


@dataclass(frozen=True, slots=True)
class JwtBearerConfig:
    """What a token must satisfy.

    ``audience``: one value or several (any may match). ``required_scopes``: all must appear in the
    space-separated ``scope`` claim (RFC 8693 §4.2 / RFC 9068 §2.2.3) or the ``scp`` list/string.
    ``required_claims``: ``claim -> value``; a string claim must equal it, a list claim must contain it,
    an object claim must have it as a key (e.g. ZITADEL's ``urn:zitadel:iam:org:project:roles``).
    ``allowed_clients``: the token's client id (``azp``, else ``client_id``, else ``appid``) must be one
    of them. ``token_types``: accepted ``typ`` header values (compared case-insensitively, with or without
    ``application/``); a token without ``typ`` is accepted.
    """

    jwks_url: str
    issuer: str
    audience: str | tuple[str, ...]
    required_scopes: tuple[str, ...] = ()
    required_claims: Mapping[str, str] = field(default_factory=dict)
    allowed_clients: tuple[str, ...] = ()
    accept_any_client: bool = False
    token_types: tuple[str, ...] = ACCESS_TOKEN_TYPES
    algorithms: tuple[str, ...] = ASYMMETRIC_ALGORITHMS
    leeway: float = 30.0
    min_refresh_interval: float = 30.0
    max_key_age: float = 3600.0
    max_token_length: int = 16 * 1024
    http_timeout: float = 5.0

    def __post_init__(self) -> None:
        if not self.jwks_url.startswith(("http://", "https://")):
            raise ValueError("jwks_url must be an http(s) URL")
        if not self.issuer:
            raise ValueError("issuer is required")
        if not self.audience:
            raise ValueError("audience is required")
        if not (self.required_scopes or self.required_claims or self.allowed_clients) and not (
            self.accept_any_client
        ):
            raise ValueError(
                "name at least one of required_scopes, required_claims or allowed_clients (or set "
                "accept_any_client = true): otherwise any token of this issuer and audience is accepted"
            )
        if not self.token_types:
            raise ValueError("token_types must name at least one type (e.g. at+jwt)")
        bad = [a for a in self.algorithms if a not in ASYMMETRIC_ALGORITHMS]
        if bad or not self.algorithms:
            raise ValueError(f"only asymmetric JWS algorithms are allowed, got {bad or 'none'}")


class JwksCache:
    """Cached JWKS of one URL with rate-limited refresh (RFC 7517 §5)."""

    def __init__(
        self,
        url: str,
        client: httpx.AsyncClient,
        *,
        clock: Clock = time.time,
        min_refresh_interval: float = 30.0,
        max_age: float = 3600.0,
        timeout: float = 5.0,
    ) -> None:
        self._url = url
        self._client = client
        self._clock = clock
        self._min_interval = min_refresh_interval
        self._max_age = max_age
        self._timeout = timeout
        self._keys: list[dict[str, Any]] = []
        self._loaded_at: float | None = None
        self._last_attempt: float | None = None
        self._lock = asyncio.Lock()
        self.fetches = 0

    async def find(self, kid: str | None, alg: str) -> dict[str, Any] | None:
        """Return the JWK for ``kid`` (or the only key fitting ``alg`` when the token has no ``kid``)."""
        now = self._clock()
        if self._loaded_at is None or now - self._loaded_at > self._max_age:
            await self._refresh(force_stale=True)
        found = self._select(kid, alg)
        if found is None and kid is not None:
            await self._refresh(force_stale=False)
            found = self._select(kid, alg)
        return found

    def _select(self, kid: str | None, alg: str) -> dict[str, Any] | None:
        usable = [k for k in self._keys if k.get("use") in (None, "sig")]
        if kid is not None:
            return next((k for k in usable if k.get("kid") == kid), None)
        kty = _KTY_FOR_ALG.get(alg[:2])
        fitting = [k for k in usable if k.get("kty") == kty and k.get("alg") in (None, alg)]
        return fitting[0] if len(fitting) == 1 else None

    async def _refresh(self, *, force_stale: bool) -> None:
        async with self._lock:
            now = self._clock()
            if self._last_attempt is not None and now - self._last_attempt < self._min_interval:
                # Rate limit, also for a stale cache: keep serving the old keys meanwhile.
                return
            if force_stale and self._loaded_at is not None and now - self._loaded_at <= self._max_age:
                return  # another coroutine refreshed while we waited for the lock
            self._last_attempt = now
            self.fetches += 1
            keys = await self._download()
            if keys is not None:
                self._keys = keys
                self._loaded_at = now

    async def _download(self) -> list[dict[str, Any]] | None:
        try:
            response = await self._client.get(
                self._url, headers={"Accept": "application/json"}, timeout=self._timeout
            )
            if response.status_code != 200:
                return None
            data = response.json()
        except (httpx.HTTPError, ValueError):
            return None
        keys = data.get("keys") if isinstance(data, dict) else None
        if not isinstance(keys, list):
            return None
        return [k for k in keys if isinstance(k, dict) and isinstance(k.get("kty"), str)]


def _scopes(claims: Mapping[str, Any]) -> set[str]:
    found: set[str] = set()
    for name in ("scope", "scp"):
        value = claims.get(name)
        if isinstance(value, str):
            found.update(value.split())
        elif isinstance(value, list):
            found.update(v for v in value if isinstance(v, str))
    return found


def _claim_matches(actual: Any, wanted: str) -> bool:
    if isinstance(actual, str):
        return actual == wanted
    if isinstance(actual, list):
        return wanted in actual
    if isinstance(actual, dict):
        return wanted in actual
    return False


def _number(claims: Mapping[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise TokenRejected(f"{name} is not a number")
    return float(value)


_PYJWT_REASONS: dict[type[Exception], str] = {
    jwt.InvalidSignatureError: "bad signature",
    jwt.InvalidAudienceError: "audience mismatch",
    jwt.InvalidIssuerError: "issuer mismatch",
    jwt.InvalidAlgorithmError: "algorithm not allowed",
}


class JwtBearerValidator:
    """Validates bearer JWTs for one issuer. Share one instance per IdP (it owns the key cache)."""

    def __init__(
        self,
        config: JwtBearerConfig,
        *,
        client: httpx.AsyncClient | None = None,
        clock: Clock = time.time,
    ) -> None:
        self._config = config
        self._clock = clock
        self._own_client = client is None
        self._client = client or httpx.AsyncClient(timeout=config.http_timeout)
        self.jwks = JwksCache(
            config.jwks_url,
            self._client,
            clock=clock,
            min_refresh_interval=config.min_refresh_interval,
            max_age=config.max_key_age,
            timeout=config.http_timeout,
        )

    async def aclose(self) -> None:
        if self._own_client:
            await self._client.aclose()

    async def authenticate(self, authorization: str | None) -> dict[str, Any]:
        """Validate an ``Authorization`` header value (``Bearer <token>``, RFC 6750 §2.1)."""
        if not authorization:
            raise TokenRejected("no authorization header")
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise TokenRejected("not a bearer authorization")
        return await self.validate(token.strip())

    async def validate(self, token: str) -> dict[str, Any]:
        """Return the verified claims of ``token`` or raise :class:`TokenRejected`."""
        cfg = self._config
        if not token or len(token) > cfg.max_token_length:
            raise TokenRejected("token empty or too long")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise TokenRejected("malformed token") from None
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in cfg.algorithms:
            raise TokenRejected("algorithm not allowed")
        self._check_type(header.get("typ"))
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise TokenRejected("malformed kid")
        jwk_data = await self.jwks.find(kid, alg)
        if jwk_data is None:
            raise TokenRejected("no matching key in JWKS")
        if jwk_data.get("alg") not in (None, alg):
            raise TokenRejected("key algorithm mismatch")
        try:
            key = jwt.PyJWK(jwk_data, algorithm=alg)
        except (jwt.PyJWTError, ValueError, TypeError):
            raise TokenRejected("key unusable for algorithm") from None
        audience: str | list[str] = cfg.audience if isinstance(cfg.audience, str) else list(cfg.audience)
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key=key,
                algorithms=[alg],
                audience=audience,
                issuer=cfg.issuer,
                options={
                    # Time claims are checked below against the injectable clock.
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                    "require": ["exp", "iss", "aud"],
                },
            )
        except jwt.MissingRequiredClaimError as exc:
            raise TokenRejected(f"missing claim {exc.claim}") from None
        except jwt.PyJWTError as exc:
            reason = next((r for t, r in _PYJWT_REASONS.items() if isinstance(exc, t)), None)
            raise TokenRejected(reason or f"undecodable token ({type(exc).__name__})") from None
        self._check_times(claims)
        self._check_authorization(claims)
        return claims

    def _check_times(self, claims: Mapping[str, Any]) -> None:
        now, leeway = self._clock(), self._config.leeway
        exp = _number(claims, "exp")
        if exp is None or now >= exp + leeway:
            raise TokenRejected("token expired")
        nbf = _number(claims, "nbf")
        if nbf is not None and nbf > now + leeway:
            raise TokenRejected("token not yet valid")
        iat = _number(claims, "iat")
        if iat is not None and iat > now + leeway:
            raise TokenRejected("token issued in the future")

    def _check_type(self, typ: Any) -> None:
        if typ is None:
            return
        wanted = {t.lower().removeprefix("application/") for t in self._config.token_types}
        if not isinstance(typ, str) or typ.lower().removeprefix("application/") not in wanted:
            raise TokenRejected("token type not accepted")

    def _check_authorization(self, claims: Mapping[str, Any]) -> None:
        if self._config.allowed_clients:
            client = next((claims[name] for name in CLIENT_CLAIMS if name in claims), None)
            if not isinstance(client, str) or client not in self._config.allowed_clients:
                raise TokenRejected("client not allowed")
        missing = set(self._config.required_scopes) - _scopes(claims)
        if missing:
            raise TokenRejected(f"missing scope(s) {sorted(missing)}")
        for name, wanted in self._config.required_claims.items():
            if not _claim_matches(claims.get(name), wanted):
                raise TokenRejected(f"claim {name} lacks the required value")
