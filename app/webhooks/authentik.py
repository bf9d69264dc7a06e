"""authentik notification-transport webhooks (generic ``webhook`` mode).

authentik signs nothing (``authentik/events/models.py`` ``send_webhook``): authenticity rests on a
shared secret that a ``NotificationWebhookMapping`` header mapping adds (e.g. ``Authorization: Bearer
<secret>``), compared here in constant time. Two bodies are understood (research/authentik.md §6):

* the **default** body ``{"body": "<action>: <python repr of the event context>", "severity", …}``,
  which names the model only by pk → :class:`FetchUser` (or :class:`UserDelete` for ``model_deleted``);
* the **custom** body mapping from authentik.md §6 (``action``, ``event_uuid``, ``created``, ``model``,
  ``user{pk,username,name,email,is_active,groups,…}``) → :class:`UserUpsert` + :class:`UserGroups`.
"""

from __future__ import annotations

import ast
import re
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from app.webhooks.common import (
    Clock,
    WebhookResult,
    body_digest,
    constant_time_in,
    get_header,
    load_json_object,
    require_secrets,
)
from app.webhooks.errors import WebhookInvalid, WebhookRejected
from app.webhooks.events import (
    SCIM_USER_SCHEMA,
    FetchUser,
    Ignored,
    UserDelete,
    UserGroups,
    UserUpsert,
    WebhookEvent,
)
from app.webhooks.replay import ReplayGuard, claim_delivery

__all__ = ["AuthentikWebhook", "authentik_user_to_scim", "parse_authentik", "user_events"]

_USER_MODEL = ("authentik_core", "user")
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


def _group_names(obj: Mapping[str, Any]) -> tuple[str, ...] | None:
    # Custom body: "groups" = list of names. API: "groups_obj" = [{name,...}] ("groups" are UUIDs there).
    groups_obj = obj.get("groups_obj")
    if isinstance(groups_obj, list):
        return tuple(g["name"] for g in groups_obj if isinstance(g, dict) and isinstance(g.get("name"), str))
    groups = obj.get("groups")
    if isinstance(groups, list) and "groups_obj" not in obj:
        return tuple(g for g in groups if isinstance(g, str))
    return None


def user_events(obj: Mapping[str, Any]) -> tuple[WebhookEvent, ...]:
    """``UserUpsert`` (+ ``UserGroups`` when the object lists group names) for an authentik user object."""
    user = authentik_user_to_scim(obj)
    source_id = user["externalId"]
    events: list[WebhookEvent] = [UserUpsert(source_id, user)]
    groups = _group_names(obj)
    if groups is not None:
        events.append(UserGroups(source_id, groups))
    return tuple(events)


def _is_user_model(model: Any) -> bool:
    return isinstance(model, dict) and (model.get("app"), model.get("model_name")) == _USER_MODEL


def _pk(model: Mapping[str, Any]) -> str:
    """A user model's pk: authentik numbers users (an integer primary key), so anything else is refused."""
    pk = model.get("pk")
    if isinstance(pk, bool) or not isinstance(pk, int | str) or str(pk) == "":
        raise WebhookInvalid("model without pk")
    if not re.fullmatch(r"[0-9]{1,20}", str(pk)):
        raise WebhookInvalid("authentik user pk must be a number")
    return str(pk)


def _model_event(action: str, model: Any, user: Any) -> WebhookEvent | tuple[WebhookEvent, ...]:
    if not _is_user_model(model):
        return Ignored(f"authentik {action} on a model other than a user")
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

    ``header_name``/``expected_values``: the header the mapping adds and its exact value(s), e.g.
    ``("Authorization", ["Bearer <secret>"])``; several values are accepted during a rotation.
    Replay key: ``event_uuid`` (custom body) or the body hash (default body; it embeds a request id).
    ``max_age`` bounds the custom body's ``created`` (authentik retries failed sends up to 5 times).
    """

    source = "authentik"

    def __init__(
        self,
        header_name: str,
        expected_values: Sequence[str] | str,
        replay_guard: ReplayGuard,
        *,
        max_age: float | None = 86400.0,
        clock_skew: float = 300.0,
        replay_retention: float = 86400.0,
        clock: Clock = time.time,
    ) -> None:
        if not header_name:
            raise ValueError("AuthentikWebhook: header_name is required")
        self._header = header_name
        self._values = require_secrets(expected_values, "AuthentikWebhook")
        self._guard = replay_guard
        self._max_age = max_age
        self._skew = clock_skew
        self._retention = replay_retention
        self._clock = clock

    def verify_secret(self, headers: Mapping[str, str]) -> None:
        """Constant-time comparison of the configured header with the expected value(s)."""
        value = get_header(headers, self._header)
        if not value:
            raise WebhookRejected("missing shared-secret header")
        if not constant_time_in(value.strip().encode("utf-8", "replace"), self._values):
            raise WebhookRejected("shared secret mismatch")

    async def handle(self, headers: Mapping[str, str], body: bytes) -> WebhookResult:
        """Check the secret, parse, check ``created`` age, then claim the replay key."""
        self.verify_secret(headers)
        data = load_json_object(body)
        events, delivery_id = _parse(data)
        now = self._clock()
        created = _created(data)
        expires = now + self._retention
        if created is not None:
            if self._max_age is not None and now - created > self._max_age:
                raise WebhookRejected("delivery too old")
            if created - now > self._skew:
                raise WebhookRejected("delivery timestamp in the future")
            if self._max_age is not None:
                expires = created + self._max_age + self._skew
        key = "authentik:" + (delivery_id or body_digest(body))
        await claim_delivery(self._guard, key, expires)
        return WebhookResult(source=self.source, events=events, delivery_id=delivery_id, replay_key=key)
