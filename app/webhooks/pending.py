"""Deliveries that were acknowledged but could not be applied yet: kept, recorded, and retried by ziti-scim.

An IdP's retry is the wrong tool for an authentic delivery that cannot be applied now: the WSO2 hub marks
the subscription stale after any non-2xx answer, or once its three 500/502/503 retries are spent
(product-integrator-websubhub ``components/websubhub/modules/delivery/delivery.bal``), and ZITADEL does not
retry at all. So the receiver answers 2xx, and the delivery is kept here: one row of the source's event
log (``idp_events``, aggregate type ``pending``, aggregate id ``pending:<delivery id>``) holding the
authenticated body and the reason. Each keeping writes an audit row (action ``webhook-deferred``) and
counts ``ziti_scim_webhook_deferred_total``; ``ziti-scim doctor`` lists what is still waiting.

:class:`PendingRetrier` re-parses and re-applies them every ``webhook_retry_interval`` seconds (60 by
default). Once applied, the row becomes a tombstone (so a late redelivery of the same id is not kept
twice) and the audit says ``webhook-retried``. After ``webhook_retry_retention`` (7 days) a delivery
still not applied is given up with an audit row ``webhook-dropped``; the source's periodic pull (where it
has one) repairs what it described.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from app.observability import audit
from app.store.db import Database
from app.store.webhook_state import IdpEventLog, open_events
from app.webhooks.apply import ApplyFailed, ApplyRetry, EventApplier
from app.webhooks.authentik_fetcher import IdpFetchError
from app.webhooks.common import WebhookResult, body_digest
from app.webhooks.errors import WebhookError
from app.webhooks.periodic import Periodic

__all__ = ["PENDING_TYPE", "PendingDelivery", "PendingRetrier", "PendingStore", "pending_deliveries"]

log = logging.getLogger("ziti_scim.webhooks")

PENDING_TYPE = "pending"
DEFAULT_RETENTION = 7 * 86400.0


@dataclass(frozen=True, slots=True)
class PendingDelivery:
    source: str
    delivery_id: str
    reason: str
    received_at: float


async def pending_deliveries(db: Database, source: str | None = None) -> list[PendingDelivery]:
    """The deliveries still waiting (for ``doctor``): every source, or one."""
    async with db.transaction() as tx:
        events = await open_events(tx, PENDING_TYPE, source)
    return [
        PendingDelivery(
            event.source,
            event.aggregate_id.removeprefix("pending:"),
            str(event.payload.get("reason", "")),
            event.received_at,
        )
        for event in events
    ]


class PendingStore:
    """The pending deliveries of one source; ``on_deferred`` (a metric) is called for each one kept."""

    def __init__(
        self,
        db: Database,
        source: str,
        *,
        clock: Callable[[], float] = time.time,
        on_deferred: Callable[[str], None] | None = None,
    ) -> None:
        self.db = db
        self.source = source
        self.log = IdpEventLog(db, source)
        self.clock = clock
        self.on_deferred = on_deferred

    async def keep(self, result: WebhookResult, body: bytes, reason: str) -> bool:
        """Keep an authentic delivery to retry it; False if it was kept (or applied) already."""
        delivery_id = result.delivery_id or body_digest(body)
        kept = await self.log.record(
            PENDING_TYPE,
            f"pending:{delivery_id}",
            1,
            "delivery",
            {"body": body.decode("utf-8", "replace"), "reason": reason[:500]},
            self.clock(),
        )
        if kept:
            if self.on_deferred is not None:
                self.on_deferred(self.source)
            await audit.record(
                self.db,
                [
                    audit.AuditEntry(
                        source=self.source,
                        action="webhook-deferred",
                        outcome="pending",
                        operation=f"webhook {delivery_id}",
                        error=reason[:500],
                    )
                ],
            )
        return kept

    async def waiting(self) -> list[tuple[str, dict[str, Any], float]]:
        """``(aggregate id, payload, received_at)`` of what is still waiting, oldest first."""
        result: list[tuple[str, dict[str, Any], float]] = []
        for kind, aggregate_id in await self.log.quiet(float("inf")):
            if kind != PENDING_TYPE:
                continue
            kept = await self.log.load(aggregate_id)
            if not kept.closed and kept.events:
                event = kept.events[0]
                result.append((aggregate_id, event.payload, event.received_at))
        return sorted(result, key=lambda item: item[2])

    async def done(self, aggregate_id: str, action: str, outcome: str, error: str | None = None) -> None:
        now = self.clock()
        await self.log.put_base(PENDING_TYPE, aggregate_id, 1, {}, now, closed=True, drop_events=True)
        await audit.record(
            self.db,
            [
                audit.AuditEntry(
                    source=self.source,
                    action=action,
                    outcome=outcome,
                    operation=f"webhook {aggregate_id.removeprefix('pending:')}",
                    error=error,
                )
            ],
        )


class PendingRetrier(Periodic):
    """Applies a source's pending deliveries again, every ``interval`` seconds until stopped."""

    def __init__(
        self,
        store: PendingStore,
        parse: Callable[[bytes], WebhookResult],
        applier: EventApplier,
        *,
        interval: float = 60.0,
        retention: float = DEFAULT_RETENTION,
    ) -> None:
        self.store = store
        self.parse = parse
        self.applier = applier
        super().__init__(f"webhook-retry-{store.source}")
        self.interval = interval
        self.retention = retention

    async def run_once(self) -> int:
        """Retry every waiting delivery once; returns how many were applied."""
        # Tombstones of applied deliveries only need to outlive a redelivery of them.
        await self.store.log.drop_closed(self.store.clock() - self.retention)
        applied = 0
        for aggregate_id, payload, received_at in await self.store.waiting():
            try:
                result = self.parse(str(payload.get("body", "")).encode())
                await self.applier.apply(result.events)
            except (WebhookError, ApplyFailed, ApplyRetry, IdpFetchError) as error:
                reason = str(getattr(error, "detail", None) or getattr(error, "reason", None) or error)
                if self.store.clock() - received_at > self.retention:
                    await self.store.done(aggregate_id, "webhook-dropped", "failed", reason[:500])
                    log.warning("webhook %s of %s given up: %s", aggregate_id, self.store.source, reason)
                continue
            await self.store.done(aggregate_id, "webhook-retried", "applied")
            applied += 1
        return applied
