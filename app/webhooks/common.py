"""Shared pieces of the webhook receivers: result type, clock, header lookup, JSON body, digests.

The secret and signature checks live in :mod:`app.auth.signatures`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from app.webhooks.errors import WebhookInvalid
from app.webhooks.events import WebhookEvent

__all__ = [
    "MAX_BODY_BYTES",
    "Clock",
    "SequencedEvent",
    "WebhookResult",
    "body_digest",
    "get_header",
    "load_json_object",
]

#: Webhook bodies are small (< 2 KiB in every trace); anything above this is refused before parsing.
MAX_BODY_BYTES = 1024 * 1024

#: Returns the current time as Unix seconds; injected so tests can pin "now" to a trace's timestamp.
Clock = Callable[[], float]


@dataclass(frozen=True, slots=True)
class SequencedEvent:
    """One event of an event-sourced IdP (ZITADEL), in the form it is kept and folded later.

    ``aggregate_type`` (``"user"`` or ``"grant"``) and ``aggregate_id`` name the object the event belongs
    to; ``sequence`` is its per-aggregate number (ordering and dedupe); ``payload`` holds only the fields
    the parser reads (never a password hash), so that parsing it again yields the same neutral event.
    """

    aggregate_type: str
    aggregate_id: str
    sequence: int
    event_type: str
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class WebhookResult:
    """What one accepted delivery means.

    ``events``: what to apply, in order. ``delivery_id``: the IdP's identity of the event, for idempotency
    and logs (ZITADEL ``instanceID:aggregateID:sequence``, Asgardeo ``jti``, authentik ``event_uuid``).
    ``replay_key``: the key claimed in the ``ReplayGuard``; pass it to ``ReplayGuard.forget`` if the
    delivery could not be processed and a retry of the same delivery must be let through.
    ``sequenced``: set when the IdP numbers its events per aggregate (ZITADEL): the receiver then keeps
    the event and folds the aggregate's events in sequence order instead of applying ``events`` as they
    come (:mod:`app.idp.zitadel.sync`).
    ``duplicate``: the delivery was authentic but already received (its key is claimed): acknowledge it,
    change nothing. ``problem``: authentic but unusable (unreadable body, stale timestamp): acknowledge it
    and record the reason; ``events`` is then empty.
    """

    source: str
    events: tuple[WebhookEvent, ...]
    delivery_id: str | None = None
    replay_key: str | None = None
    sequenced: SequencedEvent | None = None
    duplicate: bool = False
    problem: str | None = None


def get_header(headers: Mapping[str, str], name: str) -> str | None:
    """Case-insensitive header lookup (RFC 9110 §5.1) on a plain dict or a Starlette ``Headers``."""
    value = headers.get(name)
    if value is not None:
        return value
    wanted = name.lower()
    for key, val in headers.items():
        if key.lower() == wanted:
            return val
    return None


def load_json_object(body: bytes) -> dict[str, Any]:
    """Parse a request body that must be a JSON object (RFC 8259), or raise ``WebhookInvalid``."""
    if len(body) > MAX_BODY_BYTES:
        raise WebhookInvalid("body too large", status=413)
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise WebhookInvalid("body is not valid JSON") from None
    if not isinstance(data, dict):
        raise WebhookInvalid("body must be a JSON object")
    return data


def body_digest(*parts: bytes) -> str:
    """SHA-256 hex of the concatenated parts; used to derive replay keys from signed content."""
    h = hashlib.sha256()
    for part in parts:
        h.update(part)
    return h.hexdigest()
