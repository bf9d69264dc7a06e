"""The state of a ZITADEL aggregate, derived by folding its events in ``sequence`` order (sans-IO).

ZITADEL numbers the events of each aggregate (a user, a user grant) with ``sequence`` and delivers each
event once, possibly out of order and concurrently (no retries). Applying
events as they come lets an older one win over a newer one; folding *all* the events kept for the
aggregate, in sequence order, gives the same state whatever the delivery order:

* user: ``user.human.added`` (or a read of the user from the API) describes it completely; email,
  profile and username changes are merged on top; activation and lockout are two separate flags (SCIM
  ``active`` = active and not locked); ``user.removed`` is final.
* grant: ``user.grant.added``/``changed`` set the full role set (``added`` also names the user);
  ``deactivated``/``reactivated`` set the active flag; ``removed`` is final.

A *base* is a state at a given sequence (a read from ZITADEL's API, or the events compacted after the
retention): the fold starts from it and only applies the events numbered after it. A removal wins
whatever its position, since ZITADEL never reuses an id; the state it leaves (a *tombstone*) keeps no
personal data.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from app.webhooks.common import SequencedEvent
from app.webhooks.errors import WebhookInvalid
from app.webhooks.events import (
    FetchUser,
    GrantActive,
    GrantDelete,
    GrantUpsert,
    Ignored,
    UserActive,
    UserDelete,
    UserLocked,
    UserPatch,
    UserUpsert,
    WebhookEvent,
)
from app.webhooks.zitadel import ORG_KEY, zitadel_event
from app.webhooks.zitadel_api import zitadel_user_events

__all__ = [
    "GRANT",
    "USER",
    "GrantState",
    "UserState",
    "api_sequence",
    "fold_grant",
    "fold_user",
    "grant_state_from_api",
    "user_state_from_api",
]

log = logging.getLogger("ziti_scim.webhooks")

USER = "user"
GRANT = "grant"
_SCIM_ONLY = frozenset({"schemas", "externalid", "active"})
_GRANT_STATES = {"USER_GRANT_STATE_ACTIVE": True, "USER_GRANT_STATE_INACTIVE": False}


@dataclass
class UserState:
    """What the events say about a user.

    ``profile``: SCIM attributes (RFC 7643 §4.1) without ``schemas``/``externalId``/``active``.
    ``complete``: the profile describes the user completely (``user.human.added`` or an API read seen);
    until then the user cannot be created. ``active``/``locked``: ``None`` while no event said.
    ``needs_read``: an event without payload (ZITADEL v4.1.x) came after the base: ask the API.
    ``organization``: the user's organisation (``resourceOwner``), once an event or the API named it.
    """

    profile: dict[str, Any] = field(default_factory=dict)
    complete: bool = False
    active: bool | None = None
    locked: bool | None = None
    removed: bool = False
    needs_read: bool = False
    organization: str | None = None

    @property
    def scim_active(self) -> bool:
        return self.active is not False and self.locked is not True

    def to_json(self) -> dict[str, Any]:
        return {
            "profile": copy.deepcopy(self.profile),
            "complete": self.complete,
            "active": self.active,
            "locked": self.locked,
            "removed": self.removed,
            "needs_read": self.needs_read,
            "organization": self.organization,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> UserState:
        data = data or {}
        profile = data.get("profile")
        return cls(
            profile=copy.deepcopy(profile) if isinstance(profile, dict) else {},
            complete=data.get("complete") is True,
            active=_flag(data.get("active")),
            locked=_flag(data.get("locked")),
            removed=data.get("removed") is True,
            needs_read=data.get("needs_read") is True,
            organization=data["organization"] if isinstance(data.get("organization"), str) else None,
        )


@dataclass
class GrantState:
    """What the events say about a user grant; ``role_keys`` is ``None`` until a role set was seen."""

    user_id: str | None = None
    role_keys: list[str] | None = None
    project_id: str | None = None
    active: bool | None = None
    removed: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "user_id": self.user_id,
            "role_keys": None if self.role_keys is None else list(self.role_keys),
            "project_id": self.project_id,
            "active": self.active,
            "removed": self.removed,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> GrantState:
        data = data or {}
        keys = data.get("role_keys")
        return cls(
            user_id=_text(data.get("user_id")),
            role_keys=[str(k) for k in keys] if isinstance(keys, list) else None,
            project_id=_text(data.get("project_id")),
            active=_flag(data.get("active")),
            removed=data.get("removed") is True,
        )


def _flag(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _neutral(event: SequencedEvent) -> WebhookEvent:
    try:
        return zitadel_event(event.event_type, event.aggregate_id, event.payload)
    except WebhookInvalid as invalid:  # kept events were parsed once; a later parser may be stricter
        log.warning("kept zitadel event %s skipped: %s", event.event_type, invalid.reason)
        return Ignored(invalid.reason)


def _in_order(base_sequence: int, events: Iterable[SequencedEvent]) -> tuple[bool, list[WebhookEvent]]:
    """(a removal is among the events, the events numbered after the base in sequence order)."""
    removed = False
    after: list[tuple[int, WebhookEvent]] = []
    for event in events:
        neutral = _neutral(event)
        removed |= isinstance(neutral, UserDelete | GrantDelete)
        if event.sequence > base_sequence:
            after.append((event.sequence, neutral))
    after.sort(key=lambda item: item[0])
    return removed, [neutral for _, neutral in after]


def _profile(event: UserUpsert) -> dict[str, Any]:
    return {key: copy.deepcopy(value) for key, value in event.user.items() if key.lower() not in _SCIM_ONLY}


def _merge(profile: dict[str, Any], event: UserPatch) -> None:
    """RFC 7644 §3.5.2.3 replace without a path: ``name`` merges key by key, other attributes replace."""
    for key, value in event.changes.items():
        current = profile.get(key)
        if key == "name" and isinstance(value, dict) and isinstance(current, dict):
            current.update(copy.deepcopy(value))
        else:
            profile[key] = copy.deepcopy(value)
    for path in event.removed:
        head, _, sub = path.partition(".")
        target = profile.get(head)
        if sub and isinstance(target, dict):
            target.pop(sub, None)
        elif not sub:
            profile.pop(head, None)


def fold_user(base: UserState | None, base_sequence: int, events: Iterable[SequencedEvent]) -> UserState:
    """The user's state: ``base`` (at ``base_sequence``), then the events numbered after it, in order."""
    events = list(events)
    removed, ordered = _in_order(base_sequence, events)
    if removed or (base is not None and base.removed):
        return UserState(removed=True)
    state = UserState.from_json(base.to_json()) if base is not None else UserState()
    for kept in events:  # an aggregate never changes organisation; any event may name it
        owner = kept.payload.get(ORG_KEY)
        if isinstance(owner, str) and owner:
            state.organization = owner
    for event in ordered:
        if isinstance(event, UserUpsert):
            state.profile = _profile(event)
            state.complete = True
            state.active = bool(event.user.get("active", True))
            state.locked = False
        elif isinstance(event, UserPatch):
            _merge(state.profile, event)
        elif isinstance(event, UserActive):
            state.active = event.active
        elif isinstance(event, UserLocked):
            state.locked = event.locked
        elif isinstance(event, FetchUser):
            state.needs_read = True
    return state


def fold_grant(base: GrantState | None, base_sequence: int, events: Iterable[SequencedEvent]) -> GrantState:
    """The grant's state: ``base`` (at ``base_sequence``), then the events numbered after it, in order."""
    removed, ordered = _in_order(base_sequence, events)
    state = GrantState.from_json(base.to_json()) if base is not None else GrantState()
    for event in ordered:
        if isinstance(event, GrantUpsert):
            state.role_keys = list(dict.fromkeys(event.role_keys))
            state.user_id = event.source_user_id or state.user_id
            state.project_id = event.project_id or state.project_id
        elif isinstance(event, GrantActive):
            state.active = event.active
    state.removed = removed or state.removed
    return state


# --- ZITADEL's API view as a base ----------------------------------------------------------------


def api_sequence(item: dict[str, Any]) -> int | None:
    """``details.sequence`` of an API object (a number, or a decimal string in protobuf JSON), if any."""
    details = item.get("details")
    value = details.get("sequence") if isinstance(details, dict) else None
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) < 19:
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None


def user_state_from_api(user: dict[str, Any]) -> UserState | None:
    """A v2 user object as a complete state; ``None`` for a machine user (never provisioned)."""
    events = zitadel_user_events(user)
    if isinstance(events[0], Ignored):
        return None
    state = UserState()
    details = user.get("details")
    owner = details.get("resourceOwner") if isinstance(details, dict) else None
    state.organization = owner if isinstance(owner, str) and owner else None
    for event in events:
        if isinstance(event, UserUpsert):
            state.profile = _profile(event)
            state.complete, state.active = True, bool(event.user.get("active", True))
        elif isinstance(event, UserLocked):
            state.locked = event.locked
    return state


def grant_state_from_api(grant: dict[str, Any]) -> tuple[str, GrantState] | None:
    """A ``ListUserGrants`` item as ``(grant id, state)``; ``None`` when it lacks what a grant needs."""
    grant_id, user_id = grant.get("id"), grant.get("userId")
    active = _GRANT_STATES.get(str(grant.get("state")))
    if not isinstance(grant_id, str) or not grant_id or not isinstance(user_id, str) or active is None:
        return None
    keys = [key for key in grant.get("roleKeys") or [] if isinstance(key, str)]
    project = grant.get("projectId")
    return grant_id, GrantState(
        user_id=user_id,
        role_keys=list(dict.fromkeys(keys)),
        project_id=project if isinstance(project, str) else None,
        active=active,
    )
