"""Shared fixtures: real databases (SQLite files, and PostgreSQL on 127.0.0.1:5432 when present)."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.store.db import Database

PG_ADMIN_URL = os.environ.get("ZITI_SCIM_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
SHARED = Path(__file__).resolve().parents[2] / "shared"

pytest_plugins = ["tests.support.stack"]


def _postgres_available() -> bool:
    import asyncpg  # type: ignore[import-untyped]

    async def probe() -> bool:
        try:
            connection = await asyncpg.connect(PG_ADMIN_URL.replace("postgresql://", "postgres://"), timeout=3)
        except (OSError, asyncpg.PostgresError):
            return False
        await connection.close()
        return True

    return asyncio.run(probe())


def _create_database(name: str) -> str:
    import asyncpg

    async def create() -> None:
        connection = await asyncpg.connect(PG_ADMIN_URL)
        try:
            exists = await connection.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
            if not exists:
                await connection.execute(f'CREATE DATABASE "{name}"')
        finally:
            await connection.close()

    asyncio.run(create())
    return PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """A migrated PostgreSQL database for this test session; skipped without PostgreSQL, except on CI."""
    if not _postgres_available():
        if os.environ.get("CI") == "true":
            pytest.fail("PostgreSQL on 127.0.0.1:5432 is required on CI")
        pytest.skip("PostgreSQL is not reachable on 127.0.0.1:5432")
    url = _create_database(f"ziti_scim_test_{os.getpid()}")
    database = Database(url)
    asyncio.run(_migrate_and_dispose(database))
    return url


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("db") / "store.db"
    asyncio.run(_migrate_and_dispose(Database(str(path))))
    return str(path)


async def _migrate_and_dispose(database: Database) -> None:
    await database.migrate()
    await database.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest) -> str:
    """Both databases, each already migrated."""
    name = "sqlite_url" if request.param == "sqlite" else "postgres_url"
    return str(request.getfixturevalue(name))


@pytest.fixture
def source_name() -> Iterator[str]:
    """A fresh source per test: sources are isolated, so tests can share one database."""
    yield f"test-{uuid.uuid4().hex[:12]}"
