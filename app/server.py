"""The Starlette application: SCIM at ``/scim/v2``, health, metrics, the admin API, and the lifespan."""

from __future__ import annotations

import contextlib
import gc
import hmac
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from app.config import Config, hash_token
from app.idp import registry
from app.observability import audit
from app.observability.metrics import Metrics, seconds_since
from app.observability.probes import CachedCheck, bearer_allowed, hide_sources
from app.reconcile.provisioner import Provisioner
from app.reconcile.safety import PAUSED, engaged_brakes, read_setting
from app.reconcile.skipped import skipped_counts
from app.reconcile.sync import LAST_FULL_SYNC
from app.scim.limits import RequestLimits
from app.scim.router import ScimRouter
from app.serving import QuietDisconnect
from app.store import queue
from app.store.db import Database
from app.webhooks.routes import WebhookReceiver
from app.ziti.client import ZitiClient

log = logging.getLogger("ziti_scim")


@dataclass
class Services:
    """What the running service holds, reachable from routes and tests as ``app.state.services``."""

    config: Config
    db: Database
    scim: ScimRouter
    metrics: Metrics
    provisioner: Provisioner | None = None
    extras: dict[str, Any] = field(default_factory=dict)


class ScimPrefix:
    """Hand every path under ``/scim`` to the SCIM router.

    A plain prefix test rather than a ``Mount``: the route regex's ``.`` stops at a newline, so a path
    holding an encoded newline would otherwise miss the SCIM app and get a non-SCIM answer.
    """

    def __init__(self, app: ASGIApp, scim: ScimRouter) -> None:
        self.app = app
        self.scim = scim

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] == "http" and (path == "/scim" or path.startswith("/scim/")):
            await self.scim({**scope, "root_path": scope.get("root_path", "") + "/scim"}, receive, send)  # type: ignore[arg-type]
            return
        await self.app(scope, receive, send)


def _admin_allowed(config: Config, request: Request) -> bool:
    scheme, _, token = (request.headers.get("Authorization") or "").partition(" ")
    if config.admin_token_hash is None or scheme.lower() != "bearer" or not token:
        return False
    return hmac.compare_digest(hash_token(token.strip()), config.admin_token_hash)


def create_app(config: Config, *, migrate: bool = True, ziti_client: ZitiClient | None = None) -> Starlette:
    """The service. Without a ``[ziti]`` controller it stores SCIM state only (no provisioning)."""
    db = Database(config.database_url)
    metrics = Metrics()
    provisioner = Provisioner(config, db, ziti_client, metrics) if (config.ziti.url or ziti_client) else None
    scim = ScimRouter(
        config.sources.values(),
        db,
        max_body_bytes=config.max_body_bytes,
        hooks=provisioner.hooks if provisioner else None,
        after_write=provisioner.after_write if provisioner else None,
        metrics=metrics,
        limits=RequestLimits(config.limits.max_patch_operations, config.limits.max_attribute_values),
        quirks=registry.quirks_for,
    )
    webhooks = WebhookReceiver(config, db, scim, registry.webhook_factory, metrics=metrics)
    services = Services(config=config, db=db, scim=scim, metrics=metrics, provisioner=provisioner)
    services.extras["webhooks"] = webhooks

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if migrate:
            await db.migrate()
        if provisioner is not None:
            await provisioner.start()
        else:
            log.warning("no [ziti] controller configured: SCIM state is stored but nothing is provisioned")
        pullers = webhooks.background()  # periodic IdP pulls (repair lost deliveries) and webhook retries
        for puller in pullers:
            puller.start()
        log.info("ziti-scim ready: %d source(s), database %s", len(config.sources), db.driver)
        # What start-up built (modules, models, compiled statements) lives as long as the app: out of the
        # cyclic collector's sight, a full collection no longer walks it (145,000 objects: ~50 ms of the
        # event loop each time, now under 1 ms). Given back to it at shutdown, so that an app stopped in a
        # process that goes on (tests, an embedding program) can still be collected.
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            gc.unfreeze()
            for puller in pullers:
                await puller.stop()
            if provisioner is not None:
                await provisioner.stop()
            await db.dispose()

    controller_check = (
        CachedCheck(lambda: provisioner.client.get_auth_policy("default"), config.probes.readyz_cache_seconds)
        if provisioner is not None
        else None
    )

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> JSONResponse:
        checks: dict[str, str] = {}
        try:
            await db.ping()
            checks["database"] = "ok"
        except Exception as error:  # noqa: BLE001 - reported, not raised
            checks["database"] = f"error: {type(error).__name__}"
        if controller_check is not None:
            checks["controller"] = await controller_check.status()
        ready = all(value == "ok" for value in checks.values())
        return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)

    async def refresh_gauges() -> None:
        async with db.transaction() as tx:
            metrics.pending.set(await queue.pending_count(tx))
        last = await read_setting(db, LAST_FULL_SYNC)
        metrics.since_full_sync.set(seconds_since(float(last) if last is not None else None))
        metrics.brake.set(len(await engaged_brakes(db)))
        metrics.paused.set(1 if await read_setting(db, PAUSED) else 0)
        skipped = await skipped_counts(db)
        for name in config.sources:
            metrics.skipped.labels(name).set(skipped.get(name, 0))

    async def metrics_endpoint(request: Request) -> Response:
        if not bearer_allowed(request.headers.get("Authorization"), config.probes.metrics_token_hash):
            return JSONResponse(
                {"detail": "metrics token required"},
                status_code=401,
                headers={"WWW-Authenticate": 'Bearer realm="ziti-scim-metrics"'},
            )
        body = await metrics.render(refresh_gauges)
        if not config.probes.metrics_source_labels:
            body = hide_sources(body, config.sources)
        return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")

    async def admin_audit(request: Request) -> JSONResponse:
        if not _admin_allowed(config, request):
            return JSONResponse(
                {"detail": "admin token required"},
                status_code=401,
                headers={"WWW-Authenticate": 'Bearer realm="ziti-scim-admin"'},
            )
        try:
            limit, offset, since = audit.parse_query(request.query_params)
        except ValueError as error:
            return JSONResponse({"detail": str(error)}, status_code=400)
        rows = await audit.read(
            db, since=since, user=request.query_params.get("user"), limit=limit, offset=offset
        )
        return JSONResponse(
            {"startIndex": offset + 1, "itemsPerPage": len(rows), "entries": rows, "generatedAt": time.time()}
        )

    app = Starlette(
        routes=[
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", metrics_endpoint),
            Route("/admin/audit", admin_audit),
            Route("/webhooks/{source}", webhooks.endpoint, methods=["GET", "POST"]),
            Route("/webhooks/{source}/{secret}", webhooks.endpoint, methods=["POST"]),
        ],
        middleware=[Middleware(QuietDisconnect), Middleware(ScimPrefix, scim=scim)],
        lifespan=lifespan,
    )
    app.state.services = services
    return app
