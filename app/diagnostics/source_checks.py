"""Per-source checks against the controller: the ext-jwt signer and the auth policy.

A login works only if (controller-api.md §4, §5): an enabled signer with ``useExternalId: true`` reads the
claim whose value is the ``externalId`` ziti-scim writes for the source, and the identity's auth policy
(``mapping.auth_policy_id``) allows ext-jwt primary authentication with that signer (an empty
``allowedSigners`` allows any signer).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.config import SourceConfig
from app.diagnostics import fixes
from app.diagnostics.claims import (
    MAPPING_FOR_CLAIM,
    ClaimExpectation,
    claim_label,
    claim_path,
    same_claim,
)
from app.diagnostics.controller import ControllerFacts, signer_label
from app.diagnostics.findings import Findings, Severity
from app.reconcile.settings import SourceSettings

SIGNER_OPTION = "signer"
"""Optional ``[sources.<name>] signer = "<name or id>"``: the signer this source's users log in with."""


@dataclass(frozen=True)
class SignerVerdict:
    signer: dict[str, Any]
    problems: tuple[str, ...]
    fix: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


def _matches_source(signer: dict[str, Any], source: SourceConfig) -> bool:
    text = f"{signer.get('name') or ''} {signer.get('issuer') or ''}".lower()
    return source.name.lower() in text or (source.kind != "generic" and source.kind in text)


def candidate_signers(source: SourceConfig, facts: ControllerFacts) -> tuple[list[dict[str, Any]], str]:
    """The signers this source's users may log in with, and how they were chosen."""
    pinned = source.options.get(SIGNER_OPTION)
    if isinstance(pinned, str) and pinned:
        chosen = [s for s in facts.signers if pinned in (s.get("name"), s.get("id"))]
        return chosen, f"[sources.{source.name}] signer = {pinned!r}"
    named = [s for s in facts.signers if _matches_source(s, source)]
    if named:
        return named, "signers whose name or issuer mentions the source"
    return list(facts.signers), "all signers"


def judge_signer(
    signer: dict[str, Any],
    expectation: ClaimExpectation,
    facts: ControllerFacts,
    source: str,
    external_id: str,
) -> SignerVerdict:
    """What is wrong with ``signer`` for a source expecting ``expectation`` (empty when it fits)."""
    name = signer_label(signer)
    prop = str(signer.get("claimsProperty") or ("sub" if facts.major == 1 else "/sub"))
    major = facts.major
    problems: list[str] = []
    new_claim: str | None = None
    alternative: str | None = None
    if signer.get("enabled") is False:
        problems.append(f"signer {name!r} is disabled: the controller refuses every token it signs")
    use_external_id = signer.get("useExternalId") is True
    if not use_external_id:
        problems.append(
            f"signer {name!r} has useExternalId=false: the controller compares the token's "
            f"{claim_label(claim_path(prop, major))!r} claim with the identity's internal id, never with "
            'the externalId ziti-scim writes (login fails with "identity not found by id")'
        )
    if expectation.known and not any(same_claim(prop, claim, major) for claim in expectation.claims):
        wanted = expectation.claims[0]
        if major == 1 and prop.startswith("/") and any(same_claim(prop, c, 2) for c in expectation.claims):
            problems.append(
                f"signer {name!r} has claimsProperty {prop!r}: ziti {facts.version or '1.x'} reads a "
                f"top-level claim named literally {prop!r}, which no token carries; 1.x takes the plain name"
            )
            new_claim = prop.lstrip("/")
        else:
            problems.append(
                f"signer {name!r} reads the token's {claim_label(claim_path(prop, major))!r} claim, but "
                f"source {source!r} writes identity.externalId from SCIM {external_id!r} "
                f"({expectation.origin}), which is the token's {wanted!r} claim: logins fail with "
                '"identity not found by externalId"'
            )
            new_claim = wanted
            signer_claim = claim_path(prop, 2)
            if len(signer_claim) == 1 and signer_claim[0] in MAPPING_FOR_CLAIM:
                alternative = signer_claim[0]
    commands: list[str] = []
    if signer.get("enabled") is False:
        commands.append(fixes.enable_signer(name))
    if new_claim is not None or not use_external_id:
        commands.append(
            fixes.update_signer(name, claims_property=new_claim, use_external_id=not use_external_id)
        )
    if alternative is not None:
        commands.append(
            "or, to keep the signer and re-key the identities instead: "
            + fixes.config_set(
                f"sources.{source}.mapping",
                external_id=MAPPING_FOR_CLAIM[alternative],
                claims_property=alternative,
            )
        )
    return SignerVerdict(signer, tuple(problems), tuple(commands))


def allowed_signer_ids(facts: ControllerFacts, policy_id: str) -> list[str]:
    """``primary.extJwt.allowedSigners`` of the auth policy (empty: any signer, or no such policy)."""
    policy = facts.auth_policy(policy_id) or {}
    ext = (policy.get("primary") or {}).get("extJwt") or {}
    return [str(s) for s in ext.get("allowedSigners") or []]


def check_signer(
    findings: Findings,
    source: SourceConfig,
    settings: SourceSettings,
    expectation: ClaimExpectation,
    facts: ControllerFacts,
) -> dict[str, Any] | None:
    """Report on the source's signer; return the signer its users log in with (or the likeliest one)."""
    scope = f"source {source.name}"
    candidates, how = candidate_signers(source, facts)
    wanted = expectation.claims[0] if expectation.known else "<claim>"
    if not candidates:
        if how.startswith("[sources."):
            findings.add(
                Severity.ERROR,
                scope,
                f"{how}, but the controller has no such ext-jwt signer",
                f"remove {SIGNER_OPTION} from [sources.{source.name}] or name an existing signer",
                fixes.create_signer(str(source.options[SIGNER_OPTION]), wanted),
                code="signer-missing",
            )
        else:
            findings.add(
                Severity.ERROR,
                scope,
                "the controller has no ext-jwt signer: no identity can log in with an IdP token",
                fixes.create_signer(source.name, wanted),
                code="signer-missing",
            )
        return None
    if not expectation.known:
        names = ", ".join(signer_label(s) for s in candidates)
        findings.add(
            Severity.WARN,
            scope,
            f"cannot tell which token claim carries external_id {settings.mapping.external_id!r}; "
            f"the signers are not checked against it ({names})",
            fixes.config_set(f"sources.{source.name}.mapping", claims_property="<claim>"),
            code="claim-unknown",
        )
        return candidates[0]
    verdicts = [
        judge_signer(s, expectation, facts, source.name, settings.mapping.external_id) for s in candidates
    ]
    good = [v for v in verdicts if v.ok]
    # prefer a signer the source's auth policy admits (an empty allowedSigners admits every signer)
    admitted = allowed_signer_ids(facts, settings.mapping.auth_policy_id)
    good.sort(key=lambda v: bool(admitted) and str(v.signer.get("id")) not in admitted)
    if good:
        signer = good[0].signer
        prop = str(signer.get("claimsProperty"))
        findings.add(
            Severity.OK,
            scope,
            f"signer {signer_label(signer)!r} (issuer {signer.get('issuer')}) reads claim {prop!r} with "
            f"useExternalId=true: it matches the externalId the source writes ({expectation.origin})",
            code="signer-ok",
        )
        if facts.major is None and prop.startswith("/"):
            findings.add(
                Severity.WARN,
                scope,
                f"claimsProperty {prop!r} is a JSON pointer, which only ziti 2.x understands; the controller "
                "version is unknown",
                f"on ziti 1.x: {fixes.update_signer(signer_label(signer), claims_property=prop.lstrip('/'))}",
                code="claim-pointer-unknown-version",
            )
        return signer
    for verdict in verdicts[:3]:
        last = len(verdict.problems) - 1
        for index, problem in enumerate(verdict.problems):
            # one combined fix per signer, after all of its problems
            fix = verdict.fix if index == last else ()
            findings.add(Severity.ERROR, scope, problem, *fix, code=_code(problem))
    if len(verdicts) > 3:
        findings.add(Severity.INFO, scope, f"{len(verdicts) - 3} more signer(s) not shown ({how})")
    return verdicts[0].signer


def _code(problem: str) -> str:
    if "useExternalId=false" in problem:
        return "signer-use-external-id"
    if "disabled" in problem:
        return "signer-disabled"
    if "top-level" in problem:
        return "signer-claim-pointer-on-1x"
    return "signer-claim-mismatch"


def check_auth_policy(
    findings: Findings,
    source: SourceConfig,
    settings: SourceSettings,
    signer: dict[str, Any] | None,
    facts: ControllerFacts,
) -> None:
    """The source's auth policy must exist and allow ext-jwt primary auth with ``signer``."""
    scope = f"source {source.name}"
    policy_id = settings.mapping.auth_policy_id
    policy = facts.auth_policy(policy_id)
    table = f"sources.{source.name}.mapping"
    signer_ids = [str(signer["id"])] if signer and signer.get("id") else []
    if policy is None:
        findings.add(
            Severity.ERROR,
            scope,
            f"auth policy {policy_id!r} (auth_policy_id) does not exist: identity writes will be refused",
            fixes.create_auth_policy(f"{source.name}-ext-jwt", signer_ids)
            + f"  # then {fixes.config_set(table, auth_policy_id='<the id it prints>')}",
            f"or {fixes.config_set(table, auth_policy_id='default')}",
            code="auth-policy-missing",
        )
        return
    label = f"auth policy {policy.get('name') or policy_id!r} (id {policy_id})"
    ext = (policy.get("primary") or {}).get("extJwt") or {}
    allowed_signers = [str(s) for s in ext.get("allowedSigners") or []]
    if not ext.get("allowed"):
        findings.add(
            Severity.ERROR,
            scope,
            f"{label} does not allow ext-jwt primary authentication: every IdP token is refused",
            fixes.allow_ext_jwt(policy_id, allowed_signers),
            code="auth-policy-ext-jwt-off",
        )
        return
    if allowed_signers and signer is not None and str(signer.get("id")) not in allowed_signers:
        names = [signer_label(facts.signer_by_id(s) or {"id": s}) for s in allowed_signers]
        findings.add(
            Severity.ERROR,
            scope,
            f"{label} only allows the signers {names}, not {signer_label(signer)!r}: its tokens are refused",
            fixes.allow_ext_jwt(policy_id, [*allowed_signers, str(signer.get("id"))]),
            code="auth-policy-signer-not-allowed",
        )
        return
    which = (
        "any signer (allowedSigners is empty)"
        if not allowed_signers
        else f"signer {signer_label(signer or {})!r}"
    )
    findings.add(Severity.OK, scope, f"{label} allows ext-jwt with {which}", code="auth-policy-ok")
    secondary = (policy.get("secondary") or {}).get("requireExtJwtSigner")
    if secondary:
        findings.add(
            Severity.INFO,
            scope,
            f"{label} also requires a JWT from signer "
            f"{signer_label(facts.signer_by_id(secondary) or {'id': secondary})!r} on every request",
        )
