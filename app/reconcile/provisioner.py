"""The provisioning stage assembled from configuration: controller client, hooks, reconciler, worker."""

from __future__ import annotations

import logging

from app.config import Config, ConfigError
from app.observability.metrics import Metrics
from app.reconcile import queue
from app.reconcile.admission import ProvisioningHooks
from app.reconcile.reconciler import Reconciler
from app.reconcile.safety import BrakeConfig, Safety
from app.reconcile.settings import SourceSettings, source_settings
from app.reconcile.worker import Worker
from app.store.db import Database
from app.ziti.client import ZitiClient
from app.ziti.retry import RetryPolicy
from app.ziti.session import CertCredentials, Credentials, PasswordCredentials

log = logging.getLogger("ziti_scim")
INLINE_LIMIT = 10


def ziti_client(
    config: Config, *, retry: RetryPolicy | None = None, metrics: Metrics | None = None
) -> ZitiClient:
    ziti = config.ziti
    if not ziti.url:
        raise ConfigError("[ziti] url is not set")
    credentials: Credentials
    if ziti.cert_file and ziti.key_file:
        credentials = CertCredentials(ziti.cert_file, ziti.key_file)
    elif ziti.password:
        credentials = PasswordCredentials(ziti.username, ziti.password)
    else:
        raise ConfigError(
            "[ziti] needs a password (password_env / password_file) "
            "or a client certificate (cert_file, key_file)"
        )
    return ZitiClient(
        ziti.url,
        credentials,
        ca_bundle=ziti.ca_bundle,
        insecure=ziti.insecure,
        max_concurrency=ziti.max_in_flight,
        retry=retry,
        on_request=metrics.controller_call if metrics is not None else None,
        session_mode=ziti.session,
    )


class Provisioner:
    """Everything between the store and the controller, started and stopped with the service."""

    def __init__(
        self, config: Config, db: Database, client: ZitiClient | None = None, metrics: Metrics | None = None
    ) -> None:
        self.config = config
        self.db = db
        self.metrics = metrics
        self.settings: dict[str, SourceSettings] = {
            name: source_settings(source) for name, source in config.sources.items()
        }
        self.hooks = ProvisioningHooks(self.settings, is_sqlite=db.is_sqlite)
        self.client = client or ziti_client(config, metrics=metrics)
        safety = config.safety
        self.safety = Safety(
            db,
            BrakeConfig(
                max_count=safety.brake_max,
                max_share=safety.brake_share,
                min_count=safety.brake_min,
                window=safety.brake_window,
            ),
        )
        self.reconciler = Reconciler(
            db,
            self.client,
            self.settings,
            safety=self.safety,
            metrics=metrics,
            deployment=config.deployment_id,
        )
        self.worker = Worker(self.reconciler, audit_retention_days=safety.audit_retention_days)

    async def after_write(self, users: set[tuple[str, str]]) -> None:
        """Converge inline what one request changed, when it is a few users (a user write, a small
        membership change); a write that touches many (a group rename) is left to the background worker
        rather than holding the IdP's request, since its response shows no user's provisioning state."""
        if len(users) <= INLINE_LIMIT and not await self.safety.paused():
            await self.worker.converge_now(sorted(users), self.config.ziti.reconcile_deadline)
        self.worker.wake()

    async def start(self) -> None:
        if self.db.is_sqlite:
            # One process owns a SQLite store: claims left by a killed predecessor are stale.
            await queue.release_all(self.db)
        self.worker.start()

    async def stop(self) -> None:
        await self.worker.stop()
        await self.client.close()
