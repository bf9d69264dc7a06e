"""Which source a SCIM request comes from: a static bearer token, or an OAuth 2.0 access token of its IdP.

* Static tokens (RFC 6750 §2.1): SHA-256 of the presented token compared with every stored hash, each in
  constant time. A source whose client cannot send a scheme (Asgardeo's API-key mode and Okta's "HTTP
  Header" mode send the bare key) may also accept ``Authorization: <token>`` (``raw_token``).
* IdP access tokens: a source with an ``[sources.<name>.oauth]`` table accepts JWTs its IdP issues
  (ZITADEL service users, Asgardeo/authentik OAuth clients), validated by
  :class:`~app.webhooks.jwt_bearer.JwtBearerValidator` (signature against the JWKS, ``typ``, ``iss``,
  ``aud``, ``exp``, and at least one of required scopes, claims or client ids: a start-up error
  otherwise). Only a token shaped like a JWS (RFC 7515 §7.1) is tried, and only
  against the sources whose issuer its (unverified) ``iss`` names.

Every failure is the same ``None`` to the caller, which answers one 401 that says nothing of the reason.
"""

from __future__ import annotations

import base64
import hmac
import json
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import httpx

from app.config import ConfigError, SourceConfig, hash_token
from app.webhooks.jwt_bearer import ACCESS_TOKEN_TYPES, JwtBearerConfig, JwtBearerValidator, TokenRejected

__all__ = ["Authenticator", "oauth_config"]

log = logging.getLogger("ziti_scim.auth")

_JWS = re.compile(r"^eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$")


@dataclass(frozen=True)
class _Credential:
    token_hash: str
    source: str
    raw_allowed: bool


def oauth_config(source: SourceConfig) -> JwtBearerConfig | None:
    """The JWT validation settings of ``[sources.<name>.oauth]``, or None when the table is absent."""
    raw = source.options.get("oauth")
    if raw is None:
        return None
    where = f"sources.{source.name}.oauth"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be a table")
    known = {"issuer", "audience", "jwks_url", "required_scopes", "required_claims", "leeway"}
    known |= {"allowed_clients", "accept_any_client", "token_types"}
    unknown = set(raw) - known
    if unknown:
        raise ConfigError(f"{where}: unknown keys {sorted(unknown)}")
    audience = raw.get("audience")
    scopes = raw.get("required_scopes", [])
    claims = raw.get("required_claims", {})
    if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
        raise ConfigError(f"{where}.required_scopes must be a list of strings")
    if not isinstance(claims, dict) or not all(isinstance(v, str) for v in claims.values()):
        raise ConfigError(f"{where}.required_claims must be a table of strings")
    clients = raw.get("allowed_clients", [])
    types = raw.get("token_types", list(ACCESS_TOKEN_TYPES))
    for name, value in (("allowed_clients", clients), ("token_types", types)):
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise ConfigError(f"{where}.{name} must be a list of strings")
    if not isinstance(raw.get("accept_any_client", False), bool):
        raise ConfigError(f"{where}.accept_any_client must be true or false")
    try:
        return JwtBearerConfig(
            jwks_url=str(raw.get("jwks_url", "")),
            issuer=str(raw.get("issuer", "")),
            audience=tuple(audience) if isinstance(audience, list) else str(audience or ""),
            required_scopes=tuple(scopes),
            required_claims=dict(claims),
            allowed_clients=tuple(clients),
            accept_any_client=bool(raw.get("accept_any_client", False)),
            token_types=tuple(types),
            leeway=float(raw.get("leeway", 30.0)),
        )
    except (ValueError, TypeError) as error:
        raise ConfigError(f"{where}: {error}") from error


def _unverified_issuer(token: str) -> str | None:
    """The ``iss`` claim of a JWS without checking anything: only used to pick which validator to run."""
    try:
        segment = token.split(".")[1]
        claims: Any = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (ValueError, IndexError):
        return None
    issuer = claims.get("iss") if isinstance(claims, dict) else None
    return issuer if isinstance(issuer, str) else None


class Authenticator:
    """Maps an ``Authorization`` header value to a source name, or None."""

    def __init__(self, sources: Iterable[SourceConfig], *, raw_token_sources: Iterable[str] = ()) -> None:
        raw_allowed = set(raw_token_sources)
        self.credentials: list[_Credential] = []
        self.validators: dict[str, JwtBearerValidator] = {}
        self.issuers: dict[str, str] = {}
        for source in sources:
            self.credentials += [
                _Credential(h, source.name, source.name in raw_allowed) for h in source.token_hashes
            ]
            config = oauth_config(source)
            if config is not None:
                # No keep-alive: JWKS downloads are rare, and no connection outlives the request.
                client = httpx.AsyncClient(
                    timeout=config.http_timeout, limits=httpx.Limits(max_keepalive_connections=0)
                )
                self.validators[source.name] = JwtBearerValidator(config, client=client)
                self.issuers[source.name] = config.issuer

    def _static(self, token: str, *, raw: bool) -> str | None:
        presented = hash_token(token)
        found: _Credential | None = None
        for credential in self.credentials:
            if hmac.compare_digest(presented, credential.token_hash):
                found = credential
        if found is None or (raw and not found.raw_allowed):
            return None
        return found.source

    async def authenticate(self, authorization: str | None) -> str | None:
        if not authorization or not authorization.strip():
            return None
        scheme, space, rest = authorization.strip().partition(" ")
        if space:
            if scheme.lower() != "bearer" or not rest.strip():
                return None
            token, raw = rest.strip(), False
        else:
            token, raw = scheme, True
        source = self._static(token, raw=raw)
        if source is not None or raw or not self.validators or not _JWS.match(token):
            return source
        issuer = _unverified_issuer(token)
        for name, validator in self.validators.items():
            if self.issuers[name] != issuer:
                continue
            try:
                await validator.validate(token)
            except TokenRejected as rejected:
                log.info("IdP access token refused for source %s: %s", name, rejected.reason)
                continue
            return name
        return None
