"""Shared fixtures: real databases (SQLite files, and PostgreSQL on 127.0.0.1:5432 when present), and
``serve`` for in-process servers. The controller emulator and the whole stack: ``tests/support/stack.py``."""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from app.store.db import Database
from tests.paths import SHARED, shared_dir
from tests.support.live import serve_fixture

PG_ADMIN_URL = os.environ.get("ZITI_SCIM_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")

pytest_plugins = ["tests.support.stack"]
__all__ = ["SHARED"]


def pytest_report_header() -> str:
    found = shared_dir()
    return f"shared test data: {found}" if found else f"shared test data: MISSING ({SHARED})"


def _postgres_available() -> bool:
    import asyncpg  # type: ignore[import-untyped]

    async def probe() -> bool:
        try:
            connection = await asyncpg.connect(
                PG_ADMIN_URL.replace("postgresql://", "postgres://"), timeout=3
            )
        except (OSError, asyncpg.PostgresError):
            return False
        await connection.close()
        return True

    return asyncio.run(probe())


def _admin(statement: str) -> None:
    import asyncpg

    async def run() -> None:
        connection = await asyncpg.connect(PG_ADMIN_URL)
        try:
            await connection.execute(statement)
        finally:
            await connection.close()

    asyncio.run(run())


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
def postgres_template() -> str:
    """A migrated PostgreSQL database that every test copies; skipped without PostgreSQL, except on CI."""
    if not _postgres_available():
        if os.environ.get("CI") == "true":
            pytest.fail("PostgreSQL on 127.0.0.1:5432 is required on CI")
        pytest.skip("PostgreSQL is not reachable on 127.0.0.1:5432")
    name = f"ziti_scim_tpl_{os.getpid()}"
    _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    url = _create_database(name)
    asyncio.run(_migrate_and_dispose(Database(url)))
    return name


@pytest.fixture
def postgres_url(postgres_template: str) -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for one test (a copy of the template)."""
    name = f"ziti_scim_t_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    _admin(f'CREATE DATABASE "{name}" TEMPLATE "{postgres_template}"')
    yield PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "store.db"
    asyncio.run(_migrate_and_dispose(Database(str(path))))
    return path


@pytest.fixture
def sqlite_url(sqlite_template: Path, tmp_path: Path) -> str:
    """A fresh, migrated SQLite file for one test (a copy of the template)."""
    path = tmp_path / "store.db"
    shutil.copyfile(sqlite_template, path)
    return str(path)


async def _migrate_and_dispose(database: Database) -> None:
    await database.migrate()
    await database.dispose()


@pytest.fixture(scope="session")
def postgres_shared(postgres_template: str) -> str:
    name = f"ziti_scim_shared_{os.getpid()}"
    _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    _admin(f'CREATE DATABASE "{name}" TEMPLATE "{postgres_template}"')
    return PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture(scope="session")
def sqlite_shared(sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("shared") / "store.db"
    shutil.copyfile(sqlite_template, path)
    return str(path)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest) -> str:
    """A fresh migrated database of each kind, for tests whose state spans sources (provisioning)."""
    name = "sqlite_url" if request.param == "sqlite" else "postgres_url"
    return str(request.getfixturevalue(name))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def shared_database_url(request: pytest.FixtureRequest) -> str:
    """One migrated database of each kind for the whole session; tests isolate by source."""
    name = "sqlite_shared" if request.param == "sqlite" else "postgres_shared"
    return str(request.getfixturevalue(name))


@pytest.fixture
def source_name() -> Iterator[str]:
    """A fresh source per test: sources are isolated, so tests can share one database."""
    yield f"test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def serve() -> Iterator[Callable[[Any], str]]:
    """``serve(app) -> base_url`` (uvicorn on 127.0.0.1); every server started in the test stops after it."""
    with serve_fixture() as start:
        yield start
