"""Which OpenZiti identities ziti-scim may touch: ownership, adoption, take-over and orphans (pure rules).

ziti-scim changes only identities it created or explicitly adopted. Ownership is written in the
identity's tags (:mod:`app.reconcile.settings`): ``managedBy=ziti-scim``, ``scimSource``, ``scimId`` and
``scimDeployment``, the id of the ziti-scim installation (generated once and kept in the database, or
configured as ``[server] deployment_id`` so that a restored database keeps it). The rules:

- **Ours**: our deployment, our source, this user. An identity tagged before deployment ids existed
  (no ``scimDeployment``) is ours only when the database records it for this user.
- **Admins are never touched**: an identity with ``isAdmin`` (or the default admin) is never adopted,
  taken over, changed, disabled or deleted, unless it is ours and this user's mapping makes it an admin
  (the ``admin_group`` option).
- **Adoption** is narrow: only an untagged, non-admin identity of type ``Default`` whose ``externalId`` is
  the user's, without permissions or ``appData`` — what the controller's token enrollment creates
  (``controller/model/enrollment_mod_token.go``: ``IdentityTypeId: db.DefaultIdentityType``, no tags,
  ``ExternalId`` from the signer's claim) — and only where the source's ``adopt`` allows it.
- **Take-over** of an identity tagged for another user: within the source only when the database no
  longer knows that user (a re-created user gets their old identity back); from another source only
  when ``takeover_from`` names it; never from another deployment.
- Everything else is a **conflict**: the identity stays untouched and the operator is told why
  (:attr:`Decision.reason`, for the audit log and ``doctor``); the SCIM client only sees
  :data:`PUBLIC_CONFLICT`, which says nothing about the other identity.
- **Orphans** (identities tagged for this deployment whose user the database does not know) are only
  proposed; a source whose users the database does not know at all never deletes any.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from app.reconcile.settings import (
    MANAGER,
    OUR_TAGS,
    TAG_ADOPTED,
    TAG_DEPLOYMENT,
    TAG_ID,
    TAG_MANAGED_BY,
    TAG_SOURCE,
    OnDelete,
    OnDeleteAdopted,
)

Verdict = Literal["ours", "adopt", "take-over", "conflict"]
Removal = Literal["delete", "disable", "untag"]
TOKEN_ENROLLED_TYPES = frozenset({"Default", "User"})
"""``typeId`` of a token-enrolled identity (``Default``; ``User`` is mapped to it on create)."""

PUBLIC_CONFLICT = (
    "an existing OpenZiti identity ziti-scim does not own already uses this user's externalId or name; "
    "it was left untouched (an operator resolves it: ziti-scim doctor lists the conflicts)"
)
"""The ``lastError`` a SCIM client sees for a conflict: nothing about the other identity."""


@dataclass(frozen=True)
class Owner:
    """Who is asking: this deployment and one of its sources, with that source's adoption rules."""

    deployment: str
    source: str
    adopt: bool = True
    takeover_from: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True)
class Decision:
    """``reason`` explains the verdict to the operator (it may name the other identity's owner)."""

    verdict: Verdict
    reason: str = ""

    @property
    def allowed(self) -> bool:
        return self.verdict != "conflict"


def tags_of(identity: Mapping[str, Any]) -> dict[str, Any]:
    tags = identity.get("tags")
    return dict(tags) if isinstance(tags, Mapping) else {}


def is_admin(identity: Mapping[str, Any]) -> bool:
    return bool(identity.get("isAdmin")) or bool(identity.get("isDefaultAdmin"))


def is_managed(identity: Mapping[str, Any]) -> bool:
    """Carries ``managedBy=ziti-scim`` (of any deployment)."""
    return tags_of(identity).get(TAG_MANAGED_BY) == MANAGER


def is_adopted(identity: Mapping[str, Any]) -> bool:
    return tags_of(identity).get(TAG_ADOPTED) is True


def type_id(identity: Mapping[str, Any]) -> str | None:
    value = identity.get("typeId")
    if isinstance(value, str):
        return value
    kind = identity.get("type")
    if isinstance(kind, Mapping):
        name = kind.get("name") or kind.get("id")
        return name if isinstance(name, str) else None
    return kind if isinstance(kind, str) else None


def looks_token_enrolled(identity: Mapping[str, Any], external_id: str) -> bool:
    """What the controller's token enrollment creates, with the user's externalId (see module doc)."""
    return (
        not is_admin(identity)
        and not tags_of(identity)
        and type_id(identity) in TOKEN_ENROLLED_TYPES
        and identity.get("externalId") == external_id
        and not identity.get("permissions")
        and not identity.get("appData")
    )


def owns(identity: Mapping[str, Any], owner: Owner, user_id: str, *, recorded: bool = False) -> bool:
    """Tagged for this deployment, source and user (``recorded``: the database names this identity for
    this user, which also vouches for an identity tagged before deployment ids existed)."""
    tags = tags_of(identity)
    if tags.get(TAG_MANAGED_BY) != MANAGER or tags.get(TAG_SOURCE) != owner.source:
        return False
    if tags.get(TAG_ID) != user_id:
        return False
    deployment = tags.get(TAG_DEPLOYMENT)
    return deployment == owner.deployment or (deployment is None and recorded)


def check_owned(
    identity: Mapping[str, Any],
    owner: Owner,
    user_id: str,
    *,
    recorded: bool = True,
    admin_granted: bool = False,
) -> Decision:
    """May this user's converge write to ``identity`` (found through the database's record)?"""
    if not owns(identity, owner, user_id, recorded=recorded):
        return Decision("conflict", "the identity is no longer tagged for this user, deployment and source")
    if is_admin(identity) and not admin_granted:
        return Decision("conflict", "the identity is an admin and this user's mapping does not grant isAdmin")
    return Decision("ours")


def classify(
    identity: Mapping[str, Any],
    owner: Owner,
    user_id: str,
    external_id: str,
    *,
    previous_user_gone: bool = False,
    admin_granted: bool = False,
) -> Decision:
    """What to do with an existing identity that holds this user's externalId (or name).

    ``previous_user_gone``: the identity is tagged for another user of this source whom the database
    no longer knows. ``admin_granted``: this user's mapping makes the identity an admin.
    """
    if owns(identity, owner, user_id):
        return check_owned(identity, owner, user_id, admin_granted=admin_granted)
    if is_admin(identity):
        return Decision("conflict", "the identity is an admin (never adopted or taken over)")
    tags = tags_of(identity)
    if tags.get(TAG_MANAGED_BY) == MANAGER:
        deployment = tags.get(TAG_DEPLOYMENT)
        if deployment != owner.deployment:
            which = f"deployment {deployment!r}" if deployment else "a deployment that did not tag itself"
            return Decision("conflict", f"the identity is managed by another ziti-scim ({which})")
        source = tags.get(TAG_SOURCE)
        if source != owner.source:
            if isinstance(source, str) and source in owner.takeover_from:
                return Decision("take-over", f"taken over from source {source!r} (takeover_from)")
            return Decision(
                "conflict", f"the identity belongs to source {source!r} (not in this source's takeover_from)"
            )
        if previous_user_gone:
            return Decision("take-over", f"taken over from deleted user {tags.get(TAG_ID)!r} of this source")
        return Decision("conflict", f"the identity belongs to user {tags.get(TAG_ID)!r} of this source")
    if not looks_token_enrolled(identity, external_id):
        return Decision(
            "conflict",
            "the identity was not made by token enrollment (it has tags, permissions, appData, another "
            "type or another externalId); ziti-scim adopts only those",
        )
    if not owner.adopt:
        return Decision("conflict", "the identity was made by token enrollment but adopt = refuse")
    return Decision("adopt", "made by token enrollment with this user's externalId")


def claimed_tags(
    identity: Mapping[str, Any], owner: Owner, user_id: str, verdict: Verdict
) -> dict[str, Any]:
    """The tags written when adopting or taking over: the identity's own, ours on top, adoption kept."""
    tags = tags_of(identity)
    adopted = verdict == "adopt" or tags.get(TAG_ADOPTED) is True
    merged: dict[str, Any] = {key: value for key, value in tags.items() if key not in OUR_TAGS}
    merged.update(
        {TAG_MANAGED_BY: MANAGER, TAG_SOURCE: owner.source, TAG_ID: user_id, TAG_DEPLOYMENT: owner.deployment}
    )
    if adopted:
        merged[TAG_ADOPTED] = True
    return merged


def released_tags(identity: Mapping[str, Any]) -> dict[str, Any]:
    """The tags left when an adopted identity is given back (``on_delete_adopted = "untag"``)."""
    return {key: value for key, value in tags_of(identity).items() if key not in OUR_TAGS}


def removal(adopted: bool, on_delete: OnDelete, on_delete_adopted: OnDeleteAdopted) -> Removal:
    """What deleting the user does to its identity: adopted identities follow their own option."""
    return on_delete_adopted if adopted else on_delete


def lost_create(found: Iterable[Mapping[str, Any]], owner: Owner, user_id: str) -> Mapping[str, Any] | None:
    """Among identities found by our ``scimId`` tag, the one an earlier create made for this user.

    Only the full set of our tags counts (never the name or externalId alone), so an ambiguous create
    answer (timeout, 429/503 after the controller applied it) never makes ziti-scim claim another's.
    """
    return next((identity for identity in found if owns(identity, owner, user_id)), None)


def orphan_source(identity: Mapping[str, Any], deployment: str, sources: Iterable[str]) -> str | None:
    """The source of ours an identity is tagged for, if it may be an orphan of this deployment."""
    tags = tags_of(identity)
    if tags.get(TAG_MANAGED_BY) != MANAGER or tags.get(TAG_DEPLOYMENT) != deployment or is_admin(identity):
        return None
    source = tags.get(TAG_SOURCE)
    return source if isinstance(source, str) and source in set(sources) and tags.get(TAG_ID) else None


def may_delete_orphans(known_users: int) -> bool:
    """A source whose users the database does not know at all (fresh or restored) never deletes any."""
    return known_users > 0
