"""ZITADEL: SCIM client, signed Actions v2 webhooks, and the management API for repairs.

Webhooks carry ``ZITADEL-Signature: t=<unix>,v1=<hex>`` (HMAC-SHA256 over ``t.body``, 300 s tolerance;
:mod:`app.idp.zitadel.webhook`). Events are numbered per aggregate and may arrive out of order or twice:
they are kept and folded in ``sequence`` order (:mod:`app.idp.zitadel.sync`, :mod:`app.idp.zitadel.fold`),
and with ``zitadel_url`` + ``zitadel_token`` the API (:mod:`app.idp.zitadel.api`) fills in what events
omit and a periodic pull (:mod:`app.idp.zitadel.puller`) repairs lost deliveries (ZITADEL does not retry).
Options: ``webhook_secret``, ``webhook_tolerance``, ``zitadel_url``, ``zitadel_token``,
``zitadel_pull_interval``, ``zitadel_event_retention``, ``zitadel_organizations``.
"""

from __future__ import annotations

from collections.abc import Mapping

from app.config import ConfigError, SourceConfig
from app.idp.types import IdentityProvider
from app.idp.zitadel.api import ZitadelApi
from app.idp.zitadel.puller import ZitadelPuller
from app.idp.zitadel.sync import DEFAULT_RETENTION, ZitadelAggregates
from app.idp.zitadel.webhook import ZitadelWebhook
from app.scim.quirks import Quirks
from app.store.webhook_state import IdpEventLog
from app.webhooks.adapter import (
    Puller,
    ReceiverContext,
    SourceReceiver,
    api_pair,
    positive_seconds,
    webhook_secrets,
)
from app.webhooks.common import WebhookResult

__all__ = ["PROVIDER", "organizations"]


def organizations(source: SourceConfig) -> list[str] | None:
    """``zitadel_organizations``: the organisation ids (``resourceOwner``) a ZITADEL source serves."""
    value = source.options.get("zitadel_organizations")
    if value is None:
        return None
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"sources.{source.name}.zitadel_organizations must be a list of organisation ids")
    return [str(v) for v in value]


def webhook(source: SourceConfig, ctx: ReceiverContext) -> SourceReceiver:
    """The verifier, the per-aggregate event log and, with an API token, the API client and its pull."""
    verifier = ZitadelWebhook(
        webhook_secrets(source),
        ctx.guard,
        tolerance=positive_seconds(source, "webhook_tolerance", 300.0),
        organizations=organizations(source),
        clock=ctx.clock,
    )
    api = None
    if (pair := api_pair(source, "zitadel_url", "zitadel_token")) is not None:
        api = ZitadelApi(*pair, client=ctx.client)
    applier = ctx.applier(source, resolver=api)
    aggregates = ZitadelAggregates(
        applier,
        IdpEventLog(ctx.db, source.name),
        api=api,
        retention=positive_seconds(source, "zitadel_event_retention", DEFAULT_RETENTION),
        clock=ctx.clock,
    )
    pullers: list[Puller] = []
    if api is not None:
        interval = positive_seconds(source, "zitadel_pull_interval", 900.0)
        pullers.append(ZitadelPuller(aggregates, api, interval, organizations(source)))

    async def verify(headers: Mapping[str, str], body: bytes, path_secret: str | None) -> WebhookResult:
        return await verifier.handle(headers, body)

    return SourceReceiver(source, verify, applier, api=api, aggregates=aggregates, pullers=pullers)


PROVIDER = IdentityProvider(
    kind="zitadel", quirks=Quirks(kind="zitadel", unique_group_names=True), webhook=webhook
)
