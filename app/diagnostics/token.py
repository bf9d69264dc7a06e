"""Decoding an IdP token and verifying it the way the controller does (controller-api.md §4, steps 1-2).

The signature is checked against the signer's JWKS (fetched here, 5 s timeout) or its ``certPem``. When the
key cannot be obtained the token is still explained, marked "not verified": a diagnostic must work from
a host that cannot reach the IdP.
"""

from __future__ import annotations

import ipaddress
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

import httpx
import jwt
from cryptography import x509

from app.constants import ASYMMETRIC_ALGORITHMS

JWKS_TIMEOUT = 5.0


class TokenError(ValueError):
    """The input is not a JWT; the message says why (never the token itself)."""


@dataclass(frozen=True)
class DecodedToken:
    compact: str = field(repr=False)  # the token is a credential: never shown
    header: dict[str, Any]
    claims: dict[str, Any]

    @property
    def issuer(self) -> str | None:
        value = self.claims.get("iss")
        return value if isinstance(value, str) else None

    @property
    def audiences(self) -> list[str]:
        aud = self.claims.get("aud")
        values = aud if isinstance(aud, list) else [aud]
        return [v for v in values if isinstance(v, str)]

    @property
    def kid(self) -> str | None:
        value = self.header.get("kid")
        return value if isinstance(value, str) else None


def decode(token: str) -> DecodedToken:
    """Header and claims without verification."""
    token = token.strip()
    if token.lower().startswith("bearer "):
        token = token[7:].strip()
    if token.count(".") != 2:
        raise TokenError("this is not a JWT (expected three base64url parts separated by '.')")
    try:
        header = jwt.get_unverified_header(token)
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError as error:
        raise TokenError(f"the JWT cannot be decoded: {error}") from error
    if not isinstance(claims, dict):
        raise TokenError("the JWT payload is not a JSON object")
    return DecodedToken(token, dict(header), claims)


@dataclass(frozen=True)
class Verification:
    """``verified`` True (signature good), False (bad: the controller refuses), None (could not check)."""

    verified: bool | None
    detail: str


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def _jwks_key(endpoint: str, kid: str) -> tuple[Any | None, str]:
    host = urlparse(endpoint).hostname or ""
    try:
        # a proxy from the environment must not intercept a loopback IdP
        async with httpx.AsyncClient(timeout=JWKS_TIMEOUT, trust_env=not _is_loopback(host)) as http:
            response = await http.get(endpoint, headers={"Accept": "application/json"})
        response.raise_for_status()
        keys = jwt.PyJWKSet.from_dict(response.json()).keys
    except (httpx.HTTPError, ValueError, jwt.PyJWTError) as error:
        raise LookupError(
            f"the JWKS at {endpoint} could not be fetched ({type(error).__name__}: {error})"
        ) from error
    for key in keys:
        if key.key_id == kid:
            return key.key, f"key {kid!r} from {endpoint}"
    return None, f"the JWKS at {endpoint} has no key {kid!r}"


async def holds_kid(signer: dict[str, Any], kid: str) -> bool:
    """Whether ``signer``'s key material has ``kid`` (its JWKS, or its certPem's kid); False if unknown."""
    endpoint = signer.get("jwksEndpoint")
    if isinstance(endpoint, str) and endpoint:
        try:
            key, _ = await _jwks_key(endpoint, kid)
        except LookupError:
            return False
        return key is not None
    return bool(signer.get("certPem")) and signer.get("kid") == kid


async def verify(decoded: DecodedToken, signer: dict[str, Any]) -> Verification:
    """Check the signature with the signer's key material (times and audience are checked elsewhere)."""
    kid = decoded.kid
    if kid is None:
        return Verification(False, "the token header has no 'kid': the controller refuses such tokens")
    endpoint = signer.get("jwksEndpoint")
    try:
        if isinstance(endpoint, str) and endpoint:
            key, where = await _jwks_key(endpoint, kid)
        elif isinstance(signer.get("certPem"), str):
            if signer.get("kid") and signer["kid"] != kid:
                return Verification(False, f"kid {kid!r} is not the signer's kid {signer['kid']!r}")
            key = x509.load_pem_x509_certificate(str(signer["certPem"]).encode()).public_key()
            where = "the signer's certPem"
        else:
            return Verification(None, "the signer has neither jwksEndpoint nor certPem")
    except LookupError as error:
        return Verification(None, f"could not verify the signature: {error}")
    except ValueError as error:
        return Verification(
            None, f"could not verify the signature: the signer's certPem is unreadable ({error})"
        )
    if key is None:
        return Verification(False, f"{where}: the controller refuses the token (unknown kid)")
    try:
        jwt.decode(
            decoded.compact,
            key=key,
            algorithms=list(ASYMMETRIC_ALGORITHMS),
            options={"verify_exp": False, "verify_nbf": False, "verify_iat": False, "verify_aud": False},
        )
    except (jwt.PyJWTError, ValueError, TypeError) as error:
        return Verification(False, f"the signature does not verify with {where} ({type(error).__name__})")
    return Verification(True, f"signature verified with {where}")


def time_problem(decoded: DecodedToken, now: float | None = None) -> str | None:
    """Why ``exp``/``nbf`` make the token unusable now, or None."""
    now = time.time() if now is None else now
    exp, nbf = decoded.claims.get("exp"), decoded.claims.get("nbf")
    if isinstance(exp, int | float) and now >= exp:
        return f"the token expired {int(now - exp)} s ago (exp {int(exp)})"
    if isinstance(nbf, int | float) and now < nbf:
        return f"the token is not valid for another {int(nbf - now)} s (nbf {int(nbf)})"
    return None
