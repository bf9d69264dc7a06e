"""scim2-server's storage contract, run against the SQL storage on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from scim2_models import ScimProvider
from scim2_server.testing import AsyncScimStorageContract, BlockingStorage

from app.store.db import Database
from app.store.storage import SqlStorage


class TestSqlStorageContract(AsyncScimStorageContract):
    @pytest.fixture
    def storage(self, provider: ScimProvider, shared_database_url: str, source_name: str) -> Iterator[Any]:
        with asyncio.Runner() as runner:
            database = Database(shared_database_url)
            try:
                yield BlockingStorage(SqlStorage(database, provider, source_name), runner)
            finally:
                runner.run(database.dispose())
