"""IdP-neutral description of what a webhook delivery said.

Parsers in this package translate ZITADEL, Asgardeo and authentik payloads into these frozen
dataclasses; the application applies them to its store and to OpenZiti. ``source_user_id`` is always
the IdP's own stable user id as a string (ZITADEL ``aggregateID`` = OIDC ``sub``, Asgardeo ``user.id``,
authentik user ``pk``). SCIM-shaped dicts use RFC 7643 §4.1 attribute names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = [
    "Challenge",
    "FetchGroup",
    "FetchUser",
    "GroupDelete",
    "GroupMembers",
    "GroupSnapshot",
    "GrantActive",
    "GrantDelete",
    "GrantUpsert",
    "Ignored",
    "RoleGroups",
    "RoleMembers",
    "UserActive",
    "UserDelete",
    "UserGroups",
    "UserLocked",
    "UserPatch",
    "UserUpsert",
    "WebhookEvent",
    "SCIM_USER_SCHEMA",
]

SCIM_USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"


@dataclass(frozen=True, slots=True)
class UserUpsert:
    """The IdP describes a user completely (creation, or a full snapshot).

    ``user`` is a SCIM User resource (RFC 7643 §4.1) without ``id``/``meta``: ``schemas``, ``externalId``
    (= ``source_user_id``), ``userName`` and, when known, ``name{givenName,familyName,formatted}``,
    ``displayName``, ``nickName``, ``preferredLanguage``, ``emails[{value,primary,type}]``, ``active``.
    Create the user if unknown, otherwise replace these attributes.
    """

    source_user_id: str
    user: dict[str, Any]


@dataclass(frozen=True, slots=True)
class UserPatch:
    """Some attributes of an existing user changed; nothing else is known.

    ``changes`` uses the same SCIM attribute names as :class:`UserUpsert`. Merge rule: top-level
    attributes replace, the complex ``name`` merges key by key, multi-valued ``emails`` replaces the list.
    ``removed`` lists attribute paths (``"name.givenName"``, ``"emails"``) the IdP cleared.
    """

    source_user_id: str
    changes: dict[str, Any]
    removed: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class UserActive:
    """Administrative (de)activation (ZITADEL deactivated/reactivated, Asgardeo disabled/enabled)."""

    source_user_id: str
    active: bool


@dataclass(frozen=True, slots=True)
class UserLocked:
    """Lockout state (e.g. too many failed logins), kept apart from :class:`UserActive` so that an unlock
    never re-enables a deactivated user. Effective state: ``active and not locked``."""

    source_user_id: str
    locked: bool


@dataclass(frozen=True, slots=True)
class UserDelete:
    """The user was deleted in the IdP. Deliveries carry no attributes: use the stored id mapping."""

    source_user_id: str


@dataclass(frozen=True, slots=True)
class UserGroups:
    """Complete set of group names the user belongs to (authentik custom mapping / API fetch).

    Replace semantics: groups not listed are no longer held by the user. ``group_ids`` (same order, an
    entry may be None) are the IdP's group ids when known: groups are then found by ``externalId``, so a
    renamed group stays the same group.
    """

    source_user_id: str
    group_names: tuple[str, ...]
    group_ids: tuple[str | None, ...] = ()


@dataclass(frozen=True, slots=True)
class GroupMembers:
    """Users were added to / removed from a group (Asgardeo ``groupUpdated``): a delta.

    ``group_id`` is the IdP's group id (the SCIM Group's ``externalId``); ``group_name`` its current name.
    """

    group_id: str
    group_name: str | None
    added_user_ids: tuple[str, ...]
    removed_user_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class GroupSnapshot:
    """A group as the IdP's API describes it now (authentik): its name and complete member list.

    ``member_ids`` are IdP user ids; replace semantics (members not listed leave the group).
    """

    group_id: str
    group_name: str
    member_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class GroupDelete:
    """The group was deleted in the IdP: its members lose it (and what their roles drew from it)."""

    group_id: str


@dataclass(frozen=True, slots=True)
class FetchGroup:
    """The delivery names a group but not its members (authentik ``model_*`` on a group): read it back
    from the IdP's API (a :class:`GroupSnapshot`, or :class:`GroupDelete` on positive evidence)."""

    group_id: str


@dataclass(frozen=True, slots=True)
class RoleGroups:
    """A role was given to / taken from groups (Asgardeo ``roleGroupsUpdated``): a delta.

    Every member of an added group holds the role while it is a member; ``added_groups`` and
    ``removed_groups`` are ``(group id, group name or None)`` pairs.
    """

    role_name: str
    added_groups: tuple[tuple[str, str | None], ...]
    removed_groups: tuple[tuple[str, str | None], ...]
    truncated: bool = False


@dataclass(frozen=True, slots=True)
class GrantUpsert:
    """A ZITADEL user grant (authorization) was created or its roles replaced.

    ``role_keys`` is the full new role set of this grant, not a delta. ``source_user_id`` (and
    ``project_id``) are only sent on ``user.grant.added``; later grant events carry only ``grant_id``, so
    the application must persist ``grant_id -> source_user_id`` when it is known and look it up otherwise.
    """

    grant_id: str
    source_user_id: str | None
    role_keys: tuple[str, ...]
    project_id: str | None = None


@dataclass(frozen=True, slots=True)
class GrantActive:
    """A grant was deactivated (its roles stop applying) or reactivated."""

    grant_id: str
    active: bool


@dataclass(frozen=True, slots=True)
class GrantDelete:
    """A grant was removed (directly or by cascade); its roles no longer apply."""

    grant_id: str


@dataclass(frozen=True, slots=True)
class RoleMembers:
    """Users were assigned to / unassigned from a role (Asgardeo ``roleUsersUpdated``): a delta.

    ``truncated`` is true when the IdP shortened the lists; the application should reconcile the role.
    ``audience`` is the display name of the role's audience (application or organization), if any.
    """

    role_name: str
    added_user_ids: tuple[str, ...]
    removed_user_ids: tuple[str, ...]
    role_id: str | None = None
    audience: str | None = None
    truncated: bool = False


@dataclass(frozen=True, slots=True)
class FetchUser:
    """The delivery names a user but not its attributes (authentik's default body, ZITADEL events with an
    empty payload): the application must read the user from the IdP's API (see ``AuthentikUserFetcher``)."""

    source_user_id: str


@dataclass(frozen=True, slots=True)
class Challenge:
    """A verification handshake: answer 200 with exactly ``response_body`` as ``media_type``."""

    response_body: str
    media_type: str = "text/plain"


@dataclass(frozen=True, slots=True)
class Ignored:
    """Authentic delivery that requires no change (unknown/irrelevant event). Answer 2xx."""

    reason: str


WebhookEvent = (
    UserUpsert
    | UserPatch
    | UserActive
    | UserLocked
    | UserDelete
    | UserGroups
    | GrantUpsert
    | GrantActive
    | GrantDelete
    | RoleMembers
    | RoleGroups
    | GroupMembers
    | GroupSnapshot
    | GroupDelete
    | FetchGroup
    | FetchUser
    | Challenge
    | Ignored
)
