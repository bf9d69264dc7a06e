"""``ziti-scim explain-token``: would an ext-jwt login with this IdP token succeed, and if not, why?

Follows the controller's own steps (controller-api.md §4, §5), as the
release it talks to takes them (``versions.py``): the issuer selects the signer (2.0.0-2.0.3: the kid
first), which must be enabled and have an audience; the signature, ``exp``/``nbf`` and the audience must
hold; the ``claimsProperty`` claim must be a non-empty string; with ``useExternalId`` it must equal an
identity's ``externalId`` exactly (otherwise the identity id); that identity must not be disabled and its
auth policy must allow ext-jwt with this signer; its secondary factors (TOTP, a second JWT) are reported.
On a failure the SCIM user that comes closest is named (:mod:`app.diagnostics.closest`).
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from app.config import Config, ConfigError
from app.diagnostics import fixes
from app.diagnostics.claims import claim_label, claim_path, resolve_claim
from app.diagnostics.closest import (
    NEVER_PROVISIONED,
    Candidate,
    Match,
    candidates,
    find_closest,
    identifying_claims,
    owner_of_claims,
)
from app.diagnostics.controller import (
    ControllerFacts,
    Unreachable,
    explain_failure,
    gather,
    open_client,
    signer_label,
)
from app.diagnostics.store import StoreUnavailable, load_users, open_existing, user_by_identity
from app.diagnostics.token import DecodedToken, decode, holds_kid, time_problem, verify
from app.diagnostics.versions import rules_for, secondary_factors
from app.reconcile.settings import TAG_ID, TAG_SOURCE, SourceSettings, source_settings
from app.ziti.client import JSONObject, ZitiClient
from app.ziti.errors import ZitiError, ZitiNotFound

Status = Literal["ok", "fail", "unknown", "info"]
Outcome = Literal["success", "failure", "unknown"]
_SHOWN_CLAIMS = ("iss", "aud", "sub", "email", "preferred_username", "upn", "oid", "uid", "name")


@dataclass(frozen=True)
class Step:
    status: Status
    text: str


@dataclass
class Explanation:
    """``reason`` is a stable code (``ok``, ``unknown-issuer``, ``no-identity``, ``case-differs`` ...)."""

    outcome: Outcome = "unknown"
    reason: str = ""
    summary: str = ""
    steps: list[Step] = field(default_factory=list)
    closest: str | None = None
    fixes: list[str] = field(default_factory=list)
    claims: dict[str, Any] = field(default_factory=dict)
    identity: JSONObject | None = None
    secondary: list[str] = field(default_factory=list)  # secondary factors the auth policy requires

    @property
    def exit_code(self) -> int:
        return {"success": 0, "failure": 1, "unknown": 2}[self.outcome]

    def step(self, status: Status, text: str) -> None:
        self.steps.append(Step(status, text))

    def fail(self, reason: str, summary: str, *fix: str) -> None:
        """Record a failure; the first one decides the outcome, as the controller stops there."""
        if self.outcome != "failure":
            self.outcome, self.reason, self.summary = "failure", reason, summary
        self.fixes.extend(f for f in fix if f not in self.fixes)

    def as_dict(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome,
            "reason": self.reason,
            "summary": self.summary,
            "closest": self.closest,
            "fixes": self.fixes,
            "claims": self.claims,
            "steps": [{"status": s.status, "text": s.text} for s in self.steps],
        }


@dataclass
class _Context:
    config: Config
    client: ZitiClient
    facts: ControllerFacts
    pool: list[Candidate] | None


def _shown_claims(decoded: DecodedToken) -> dict[str, Any]:
    shown = {k: decoded.claims[k] for k in _SHOWN_CLAIMS if k in decoded.claims}
    exp = decoded.claims.get("exp")
    if isinstance(exp, int | float):
        shown["exp"] = dt.datetime.fromtimestamp(exp, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return shown


def _settings(config: Config) -> dict[str, SourceSettings]:
    out = {}
    for name, source in config.sources.items():
        try:
            out[name] = source_settings(source)
        except ConfigError:
            continue  # doctor reports it; here the source's users are matched on their claimed ids only
    return out


async def _pool(config: Config, out: Explanation) -> list[Candidate] | None:
    try:
        db = open_existing(config.database_url)
    except StoreUnavailable as problem:
        out.step("unknown", f"SCIM users not consulted: {problem}")
        return None
    try:
        return candidates(await load_users(db), _settings(config))
    except StoreUnavailable as problem:
        out.step("unknown", f"SCIM users not consulted: {problem}")
        return None
    finally:
        await db.dispose()


def _note_closest(out: Explanation, match: Match | None, fallback: str) -> None:
    if match is None:
        out.closest = fallback
        return
    out.closest = match.detail
    if match.reason in ("not-provisioned", "case-differs", "wrong-claim") and out.reason in (
        "no-identity",
        "claim-missing",
    ):
        out.reason = match.reason  # the store tells the precise cause
    out.fixes.extend(f for f in match.fix if f not in out.fixes)


async def _select_signer(
    out: Explanation, decoded: DecodedToken, facts: ControllerFacts
) -> JSONObject | None:
    rules = rules_for(facts.version, facts.major)
    if rules.kid_first and decoded.kid:
        chosen = await _select_by_kid(out, decoded, facts, rules.version or "2.0.x")
        if chosen is not None:
            return chosen
    issuer = decoded.issuer
    signer = next((s for s in facts.signers if s.get("issuer") == issuer), None)
    if signer is not None:
        out.step("ok", f"issuer {issuer!r} selects ext-jwt signer {signer_label(signer)!r}")
        return signer
    near = next(
        (
            s
            for s in facts.signers
            if issuer and str(s.get("issuer") or "").rstrip("/").lower() == issuer.rstrip("/").lower()
        ),
        None,
    )
    if near is not None:
        text = (
            f"no signer has issuer {issuer!r}; signer {signer_label(near)!r} has {near.get('issuer')!r}: "
            "issuers must match byte for byte (trailing '/', case)"
        )
        out.step("fail", text)
        out.fail("unknown-issuer", text, fixes.update_signer_issuer(signer_label(near), issuer or ""))
        return None
    known = ", ".join(repr(s.get("issuer")) for s in facts.signers) or "none"
    text = (
        f"no ext-jwt signer has issuer {issuer!r} (known issuers: {known}): the controller refuses the token"
    )
    out.step("fail", text)
    out.fail("unknown-issuer", text, fixes.create_signer("<name>", "<claim>", issuer=issuer or "<issuer>"))
    return None


async def _select_by_kid(
    out: Explanation, decoded: DecodedToken, facts: ControllerFacts, version: str
) -> JSONObject | None:
    """2.0.0-2.0.3 (``common/security_tokens.go processHeaders``): the kid picks the signer first."""
    kid = decoded.kid or ""
    holders = [s for s in facts.signers if s.get("enabled") is not False and await holds_kid(s, kid)]
    if not holders:
        return None
    names = [signer_label(s) for s in holders]
    matching = [s for s in holders if s.get("issuer") == decoded.issuer]
    if len(holders) > 1:
        text = (
            f"controller {version} picks the signer by the token's kid {kid!r} before its issuer, and "
            f"{', '.join(repr(n) for n in names)} all hold that key: it takes one of them at random, so "
            "this login succeeds or fails from one attempt to the next"
        )
        out.step("fail", text)
        out.fail(
            "kid-ambiguous",
            text,
            "keep one ext-jwt signer per signing key (merge the signers, or one key per IdP application)",
            "or upgrade the controller past 2.0.3, which selects the signer by issuer",
        )
        return matching[0] if matching else holders[0]
    signer = holders[0]
    if not matching and not any(s.get("issuer") == decoded.issuer for s in facts.signers):
        return None  # refused either way; the issuer check below says what to change
    if not matching:
        text = (
            f"controller {version} picks the signer by kid {kid!r}: signer {signer_label(signer)!r} (issuer "
            f"{signer.get('issuer')!r}), whose issuer is not the token's {decoded.issuer!r}: refused"
        )
        out.step("fail", text)
        out.fail("kid-other-signer", text, "give the IdP's signer its own key, or upgrade past 2.0.3")
        return None
    label = signer_label(signer)
    out.step("ok", f"kid {kid!r} selects ext-jwt signer {label!r} (controller {version}: kid first)")
    return signer


async def _check_token(out: Explanation, decoded: DecodedToken, signer: JSONObject) -> None:
    name = signer_label(signer)
    if signer.get("enabled") is False:
        text = f"signer {name!r} is disabled: every token it signs is refused"
        out.step("fail", text)
        out.fail("signer-disabled", text, fixes.enable_signer(name))
    verification = await verify(decoded, signer)
    if verification.verified is True:
        out.step("ok", verification.detail)
    elif verification.verified is None:
        out.step("unknown", verification.detail + "; the rest assumes the signature is valid")
    else:
        out.step("fail", verification.detail)
        out.fail("bad-signature", verification.detail)
    problem = time_problem(decoded)
    if problem is None:
        out.step("ok", "the token is within its validity period (exp/nbf)")
    else:
        out.step("fail", problem)
        out.fail("expired", problem, "get a fresh token from the IdP")
    audience = signer.get("audience")
    if audience in (None, ""):
        # authenticator_mod_ext_jwt.go verifyAudience / verifyTokenClaims: every release requires it
        text = f"signer {name!r} has no audience: the controller refuses every token it signs"
        out.step("fail", text)
        out.fail(
            "audience",
            text,
            fixes.update_signer_audience(name, decoded.audiences[0] if decoded.audiences else "<audience>"),
        )
    elif audience in decoded.audiences:
        out.step("ok", f"audience {audience!r} is in the token's aud {decoded.audiences}")
    else:
        text = f"the token's aud {decoded.audiences} does not contain the signer's audience {audience!r}"
        out.step("fail", text)
        out.fail(
            "audience",
            text,
            fixes.update_signer_audience(name, decoded.audiences[0] if decoded.audiences else "<audience>"),
        )


async def _find_identity(
    ctx: _Context, out: Explanation, decoded: DecodedToken, signer: JSONObject, value: str
) -> JSONObject | None:
    name = signer_label(signer)
    prop = str(signer.get("claimsProperty"))
    if signer.get("useExternalId") is not True:
        try:
            identity = await ctx.client.get_identity(value)
        except ZitiNotFound:
            text = (
                f"signer {name!r} has useExternalId=false, so the controller looks for an identity whose "
                f'*id* is {value!r}; there is none ("identity not found by id")'
            )
            out.step("fail", text)
            out.fail("use-external-id", text, fixes.update_signer(name, use_external_id=True))
            by_external_id = await ctx.client.find_identities_by_external_id(value)
            if by_external_id:
                out.closest = (
                    f"identity {by_external_id[0].get('name')!r} has externalId {value!r}: it would match if "
                    "the signer had useExternalId=true"
                )
            elif ctx.pool is not None:
                match = find_closest(value, decoded.claims, name, prop, ctx.pool)
                out.closest = match.detail if match is not None else None
            return None
        out.step("ok", f"identity {identity.get('name')!r} has id {value!r} (useExternalId=false)")
        return identity
    found = await ctx.client.find_identities_by_external_id(value)
    if found:
        identity = found[0]
        out.step(
            "ok", f"identity {identity.get('name')!r} (id {identity.get('id')}) has externalId {value!r}"
        )
        return identity
    text = f'no identity has externalId {value!r} ("identity not found by externalId")'
    out.step("fail", text)
    out.fail("no-identity", text)
    if ctx.pool is not None:
        _note_closest(out, find_closest(value, decoded.claims, name, prop, ctx.pool), NEVER_PROVISIONED)
    return None


async def _scim_user(ctx: _Context, identity: JSONObject) -> Candidate | None:
    tags = identity.get("tags") or {}
    pool = ctx.pool or []
    source, user_id = tags.get(TAG_SOURCE), tags.get(TAG_ID)
    if source is None or user_id is None:
        try:
            db = open_existing(ctx.config.database_url)
        except StoreUnavailable:
            return None
        try:
            owner = await user_by_identity(db, str(identity.get("id")))
        except StoreUnavailable:
            owner = None
        finally:
            await db.dispose()
        if owner is None:
            return None
        source, user_id = owner
    return next((c for c in pool if c.user.source == source and c.user.user_id == user_id), None)


def _is_disabled(identity: JSONObject) -> bool:
    if identity.get("disabled") is True:
        return True
    if identity.get("disabledAt") and not identity.get("disabledUntil"):
        return True
    until = identity.get("disabledUntil")
    if isinstance(until, str):
        try:
            return dt.datetime.fromisoformat(until.replace("Z", "+00:00")).timestamp() > time.time()
        except ValueError:
            return True
    return False


def _check_identity(
    ctx: _Context, out: Explanation, identity: JSONObject, owner: Candidate | None, signer: JSONObject
) -> None:
    label = f"identity {identity.get('name')!r}"
    who = f", SCIM user {owner.label}," if owner is not None else " (not managed by ziti-scim)"
    if _is_disabled(identity):
        if owner is not None and not owner.user.active:
            why = "the IdP deactivated the user (SCIM active=false), so ziti-scim disabled the identity"
            fix = "re-activate the user in the IdP; ziti-scim then enables the identity"
        else:
            why = "it was disabled on the controller, not because of a SCIM deactivation"
            fix = f"POST /edge/management/v1/identities/{identity.get('id')}/enable (or the admin console)"
        text = f"{label}{who} is disabled: {why}"
        out.step("fail", text)
        out.fail("disabled", text, fix)
    else:
        out.step("ok", f"{label}{who} is enabled")
    policy_id = str(identity.get("authPolicyId") or "default")
    policy = ctx.facts.auth_policy(policy_id)
    if policy is None:
        text = f"{label} has auth policy {policy_id!r}, which does not exist"
        out.step("fail", text)
        out.fail("auth-policy", text, fixes.create_auth_policy(policy_id))
        return
    ext = (policy.get("primary") or {}).get("extJwt") or {}
    allowed = [str(s) for s in ext.get("allowedSigners") or []]
    policy_label = f"auth policy {policy.get('name') or policy_id!r} (id {policy_id})"
    if not ext.get("allowed"):
        text = f"{policy_label} of {label} does not allow ext-jwt authentication"
        out.step("fail", text)
        out.fail("auth-policy", text, fixes.allow_ext_jwt(policy_id, allowed))
    elif allowed and str(signer.get("id")) not in allowed:
        names = [signer_label(ctx.facts.signer_by_id(s) or {"id": s}) for s in allowed]
        text = f"{policy_label} of {label} only allows the signers {names}, not {signer_label(signer)!r}"
        out.step("fail", text)
        out.fail("auth-policy", text, fixes.allow_ext_jwt(policy_id, [*allowed, str(signer.get("id"))]))
    else:
        out.step("ok", f"{policy_label} allows ext-jwt with {'any signer' if not allowed else 'this signer'}")
    needs = secondary_factors(policy)
    if needs:
        out.secondary = needs
        out.step(
            "info",
            f"{policy_label} then asks for {' and '.join(needs)}: until it is given the API session is only "
            "partially authenticated (authQueries)",
        )


async def _explain(ctx: _Context, out: Explanation, decoded: DecodedToken) -> None:
    signer = await _select_signer(out, decoded, ctx.facts)
    if signer is None:
        if ctx.pool is not None:
            hit = owner_of_claims(decoded.claims, ctx.pool)
            if hit is not None:
                out.closest = (
                    f"the token appears to belong to SCIM user {hit[0].label}: its {hit[1]!r} claim is "
                    "that user's externalId"
                )
        return
    await _check_token(out, decoded, signer)
    prop = str(signer.get("claimsProperty") or ("sub" if ctx.facts.major == 1 else "/sub"))
    value = resolve_claim(decoded.claims, prop, ctx.facts.major)
    where = claim_label(claim_path(prop, ctx.facts.major))
    if not isinstance(value, str) or not value:
        present = ", ".join(sorted(identifying_claims(decoded.claims))) or "none"
        text = (
            f"signer {signer_label(signer)!r} reads claim {where!r} (claimsProperty {prop!r}), which the "
            f"token {'does not carry' if value is None else 'carries as a non-string'} "
            f"(identifying claims present: {present})"
        )
        out.step("fail", text)
        out.fail("claim-missing", text)
        if ctx.pool is not None:
            _note_closest(
                out,
                find_closest(None, decoded.claims, signer_label(signer), prop, ctx.pool),
                "no SCIM user matches any claim of this token",
            )
        return
    out.step("ok", f"claimsProperty {prop!r} selects claim {where!r} = {value!r}")
    identity = await _find_identity(ctx, out, decoded, signer, value)
    if identity is None:
        return
    out.identity = identity
    owner = await _scim_user(ctx, identity)
    _check_identity(ctx, out, identity, owner, signer)
    if out.outcome != "failure":
        unverified = any(s.status == "unknown" and "signature" in s.text for s in out.steps)
        out.outcome, out.reason = "success", "ok"
        who = f", SCIM user {owner.label}" if owner is not None else ""
        out.summary = (
            f"an ext-jwt login with this token would SUCCEED as identity {identity.get('name')!r}{who}"
            + (" (if the signature is valid: it could not be verified here)" if unverified else "")
            + (f", then the controller asks for {' and '.join(out.secondary)}" if out.secondary else "")
        )


async def explain_token(token: str, config: Config, *, client: ZitiClient | None = None) -> Explanation:
    """Explain ``token`` against the controller of ``config`` (or ``client``, which is not closed).

    Raises :class:`app.diagnostics.token.TokenError` when ``token`` is not a JWT.
    """
    decoded = decode(token)
    out = Explanation(claims=_shown_claims(decoded))
    owned = client is None
    try:
        active = client or open_client(config)
    except Unreachable as problem:
        out.reason, out.summary = problem.code, problem.message
        out.fixes.extend(problem.fix)
        return out
    try:
        facts = await gather(config, active)
        ctx = _Context(config, active, facts, await _pool(config, out))
        await _explain(ctx, out, decoded)
    except Unreachable as problem:
        out.outcome, out.reason, out.summary = "unknown", problem.code, problem.message
        out.fixes.extend(problem.fix)
    except ZitiError as error:
        failure = explain_failure(config, error)
        out.outcome, out.reason, out.summary = "unknown", failure.code, failure.message
        out.fixes.extend(failure.fix)
    finally:
        if owned:
            await active.close()
    return out
