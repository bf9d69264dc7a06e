"""The Starlette application: the SCIM endpoint at ``/scim/v2``, health probes, and the service's lifespan."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route

from app.config import Config
from app.reconcile.provisioner import Provisioner
from app.scim.router import ScimRouter
from app.store.db import Database
from app.ziti.client import ZitiClient

log = logging.getLogger("ziti_scim")


@dataclass
class Services:
    """What the running service holds, reachable from routes and tests as ``app.state.services``."""

    config: Config
    db: Database
    scim: ScimRouter
    provisioner: Provisioner | None = None
    extras: dict[str, Any] = field(default_factory=dict)


def create_app(config: Config, *, migrate: bool = True, ziti_client: ZitiClient | None = None) -> Starlette:
    """The service. Without a ``[ziti]`` controller it stores SCIM state only (no provisioning)."""
    db = Database(config.database_url)
    provisioner = Provisioner(config, db, ziti_client) if (config.ziti.url or ziti_client) else None
    scim = ScimRouter(
        config.sources.values(),
        db,
        max_body_bytes=config.max_body_bytes,
        hooks=provisioner.hooks if provisioner else None,
        after_write=provisioner.after_write if provisioner else None,
    )
    services = Services(config=config, db=db, scim=scim, provisioner=provisioner)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if migrate:
            await db.migrate()
        if provisioner is not None:
            await provisioner.start()
        else:
            log.warning("no [ziti] controller configured: SCIM state is stored but nothing is provisioned")
        log.info("ziti-scim ready: %d source(s), database %s", len(config.sources), db.engine.url.drivername)
        try:
            yield
        finally:
            if provisioner is not None:
                await provisioner.stop()
            await db.dispose()

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    app = Starlette(
        routes=[Route("/healthz", healthz), Mount("/scim", app=scim)],
        lifespan=lifespan,
    )
    app.state.services = services
    return app
