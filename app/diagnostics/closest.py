"""Which SCIM user a failing token most likely belongs to, and why their values differ.

The controller matches the signer's claim against ``identity.externalId`` exactly and case-sensitively
(controller-api.md §4 step 4). When no identity matches, the store usually knows the person under another
spelling: a different letter case, another claim of the same token, another attribute of the user, or
an externalId that was never provisioned.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from app.diagnostics import fixes
from app.diagnostics.claims import MAPPING_FOR_CLAIM
from app.diagnostics.store import StoredUser
from app.mapping import MappingError, map_user
from app.reconcile.settings import SourceSettings

NEVER_PROVISIONED = (
    "no SCIM user has this externalId: the user was never provisioned through ziti-scim (is the user "
    "assigned to the SCIM application in the IdP?)"
)

# Claims that never identify a user.
_NOT_IDENTIFYING = frozenset(
    {
        "iss",
        "aud",
        "exp",
        "iat",
        "nbf",
        "jti",
        "typ",
        "azp",
        "nonce",
        "auth_time",
        "at_hash",
        "c_hash",
        "scope",
        "scp",
        "amr",
        "acr",
        "sid",
        "ver",
        "tid",
        "idp",
    }
)


@dataclass(frozen=True)
class Candidate:
    user: StoredUser
    # mapped now, and claimed at the last write (they differ after a mapping change)
    external_ids: tuple[str, ...]
    external_id_path: str

    @property
    def label(self) -> str:
        return f"{self.user.user_name!r} of source {self.user.source} (SCIM id {self.user.user_id})"


@dataclass(frozen=True)
class Match:
    """``reason``: not-provisioned, case-differs, wrong-claim, or no-identity (a mere resemblance)."""

    candidate: Candidate | None
    reason: str
    detail: str
    fix: tuple[str, ...] = field(default=())


def candidates(users: Iterable[StoredUser], settings: Mapping[str, SourceSettings]) -> list[Candidate]:
    out = []
    for user in users:
        ids: list[str] = []
        source = settings.get(user.source)
        if source is not None:
            try:
                ids.append(map_user(user.document, list(user.groups), source.mapping).identity.external_id)
            except MappingError:
                pass
        if user.claimed_external_id:
            ids.append(user.claimed_external_id)
        path = source.mapping.external_id if source is not None else "?"
        out.append(Candidate(user, tuple(dict.fromkeys(ids)), path))
    return out


def identifying_claims(claims: Mapping[str, Any]) -> dict[str, str]:
    return {k: v for k, v in claims.items() if k not in _NOT_IDENTIFYING and isinstance(v, str) and v.strip()}


def _attributes(user: StoredUser) -> list[tuple[str, str | None, str]]:
    """``(attribute, external_id path that selects it or None, value)`` for the user's identifying values."""
    doc = user.document
    found: list[tuple[str, str | None, str]] = [("SCIM id", None, user.user_id)]
    for key in ("userName", "externalId"):
        if isinstance(doc.get(key), str):
            found.append((key, key, doc[key]))
    for email in doc.get("emails") or []:
        value = email.get("value") if isinstance(email, dict) else email
        if isinstance(value, str):
            found.append(("email", "emails[primary eq true].value", value))
    return found


def _state(user: StoredUser) -> str:
    if user.state == "failed":
        return f"provisioning failed: {user.last_error or 'no error recorded'}"
    if user.state == "skipped" and not user.dirty:
        missing = user.last_error or "no error recorded"
        return f"not provisioned: a value its identity needs is missing ({missing})"
    if user.dirty or user.state == "pending":
        return "provisioning is pending (the controller was unreachable or the worker has not run yet)"
    if user.state == "synced" and user.identity_id:
        return (
            f"its identity {user.identity_id} is recorded as synced, yet no identity has this externalId "
            "(deleted or edited on the controller): `ziti-scim sync` repairs it"
        )
    return f"provisioning state {user.state or 'none'}"


def find_closest(
    value: str | None,
    claims: Mapping[str, Any],
    signer_name: str,
    signer_prop: str,
    pool: Sequence[Candidate],
) -> Match | None:
    """Explain a missing identity for claim ``value`` (None when the claim itself is missing)."""
    if value is not None:
        for c in pool:
            if value in c.external_ids:
                return Match(
                    c,
                    "not-provisioned",
                    f"SCIM user {c.label} has this externalId, but {_state(c.user)}",
                    ("ziti-scim doctor  # shows why provisioning is held or failing",),
                )
        folded = value.casefold()
        for c in pool:
            hit = next((x for x in c.external_ids if x.casefold() == folded), None)
            if hit is not None:
                table = f"sources.{c.user.source}.mapping"
                case_fix = (
                    "make the IdP emit the claim in the same case, or "
                    + fixes.config_set(
                        table, external_id_transform=["lower"] if value == value.lower() else []
                    )
                    + " (OpenZiti compares exactly)",
                )
                return Match(
                    c,
                    "case-differs",
                    f"SCIM user {c.label} has externalId {hit!r}; the token says {value!r}: the values "
                    "differ only in letter case, and OpenZiti compares them case-sensitively",
                    case_fix,
                )
    others = identifying_claims(claims)
    for c in pool:
        for claim, claim_value in others.items():
            if claim_value in c.external_ids and claim_value != value:
                claim_fix = [
                    fixes.update_signer(signer_name, claims_property=claim)
                    + "  # changes it for every source using this signer"
                ]
                if signer_prop.lstrip("/") in MAPPING_FOR_CLAIM:
                    claim_fix.append(
                        "or "
                        + fixes.config_set(
                            f"sources.{c.user.source}.mapping",
                            external_id=MAPPING_FOR_CLAIM[signer_prop.lstrip("/")],
                            claims_property=signer_prop.lstrip("/"),
                        )
                        + " (re-keys the identities)"
                    )
                return Match(
                    c,
                    "wrong-claim",
                    f"the token's {claim!r} claim {claim_value!r} is the externalId of SCIM user {c.label}, "
                    f"but signer {signer_name!r} reads {signer_prop!r}"
                    + (f" ({value!r})" if value is not None else " (absent from the token)"),
                    tuple(claim_fix),
                )
    if value is None:
        return None
    folded = value.casefold()
    for c in pool:
        for attribute, path, attribute_value in _attributes(c.user):
            if attribute_value.casefold() != folded:
                continue
            mapped = c.external_ids[0] if c.external_ids else "nothing"
            claim = signer_prop.lstrip("/")
            path_fix: tuple[str, ...] = ()
            if path is not None:
                path_fix = (
                    fixes.config_set(
                        f"sources.{c.user.source}.mapping", external_id=path, claims_property=claim
                    )
                    + " (re-keys the identities)",
                )
            return Match(
                c,
                "wrong-claim",
                f"SCIM user {c.label} has {attribute} {attribute_value!r} like the token's {claim!r} claim, "
                f"but source {c.user.source} writes externalId from {c.external_id_path!r} "
                f"({mapped!r}): the signer's claim and the mapping name different attributes",
                path_fix,
            )
    by_id = {x: c for c in pool for x in c.external_ids}
    close = difflib.get_close_matches(value, list(by_id), n=1, cutoff=0.8)
    if close:
        c = by_id[close[0]]
        return Match(
            c,
            "no-identity",
            f"{NEVER_PROVISIONED}; the closest stored externalId is {close[0]!r} of SCIM user {c.label}, "
            f"which has {difference(value, close[0])}",
        )
    return None


def difference(token_value: str, stored: str) -> str:
    """``'bob' where the token has 'carol'``: the differing middle once the common ends are removed."""
    prefix = len(_common_prefix(token_value, stored))
    suffix = len(_common_prefix(token_value[prefix:][::-1], stored[prefix:][::-1]))
    ours = stored[prefix : len(stored) - suffix]
    theirs = token_value[prefix : len(token_value) - suffix]
    return f"{ours!r} where the token has {theirs!r}"


def _common_prefix(a: str, b: str) -> str:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return a[:n]


def owner_of_claims(claims: Mapping[str, Any], pool: Sequence[Candidate]) -> tuple[Candidate, str] | None:
    """The user whose externalId one of the token's identifying claims carries, and that claim."""
    others = identifying_claims(claims)
    for c in pool:
        for claim, value in others.items():
            if value in c.external_ids:
                return c, claim
    return None
