"""The provisioning stage assembled from configuration: controller client, hooks, reconciler, worker."""

from __future__ import annotations

import logging

from app.config import Config, ConfigError
from app.observability.metrics import Metrics
from app.reconcile.admission import ProvisioningHooks
from app.reconcile.reconciler import Reconciler
from app.reconcile.safety import BrakeConfig, Safety
from app.reconcile.settings import SourceSettings, source_settings
from app.reconcile.worker import Worker
from app.store import queue
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
        self.hooks = ProvisioningHooks(self.settings)
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

    async def after_write(self, users: set[tuple[str, str]], *, fresh: bool = False) -> bool:
        """A write committed: start converging what it marked now, in the background.

        Users without an identity yet (``fresh``: created by the write, or members an initial sync's group
        PATCH added before their identity exists) of sources with a ``create_settle`` wake nobody: they
        wait for their source to pause anyway, and the worker looks when the pause ends
        (:meth:`~app.reconcile.worker.Worker.settling`); a look at the queue per write of an initial sync
        would scan every user still settling. (On PostgreSQL the mark's NOTIFY still wakes every replica,
        this one included: :mod:`app.store.notify`.)

        The IdP does not wait for the controller, unless its source sets ``wait_for_sync`` (seconds): then
        a write touching a few users (a user write, a small membership change) waits up to that long for
        them to converge, so that its response can show ``provisioningState`` ``synced``. Returns whether
        it waited (the response's provisioning view is then worth re-reading).
        """
        if not fresh or not all(self._settles(source) for source, _ in users):
            self.worker.wake()
        else:
            for source in {source for source, _ in users}:
                self.worker.settling(source)
        wait = max((self._wait_for_sync(source) for source, _ in users), default=0.0)
        if wait <= 0 or len(users) > INLINE_LIMIT:
            return False
        await self.worker.wait_for(sorted(users), wait)
        return True

    def _settles(self, source: str) -> bool:
        settings = self.settings.get(source)
        return settings is not None and settings.create_settle > 0

    def _wait_for_sync(self, source: str) -> float:
        settings = self.settings.get(source)
        return settings.wait_for_sync if settings is not None else 0.0

    async def start(self) -> None:
        if self.db.is_sqlite:
            # One process owns a SQLite store: claims left by a killed predecessor are stale.
            async with self.db.transaction(write=True) as tx:
                await queue.release_all(tx)
        self.worker.start()

    async def stop(self) -> None:
        await self.worker.stop()
        await self.client.close()
