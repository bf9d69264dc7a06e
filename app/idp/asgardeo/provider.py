"""Asgardeo / WSO2 Identity Server: SCIM client (outbound provisioning) and WebSub webhooks.

Its SCIM client sends ``"schemas": []`` (``fill_schemas``), ``emails`` as plain strings
(``string_emails``), no ``active`` on creation (``default_active``), a ``DOMAIN/`` user-store prefix on
``userName`` (``strip_domain``), unquoted filters (``unquoted_filters``), PUT bodies holding only the
changed attributes (``partial_put``) and, in API-key mode, the key without a scheme (``raw_token``).
Webhooks (:mod:`app.idp.asgardeo.webhook`) carry ``X-Hub-Signature: sha256=<hex>``; a ``GET`` answers the
WebSub ``hub.challenge``. The WSO2 hub marks a subscription stale after non-2xx answers, so a delivery
that cannot be applied now is kept and retried here (:mod:`app.webhooks.pending`).
Options: ``webhook_secret``, ``webhook_max_age``, ``webhook_topic_prefix``, ``webhook_retry_interval``,
``webhook_retry_retention``.
"""

from __future__ import annotations

from collections.abc import Mapping

from app.config import SourceConfig
from app.idp.asgardeo.webhook import AsgardeoWebhook, parse_asgardeo
from app.idp.types import IdentityProvider
from app.scim.quirks import Quirks
from app.webhooks.adapter import ReceiverContext, SourceReceiver, positive_seconds, webhook_secrets
from app.webhooks.common import WebhookResult
from app.webhooks.pending import DEFAULT_RETENTION, PendingRetrier, PendingStore

__all__ = ["PROVIDER"]


def webhook(source: SourceConfig, ctx: ReceiverContext) -> SourceReceiver:
    """The verifier (and subscription handshake), and the store and retrier of deferred deliveries."""
    prefix = source.options.get("webhook_topic_prefix")
    verifier = AsgardeoWebhook(
        webhook_secrets(source),
        ctx.guard,
        max_age=positive_seconds(source, "webhook_max_age", 86400.0),
        topic_prefix=prefix if isinstance(prefix, str) else None,
        clock=ctx.clock,
    )
    applier = ctx.applier(source)
    pending = PendingStore(ctx.db, source.name, clock=ctx.clock, on_deferred=ctx.on_deferred)
    retrier = PendingRetrier(
        pending,
        parse_asgardeo,
        applier,
        interval=positive_seconds(source, "webhook_retry_interval", 60.0),
        retention=positive_seconds(source, "webhook_retry_retention", DEFAULT_RETENTION),
    )

    async def verify(headers: Mapping[str, str], body: bytes, path_secret: str | None) -> WebhookResult:
        return await verifier.handle(headers, body)

    return SourceReceiver(
        source,
        verify,
        applier,
        subscription=verifier.verify_subscription,
        pending=pending,
        retriers=[retrier],
    )


PROVIDER = IdentityProvider(
    kind="asgardeo",
    quirks=Quirks(
        kind="asgardeo",
        fill_schemas=True,
        string_emails=True,
        default_active=True,
        strip_domain=True,
        unquoted_filters=True,
        partial_put=True,
        raw_token=True,
        unique_group_names=True,
    ),
    webhook=webhook,
)
