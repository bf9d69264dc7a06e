"""Sans-IO protocol layer of ziti-scim's IdP webhook receivers and IdP bearer-token validation.

Nothing here knows about Starlette routes or the database: verifiers take header mappings and raw body
bytes and return neutral events (:mod:`app.webhooks.events`); persistence enters only through the
:class:`~app.webhooks.replay.ReplayGuard` protocol.
"""

from __future__ import annotations

from app.webhooks.asgardeo import AsgardeoWebhook, parse_asgardeo, sign_asgardeo, verify_subscription
from app.webhooks.authentik import AuthentikWebhook, authentik_user_to_scim, parse_authentik
from app.webhooks.authentik_fetcher import AuthentikUserFetcher, IdpFetchError
from app.webhooks.common import WebhookResult
from app.webhooks.errors import WebhookError, WebhookInvalid, WebhookRejected
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
from app.webhooks.jwt_bearer import JwtBearerConfig, JwtBearerValidator, TokenRejected
from app.webhooks.replay import InMemoryReplayGuard, ReplayGuard
from app.webhooks.zitadel import ZitadelWebhook, parse_zitadel, sign_zitadel

__all__ = [
    "AsgardeoWebhook",
    "AuthentikUserFetcher",
    "AuthentikWebhook",
    "Challenge",
    "FetchUser",
    "GrantActive",
    "GrantDelete",
    "GrantUpsert",
    "IdpFetchError",
    "Ignored",
    "InMemoryReplayGuard",
    "JwtBearerConfig",
    "JwtBearerValidator",
    "ReplayGuard",
    "RoleMembers",
    "TokenRejected",
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
    "ZitadelWebhook",
    "authentik_user_to_scim",
    "parse_asgardeo",
    "parse_authentik",
    "parse_zitadel",
    "sign_asgardeo",
    "sign_zitadel",
    "verify_subscription",
]
