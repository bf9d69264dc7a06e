"""authentik notification-transport webhooks (generic ``webhook`` mode).

authentik signs nothing (``authentik/events/models.py`` ``NotificationTransport.send_webhook``):
authenticity rests on a shared secret, compared here in constant time, found in any of three places so
that every supported release can send it (docs/idp/authentik.md, "Minimum versions"):

* a header set by a header mapping (``webhook_mapping_headers``, authentik 2025.4+), e.g.
  ``Authorization: Bearer <secret>``;
* the ``webhook_secret`` key of a custom body mapping (``webhook_mapping``, every release);
* a path segment, ``POST /webhooks/<source>/<secret>`` (every release, even with the default body).

Two bodies are understood:

* the **default** body ``{"body": "<action>: <python repr of the event context>", "severity", …}``,
  which names the model only by pk → :class:`FetchUser` / :class:`FetchGroup` (read back from the API);
  ``model_deleted`` → :class:`UserDelete` / :class:`GroupDelete`. It carries no event id nor time (a
  request id only from 2024.10, and two edits through the same screen send the same bytes), so it is
  never refused as a replay: it only triggers a re-read of the current state, which is idempotent.
* the **custom** body mapping of docs/idp/authentik.md (``action``, ``event_uuid``, ``created``,
  ``model``, ``user{pk,username,name,email,is_active,groups[{pk,name}]}``) → :class:`UserUpsert` +
  :class:`UserGroups`; a second delivery of one ``event_uuid`` is acknowledged as a duplicate.

Group events (``model_*`` on ``authentik_core.group``, sent when members are added or removed from the
group's side, and on a rename or a deletion) → :class:`FetchGroup` / :class:`GroupDelete`.
"""

from __future__ import annotations

import ast
import re
import time
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from app.auth.signatures import constant_time_in, require_secrets, timestamp_outside
from app.webhooks.common import Clock, WebhookResult, get_header, load_json_object
from app.webhooks.errors import WebhookInvalid, WebhookRejected
from app.webhooks.events import (
    SCIM_USER_SCHEMA,
    FetchGroup,
    FetchUser,
    GroupDelete,
    Ignored,
    UserDelete,
    UserGroups,
    UserUpsert,
    WebhookEvent,
)
from app.webhooks.replay import ReplayGuard

__all__ = ["AuthentikWebhook", "authentik_user_to_scim", "group_pk", "parse_authentik", "user_events"]

_USER_MODEL = ("authentik_core", "user")
_GROUP_MODEL = ("authentik_core", "group")
_UUID = re.compile(r"[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}")
#: The custom body mapping's key for the shared secret (docs/idp/authentik.md).
BODY_SECRET_KEY = "webhook_secret"
_UPSERT_ACTIONS = ("model_created", "model_updated")
_MAX_SUMMARY_LEN = 64 * 1024
# Fallback when the context repr holds non-literal values (datetime(...), UUID(...)).
_MODEL_RE = re.compile(
    r"'model':\s*\{'app':\s*'(?P<app>[\w.]+)',\s*'model_name':\s*'(?P<model>\w+)',\s*'pk':\s*'?(?P<pk>[\w-]+)'?"
)


def authentik_user_to_scim(obj: Mapping[str, Any]) -> dict[str, Any]:
    """Map an authentik user (API ``UserSerializer`` or the custom webhook body) to a SCIM User dict.

    ``name`` is one free-text field in authentik: its first word becomes ``givenName``, the rest
    ``familyName`` (as authentik's own SCIM provider mapping does); the whole is ``displayName``.
    """
    pk = obj.get("pk")
    username = obj.get("username")
    if isinstance(pk, bool) or not isinstance(pk, int | str) or str(pk) == "":
        raise WebhookInvalid("authentik user without pk")
    if not isinstance(username, str) or not username:
        raise WebhookInvalid("authentik user without username")
    user: dict[str, Any] = {"schemas": [SCIM_USER_SCHEMA], "externalId": str(pk), "userName": username}
    full = obj.get("name")
    if isinstance(full, str) and full.strip():
        given, _, family = full.strip().partition(" ")
        name = {"formatted": full.strip(), "givenName": given}
        if family.strip():
            name["familyName"] = family.strip()
        user["name"] = name
        user["displayName"] = full.strip()
    email = obj.get("email")
    if isinstance(email, str) and email:
        user["emails"] = [{"value": email, "primary": True, "type": "work"}]
    active = obj.get("is_active")
    user["active"] = active if isinstance(active, bool) else True
    return user


def _groups(obj: Mapping[str, Any]) -> tuple[tuple[str, ...], tuple[str | None, ...]] | None:
    """Group names and ids: API ``groups_obj[{pk,name}]`` (its ``groups`` are bare UUIDs), or the custom
    body's ``groups`` (names, or ``{pk,name}`` objects as the documented mapping sends them)."""
    groups_obj = obj.get("groups_obj")
    items: list[Any]
    if isinstance(groups_obj, list):
        items = groups_obj
    elif isinstance(obj.get("groups"), list) and "groups_obj" not in obj:
        items = obj["groups"]
    else:
        return None
    names: list[str] = []
    ids: list[str | None] = []
    for item in items:
        if isinstance(item, str):
            names.append(item)
            ids.append(None)
        elif isinstance(item, dict) and isinstance(item.get("name"), str):
            names.append(item["name"])
            pk = item.get("pk")
            ids.append(group_pk(pk) if isinstance(pk, str) and _UUID.fullmatch(pk) else None)
    return tuple(names), tuple(ids)


def user_events(obj: Mapping[str, Any]) -> tuple[WebhookEvent, ...]:
    """``UserUpsert`` (+ ``UserGroups`` when the object lists its groups) for an authentik user object."""
    user = authentik_user_to_scim(obj)
    source_id = user["externalId"]
    events: list[WebhookEvent] = [UserUpsert(source_id, user)]
    groups = _groups(obj)
    if groups is not None:
        names, ids = groups
        events.append(UserGroups(source_id, names, ids if any(ids) else ()))
    return tuple(events)


def _is_model(model: Any, which: tuple[str, str]) -> bool:
    return isinstance(model, dict) and (model.get("app"), model.get("model_name")) == which


def _pk(model: Mapping[str, Any]) -> str:
    """A user model's pk: authentik numbers users (an integer primary key), so anything else is refused."""
    pk = model.get("pk")
    if isinstance(pk, bool) or not isinstance(pk, int | str) or str(pk) == "":
        raise WebhookInvalid("model without pk")
    if not re.fullmatch(r"[0-9]{1,20}", str(pk)):
        raise WebhookInvalid("authentik user pk must be a number")
    return str(pk)


def group_pk(value: str) -> str:
    """A group's pk in one form: events carry ``UUID.hex`` (``authentik/events/utils.py``
    ``sanitize_item``), the API the dashed form; both become the dashed lower-case form."""
    if not _UUID.fullmatch(value):
        raise WebhookInvalid("authentik group pk must be a UUID")
    return str(uuid.UUID(value))


def _group_event(action: str, model: Mapping[str, Any]) -> WebhookEvent:
    raw = model.get("pk")
    if not isinstance(raw, str) or not raw:
        raise WebhookInvalid("authentik group pk must be a UUID")
    pk = group_pk(raw)  # groups are keyed by UUIDs, users by numbers (_pk)
    if action == "model_deleted":
        return GroupDelete(pk)
    if action in _UPSERT_ACTIONS:
        return FetchGroup(pk)
    return Ignored(f"authentik action {action} is not used")


def _model_event(action: str, model: Any, user: Any) -> WebhookEvent | tuple[WebhookEvent, ...]:
    if _is_model(model, _GROUP_MODEL):
        return _group_event(action, model)
    if not _is_model(model, _USER_MODEL):
        return Ignored(f"authentik {action} on a model other than a user or a group")
    pk = _pk(model)
    if action == "model_deleted":
        return UserDelete(pk)
    if action in _UPSERT_ACTIONS:
        if isinstance(user, dict):
            return user_events(user)
        return FetchUser(pk)
    return Ignored(f"authentik action {action} is not used")


def _parse_summary(summary: str) -> WebhookEvent | tuple[WebhookEvent, ...]:
    action, sep, context_repr = summary.partition(": ")
    if not sep or not re.fullmatch(r"[a-z_]+", action):
        return Ignored("authentik notification without a model event")
    if len(summary) > _MAX_SUMMARY_LEN:
        raise WebhookInvalid("authentik notification body too long")
    model: Any = None
    try:
        # literal_eval never executes code; it only accepts Python literals.
        context = ast.literal_eval(context_repr)
        if isinstance(context, dict):
            model = context.get("model")
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        match = _MODEL_RE.search(context_repr)
        if match:
            model = {"app": match["app"], "model_name": match["model"], "pk": match["pk"]}
    if model is None:
        return Ignored(f"authentik {action} without a model")
    return _model_event(action, model, None)


def _parse(data: Mapping[str, Any]) -> tuple[tuple[WebhookEvent, ...], str | None]:
    if isinstance(data.get("action"), str) and "model" in data:
        result = _model_event(data["action"], data.get("model"), data.get("user"))
        event_uuid = data.get("event_uuid")
        delivery_id = event_uuid if isinstance(event_uuid, str) and event_uuid else None
    elif isinstance(data.get("body"), str):
        result = _parse_summary(data["body"])
        delivery_id = None
    else:
        result = Ignored("authentik body shape not recognised")
        delivery_id = None
    return (result if isinstance(result, tuple) else (result,)), delivery_id


def parse_authentik(body: bytes) -> WebhookResult:
    """Translate one authentik notification (default or custom body) into neutral events."""
    events, delivery_id = _parse(load_json_object(body))
    return WebhookResult(source="authentik", events=events, delivery_id=delivery_id)


def _created(data: Mapping[str, Any]) -> float | None:
    created = data.get("created")
    if not isinstance(created, str):
        return None
    try:
        parsed = datetime.fromisoformat(created.replace("Z", "+00:00"))
    except ValueError:
        raise WebhookInvalid("created is not an ISO 8601 timestamp") from None
    # authentik serialises aware UTC datetimes; treat a naive one as UTC rather than local time.
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()


class AuthentikWebhook:
    """Shared-secret check + parser for authentik notification webhooks.

    ``header_name``/``expected_values``: the header a header mapping adds and its exact value(s), e.g.
    ``("Authorization", ["Bearer <secret>"])``; ``secrets``: the bare secret(s), accepted in the custom
    body (``webhook_secret``) or the URL path (see the module docstring). Several values are accepted
    during a rotation. Replay key: ``event_uuid`` of the custom body (a second delivery is a duplicate);
    the default body has none and is never refused as a replay. ``max_age`` bounds the custom body's
    ``created`` (authentik retries failed sends up to 5 times).
    """

    source = "authentik"

    def __init__(
        self,
        header_name: str,
        expected_values: Sequence[str] | str,
        replay_guard: ReplayGuard,
        *,
        secrets: Sequence[str] | str | None = None,
        max_age: float | None = 86400.0,
        clock_skew: float = 300.0,
        replay_retention: float = 86400.0,
        clock: Clock = time.time,
    ) -> None:
        if not header_name:
            raise ValueError("AuthentikWebhook: header_name is required")
        self._header = header_name
        self._values = require_secrets(expected_values, "AuthentikWebhook")
        self._secrets = require_secrets(secrets, "AuthentikWebhook") if secrets is not None else ()
        self._guard = replay_guard
        self._max_age = max_age
        self._skew = clock_skew
        self._retention = replay_retention
        self._clock = clock

    def verify_secret(
        self,
        headers: Mapping[str, str],
        data: Mapping[str, Any] | None = None,
        path_secret: str | None = None,
    ) -> None:
        """Constant-time check of the secret in the header, the URL path or the custom body."""
        value = get_header(headers, self._header)
        if value and constant_time_in(value.strip().encode("utf-8", "replace"), self._values):
            return
        for candidate in (path_secret, (data or {}).get(BODY_SECRET_KEY)):
            if isinstance(candidate, str) and candidate and self._secrets:
                if constant_time_in(candidate.encode("utf-8", "replace"), self._secrets):
                    return
        if not value and path_secret is None and BODY_SECRET_KEY not in (data or {}):
            raise WebhookRejected("missing shared secret")
        raise WebhookRejected("shared secret mismatch")

    async def handle(
        self, headers: Mapping[str, str], body: bytes, *, path_secret: str | None = None
    ) -> WebhookResult:
        """Check the secret, parse, check ``created`` age, then claim the ``event_uuid``."""
        try:
            data = load_json_object(body)
        except WebhookInvalid:
            self.verify_secret(headers, None, path_secret)  # an unauthenticated caller learns nothing
            raise
        self.verify_secret(headers, data, path_secret)
        events, delivery_id = _parse(data)
        now = self._clock()
        created = _created(data)
        expires = now + self._retention
        if created is not None:
            outside = timestamp_outside(created, now, max_age=self._max_age, skew=self._skew)
            if outside == "too old":
                raise WebhookRejected("delivery too old")
            if outside == "in the future":
                raise WebhookRejected("delivery timestamp in the future")
            if self._max_age is not None:
                expires = created + self._max_age + self._skew
        result = WebhookResult(source=self.source, events=events, delivery_id=delivery_id)
        if delivery_id is None:
            return result  # the default body: a re-read of current state, safe to repeat (see above)
        key = "authentik:" + delivery_id
        if await self._guard.seen(key) or not await self._guard.remember(key, expires):
            return WebhookResult(source=self.source, events=(), delivery_id=delivery_id, duplicate=True)
        return WebhookResult(source=self.source, events=events, delivery_id=delivery_id, replay_key=key)
