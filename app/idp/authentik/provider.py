"""authentik: SCIM client (every compatibility mode), notification webhooks, and its API for repairs.

authentik signs nothing: a webhook proves itself with a shared secret in a header (set by a header
mapping), in the body mapping's ``webhook_secret`` or in the path ``/webhooks/{source}/{secret}``
(:mod:`app.idp.authentik.webhook`). With ``authentik_url`` + ``authentik_token`` its API
(:mod:`app.idp.authentik.api`) resolves the users and groups an event names, and a periodic pull
(:mod:`app.idp.authentik.puller`) repairs lost deliveries. Its SCIM client works on the standard paths;
its ``sfdc`` mode's ``/ServiceProviderConfigs`` is served to every source (:mod:`app.scim.router`).
Options: ``webhook_secret``, ``webhook_secret_header``, ``webhook_max_age``, ``authentik_url``,
``authentik_token``, ``authentik_pull_interval``.
"""

from __future__ import annotations

from collections.abc import Mapping

from app.config import SourceConfig
from app.idp.authentik.api import AuthentikUserFetcher
from app.idp.authentik.puller import AuthentikPuller
from app.idp.authentik.webhook import AuthentikWebhook
from app.idp.types import IdentityProvider
from app.scim.quirks import Quirks
from app.webhooks.adapter import (
    Puller,
    ReceiverContext,
    SourceReceiver,
    api_pair,
    positive_seconds,
    webhook_secrets,
)
from app.webhooks.common import WebhookResult

__all__ = ["PROVIDER"]


def webhook(source: SourceConfig, ctx: ReceiverContext) -> SourceReceiver:
    """The shared-secret verifier and, with an API token, the API client and its pull."""
    secrets = webhook_secrets(source)
    header = str(source.options.get("webhook_secret_header", "Authorization"))
    values = [f"Bearer {s}" if header.lower() == "authorization" else s for s in secrets]
    verifier = AuthentikWebhook(
        header,
        values,
        ctx.guard,
        secrets=secrets,
        max_age=positive_seconds(source, "webhook_max_age", 86400.0),
        clock=ctx.clock,
    )
    fetcher = None
    if (pair := api_pair(source, "authentik_url", "authentik_token")) is not None:
        fetcher = AuthentikUserFetcher(*pair, client=ctx.client)
    applier = ctx.applier(source, resolver=fetcher, group_resolver=fetcher)
    pullers: list[Puller] = []
    if fetcher is not None:
        interval = positive_seconds(source, "authentik_pull_interval", 900.0)
        pullers.append(AuthentikPuller(source.name, applier, fetcher, interval))

    async def verify(headers: Mapping[str, str], body: bytes, path_secret: str | None) -> WebhookResult:
        return await verifier.handle(headers, body, path_secret=path_secret)

    return SourceReceiver(source, verify, applier, path_secret=True, api=fetcher, pullers=pullers)


PROVIDER = IdentityProvider(
    kind="authentik", quirks=Quirks(kind="authentik", unique_group_names=True), webhook=webhook
)
