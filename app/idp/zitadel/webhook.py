"""ZITADEL Actions v2 event executions (JSON payload type, HMAC-signed).

Signature (``pkg/actions/signing.go``): header ``ZITADEL-Signature: t=<unix>,v1=<hex>``,
``v1 = hex(HMAC-SHA256(key=signingKey, msg=f"{t}." + raw_body))`` with the target's single current
signing key (regenerating it replaces it at once: there is no overlap). ZITADEL's own validator rejects
``now - t > 300 s`` and accepts any matching ``v1``; several configured keys are accepted here so that
the new key can be added before the old one is removed.

Organisations: Actions v2 executions are instance-wide, so deliveries bring users of every organisation
(``resourceOwner``). With ``organizations`` set, events of other organisations are acknowledged and
ignored; the organisation of every kept event is remembered (payload key ``resourceOwner``) so that the
pull only deletes users of organisations it has listed (:mod:`app.idp.zitadel.puller`).

Body (``ContextInfoEvent``): ``aggregateID`` (user id = OIDC ``sub`` for ``user.*``, grant id for
``user.grant.*``), ``aggregateType``, ``resourceOwner``, ``instanceID``, ``sequence``, ``event_type``,
``created_at``, ``userID`` (the *actor*, never the subject) and ``event_payload`` (absent, ``null``,
``{}``, an object, or a base64 string in older builds).
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from app.auth.signatures import hmac_hex, hmac_matches, require_secrets, timestamp_outside
from app.webhooks.common import (
    Clock,
    SequencedEvent,
    WebhookResult,
    body_digest,
    get_header,
    load_json_object,
)
from app.webhooks.errors import WebhookInvalid, WebhookRejected
from app.webhooks.events import (
    SCIM_USER_SCHEMA,
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
from app.webhooks.replay import ReplayGuard, claim_delivery

__all__ = [
    "ORG_KEY",
    "SIGNATURE_HEADER",
    "SignedDelivery",
    "ZitadelWebhook",
    "parse_zitadel",
    "sign_zitadel",
    "zitadel_event",
]

SIGNATURE_HEADER = "ZITADEL-Signature"
#: Where a kept event's payload remembers its aggregate's organisation (the envelope's ``resourceOwner``).
ORG_KEY = "resourceOwner"
#: ZITADEL's "no language set" (``language.Und``): always present in profiles, never a value to copy.
UNDETERMINED_LANGUAGE = "und"
DEFAULT_TOLERANCE = 300.0
_MAX_HEADER_LEN = 4096
_HEX_SHA256_LEN = 64
_MAX_SEQUENCE = 2**63 - 1
_MAX_EVENT_TYPE = 100
_MAX_AGGREGATE_ID = 200
_KEPT_FIELDS = frozenset(
    {
        "userName",
        "email",
        "firstName",
        "lastName",
        "displayName",
        "nickName",
        "preferredLanguage",
        "userId",
        "projectId",
        "roleKeys",
    }
)


@dataclass(frozen=True, slots=True)
class SignedDelivery:
    """Outcome of a successful signature check: the signed timestamp and the replay key to claim."""

    timestamp: int
    replay_key: str
    replay_expires_at: float


def sign_zitadel(body: bytes, signing_keys: Sequence[str] | str, timestamp: int) -> str:
    """Build a ``ZITADEL-Signature`` header value (one ``v1`` per key), as ZITADEL does."""
    keys = require_secrets(signing_keys, "sign_zitadel")
    message = f"{timestamp}.".encode() + body
    sigs = [hmac_hex(k, message) for k in keys]
    return ",".join([f"t={timestamp}", *(f"v1={s}" for s in sigs)])


def _parse_header(value: str) -> tuple[str, list[str]]:
    if len(value) > _MAX_HEADER_LEN:
        raise WebhookRejected("signature header too long")
    timestamp: str | None = None
    candidates: list[str] = []
    for part in value.split(","):
        name, sep, item = part.strip().partition("=")
        if not sep:
            continue
        if name == "t" and timestamp is None:
            timestamp = item
        elif name == "v1":
            item = item.lower()
            # Like ZITADEL, skip values that are not hex; they can never match.
            if len(item) == _HEX_SHA256_LEN and all(c in "0123456789abcdef" for c in item):
                candidates.append(item)
    if timestamp is None or not (timestamp.isascii() and timestamp.isdigit()) or len(timestamp) > 12:
        raise WebhookRejected("signature header without a valid timestamp")
    if not candidates:
        raise WebhookRejected("signature header without a v1 signature")
    return timestamp, candidates


class ZitadelWebhook:
    """Verifier + parser for ZITADEL deliveries.

    ``signing_keys``: the target's signing key(s); several are accepted during a rotation.
    ``tolerance``: maximum age (and future skew) of ``t`` in seconds. Replay keys are kept until ``t``
    leaves that window, after which the timestamp check alone rejects a replay.
    """

    source = "zitadel"

    def __init__(
        self,
        signing_keys: Sequence[str] | str,
        replay_guard: ReplayGuard,
        *,
        tolerance: float = DEFAULT_TOLERANCE,
        organizations: Sequence[str] | None = None,
        clock: Clock = time.time,
    ) -> None:
        self._keys = require_secrets(signing_keys, "ZitadelWebhook")
        self._organizations = frozenset(organizations) if organizations else None
        if tolerance <= 0:
            raise ValueError("tolerance must be positive")
        self._guard = replay_guard
        self._tolerance = tolerance
        self._clock = clock

    def verify_signature(self, headers: Mapping[str, str], body: bytes) -> SignedDelivery:
        """Check ``ZITADEL-Signature`` against the raw body; raise ``WebhookRejected`` on any failure."""
        header = get_header(headers, SIGNATURE_HEADER)
        if not header:
            raise WebhookRejected("missing signature header")
        t_raw, candidates = _parse_header(header)
        message = t_raw.encode() + b"." + body
        if not hmac_matches([c.encode() for c in candidates], self._keys, message):
            raise WebhookRejected("signature mismatch")
        t = int(t_raw)
        outside = timestamp_outside(t, self._clock(), max_age=self._tolerance, skew=self._tolerance)
        if outside is not None:
            raise WebhookRejected(f"signature timestamp {outside}")
        return SignedDelivery(
            timestamp=t,
            replay_key="zitadel:" + body_digest(message),
            replay_expires_at=t + self._tolerance + 1,
        )

    async def handle(self, headers: Mapping[str, str], body: bytes) -> WebhookResult:
        """Verify, parse, then claim the replay key (an unparseable body does not consume it)."""
        signed = self.verify_signature(headers, body)
        result = parse_zitadel(body)
        if self._organizations is not None and result.sequenced is not None:
            owner = result.sequenced.payload.get(ORG_KEY)
            if owner not in self._organizations:
                ignored = Ignored("zitadel event of an organisation this source does not serve")
                return replace(result, events=(ignored,), sequenced=None)
        await claim_delivery(self._guard, signed.replay_key, signed.replay_expires_at)
        return replace(result, replay_key=signed.replay_key)


# --- parsing -------------------------------------------------------------------------------------


def _payload(event: Mapping[str, Any]) -> dict[str, Any]:
    raw = event.get("event_payload")
    if raw is None:
        return {}
    if isinstance(raw, str):
        # Older builds marshalled the payload as []byte, i.e. a base64 string.
        if not raw:
            return {}
        try:
            raw = json.loads(base64.b64decode(raw, validate=True))
        except (binascii.Error, ValueError, RecursionError):
            raise WebhookInvalid("event_payload is neither an object nor base64 JSON") from None
    if not isinstance(raw, dict):
        raise WebhookInvalid("event_payload must be a JSON object")
    return raw


def _str(payload: Mapping[str, Any], key: str) -> str | None:
    value = payload.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise WebhookInvalid(f"event_payload.{key} must be a string")
    return value or None


def _role_keys(payload: Mapping[str, Any]) -> tuple[str, ...]:
    keys = payload.get("roleKeys") or []
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise WebhookInvalid("event_payload.roleKeys must be a list of strings")
    return tuple(keys)


def _email(value: str) -> list[dict[str, Any]]:
    return [{"value": value, "primary": True, "type": "work"}]


def _profile_changes(payload: Mapping[str, Any]) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    name: dict[str, str] = {}
    for src, dst in (("firstName", "givenName"), ("lastName", "familyName")):
        if (v := _str(payload, src)) is not None:
            name[dst] = v
    if name:
        changes["name"] = name
    for src, dst in (
        ("displayName", "displayName"),
        ("nickName", "nickName"),
        ("preferredLanguage", "preferredLanguage"),
    ):
        value = _str(payload, src)
        if value is not None and not (dst == "preferredLanguage" and value == UNDETERMINED_LANGUAGE):
            changes[dst] = value
    return changes


def _human_added(user_id: str, payload: Mapping[str, Any]) -> WebhookEvent:
    if not payload:
        # v4.1.x sent "{}" for every event: the user must be read back from the API.
        return FetchUser(user_id)
    email = _str(payload, "email")
    user: dict[str, Any] = {
        "schemas": [SCIM_USER_SCHEMA],
        "externalId": user_id,
        # Never copy "encodedHash"/"changeRequired" (password hash) anywhere.
        "userName": _str(payload, "userName") or email or user_id,
        **_profile_changes(payload),
        "active": True,
    }
    if email:
        user["emails"] = _email(email)
    return UserUpsert(user_id, user)


def _user_event(event_type: str, user_id: str, payload: Mapping[str, Any]) -> WebhookEvent:
    if event_type in ("user.human.added", "user.human.selfregistered"):
        return _human_added(user_id, payload)
    if event_type == "user.human.email.changed":
        email = _str(payload, "email")
        return UserPatch(user_id, {"emails": _email(email)}) if email else FetchUser(user_id)
    if event_type == "user.human.profile.changed":
        changes = _profile_changes(payload)
        return UserPatch(user_id, changes) if changes else FetchUser(user_id)
    if event_type == "user.username.changed":  # there is no user.human.username.changed
        username = _str(payload, "userName")
        return UserPatch(user_id, {"userName": username}) if username else FetchUser(user_id)
    simple: dict[str, Callable[[str], WebhookEvent]] = {
        "user.deactivated": lambda u: UserActive(u, False),
        "user.reactivated": lambda u: UserActive(u, True),
        "user.locked": lambda u: UserLocked(u, True),
        "user.unlocked": lambda u: UserLocked(u, False),
        "user.removed": UserDelete,
    }
    if (make := simple.get(event_type)) is not None:
        return make(user_id)
    return Ignored(f"zitadel event type {event_type} is not used")


def _grant_event(event_type: str, grant_id: str, payload: Mapping[str, Any]) -> WebhookEvent:
    if event_type == "user.grant.added":
        if not payload:
            return Ignored("zitadel grant event without payload; reconcile grants from the API")
        return GrantUpsert(grant_id, _str(payload, "userId"), _role_keys(payload), _str(payload, "projectId"))
    if event_type == "user.grant.cascade.changed":
        # roleKeys is ``omitempty`` here (internal/repository/usergrant/user_grant.go): deleting a project
        # role that was the grant's only one sends ``{}``, i.e. no role left.
        return GrantUpsert(grant_id, None, _role_keys(payload))
    if event_type == "user.grant.changed":
        if "roleKeys" not in payload:
            return Ignored("zitadel grant event without payload; reconcile grants from the API")
        return GrantUpsert(grant_id, _str(payload, "userId"), _role_keys(payload), _str(payload, "projectId"))
    if event_type in ("user.grant.removed", "user.grant.cascade.removed"):
        return GrantDelete(grant_id)
    if event_type == "user.grant.deactivated":
        return GrantActive(grant_id, False)
    if event_type == "user.grant.reactivated":
        return GrantActive(grant_id, True)
    return Ignored(f"zitadel event type {event_type} is not used")


def zitadel_event(event_type: str, aggregate_id: str, payload: Mapping[str, Any]) -> WebhookEvent:
    """The neutral meaning of one ZITADEL event; also used to re-read kept events."""
    payload = {key: value for key, value in payload.items() if key != ORG_KEY}
    if event_type.startswith("user.grant."):
        return _grant_event(event_type, aggregate_id, payload)
    if event_type.startswith("user."):
        return _user_event(event_type, aggregate_id, payload)
    return Ignored(f"zitadel event type {event_type} is not used")


def _sequence(data: Mapping[str, Any]) -> int:
    value = data.get("sequence")
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= _MAX_SEQUENCE:
        raise WebhookInvalid("sequence missing or not a positive integer")
    return value


def parse_zitadel(body: bytes) -> WebhookResult:
    """Translate one ZITADEL event delivery into neutral events.

    Events that matter also come back as a :class:`~app.webhooks.common.SequencedEvent` (aggregate, its
    ``sequence`` and the payload fields read), which the receiver keeps and folds in sequence order.
    """
    data = load_json_object(body)
    event_type = data.get("event_type")
    aggregate_id = data.get("aggregateID")
    if not isinstance(event_type, str) or not event_type or len(event_type) > _MAX_EVENT_TYPE:
        raise WebhookInvalid("event_type missing")
    if not isinstance(aggregate_id, str) or not aggregate_id or len(aggregate_id) > _MAX_AGGREGATE_ID:
        raise WebhookInvalid("aggregateID missing")
    sequence = data.get("sequence")
    instance = data.get("instanceID")
    delivery_id = f"{instance}:{aggregate_id}:{sequence}" if sequence is not None else None
    # Only the fields the parser reads are kept (no password hash, phone or address is ever stored).
    payload = {key: value for key, value in _payload(data).items() if key in _KEPT_FIELDS}
    event = zitadel_event(event_type, aggregate_id, payload)
    owner = data.get(ORG_KEY)
    if isinstance(owner, str) and owner and len(owner) <= _MAX_AGGREGATE_ID:
        payload[ORG_KEY] = owner
    sequenced = None
    if not isinstance(event, Ignored):
        kind = "grant" if event_type.startswith("user.grant.") else "user"
        sequenced = SequencedEvent(kind, aggregate_id, _sequence(data), event_type, payload)
    return WebhookResult(source="zitadel", events=(event,), delivery_id=delivery_id, sequenced=sequenced)
