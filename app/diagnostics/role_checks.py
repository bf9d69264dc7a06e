"""Per-source checks on the store: do the role attributes the source produces grant anything, and how far
has provisioning got.

An identity reaches a service only through a service policy and an edge router only through an
edge-router policy whose ``identityRoles`` select it: ``#attr`` entries, ``#all``, or ``@id``
(controller-api.md §6). An attribute no policy mentions is silently useless, the usual sign of a spelling or
case difference between the IdP group and the policy.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from app.config import SourceConfig
from app.diagnostics import fixes
from app.diagnostics.controller import ControllerFacts
from app.diagnostics.findings import Findings, Severity
from app.diagnostics.store import StoredUser
from app.mapping import MappingError, map_user, slugify
from app.reconcile.settings import SourceSettings

_SHOWN = 10


@dataclass
class PolicyRoles:
    """The ``#attribute`` entries of a set of policies, and whether one of them says ``#all``."""

    attributes: dict[str, list[str]] = field(default_factory=dict)  # attribute -> policy names
    all_policies: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, policies: Iterable[dict[str, Any]]) -> PolicyRoles:
        roles = cls()
        for policy in policies:
            name = str(policy.get("name") or policy.get("id") or "?")
            for role in policy.get("identityRoles") or []:
                if role == "#all":
                    roles.all_policies.append(name)
                elif isinstance(role, str) and role.startswith("#"):
                    roles.attributes.setdefault(role[1:], []).append(name)
        return roles

    def covers(self, attribute: str) -> bool:
        return bool(self.all_policies) or attribute in self.attributes


def mapped_attributes(
    users: Sequence[StoredUser], settings: SourceSettings
) -> tuple[dict[str, tuple[str, ...]], dict[str, str]]:
    """Role attributes per user id (from ``map_user``), and the users whose mapping fails (id -> reason)."""
    attributes: dict[str, tuple[str, ...]] = {}
    failures: dict[str, str] = {}
    for user in users:
        try:
            attributes[user.user_id] = map_user(
                user.document, list(user.groups), settings.mapping
            ).identity.role_attributes
        except MappingError as error:
            failures[user.user_id] = str(error)
    return attributes, failures


def _near(attribute: str, known: Iterable[str]) -> str | None:
    folded = attribute.casefold()
    slug = slugify(attribute)
    return next((k for k in known if k.casefold() == folded or slugify(k) == slug), None)


def check_roles(
    findings: Findings,
    source: SourceConfig,
    settings: SourceSettings,
    users: Sequence[StoredUser],
    facts: ControllerFacts,
) -> None:
    scope = f"source {source.name}"
    if not users:
        findings.add(
            Severity.INFO, scope, "no users stored yet: role attributes not checked", code="roles-no-users"
        )
        return
    per_user, failures = mapped_attributes(users, settings)
    if failures:
        names = {u.user_id: u.user_name for u in users}
        sample = "; ".join(f"{names[uid]}: {why}" for uid, why in list(failures.items())[:3])
        findings.add(
            Severity.WARN,
            scope,
            f"{len(failures)} stored user(s) cannot be mapped to an identity ({sample})",
            "fix the users in the IdP or the mapping in " + f"[sources.{source.name}.mapping]",
            code="mapping-fails",
        )
    counts: Counter[str] = Counter(a for attrs in per_user.values() for a in attrs)
    services = PolicyRoles.of(facts.service_policies)
    routers = PolicyRoles.of(facts.edge_router_policies)
    unused = sorted(a for a in counts if not services.covers(a) and not routers.covers(a))
    if unused:
        listed = ", ".join(
            f"{a!r} ({counts[a]} user{'s' if counts[a] != 1 else ''})" for a in unused[:_SHOWN]
        )
        more = f" and {len(unused) - _SHOWN} more" if len(unused) > _SHOWN else ""
        hints: list[str] = []
        known = set(services.attributes) | set(routers.attributes)
        lower_hits = 0
        for attribute in unused[:5]:
            near = _near(attribute, known)
            if near is not None:
                lower_hits += near == near.lower()
                policy = (services.attributes.get(near) or routers.attributes[near])[0]
                hints.append(
                    f"policy {policy!r} selects '#{near}' where the source produces {attribute!r}: rename "
                    "one of them (attributes are case-sensitive)"
                )
            else:
                hints.append(fixes.create_service_policy(f"{slugify(attribute) or 'role'}-dial", attribute))
        if lower_hits and settings.mapping.role_case != "lower":
            hints.append(fixes.config_set(f"sources.{source.name}.mapping", role_case="lower"))
        findings.add(
            Severity.WARN,
            scope,
            f"role attribute(s) used by no service or edge-router policy: {listed}{more}; "
            "these grant nothing",
            *hints,
            code="roles-unused",
        )
    elif counts:
        findings.add(
            Severity.OK,
            scope,
            f"the {len(counts)} role attribute(s) of {len(per_user)} user(s) are all used by a policy",
            code="roles-ok",
        )
    else:
        findings.add(
            Severity.INFO, scope, f"the {len(per_user)} user(s) have no role attributes", code="roles-none"
        )
    if per_user and not routers.all_policies:
        stranded = [uid for uid, attrs in per_user.items() if not any(a in routers.attributes for a in attrs)]
        if stranded:
            top = [a for a, _ in counts.most_common(3)]
            findings.add(
                Severity.WARN,
                scope,
                f"{len(stranded)} of {len(per_user)} user(s) match no edge-router policy: they can log in "
                "but reach no edge router",
                fixes.create_edge_router_policy(f"{source.name}-routers", top),
                code="roles-no-router",
            )


def check_provisioning(findings: Findings, source: SourceConfig, users: Sequence[StoredUser]) -> None:
    """Counts of provisioning states; failed and skipped users are warnings with their last error."""
    if not users:
        return
    scope = f"source {source.name}"
    states: Counter[str] = Counter(
        "pending" if u.dirty and u.state not in ("failed", "conflict") else (u.state or "not provisioned")
        for u in users
    )
    summary = ", ".join(f"{n} {state}" for state, n in sorted(states.items()))
    findings.add(Severity.INFO, scope, f"{len(users)} user(s): {summary}", code="provisioning-summary")
    failed = [u for u in users if u.state == "failed"]
    if failed:
        sample = "; ".join(f"{u.user_name}: {u.last_error or 'no error recorded'}" for u in failed[:3])
        findings.add(
            Severity.WARN,
            scope,
            f"{len(failed)} user(s) failed to provision ({sample})",
            "fix the cause, then the next SCIM update or full sync retries them",
            code="provisioning-failed",
        )
    skipped = [u for u in users if u.state == "skipped" and not u.dirty]
    if skipped:
        sample = "; ".join(f"{u.user_name}: {u.last_error or 'no error recorded'}" for u in skipped[:3])
        findings.add(
            Severity.WARN,
            scope,
            f"{len(skipped)} user(s) stored but not provisioned, a value their identity needs is missing "
            f"({sample})",
            "the IdP's next write that brings the attribute provisions them (or change the mapping)",
            code="provisioning-skipped",
        )
    conflicts = [u for u in users if u.state == "conflict"]
    if conflicts:
        lines = "\n".join(
            f"{u.user_name}: identity {u.conflict[0] or '?'}: {u.conflict[1]}"
            if u.conflict
            else f"{u.user_name}: {u.last_error or 'no detail recorded'}"
            for u in conflicts
        )
        findings.add(
            Severity.WARN,
            scope,
            f"{len(conflicts)} user(s) not provisioned: an identity ziti-scim does not own holds their "
            f"externalId or name (left untouched):\n{lines}",
            "decide who the other identity belongs to: delete or re-key it if it is not this user's, or "
            "name its source in takeover_from; then the next SCIM update or `ziti-scim sync` retries",
            code="provisioning-conflict",
        )
