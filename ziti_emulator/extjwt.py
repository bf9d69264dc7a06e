"""``/authenticate?method=ext-jwt``: verify an IdP JWT and resolve the identity it names.

Follows ``controller/model/authenticator_mod_ext_jwt.go`` (1.6) and
``controller/model/token_provider_cache.go`` / ``common/security_tokens.go`` (2.0), as written up in
``docs/controller-api.md`` §2.3 and §4:

1. at most 2 ``Authorization: Bearer`` candidates (2.0: 3); the ``iss`` claim selects the signer
   (2.0.0-2.0.3: the ``kid`` first, at random among signers sharing the key, then the issuer must match);
   an unknown issuer, a disabled signer or an unknown kid fail; the signature (JWKS fetched with httpx and
   cached, refetched on an unknown kid; or the signer's ``certPem``) and ``exp``/``nbf`` must verify;
2. ``aud`` must contain the signer's ``audience``;
3. the claim named by ``claimsProperty`` is read: a top-level key in 1.6, a JSON Pointer in 2.0 (leading ``/``
   added if missing, ``~1``/``~0`` escapes, array indexes); it must be a non-empty string;
4. ``useExternalId`` true matches it against ``identity.externalId`` (exact, case-sensitive), false against
   ``identity.id``;
5. the identity must not be disabled, and its auth policy must allow ext-jwt with this signer (empty
   ``allowedSigners`` = any signer).

Any failure is 401 ``INVALID_AUTH`` on the wire on 1.x; 2.0 answers 401 ``UNAUTHORIZED`` with a
``WWW-Authenticate: Bearer realm="openziti-primary-ext-jwt" error="missing|invalid|expired"`` challenge;
the reason (e.g. ``identity not found by externalId``)
is only logged by the controller, so the emulator raises :class:`ExtJwtFailure` carrying it for the state
to record.
"""

from __future__ import annotations

import ipaddress
import logging
import ssl
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import httpx
import jwt
from cryptography import x509

from .entities import ExtJwtSigner, Identity

if TYPE_CHECKING:
    from .state import EmulatorState

log = logging.getLogger("ziti_emulator")

MAX_CANDIDATES = 2  # 1.x: authenticator_mod_ext_jwt.go MaxCandidateJwtProcessing
MAX_CANDIDATES_2X = 3  # 2.0: common/security_tokens.go MaxBearerTokensProcessed
ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"]
_BLOCKED_NETS = [ipaddress.ip_network("169.254.0.0/16"), ipaddress.ip_network("fe80::/10")]


class ExtJwtFailure(Exception):
    """Why an ext-jwt authentication failed (answered as 401 INVALID_AUTH)."""

    def __init__(self, reason: str, *, kind: str = "invalid", **details: Any) -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind = kind  # missing | expired | invalid: the 2.0 WWW-Authenticate ``error``
        self.details = details


class JwksCache:
    """JWKS documents per endpoint, keyed by kid; refetched after ``ttl`` or on an unknown kid."""

    def __init__(
        self,
        *,
        verify: ssl.SSLContext | str | bool = True,
        timeout: float = 5.0,
        ttl: float = 300.0,
        min_refetch_interval: float = 0.0,
    ) -> None:
        self.verify = verify
        self.timeout = timeout
        self.ttl = ttl
        self.min_refetch_interval = min_refetch_interval
        self.fetch_count = 0
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, dict[str, Any]]] = {}

    def forget(self, endpoint: str | None) -> None:
        if endpoint:
            with self._lock:
                self._cache.pop(endpoint, None)

    async def key(self, endpoint: str, kid: str) -> Any | None:
        """The public key for ``kid`` (a cryptography key object) or None if the JWKS lacks it."""
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(endpoint)
        if cached is not None:
            fetched_at, keys = cached
            fresh = now - fetched_at < self.ttl
            if kid in keys and fresh:
                return keys[kid]
            if fresh and now - fetched_at < self.min_refetch_interval:
                return None
        keys = await self._fetch(endpoint)
        with self._lock:
            self._cache[endpoint] = (time.monotonic(), keys)
        return keys.get(kid)

    async def _fetch(self, endpoint: str) -> dict[str, Any]:
        host = urlparse(endpoint).hostname or ""
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            address = None
        if address is not None and any(address in net for net in _BLOCKED_NETS):
            raise ExtJwtFailure("jwks endpoint address is blocked (link-local)", endpoint=endpoint)
        self.fetch_count += 1
        try:
            # trust_env=False: a proxy from the environment must not intercept loopback test IdPs
            async with httpx.AsyncClient(verify=self.verify, timeout=self.timeout, trust_env=False) as client:
                response = await client.get(endpoint, headers={"Accept": "application/json"})
            response.raise_for_status()
            document = response.json()
            jwk_set = jwt.PyJWKSet.from_dict(document)
        except (httpx.HTTPError, ValueError, jwt.PyJWTError) as exc:
            raise ExtJwtFailure(f"could not fetch JWKS: {exc}", endpoint=endpoint) from exc
        return {k.key_id: k.key for k in jwk_set.keys if k.key_id}


def resolve_claim(claims: dict[str, Any], prop: str, flavor: str) -> Any:
    """The claim selected by ``claimsProperty`` (1.6: top-level key; 2.0: JSON Pointer)."""
    if flavor == "1.6":
        return claims.get(prop)
    pointer = prop if prop.startswith("/") else "/" + prop
    node: Any = claims
    for raw in pointer.split("/")[1:]:
        part = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict):
            if part not in node:
                return None
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return node


def bearer_candidates(authorization_headers: list[str], limit: int = MAX_CANDIDATES) -> list[str]:
    tokens = []
    for value in authorization_headers:
        if value.startswith("Bearer "):
            tokens.append(value[len("Bearer ") :].strip())
    return tokens[:limit]


@dataclass(frozen=True)
class ExtJwtResult:
    identity: Identity
    signer: ExtJwtSigner


async def _signing_key(state: EmulatorState, signer: ExtJwtSigner, kid: str) -> Any:
    if signer.jwks_endpoint:
        key = await state.jwks.key(signer.jwks_endpoint, kid)
    elif signer.cert_pem and kid == signer.kid:
        key = x509.load_pem_x509_certificate(signer.cert_pem.encode()).public_key()
    else:
        key = None
    if key is None:
        raise ExtJwtFailure("unknown kid for signer", kid=kid, signer=signer.name)
    return key


def _check_times(claims: dict[str, Any], now: float) -> None:
    exp, nbf = claims.get("exp"), claims.get("nbf")
    if isinstance(exp, int | float) and now >= exp:
        raise ExtJwtFailure("jwt expired", kind="expired", exp=exp)
    if isinstance(nbf, int | float) and now < nbf:
        raise ExtJwtFailure("jwt not yet valid", nbf=nbf)


async def verify_jwt(state: EmulatorState, token: str) -> tuple[ExtJwtSigner, dict[str, Any]]:
    """Steps 1-2: select the signer by ``iss``, verify kid, signature, times and audience."""
    try:
        header = jwt.get_unverified_header(token)
        unverified = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError as exc:
        raise ExtJwtFailure("jwt could not be parsed") from exc
    kid = header.get("kid")
    if not isinstance(kid, str):
        raise ExtJwtFailure("jwt header has no kid")
    issuer = unverified.get("iss")
    signer = await _signer_by_kid(state, kid) if state.profile.kid_first_signers else None
    if signer is None:
        with state.lock:
            signer = next((s for s in state.signers.values() if s.issuer == issuer), None)
    if signer is None:
        raise ExtJwtFailure("no external jwt signer for issuer", issuer=issuer)
    if signer.issuer != issuer:
        # authenticator_mod_ext_jwt.go verifyTokenClaims: the issuer must be the chosen signer's
        raise ExtJwtFailure(
            "jwt issuer does not match the signer chosen by kid", issuer=issuer, signer=signer.name
        )
    if not signer.enabled:
        raise ExtJwtFailure("external jwt signer is disabled", signer=signer.name)
    key = await _signing_key(state, signer, kid)
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key=key,
            algorithms=ALGORITHMS,
            options={"verify_exp": False, "verify_nbf": False, "verify_iat": False, "verify_aud": False},
        )
    except (jwt.PyJWTError, ValueError, TypeError) as exc:
        raise ExtJwtFailure("jwt signature did not verify", error=type(exc).__name__) from exc
    _check_times(claims, state.now())
    if signer.audience is None:
        # authenticator_mod_ext_jwt.go verifyAudience (1.6) / verifyTokenClaims (2.0): audience is required
        raise ExtJwtFailure("audience on ext-jwt signer is nil, audience is required", signer=signer.name)
    aud = claims.get("aud")
    auds = aud if isinstance(aud, list) else [aud]
    if signer.audience not in auds:
        raise ExtJwtFailure("jwt audience does not match the signer", audience=signer.audience)
    return signer, claims


async def _signer_by_kid(state: EmulatorState, kid: str) -> ExtJwtSigner | None:
    """2.0.0-2.0.3 (``common/security_tokens.go processHeaders``, ``GetIssuerByKid``): the kid picks the
    signer before the issuer; among enabled signers sharing the key one is taken at random."""
    with state.lock:
        signers = [s for s in state.signers.values() if s.enabled]
    holders = []
    for signer in signers:
        if signer.cert_pem and signer.kid == kid:
            holders.append(signer)
        elif signer.jwks_endpoint:
            try:
                if await state.jwks.key(signer.jwks_endpoint, kid) is not None:
                    holders.append(signer)
            except ExtJwtFailure:
                continue
    return state.rng.choice(holders) if holders else None


async def _verify(state: EmulatorState, token: str) -> ExtJwtResult:
    signer, claims = await verify_jwt(state, token)
    value = resolve_claim(claims, signer.claims_property, state.flavor)
    if not isinstance(value, str) or not value:
        raise ExtJwtFailure(
            "claims property not found or not a non-empty string", claimsProperty=signer.claims_property
        )
    return ExtJwtResult(_identity_for(state, signer, value), signer)


def _identity_for(state: EmulatorState, signer: ExtJwtSigner, value: str) -> Identity:
    with state.lock:
        if signer.use_external_id:
            identity = state.holder("externalId", value)
            if identity is None:
                raise ExtJwtFailure("identity not found by externalId", externalId=value, signer=signer.name)
        else:
            identity = state.identities.get(value)
            if identity is None:
                raise ExtJwtFailure("identity not found by id", id=value, signer=signer.name)
        if identity.is_disabled(state.now()):
            raise ExtJwtFailure("identity is disabled", identityId=identity.id)
        policy = state.auth_policies.get(identity.auth_policy_id)
        if policy is None:
            raise ExtJwtFailure("auth policy not found", authPolicyId=identity.auth_policy_id)
        ext = policy.primary.get("extJwt", {})
        if not ext.get("allowed"):
            raise ExtJwtFailure("auth policy does not allow ext-jwt authentication", authPolicyId=policy.id)
        allowed = ext.get("allowedSigners") or []
        if allowed and signer.id not in allowed:
            raise ExtJwtFailure(
                "auth policy does not allow this signer", authPolicyId=policy.id, signer=signer.id
            )
        return identity


async def authenticate_ext_jwt(state: EmulatorState, authorization_headers: list[str]) -> ExtJwtResult:
    """Try each Bearer candidate; raise the first candidate's failure if none verifies."""
    limit = MAX_CANDIDATES_2X if state.profile.is_2x else MAX_CANDIDATES
    candidates = bearer_candidates(authorization_headers, limit)
    if not candidates:
        raise ExtJwtFailure("no Bearer token in the Authorization header", kind="missing")
    first: ExtJwtFailure | None = None
    for token in candidates:
        try:
            return await _verify(state, token)
        except ExtJwtFailure as failure:
            first = first or failure
    assert first is not None
    raise first
