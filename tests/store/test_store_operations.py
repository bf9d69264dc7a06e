"""The store's operations (:mod:`app.store`) keep their contract (:mod:`tests.store.contract`) on SQLite and
on PostgreSQL: every class runs once per backend (the ``database_url`` fixture; PostgreSQL is required
under ``CI=true``)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from app.store.db import Database
from tests.store.contract import (
    AuditContract,
    DesiredContract,
    IdpEventsContract,
    ProvisioningContract,
    QueueContract,
    SettingsContract,
)


class SqlBackends:
    """A fresh migrated database of each kind for every test (the dirty queue and settings are global)."""

    @pytest.fixture
    async def db(self, database_url: str) -> AsyncIterator[Database]:
        database = Database(database_url)
        try:
            yield database
        finally:
            await database.dispose()


class TestQueue(SqlBackends, QueueContract):
    pass


class TestProvisioning(SqlBackends, ProvisioningContract):
    pass


class TestAudit(SqlBackends, AuditContract):
    pass


class TestSettings(SqlBackends, SettingsContract):
    pass


class TestDesired(SqlBackends, DesiredContract):
    pass


class TestIdpEvents(SqlBackends, IdpEventsContract):
    pass
