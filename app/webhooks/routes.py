"""``POST /webhooks/{source}`` (and ``GET`` for Asgardeo's WebSub handshake): IdP push notifications.

Per source, by its ``kind`` and options (``[sources.<name>]`` in the configuration):

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
(:mod:`app.webhooks.zitadel_sync`), so deliveries out of order or twice end in the same state;
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
from dataclasses import dataclass
from typing import Any

import httpx
from prometheus_client import Counter
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from app.config import Config, ConfigError, SourceConfig
from app.observability import audit
from app.observability.metrics import Metrics
from app.scim.router import ScimRouter
from app.store.db import Database
from app.store.errors import DatabaseError
from app.store.webhook_state import IdpEventLog, IdpState, SqlReplayGuard
from app.webhooks.apply import ApplyFailed, ApplyRetry, EventApplier, UserResolver
from app.webhooks.asgardeo import AsgardeoWebhook, parse_asgardeo
from app.webhooks.authentik import AuthentikWebhook
from app.webhooks.authentik_fetcher import AuthentikUserFetcher, IdpFetchError
from app.webhooks.authentik_pull import AuthentikPuller
from app.webhooks.common import MAX_BODY_BYTES, WebhookResult
from app.webhooks.errors import WebhookError, WebhookInvalid, WebhookRejected
from app.webhooks.events import Challenge
from app.webhooks.pending import DEFAULT_RETENTION as PENDING_RETENTION
from app.webhooks.pending import PendingRetrier, PendingStore
from app.webhooks.replay import ReplayGuard
from app.webhooks.zitadel import ZitadelWebhook
from app.webhooks.zitadel_api import ZitadelApi
from app.webhooks.zitadel_pull import ZitadelPuller
from app.webhooks.zitadel_sync import DEFAULT_RETENTION, ZitadelAggregates

__all__ = ["WebhookReceiver", "webhook_receiver", "webhook_routes"]

log = logging.getLogger("ziti_scim.webhooks")

WEBHOOK_KINDS = ("zitadel", "asgardeo", "authentik")
Verifier = ZitadelWebhook | AsgardeoWebhook | AuthentikWebhook


@dataclass
class SourceReceiver:
    source: SourceConfig
    verifier: Verifier
    applier: EventApplier
    api: ZitadelApi | None = None
    aggregates: ZitadelAggregates | None = None
    pending: PendingStore | None = None
    authentik: AuthentikUserFetcher | None = None


def _secrets(source: SourceConfig) -> list[str]:
    value = source.options.get("webhook_secret")
    values = value if isinstance(value, list) else [value]
    if not all(isinstance(item, str) and item for item in values):
        raise ConfigError(
            f"sources.{source.name}.webhook_secret must be a non-empty string or a list of them"
        )
    return [str(item) for item in values]


def _number(source: SourceConfig, option: str, default: float) -> float:
    value = source.options.get(option, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ConfigError(f"sources.{source.name}.{option} must be a positive number of seconds")
    return float(value)


def _organizations(source: SourceConfig) -> list[str] | None:
    """``zitadel_organizations``: the organisation ids (``resourceOwner``) a ZITADEL source serves."""
    value = source.options.get("zitadel_organizations")
    if value is None:
        return None
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"sources.{source.name}.zitadel_organizations must be a list of organisation ids")
    return [str(v) for v in value]


def _api_pair(source: SourceConfig, url_option: str, token_option: str) -> tuple[str, str] | None:
    url, token = source.options.get(url_option), source.options.get(token_option)
    if url is None and token is None:
        return None
    if not isinstance(url, str) or not url.startswith(("http://", "https://")) or not isinstance(token, str):
        raise ConfigError(
            f"sources.{source.name}: {url_option} (an http(s) URL) and {token_option} must be set together"
        )
    return url, token


class WebhookReceiver:
    """The receivers of every webhook-enabled source; ``clock`` is read at each delivery (tests pin it)."""

    def __init__(
        self,
        config: Config,
        db: Database,
        scim: ScimRouter,
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
            if source.kind in WEBHOOK_KINDS and source.options.get("webhook_secret") is not None:
                self.sources[source.name] = self._receiver(source, db, scim)

    def _now(self) -> float:
        return self.clock()

    def _receiver(self, source: SourceConfig, db: Database, scim: ScimRouter) -> SourceReceiver:
        secrets = _secrets(source)
        resolver: UserResolver | None = None
        authentik: AuthentikUserFetcher | None = None
        api: ZitadelApi | None = None
        verifier: Verifier
        # No keep-alive: IdP API reads are occasional, and no connection outlives its request.
        client = httpx.AsyncClient(timeout=10.0, limits=httpx.Limits(max_keepalive_connections=0))
        if source.kind == "zitadel":
            verifier = ZitadelWebhook(
                secrets,
                self.guard,
                tolerance=_number(source, "webhook_tolerance", 300.0),
                organizations=_organizations(source),
                clock=self._now,
            )
            if (pair := _api_pair(source, "zitadel_url", "zitadel_token")) is not None:
                api = resolver = ZitadelApi(*pair, client=client)
        elif source.kind == "asgardeo":
            prefix = source.options.get("webhook_topic_prefix")
            verifier = AsgardeoWebhook(
                secrets,
                self.guard,
                max_age=_number(source, "webhook_max_age", 86400.0),
                topic_prefix=prefix if isinstance(prefix, str) else None,
                clock=self._now,
            )
        else:
            header = str(source.options.get("webhook_secret_header", "Authorization"))
            values = [f"Bearer {s}" if header.lower() == "authorization" else s for s in secrets]
            verifier = AuthentikWebhook(
                header,
                values,
                self.guard,
                secrets=secrets,
                max_age=_number(source, "webhook_max_age", 86400.0),
                clock=self._now,
            )
            if (pair := _api_pair(source, "authentik_url", "authentik_token")) is not None:
                resolver = authentik = AuthentikUserFetcher(*pair, client=client)
        applier = EventApplier(
            scim.apps[source.name], IdpState(db, source.name), resolver=resolver, group_resolver=authentik
        )
        aggregates = None
        if source.kind == "zitadel":
            # ZITADEL numbers its events per aggregate and may deliver them out of order: keep and fold them.
            aggregates = ZitadelAggregates(
                applier,
                IdpEventLog(db, source.name),
                api=api,
                retention=_number(source, "zitadel_event_retention", DEFAULT_RETENTION),
                clock=self._now,
            )
        pending = None
        if source.kind == "asgardeo":
            pending = PendingStore(
                db, source.name, clock=self._now, on_deferred=lambda name: self.deferred.labels(name).inc()
            )
        return SourceReceiver(source, verifier, applier, api, aggregates, pending, authentik)

    def pullers(self) -> list[ZitadelPuller | AuthentikPuller]:
        """The periodic IdP repairs (ZITADEL and authentik sources with an API URL and token); start once."""
        pullers: list[ZitadelPuller | AuthentikPuller] = []
        for r in self.sources.values():
            if r.api is not None and r.aggregates is not None:
                interval = _number(r.source, "zitadel_pull_interval", 900.0)
                pullers.append(ZitadelPuller(r.aggregates, r.api, interval, _organizations(r.source)))
            if r.authentik is not None:
                interval = _number(r.source, "authentik_pull_interval", 900.0)
                pullers.append(AuthentikPuller(r.source.name, r.applier, r.authentik, interval))
        return pullers

    def retriers(self) -> list[PendingRetrier]:
        """The retries of deliveries acknowledged but not applied yet (:mod:`app.webhooks.pending`)."""
        return [
            PendingRetrier(
                r.pending,
                parse_asgardeo,
                r.applier,
                interval=_number(r.source, "webhook_retry_interval", 60.0),
                retention=_number(r.source, "webhook_retry_retention", PENDING_RETENTION),
            )
            for r in self.sources.values()
            if r.pending is not None
        ]

    def background(self) -> list[ZitadelPuller | AuthentikPuller | PendingRetrier]:
        """Every periodic task of the receivers (pulls, retries): ``start()`` each, ``stop()`` at exit."""
        return [*self.pullers(), *self.retriers()]

    async def endpoint(self, request: Request) -> Response:
        receiver = self.sources.get(request.path_params["source"])
        if receiver is None:
            return JSONResponse({"error": "no webhook receiver for this source"}, status_code=404)
        path_secret = request.path_params.get("secret")
        if path_secret is not None and not isinstance(receiver.verifier, AuthentikWebhook):
            return JSONResponse({"error": "no webhook receiver for this source"}, status_code=404)
        if request.method == "GET":
            return self._subscription(receiver, request)
        body = await _read_body(request)
        if body is None:
            return JSONResponse({"error": "body too large"}, status_code=413)
        try:
            if isinstance(receiver.verifier, AuthentikWebhook):
                result = await receiver.verifier.handle(request.headers, body, path_secret=path_secret)
            else:
                result = await receiver.verifier.handle(request.headers, body)
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
        verifier = receiver.verifier
        if not isinstance(verifier, AsgardeoWebhook):
            return JSONResponse({"error": "method not allowed"}, status_code=405, headers={"Allow": "POST"})
        try:
            answer = verifier.verify_subscription(dict(request.query_params))
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
    config: Config, db: Database, scim: ScimRouter, *, clock: Callable[[], float] = time.time
) -> list[Route]:
    """The routes to add to the application (``create_app``): ``/webhooks/{source}``, GET and POST."""
    receiver = WebhookReceiver(config, db, scim, clock=clock)
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
