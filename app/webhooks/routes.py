"""``POST /webhooks/{source}`` (and ``GET`` for Asgardeo's WebSub handshake): IdP push notifications.

Per source, by its ``kind`` (the adapters of :mod:`app.idp.registry`, built on :mod:`app.webhooks.adapter`)
and options (``[sources.<name>]`` in the configuration):

=========== ============================================================ ===============================
kind        authenticity                                                 options
=========== ============================================================ ===============================
zitadel     ``ZITADEL-Signature`` HMAC-SHA256 over ``t.body``, 300 s      ``webhook_secret`` (signing
            (ZITADEL Actions v2 targets)                                  key, a list during rotation),
                                                                          ``webhook_tolerance``,
                                                                          ``zitadel_url`` +
                                                                          ``zitadel_token`` (PAT),
                                                                          ``zitadel_pull_interval``,
                                                                          ``zitadel_event_retention``,
                                                                          ``zitadel_organizations``
asgardeo    ``X-Hub-Signature: sha256=`` HMAC of the raw body, ``iat``    ``webhook_secret``,
            age, ``jti`` duplicate key; ``GET`` answers                   ``webhook_max_age``,
            ``hub.challenge`` (W3C WebSub §5.3)                           ``webhook_topic_prefix``,
                                                                          ``webhook_retry_interval``,
                                                                          ``webhook_retry_retention``
authentik   a shared secret in a header set by a header mapping, in the  ``webhook_secret``,
            body mapping's ``webhook_secret`` or in the path              ``webhook_secret_header``
            ``/webhooks/{source}/{secret}`` (authentik signs nothing,     (``Authorization``: the value
            see ``authentik.py``)                                         is ``Bearer <secret>``),
                                                                          ``authentik_url`` +
                                                                          ``authentik_token``,
                                                                          ``authentik_pull_interval``
=========== ============================================================ ===============================

ZITADEL events are kept per aggregate and folded in ``sequence`` order before they are applied
(:mod:`app.idp.zitadel.sync`), so deliveries out of order or twice end in the same state;
``zitadel_event_retention`` (seconds, 30 days by default) bounds how long they are kept.

Secrets can come from the environment (``ZITI_SCIM_SOURCE_<NAME>_WEBHOOK_SECRET``, …, see
:mod:`app.config`). A source without ``webhook_secret`` has no receiver (404).

Answers. 401 ``webhook rejected`` for a bad or missing signature or secret (nothing is changed, the
reason is only logged). A delivery already received (same ``jti`` / ``event_uuid``) is acknowledged
with 200 ``{"status": "duplicate"}`` and changes nothing: IdPs redeliver (at-least-once queues, client
timeouts), and refusing a redelivery only makes the IdP retry or give up.

* **asgardeo**: the WSO2 hub marks a subscription stale after any non-2xx answer but 500/502/503, and
  after three of those (``delivery.bal``), so once the signature holds the answer is always 2xx: 200
  when applied, 200 ``{"status": "ignored"}`` (recorded: log, audit ``webhook-unusable``, metric) for a
  body that cannot be read or an ``iat`` outside ``webhook_max_age``, and 202 ``{"status": "deferred"}``
  when it cannot be applied now (a mapping refusal, a database or API failure): the delivery is kept and
  retried by ziti-scim (:mod:`app.webhooks.pending`), listed by ``doctor``. Only when even keeping it
  fails (the database is down) is the answer 503, which the hub retries.
* **zitadel**, **authentik**: 200 when applied; 400/413 for a body that cannot be read; 422 when the
  store refuses the change; 503 (``Retry-After``) on a transient failure (authentik retries; ZITADEL
  does not, its periodic pull repairs). A delivery that was not applied releases its replay key, so the
  IdP's retry of it is accepted. A stale timestamp is refused with 401.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import httpx
from prometheus_client import Counter
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from app.config import Config, SourceConfig
from app.observability import audit
from app.observability.metrics import Metrics
from app.scim.router import ScimRouter
from app.store.db import Database
from app.store.errors import DatabaseError
from app.store.webhook_state import SqlReplayGuard
from app.webhooks.adapter import Puller, ReceiverContext, SourceReceiver, WebhookFactory
from app.webhooks.apply import ApplyFailed, ApplyRetry
from app.webhooks.common import MAX_BODY_BYTES, WebhookResult
from app.webhooks.errors import IdpFetchError, WebhookError, WebhookInvalid, WebhookRejected
from app.webhooks.events import Challenge
from app.webhooks.pending import PendingRetrier
from app.webhooks.replay import ReplayGuard

__all__ = ["WebhookReceiver", "webhook_receiver", "webhook_routes"]

log = logging.getLogger("ziti_scim.webhooks")

WebhookFactories = Callable[[SourceConfig], WebhookFactory | None]
"""The webhook side of a source's IdP, or None when its kind has no webhooks (:mod:`app.idp.registry`)."""


class WebhookReceiver:
    """The receivers of every webhook-enabled source; ``clock`` is read at each delivery (tests pin it).

    ``webhooks`` gives the IdP adapter of a source (:func:`app.idp.registry.webhook_factory`): a source
    whose IdP has one and that sets ``webhook_secret`` gets a receiver.
    """

    def __init__(
        self,
        config: Config,
        db: Database,
        scim: ScimRouter,
        webhooks: WebhookFactories,
        *,
        clock: Callable[[], float] = time.time,
        metrics: Metrics | None = None,
    ):
        self.clock = clock
        self.db = db
        self.guard: ReplayGuard = SqlReplayGuard(db, clock=self._now)
        registry = (metrics or Metrics()).registry
        self.deferred = Counter(
            "ziti_scim_webhook_deferred_total",
            "Authentic webhook deliveries acknowledged but kept to be applied later, by source",
            ["source"],
            registry=registry,
        )
        self.unusable = Counter(
            "ziti_scim_webhook_unusable_total",
            "Authentic webhook deliveries acknowledged but not usable (unreadable, stale), by source",
            ["source"],
            registry=registry,
        )
        self.duplicates = Counter(
            "ziti_scim_webhook_duplicates_total",
            "Webhook deliveries received again and acknowledged without change, by source",
            ["source"],
            registry=registry,
        )
        self.sources: dict[str, SourceReceiver] = {}
        for source in config.sources.values():
            factory = webhooks(source)
            if factory is not None and source.options.get("webhook_secret") is not None:
                self.sources[source.name] = factory(source, self._context(scim))

    def _now(self) -> float:
        return self.clock()

    def _context(self, scim: ScimRouter) -> ReceiverContext:
        return ReceiverContext(
            db=self.db,
            guard=self.guard,
            clock=self._now,
            # No keep-alive: IdP API reads are occasional, and no connection outlives its request.
            client=httpx.AsyncClient(timeout=10.0, limits=httpx.Limits(max_keepalive_connections=0)),
            on_deferred=lambda name: self.deferred.labels(name).inc(),
            scim=scim.apps,
        )

    def pullers(self) -> list[Puller]:
        """The periodic IdP repairs (sources with an IdP API URL and token); start once."""
        return [puller for r in self.sources.values() for puller in r.pullers]

    def retriers(self) -> list[PendingRetrier]:
        """The retries of deliveries acknowledged but not applied yet (:mod:`app.webhooks.pending`)."""
        return [retrier for r in self.sources.values() for retrier in r.retriers]

    def background(self) -> list[Puller | PendingRetrier]:
        """Every periodic task of the receivers (pulls, retries): ``start()`` each, ``stop()`` at exit."""
        return [*self.pullers(), *self.retriers()]

    async def endpoint(self, request: Request) -> Response:
        receiver = self.sources.get(request.path_params["source"])
        if receiver is None:
            return JSONResponse({"error": "no webhook receiver for this source"}, status_code=404)
        path_secret = request.path_params.get("secret")
        if path_secret is not None and not receiver.path_secret:
            return JSONResponse({"error": "no webhook receiver for this source"}, status_code=404)
        if request.method == "GET":
            return self._subscription(receiver, request)
        body = await _read_body(request)
        if body is None:
            return JSONResponse({"error": "body too large"}, status_code=413)
        try:
            result = await receiver.verify(request.headers, body, path_secret)
        except WebhookRejected as rejected:
            log.warning("webhook for source %s rejected: %s", receiver.source.name, rejected.reason)
            return JSONResponse({"error": rejected.public_message}, status_code=rejected.status)
        except WebhookInvalid as invalid:
            log.info("webhook for source %s invalid: %s", receiver.source.name, invalid.reason)
            return JSONResponse({"error": invalid.public_message}, status_code=invalid.status)
        if result.duplicate:
            self.duplicates.labels(receiver.source.name).inc()
            log.info("webhook %s for source %s: already received", _label(result), receiver.source.name)
            return JSONResponse({"status": "duplicate"})
        if result.problem is not None:
            return await self._unusable(receiver, result)
        return await self._apply(receiver, result, body)

    async def _unusable(self, receiver: SourceReceiver, result: WebhookResult) -> Response:
        name = receiver.source.name
        self.unusable.labels(name).inc()
        log.warning("webhook %s for source %s not usable: %s", _label(result), name, result.problem)
        try:
            entry = audit.AuditEntry(
                source=name,
                action="webhook-unusable",
                outcome="ignored",
                operation=f"webhook {_label(result)}",
                error=result.problem,
            )
            await audit.record(self.db, [entry])
        except DatabaseError:
            log.warning("could not record an unusable webhook delivery")
        return JSONResponse({"status": "ignored", "reason": result.problem})

    async def _apply(self, receiver: SourceReceiver, result: WebhookResult, body: bytes) -> Response:
        name = receiver.source.name
        try:
            if result.sequenced is not None and receiver.aggregates is not None:
                outcome = await receiver.aggregates.deliver(result.sequenced)
            else:
                outcome = await receiver.applier.apply(result.events)
        except ApplyFailed as failure:
            if receiver.pending is not None:
                return await self._defer(receiver, result, body, failure.detail)
            await self._release(result)
            log.warning("webhook %s for source %s not applied: %s", _label(result), name, failure.detail)
            return JSONResponse({"error": failure.detail}, status_code=422)
        except (ApplyRetry, IdpFetchError, DatabaseError) as error:
            if receiver.pending is not None:
                return await self._defer(receiver, result, body, type(error).__name__)
            await self._release(result)
            log.warning("webhook %s for source %s deferred: %s", _label(result), name, type(error).__name__)
            return _unavailable()
        log.info("webhook %s for source %s: applied %s", _label(result), name, outcome.applied or "nothing")
        return JSONResponse({"status": "ok", "applied": outcome.applied, "skipped": outcome.skipped})

    async def _defer(
        self, receiver: SourceReceiver, result: WebhookResult, body: bytes, reason: str
    ) -> Response:
        """Keep an authentic delivery that could not be applied, and acknowledge it (see the docstring)."""
        assert receiver.pending is not None
        try:
            await receiver.pending.keep(result, body, reason)
        except DatabaseError:
            await self._release(result)
            log.warning("webhook %s for source %s could not be kept", _label(result), receiver.source.name)
            return _unavailable()
        log.warning(
            "webhook %s for source %s kept to retry: %s", _label(result), receiver.source.name, reason
        )
        return JSONResponse({"status": "deferred", "reason": reason}, status_code=202)

    async def _release(self, result: WebhookResult) -> None:
        if result.replay_key is not None:
            try:
                await self.guard.forget(result.replay_key)
            except DatabaseError:
                log.warning("could not release a webhook replay key")

    @staticmethod
    def _subscription(receiver: SourceReceiver, request: Request) -> Response:
        if receiver.subscription is None:
            return JSONResponse({"error": "method not allowed"}, status_code=405, headers={"Allow": "POST"})
        try:
            answer = receiver.subscription(dict(request.query_params))
        except WebhookError as error:
            return JSONResponse({"error": error.public_message}, status_code=error.status)
        if isinstance(answer, Challenge):
            # The echo is the caller's text: never let a browser sniff it as HTML.
            nosniff = {"X-Content-Type-Options": "nosniff"}
            return PlainTextResponse(answer.response_body, media_type=answer.media_type, headers=nosniff)
        return Response(status_code=200)


def _label(result: WebhookResult) -> str:
    """How a delivery is named in logs: the IdP's id for it, or ``(no id)`` (authentik's default body)."""
    return result.delivery_id or "(no id)"


def _unavailable() -> JSONResponse:
    return JSONResponse({"error": "temporarily unavailable"}, status_code=503, headers={"Retry-After": "5"})


async def _read_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes | None:
    """The raw body (signatures cover these exact bytes), or None past ``limit``."""
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        return None
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > limit:
            return None
    return bytes(body)


def webhook_routes(
    config: Config,
    db: Database,
    scim: ScimRouter,
    webhooks: WebhookFactories,
    *,
    clock: Callable[[], float] = time.time,
) -> list[Route]:
    """The routes to add to the application (``create_app``): ``/webhooks/{source}``, GET and POST."""
    receiver = WebhookReceiver(config, db, scim, webhooks, clock=clock)
    return [
        Route("/webhooks/{source}", receiver.endpoint, methods=["GET", "POST"]),
        Route("/webhooks/{source}/{secret}", receiver.endpoint, methods=["POST"]),
    ]


def webhook_receiver(app: Starlette) -> WebhookReceiver | None:
    """The receiver mounted in ``app`` (to start its ZITADEL pullers, or to pin its clock in tests)."""
    for route in app.routes:
        endpoint: Any = getattr(route, "endpoint", None)
        if isinstance(route, Route) and isinstance(getattr(endpoint, "__self__", None), WebhookReceiver):
            return endpoint.__self__  # type: ignore[no-any-return]
    return None
