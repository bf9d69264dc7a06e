"""Sans-IO protocol layer of ziti-scim's IdP webhook receivers: neutral events, errors, replay guard.

The IdP-specific verifiers and parsers live in ``app.idp.<kind>`` (:mod:`app.idp.registry`); the
verification of callers' bearer tokens in :mod:`app.auth`. Verifiers take header mappings and raw body
bytes and return the neutral events of :mod:`app.webhooks.events`; persistence enters only through the
:class:`~app.webhooks.replay.ReplayGuard` protocol. :mod:`app.webhooks.routes` is the Starlette receiver.
"""

from __future__ import annotations

from app.webhooks.common import WebhookResult
from app.webhooks.errors import IdpFetchError, WebhookError, WebhookInvalid, WebhookRejected
from app.webhooks.events import (
    Challenge,
    FetchUser,
    GrantActive,
    GrantDelete,
    GrantUpsert,
    Ignored,
    RoleMembers,
    UserActive,
    UserDelete,
    UserGroups,
    UserLocked,
    UserPatch,
    UserUpsert,
    WebhookEvent,
)
from app.webhooks.replay import InMemoryReplayGuard, ReplayGuard

__all__ = [
    "Challenge",
    "FetchUser",
    "GrantActive",
    "GrantDelete",
    "GrantUpsert",
    "IdpFetchError",
    "Ignored",
    "InMemoryReplayGuard",
    "ReplayGuard",
    "RoleMembers",
    "UserActive",
    "UserDelete",
    "UserGroups",
    "UserLocked",
    "UserPatch",
    "UserUpsert",
    "WebhookError",
    "WebhookEvent",
    "WebhookInvalid",
    "WebhookRejected",
    "WebhookResult",
]
