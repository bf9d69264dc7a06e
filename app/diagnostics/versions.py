"""What differs between controller releases for an ext-jwt login, and the doctor checks that follow.

* ``kid_first`` (2.0.0-2.0.3): ``common/security_tokens.go processHeaders`` looks the signer up by the
  token's ``kid`` before its issuer (``GetIssuerByKid``); signers sharing a key are picked at random, so a
  login can succeed or fail from one attempt to the next. Fixed after 2.0.3.
* ``revokes_oidc_on_disable`` (2.0.3+): before, ``controller/env/appenv.go ProcessJwt`` never checks
  ``Disabled``: a disabled identity keeps its OIDC API sessions until the access token expires (30 min by
  default, ``controller/config/config_edge.go`` ``edge.oidc.accessTokenDuration``), refreshable for 24 h.
* every release refuses a signer without ``audience`` (``authenticator_mod_ext_jwt.go verifyAudience`` /
  ``verifyTokenClaims``) and asks for the auth policy's secondary factors (``requireTotp``,
  ``requireExtJwtSigner``) after the primary ext-jwt login.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from app.diagnostics.findings import Findings, Severity

__all__ = ["ControllerRules", "check_controller_rules", "parse_version", "rules_for", "secondary_factors"]

_SEMVER = re.compile(r"^v?(\d+)\.(\d+)(?:\.(\d+))?")


def parse_version(version: str | None) -> tuple[int, int, int] | None:
    """``v2.0.0-pre5`` -> (2, 0, 0); None when unreadable."""
    match = _SEMVER.match(version or "")
    if not match:
        return None
    return int(match.group(1)), int(match.group(2)), int(match.group(3) or 0)


@dataclass(frozen=True)
class ControllerRules:
    version: str | None
    kid_first: bool
    revokes_oidc_on_disable: bool
    known: bool


def rules_for(version: str | None, major: int | None = None) -> ControllerRules:
    """The rules of ``version`` (or only of ``major`` when the exact version is unknown)."""
    parsed = parse_version(version)
    if parsed is None:
        # 2.x of unknown patch level: assume the older behaviour (the one that needs a warning)
        return ControllerRules(version, major == 2, False, False)
    return ControllerRules(version, (2, 0, 0) <= parsed <= (2, 0, 3), parsed >= (2, 0, 3), True)


def secondary_factors(policy: dict[str, Any]) -> list[str]:
    """What the auth policy asks for after a primary login (``secondary.requireTotp`` etc.)."""
    secondary = policy.get("secondary") or {}
    needs = []
    if secondary.get("requireTotp"):
        needs.append("a TOTP code (requireTotp)")
    signer = secondary.get("requireExtJwtSigner")
    if signer:
        needs.append(f"a second JWT from ext-jwt signer {signer!r} (requireExtJwtSigner)")
    return needs


def _shared_keys(signers: list[dict[str, Any]]) -> list[list[str]]:
    """Groups of enabled signers that use the same key material (same JWKS endpoint or cert kid)."""
    groups: dict[str, list[str]] = {}
    for signer in signers:
        if signer.get("enabled") is False:
            continue
        key = signer.get("jwksEndpoint") or (f"kid:{signer['kid']}" if signer.get("kid") else None)
        if key:
            groups.setdefault(str(key), []).append(str(signer.get("name") or signer.get("id")))
    return [names for names in groups.values() if len(names) > 1]


def check_controller_rules(
    findings: Findings,
    version: str | None,
    major: int | None,
    signers: list[dict[str, Any]],
    auth_policies: list[dict[str, Any]],
) -> ControllerRules:
    """Doctor findings that depend on the controller release."""
    rules = rules_for(version, major)
    label = version or (f"{major}.x" if major else "of unknown version")
    if not rules.revokes_oidc_on_disable and (major is not None or rules.known):
        findings.add(
            Severity.WARN,
            "controller",
            f"controller {label} does not end an identity's OIDC sessions when the identity is disabled "
            "(env/appenv.go ProcessJwt never checks Disabled): a user deprovisioned through SCIM keeps "
            "access until the access token expires (30 min by default) and can refresh it for up to 24 h",
            "shorten the lifetimes in the controller config: edge.oidc.accessTokenDuration (e.g. 5m) and "
            "edge.oidc.refreshTokenDuration",
            "or upgrade the controller to 2.0.3 or later, which refuses tokens of disabled identities",
            code="oidc-not-revoked-on-disable",
        )
    if rules.kid_first:
        for names in _shared_keys(signers):
            findings.add(
                Severity.WARN,
                "controller",
                f"ext-jwt signers {', '.join(names)} share a signing key: controller {label} picks the "
                "signer by the token's kid before its issuer (security_tokens.go processHeaders), at random "
                "among them, so logins can fail at random",
                "keep one signer per key (merge them, or give each IdP application its own key)",
                "or upgrade the controller past 2.0.3, which selects by issuer",
                code="signers-share-key",
            )
    for signer in signers:
        if signer.get("audience") in (None, ""):
            name = signer.get("name") or signer.get("id")
            findings.add(
                Severity.ERROR,
                "controller",
                f"ext-jwt signer {name!r} has no audience: the controller refuses every token it signs "
                "(authenticator_mod_ext_jwt.go: audience is required)",
                f"set the audience: PATCH /edge/management/v1/external-jwt-signers/{signer.get('id')} "
                '{"audience": "<the IdP client id / aud claim>"}',
                code="signer-no-audience",
            )
    for policy in auth_policies:
        ext = (policy.get("primary") or {}).get("extJwt") or {}
        needs = secondary_factors(policy)
        if ext.get("allowed") and needs:
            findings.add(
                Severity.WARN,
                "controller",
                f"auth policy {policy.get('name') or policy.get('id')!r} asks for {' and '.join(needs)} "
                "after the ext-jwt login: tunnelers must provide it or the API session stays partially "
                "authenticated",
                code="secondary-auth",
            )
    return rules
