"""Asgardeo / WSO2 Identity Server webhooks, delivered through a WebSub hub.

* Subscription verification (W3C WebSub §5.3): ``GET ?hub.mode=subscribe|unsubscribe&hub.topic=…
  &hub.challenge=…`` → 200 ``text/plain`` echoing ``hub.challenge``. Not signed.
* Content distribution (WebSub §7, §8): ``POST`` with ``X-Hub-Signature: sha256=<hex>`` =
  HMAC-SHA256(secret, raw body). No timestamp header: the body's ``iat`` (epoch *milliseconds*) bounds
  the age and ``jti`` is the replay / idempotency key.
* Body: Security-Event-Token-shaped JSON (RFC 8417 layout, not a JWT): ``iss``, ``iat``, ``jti``,
  ``events: {"<event URI>": {...}}``.

Answers. The WSO2 hub retries a delivery only on 500/502/503 and marks the subscription *stale* on any other
failure, or once those retries are exhausted (product-integrator-websubhub
``components/websubhub/modules/delivery/dispatcher.bal`` and ``delivery.bal``): no event is delivered
after that until someone subscribes again. So only a bad signature is refused (401); once the signature
holds, :meth:`AsgardeoWebhook.handle` never raises: a redelivered ``jti`` (Kafka is at-least-once, the hub
times out after 60 s), a stale ``iat`` or a body that cannot be read become a result with ``duplicate`` or
``problem`` set, which the receiver acknowledges with 2xx (and records); an event it cannot apply is kept
and retried by ziti-scim (:mod:`app.webhooks.pending`), not by the hub.

Group events (identity-webhook-event-handlers ``…/wso2/event/handler/internal/model/common/Group.java``,
``WSO2RoleGroupsUpdatedEventPayload.java``): ``…/events/group/event-type/groupUpdated`` carries
``group{id,name,addedUsers[{id,claims}],removedUsers[{id}]}`` → :class:`GroupMembers`;
``…/events/role/event-type/roleGroupsUpdated`` carries ``role{id,name,audience,addedGroups[{id,
groupName,userStoreDomain}],removedGroups}`` → :class:`RoleGroups`.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from app.auth.signatures import Digest, hmac_hex, hmac_matches, require_secrets, timestamp_outside
from app.webhooks.common import (
    Clock,
    WebhookResult,
    body_digest,
    get_header,
    load_json_object,
)
from app.webhooks.errors import WebhookInvalid, WebhookRejected
from app.webhooks.events import (
    SCIM_USER_SCHEMA,
    Challenge,
    GroupMembers,
    Ignored,
    RoleGroups,
    RoleMembers,
    UserActive,
    UserDelete,
    UserLocked,
    UserPatch,
    UserUpsert,
    WebhookEvent,
)
from app.webhooks.replay import ReplayGuard

__all__ = [
    "EVENT_PREFIX",
    "SIGNATURE_HEADER",
    "AsgardeoWebhook",
    "parse_asgardeo",
    "sign_asgardeo",
    "verify_subscription",
]

SIGNATURE_HEADER = "X-Hub-Signature"
EVENT_PREFIX = "https://schemas.identity.wso2.org/events/"
_ALGORITHMS: dict[str, Digest] = {
    "sha256": hashlib.sha256,
    "sha384": hashlib.sha384,
    "sha512": hashlib.sha512,
}
_MAX_CHALLENGE_LEN = 512

# WSO2 local claim URI -> SCIM attribute path (RFC 7643 §4.1).
_CLAIMS: dict[str, str] = {
    "http://wso2.org/claims/username": "userName",
    "http://wso2.org/claims/emailaddress": "emails",
    "http://wso2.org/claims/givenname": "name.givenName",
    "http://wso2.org/claims/lastname": "name.familyName",
    "http://wso2.org/claims/displayName": "displayName",
    "http://wso2.org/claims/nickname": "nickName",
    "http://wso2.org/claims/preferredLanguage": "preferredLanguage",
}


def sign_asgardeo(body: bytes, secret: str) -> str:
    """Build the ``X-Hub-Signature`` value the hub sends for ``body``."""
    (key,) = require_secrets(secret, "sign_asgardeo")
    return "sha256=" + hmac_hex(key, body)


def verify_subscription(query: Mapping[str, str], *, topic_prefix: str | None = None) -> Challenge | Ignored:
    """Answer a WebSub intent verification (WebSub §5.3).

    Returns the :class:`Challenge` to echo for ``subscribe``/``unsubscribe``; :class:`Ignored` for a
    ``denied`` notice (§5.2). With ``topic_prefix`` set, other topics are refused with 404, which tells the
    hub the subscriber does not agree (§5.3.1).
    """
    mode = query.get("hub.mode")
    if mode == "denied":
        return Ignored("websub subscription denied by the hub")
    if mode not in ("subscribe", "unsubscribe"):
        raise WebhookInvalid("hub.mode must be subscribe or unsubscribe")
    topic = query.get("hub.topic")
    if not topic:
        raise WebhookInvalid("hub.topic missing")
    challenge = query.get("hub.challenge")
    if not challenge:
        raise WebhookInvalid("hub.challenge missing")
    if len(challenge) > _MAX_CHALLENGE_LEN or not challenge.isprintable():
        raise WebhookInvalid("hub.challenge malformed")
    if topic_prefix is not None and not topic.startswith(topic_prefix):
        raise WebhookRejected("unexpected hub.topic", status=404)
    return Challenge(challenge, "text/plain")


class AsgardeoWebhook:
    """Verifier + parser for Asgardeo webhook deliveries.

    ``secrets``: the webhook secret(s) (several during a rotation). ``max_age``: reject deliveries whose
    ``iat`` is older than this many seconds (None disables; the hub's own retries span ~20 s).
    ``clock_skew``: how far ``iat`` may lie in the future. Replay keys (``jti``) are kept until ``iat``
    leaves the window, or ``replay_retention`` seconds when ``max_age`` is None.
    """

    source = "asgardeo"

    def __init__(
        self,
        secrets: Sequence[str] | str,
        replay_guard: ReplayGuard,
        *,
        max_age: float | None = 86400.0,
        clock_skew: float = 300.0,
        replay_retention: float = 7 * 86400.0,
        topic_prefix: str | None = None,
        clock: Clock = time.time,
    ) -> None:
        self._secrets = require_secrets(secrets, "AsgardeoWebhook")
        self._guard = replay_guard
        self._max_age = max_age
        self._skew = clock_skew
        self._retention = replay_retention
        self._topic_prefix = topic_prefix
        self._clock = clock

    def verify_subscription(self, query: Mapping[str, str]) -> Challenge | Ignored:
        """See :func:`verify_subscription`; uses the configured ``topic_prefix``."""
        return verify_subscription(query, topic_prefix=self._topic_prefix)

    def verify_signature(self, headers: Mapping[str, str], body: bytes) -> None:
        """Check ``X-Hub-Signature`` over the raw body in constant time (WebSub §8)."""
        header = get_header(headers, SIGNATURE_HEADER)
        if not header:
            raise WebhookRejected("missing signature header")
        method, sep, sig = header.strip().partition("=")
        algorithm = _ALGORITHMS.get(method.lower())
        if not sep or algorithm is None:
            raise WebhookRejected("unsupported signature method")
        probe = sig.strip().lower().encode("ascii", "replace")
        if not hmac_matches([probe], self._secrets, body, algorithm):
            raise WebhookRejected("signature mismatch")

    async def handle(self, headers: Mapping[str, str], body: bytes) -> WebhookResult:
        """Verify the signature (the only refusal), then parse, check ``iat`` and claim ``jti``.

        After a good signature nothing raises: see the module docstring for why and what is returned.
        """
        self.verify_signature(headers, body)
        try:
            data = load_json_object(body)
            result = _parse(data)
        except WebhookInvalid as invalid:
            return WebhookResult(source=self.source, events=(), problem=invalid.reason)
        now = self._clock()
        iat = _iat_seconds(data)
        if iat is not None:
            outside = timestamp_outside(iat, now, max_age=self._max_age, skew=self._skew)
            if outside == "too old":
                return replace(result, events=(), problem="delivery too old")
            if outside == "in the future":
                return replace(result, events=(), problem="delivery timestamp in the future")
        elif self._max_age is not None:
            return replace(result, events=(), problem="delivery without iat")
        if self._max_age is not None and iat is not None:
            expires = iat + self._max_age + self._skew
        else:
            expires = now + self._retention
        key = "asgardeo:" + (result.delivery_id or body_digest(body))
        if await self._guard.seen(key) or not await self._guard.remember(key, expires):
            return replace(result, events=(), duplicate=True)
        return replace(result, replay_key=key)


# --- parsing -------------------------------------------------------------------------------------


def _iat_seconds(data: Mapping[str, Any]) -> float | None:
    iat = data.get("iat")
    if isinstance(iat, bool) or not isinstance(iat, int | float) or not math.isfinite(iat):
        return None
    # WSO2 sends epoch milliseconds; tolerate seconds from other builds.
    return iat / 1000.0 if iat > 10**11 else float(iat)


def _claims(value: Any, where: str) -> list[tuple[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise WebhookInvalid(f"{where} must be a list")
    out: list[tuple[str, Any]] = []
    for item in value:
        if not isinstance(item, dict) or not isinstance(item.get("uri"), str):
            raise WebhookInvalid(f"{where} entries must be objects with a uri")
        out.append((item["uri"], item.get("value")))
    return out


def _scalar(value: Any) -> str | None:
    # Multi-valued claims arrive as arrays; the first value is the primary one.
    if isinstance(value, list):
        value = value[0] if value else None
    if value is None or value == "":
        return None
    return str(value)


def _apply(target: dict[str, Any], path: str, value: str) -> None:
    if path == "emails":
        target["emails"] = [{"value": value, "primary": True, "type": "work"}]
    elif path.startswith("name."):
        target.setdefault("name", {})[path[5:]] = value
    else:
        target[path] = value


def _user(payload: Mapping[str, Any]) -> tuple[str, Mapping[str, Any]]:
    user = payload.get("user")
    if not isinstance(user, dict) or not isinstance(user.get("id"), str) or not user["id"]:
        raise WebhookInvalid("event without user.id")
    return user["id"], user


def _user_created(payload: Mapping[str, Any]) -> WebhookEvent:
    user_id, user = _user(payload)
    scim: dict[str, Any] = {"schemas": [SCIM_USER_SCHEMA], "externalId": user_id}
    for uri, raw in _claims(user.get("claims"), "user.claims"):
        path = _CLAIMS.get(uri)
        value = _scalar(raw)
        if path and value is not None:
            _apply(scim, path, value)
    if "userName" not in scim:
        emails = scim.get("emails")
        scim["userName"] = emails[0]["value"] if emails else user_id
    scim["active"] = True
    return UserUpsert(user_id, scim)


def _profile_updated(payload: Mapping[str, Any]) -> WebhookEvent:
    user_id, user = _user(payload)
    changes: dict[str, Any] = {}
    removed: list[str] = []
    for field in ("addedClaims", "updatedClaims"):
        for uri, raw in _claims(user.get(field), f"user.{field}"):
            path = _CLAIMS.get(uri)
            value = _scalar(raw)
            if path and value is not None:
                _apply(changes, path, value)
            elif path:
                removed.append(path)
    for uri, _ in _claims(user.get("removedClaims"), "user.removedClaims"):
        if (path := _CLAIMS.get(uri)) is not None:
            removed.append(path)
    if not changes and not removed:
        return Ignored("asgardeo profile update touched no mapped claim")
    return UserPatch(user_id, changes, tuple(dict.fromkeys(removed)))


def _ids(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise WebhookInvalid(f"{where} must be a list")
    ids: list[str] = []
    for item in value:
        if not isinstance(item, dict) or not isinstance(item.get("id"), str):
            raise WebhookInvalid(f"{where} entries must carry an id")
        ids.append(item["id"])
    return tuple(ids)


def _role_users(payload: Mapping[str, Any]) -> WebhookEvent:
    role = payload.get("role")
    if not isinstance(role, dict) or not isinstance(role.get("name"), str):
        raise WebhookInvalid("role event without role.name")
    audience = role.get("audience")
    audience_name = audience.get("display") if isinstance(audience, dict) else None
    return RoleMembers(
        role_name=role["name"],
        added_user_ids=_ids(role.get("addedUsers"), "role.addedUsers"),
        removed_user_ids=_ids(role.get("removedUsers"), "role.removedUsers"),
        role_id=role.get("id") if isinstance(role.get("id"), str) else None,
        audience=audience_name if isinstance(audience_name, str) else None,
        truncated=bool(role.get("addedUsersTruncated") or role.get("removedUsersTruncated")),
    )


def _group_members(payload: Mapping[str, Any]) -> WebhookEvent:
    group = payload.get("group")
    if not isinstance(group, dict) or not isinstance(group.get("id"), str) or not group["id"]:
        raise WebhookInvalid("group event without group.id")
    name = group.get("name")
    return GroupMembers(
        group_id=group["id"],
        group_name=name if isinstance(name, str) and name else None,
        added_user_ids=_ids(group.get("addedUsers"), "group.addedUsers"),
        removed_user_ids=_ids(group.get("removedUsers"), "group.removedUsers"),
    )


def _groups(value: Any, where: str) -> tuple[tuple[str, str | None], ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise WebhookInvalid(f"{where} must be a list")
    groups: list[tuple[str, str | None]] = []
    for item in value:
        if not isinstance(item, dict) or not isinstance(item.get("id"), str) or not item["id"]:
            raise WebhookInvalid(f"{where} entries must carry an id")
        name = item.get("groupName")
        groups.append((item["id"], name if isinstance(name, str) and name else None))
    return tuple(groups)


def _role_groups(payload: Mapping[str, Any]) -> WebhookEvent:
    role = payload.get("role")
    if not isinstance(role, dict) or not isinstance(role.get("name"), str) or not role["name"]:
        raise WebhookInvalid("role event without role.name")
    return RoleGroups(
        role_name=role["name"],
        added_groups=_groups(role.get("addedGroups"), "role.addedGroups"),
        removed_groups=_groups(role.get("removedGroups"), "role.removedGroups"),
        truncated=bool(role.get("addedGroupsTruncated") or role.get("removedGroupsTruncated")),
    )


def _event(uri: str, payload: Any) -> WebhookEvent:
    if not isinstance(payload, dict):
        raise WebhookInvalid("event payload must be an object")
    name = uri.removeprefix(EVENT_PREFIX)
    if name in ("user/event-type/userCreated", "registration/event-type/registrationSuccess"):
        return _user_created(payload)
    if name == "user/event-type/userProfileUpdated":
        return _profile_updated(payload)
    simple: dict[str, Callable[[str], WebhookEvent]] = {
        "user/event-type/userDisabled": lambda u: UserActive(u, False),
        "user/event-type/userEnabled": lambda u: UserActive(u, True),
        "user/event-type/userAccountLocked": lambda u: UserLocked(u, True),
        "user/event-type/userAccountUnlocked": lambda u: UserLocked(u, False),
        "user/event-type/userDeleted": UserDelete,
    }
    if name in simple:
        user_id, _ = _user(payload)
        return simple[name](user_id)
    if name == "role/event-type/roleUsersUpdated":
        return _role_users(payload)
    if name == "role/event-type/roleGroupsUpdated":
        return _role_groups(payload)
    if name == "group/event-type/groupUpdated":
        return _group_members(payload)
    return Ignored(f"asgardeo event {name} is not used")


def _parse(data: Mapping[str, Any]) -> WebhookResult:
    events = data.get("events")
    if not isinstance(events, dict) or not events:
        raise WebhookInvalid("events missing")
    jti = data.get("jti")
    parsed = tuple(_event(uri, payload) for uri, payload in events.items())
    return WebhookResult(
        source="asgardeo", events=parsed, delivery_id=jti if isinstance(jti, str) and jti else None
    )


def parse_asgardeo(body: bytes) -> WebhookResult:
    """Translate one Asgardeo delivery into neutral events (one event URI per neutral event kind)."""
    return _parse(load_json_object(body))
