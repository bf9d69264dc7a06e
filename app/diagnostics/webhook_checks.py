"""``doctor`` checks of the webhook receivers: deliveries acknowledged but not applied, and IdP API tokens.

* Asgardeo deliveries that could not be applied are acknowledged and kept to be retried
  (:mod:`app.webhooks.pending`); while any waits, the source's state lags behind the IdP.
* Deliveries acknowledged but unusable (unreadable, stale) in the last 24 h (audit ``webhook-unusable``).
* authentik API tokens: a 404 deletes and the pull deletes only with a token that sees every user (a
  superuser's, :meth:`~app.webhooks.authentik_fetcher.AuthentikUserFetcher.sees_everything`).
"""

from __future__ import annotations

import datetime as dt
import time

from app.config import Config
from app.diagnostics.findings import Findings, Severity
from app.observability import audit
from app.store.db import Database
from app.store.errors import StoreError
from app.webhooks.authentik_fetcher import AuthentikUserFetcher, IdpFetchError
from app.webhooks.pending import pending_deliveries

__all__ = ["check_authentik_tokens", "check_webhook_store"]

_RECENT = 86400.0


def _when(timestamp: float) -> str:
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


async def check_webhook_store(findings: Findings, config: Config, db: Database) -> None:
    """Pending and unusable deliveries, per webhook source."""
    try:
        pending = await pending_deliveries(db)
        recent = [
            row
            for row in await audit.read(db, since=time.time() - _RECENT, limit=1000)
            if row.get("action") == "webhook-unusable"
        ]
    except StoreError as error:
        findings.add(Severity.WARN, "webhooks", f"cannot read the webhook state: {type(error).__name__}")
        return
    for name in config.sources:
        waiting = [p for p in pending if p.source == name]
        if waiting:
            oldest = waiting[0]
            findings.add(
                Severity.WARN,
                f"source {name}",
                f"{len(waiting)} webhook deliver{'y' if len(waiting) == 1 else 'ies'} acknowledged but not "
                f"applied yet (oldest {oldest.delivery_id} since {_when(oldest.received_at)}: "
                f"{oldest.reason})",
                "fix the cause shown (ziti-scim audit lists webhook-deferred rows); ziti-scim retries them "
                "every webhook_retry_interval seconds",
                code="webhook-pending",
            )
        unusable = [row for row in recent if row.get("source") == name]
        if unusable:
            findings.add(
                Severity.WARN,
                f"source {name}",
                f"{len(unusable)} authentic webhook deliveries could not be used in the last 24 h "
                f"(latest: {unusable[0].get('error')})",
                "check the IdP's clock (iat) and webhook_max_age; see ziti-scim audit (webhook-unusable)",
                code="webhook-unusable",
            )


async def check_authentik_tokens(findings: Findings, config: Config) -> None:
    """Whether each authentik source's API token proves deletions (a superuser's token)."""
    for name, source in config.sources.items():
        url, token = source.options.get("authentik_url"), source.options.get("authentik_token")
        if source.kind != "authentik" or not isinstance(url, str) or not isinstance(token, str):
            continue
        fetcher = AuthentikUserFetcher(url, token)
        try:
            everything = await fetcher.sees_everything()
        except IdpFetchError as error:
            findings.add(
                Severity.WARN,
                f"source {name}",
                f"the authentik API could not be read: {error}",
                "check authentik_url and authentik_token",
                code="authentik-api",
            )
            continue
        finally:
            await fetcher.aclose()
        if everything:
            scope = f"source {name}"
            message = "the authentik token sees every user"
            findings.add(Severity.OK, scope, message, code="authentik-token-scope")
        else:
            findings.add(
                Severity.WARN,
                f"source {name}",
                "the authentik token's user is not a superuser: a 404 may only mean 'not visible', so "
                "neither a 404 nor the pull deletes anything (only model_deleted events do)",
                "use an API token of a superuser service account (authentik: Directory > Users > Create "
                "service account, superuser)",
                code="authentik-token-scope",
            )
