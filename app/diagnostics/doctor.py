"""``ziti-scim doctor``: is every source set up so that its users' IdP tokens log them in?

Checks, in order: the controller (URL, TLS, credentials; its ext-jwt signers and auth policies are
listed), the store (the mass-deprovision brake and the pause flag of :mod:`app.reconcile.safety`), then per
source: the signer (:mod:`app.diagnostics.source_checks`), the auth policy, the role attributes and the
provisioning states (:mod:`app.diagnostics.role_checks`). Each problem carries its exact fix. Errors make
the exit code non-zero; warnings do not.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from app.config import Config, ConfigError
from app.diagnostics.claims import ClaimExpectation, expected_claims
from app.diagnostics.controller import ControllerFacts, Unreachable, gather, open_client, signer_label
from app.diagnostics.findings import Findings, Severity
from app.diagnostics.role_checks import check_provisioning, check_roles
from app.diagnostics.source_checks import check_auth_policy, check_signer
from app.diagnostics.store import (
    StoredUser,
    StoreUnavailable,
    load_users,
    open_existing,
    read_setting,
    read_settings_like,
)
from app.diagnostics.versions import check_controller_rules
from app.diagnostics.webhook_checks import check_authentik_tokens, check_webhook_store
from app.reconcile.deployment import DEPLOYMENT_KEY
from app.reconcile.settings import SourceSettings, source_settings
from app.ziti.client import ZitiClient

BRAKE_KEY = "brake"
PAUSED_KEY = "paused"


@dataclass
class DoctorReport:
    findings: Findings = field(default_factory=Findings)
    controller: ControllerFacts | None = None
    expectations: dict[str, ClaimExpectation] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        return 1 if self.findings.errors else 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.exit_code == 0,
            "errors": self.findings.errors,
            "warnings": self.findings.warnings,
            "controller": None
            if self.controller is None
            else {
                "url": self.controller.base_url,
                "version": self.controller.version,
                "major": self.controller.major,
            },
            "findings": [item.as_dict() for item in self.findings.items],
        }


def _describe_signer(signer: dict[str, Any]) -> str:
    state = "enabled" if signer.get("enabled") else "DISABLED"
    return (
        f"{signer_label(signer)}: issuer {signer.get('issuer')}, audience {signer.get('audience')}, "
        f"claimsProperty {signer.get('claimsProperty')!r}, "
        f"useExternalId={'true' if signer.get('useExternalId') else 'false'}, {state}"
    )


def _describe_policy(policy: dict[str, Any], facts: ControllerFacts) -> str:
    ext = (policy.get("primary") or {}).get("extJwt") or {}
    if not ext.get("allowed"):
        which = "ext-jwt NOT allowed"
    elif ext.get("allowedSigners"):
        names = [signer_label(facts.signer_by_id(s) or {"id": s}) for s in ext["allowedSigners"]]
        which = f"ext-jwt allowed for {', '.join(names)}"
    else:
        which = "ext-jwt allowed for any signer"
    return f"{policy.get('id')} ({policy.get('name')}): {which}"


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def _list_controller(findings: Findings, facts: ControllerFacts, username: str) -> None:
    version = facts.version or (f"{facts.major}.x" if facts.major else "unknown version")
    findings.add(
        Severity.OK,
        "controller",
        f"reached {facts.base_url} and authenticated as {username!r} "
        f"(ziti {version}, from {facts.version_source})",
        code="controller-ok",
    )
    signers = "\n".join(_describe_signer(s) for s in facts.signers) or "none"
    findings.add(
        Severity.INFO,
        "controller",
        f"{_count(len(facts.signers), 'ext-jwt signer', 'ext-jwt signers')}:\n{signers}",
        code="signers",
    )
    policies = "\n".join(_describe_policy(p, facts) for p in facts.auth_policies) or "none"
    findings.add(
        Severity.INFO,
        "controller",
        f"{_count(len(facts.auth_policies), 'auth policy', 'auth policies')}:\n{policies}",
        code="auth-policies",
    )
    findings.add(
        Severity.INFO,
        "controller",
        f"{_count(len(facts.service_policies), 'service policy', 'service policies')}, "
        f"{_count(len(facts.edge_router_policies), 'edge-router policy', 'edge-router policies')}",
    )


def _when(value: object) -> str:
    if isinstance(value, int | float):
        return dt.datetime.fromtimestamp(value, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return str(value)


def brake_engaged(value: Any) -> bool:
    """The brake row exists while the brake holds; a dict may also say ``engaged: false``."""
    if value is None or value is False:
        return False
    if isinstance(value, dict):
        return bool(value.get("engaged", True))
    return True


def _brake_details(brake: Any) -> str:
    if not isinstance(brake, dict):
        return ""
    parts = []
    if brake.get("reason"):
        parts.append(str(brake["reason"]))
    if brake.get("engaged_at") is not None:
        parts.append(f"since {_when(brake['engaged_at'])}")
    return f" ({'; '.join(parts)})" if parts else ""


async def _check_store_flags(findings: Findings, db: Any) -> None:
    """The brake rows of :mod:`app.reconcile.safety`: ``brake:<source>`` per source (``brake`` for all)."""
    brakes = await read_settings_like(db, BRAKE_KEY)
    engaged = {
        key: value
        for key, value in sorted(brakes.items())
        if (key == BRAKE_KEY or key.startswith(BRAKE_KEY + ":")) and brake_engaged(value)
    }
    for key, value in engaged.items():
        whose = f" of source {key.split(':', 1)[1]}" if ":" in key else ""
        findings.add(
            Severity.WARN,
            "safety",
            f"the mass-deprovision brake{whose} is ENGAGED{_brake_details(value)}: disable/delete actions "
            "are held, not lost",
            "review what would be removed (ziti-scim audit), then release it: ziti-scim resume",
            code="brake-engaged",
        )
    if not engaged:
        findings.add(Severity.OK, "safety", "no mass-deprovision brake is engaged", code="brake-off")
    deployment = await read_setting(db, DEPLOYMENT_KEY)
    if deployment:
        findings.add(
            Severity.INFO,
            "database",
            f"deployment id {deployment!r}: ziti-scim changes only identities tagged "
            f"scimDeployment={deployment}",
            f'to keep it after restoring or rebuilding the database: [server] deployment_id = "{deployment}"',
            code="deployment-id",
        )
    if await read_setting(db, PAUSED_KEY):
        findings.add(
            Severity.WARN,
            "safety",
            "provisioning is PAUSED: SCIM writes are stored, nothing reaches the controller",
            "ziti-scim resume",
            code="paused",
        )


async def run_doctor(config: Config, *, client: ZitiClient | None = None) -> DoctorReport:
    """Run every check; ``client`` replaces the one built from ``config.ziti`` (it is not closed)."""
    report = DoctorReport()
    findings = report.findings
    settings: dict[str, SourceSettings] = {}
    for name, source in config.sources.items():
        try:
            settings[name] = source_settings(source)
        except ConfigError as error:
            findings.add(
                Severity.ERROR,
                f"source {name}",
                str(error),
                "correct the mapping table",
                code="mapping-invalid",
            )
    if not config.sources:
        findings.add(Severity.WARN, "config", "no [sources.<name>] configured: nothing can be provisioned")

    facts: ControllerFacts | None = None
    if not config.ziti.url and client is None:
        findings.add(
            Severity.ERROR,
            "controller",
            "no controller configured: nothing is provisioned",
            'in [ziti] set url = "https://<controller>:1280"',
            code="controller-config",
        )
    else:
        owned = client is None
        try:
            active = client or open_client(config)
            try:
                facts = await gather(config, active)
            finally:
                if owned:
                    await active.close()
        except Unreachable as problem:
            findings.add(Severity.ERROR, "controller", problem.message, *problem.fix, code=problem.code)
        if facts is not None:
            report.controller = facts
            _list_controller(findings, facts, config.ziti.username)
            check_controller_rules(findings, facts.version, facts.major, facts.signers, facts.auth_policies)

    users: dict[str, list[StoredUser]] | None = None
    try:
        db = open_existing(config.database_url)
    except StoreUnavailable as problem:
        findings.add(Severity.WARN, "database", str(problem), code="database-missing")
    else:
        try:
            await _check_store_flags(findings, db)
            await check_webhook_store(findings, config, db)
            users = {}
            for user in await load_users(db):
                users.setdefault(user.source, []).append(user)
        except StoreUnavailable as problem:
            findings.add(Severity.WARN, "database", str(problem), code="database-unreadable")
            users = None
        finally:
            await db.dispose()

    await check_authentik_tokens(findings, config)
    for name, source_settings_ in settings.items():
        source = config.sources[name]
        expectation = expected_claims(source.mapping or {"preset": source.kind}, source_settings_.mapping)
        report.expectations[name] = expectation
        claims = " or ".join(repr(c) for c in expectation.claims) or "unknown"
        findings.add(
            Severity.INFO,
            f"source {name}",
            f"externalId from SCIM {source_settings_.mapping.external_id!r}; pairs with token claim {claims} "
            f"({expectation.origin}); auth policy {source_settings_.mapping.auth_policy_id!r}",
            code="source-summary",
        )
        if facts is not None:
            signer = check_signer(findings, source, source_settings_, expectation, facts)
            check_auth_policy(findings, source, source_settings_, signer, facts)
        if users is not None:
            source_users = users.get(name, [])
            if facts is not None:
                check_roles(findings, source, source_settings_, source_users, facts)
            check_provisioning(findings, source, source_users)
    return report
