"""Bulk seeding straight into ziti-scim's tables, for the growth scenarios (what is measured is HTTP).

The rows are exactly what the storage layer writes: the stored document is checked against
``SqlStorage._document`` (the storage's own code) before seeding, and the indexed columns come from
``SqlStorage._columns``. The schema is created by the product's own migrations; the rows are then written
with the drivers' bulk paths (``executemany`` on SQLite, ``COPY`` on PostgreSQL) because 100k users through
the ORM would dominate the run time.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, cast

from scim2_models import Context, Resource

from app.config import SourceConfig
from app.scim.router import SourceApplication
from app.store.db import Database, fold
from app.store.storage import SqlStorage, now_iso
from app.store.tables import emails, members, resources
from bench.common import SOURCE, email, group_body, user_body

BATCH = 10_000


def stored_document(body: dict[str, Any]) -> dict[str, Any]:
    """The document the storage keeps for a POST body built by :func:`bench.common.user_body`."""
    return {
        "schemas": body["schemas"],
        "externalId": body["externalId"],
        "userName": body["userName"],
        "name": body["name"],
        "displayName": body["displayName"],
        "active": body["active"],
        "emails": body["emails"],
    }


@dataclass
class Seeded:
    user_ids: list[str] = field(default_factory=list)
    group_ids: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0


async def _prepare(url: str) -> None:
    """Run the product's migrations and check the seeded document against the storage's own."""
    db = Database(url)
    try:
        await db.migrate()
        application = SourceApplication(SourceConfig(name=SOURCE), db)
        user_type = next(r for r in application.provider.resource_types if r.name == "User")
        model = cast("type[Resource[Any]]", application.provider.model_for(user_type))
        body = user_body("check", 0)
        expected = SqlStorage._document(
            model.model_validate(body, scim_ctx=Context.RESOURCE_CREATION_REQUEST)
        )
        if expected != stored_document(body):
            raise AssertionError(
                f"seed document differs from the storage's: {expected} != {stored_document(body)}"
            )
    finally:
        await db.dispose()


RESOURCE_COLUMNS = [c.name for c in resources.columns]
EMAIL_COLUMNS = [c.name for c in emails.columns]
MEMBER_COLUMNS = [c.name for c in members.columns]


def _tuple(
    columns: list[str], row: dict[str, Any], json_columns: tuple[str, ...] = ("data",)
) -> tuple[Any, ...]:
    return tuple(json.dumps(row[c]) if c in json_columns else row.get(c) for c in columns)


def _rows(
    prefix: str, start: int, count: int, groups: dict[str, int], first_pk: int, seeded: Seeded
) -> Iterator[tuple[str, list[tuple[Any, ...]]]]:
    """Batches of (table, rows) to insert, in foreign-key order."""
    now = now_iso()
    pk = first_pk
    new_pks: list[int] = []
    for offset in range(0, count, BATCH):
        users, mails = [], []
        for index in range(start + offset, start + min(count, offset + BATCH)):
            document = stored_document(user_body(prefix, index))
            resource_id = str(uuid.uuid4())
            row = {
                "pk": pk,
                "source": SOURCE,
                "resource_type": "User",
                "id": resource_id,
                "created": now,
                "last_modified": now,
                "version": 1,
                **SqlStorage._columns("User", document),
            }
            users.append(_tuple(RESOURCE_COLUMNS, row))
            mails.append(_tuple(EMAIL_COLUMNS, {"owner_pk": pk, "value_ci": fold(email(prefix, index))}))
            seeded.user_ids.append(resource_id)
            new_pks.append(pk)
            pk += 1
        yield "resources", users
        yield "emails", mails
    for name, size in groups.items():
        group_id = str(uuid.uuid4())
        row = {
            "pk": pk,
            "source": SOURCE,
            "resource_type": "Group",
            "id": group_id,
            "created": now,
            "last_modified": now,
            "version": 1,
            **SqlStorage._columns("Group", group_body(name)),
        }
        yield "resources", [_tuple(RESOURCE_COLUMNS, row)]
        seeded.group_ids[name] = group_id
        for offset in range(0, size, BATCH):
            yield (
                "members",
                [
                    _tuple(MEMBER_COLUMNS, {"group_pk": pk, "member_pk": m, "display": None})
                    for m in new_pks[offset : min(size, offset + BATCH)]
                ],
            )
        pk += 1


COLUMNS = {"resources": RESOURCE_COLUMNS, "emails": EMAIL_COLUMNS, "members": MEMBER_COLUMNS}


def _seed_sqlite(
    path: str, prefix: str, start: int, count: int, groups: dict[str, int], seeded: Seeded
) -> None:
    connection = sqlite3.connect(path, timeout=60, isolation_level=None)
    try:
        connection.execute("PRAGMA foreign_keys=ON")
        connection.execute("BEGIN IMMEDIATE")
        first = connection.execute("SELECT coalesce(max(pk), 0) + 1 FROM resources").fetchone()[0]
        for table, rows in _rows(prefix, start, count, groups, first, seeded):
            columns = COLUMNS[table]
            connection.executemany(
                f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})", rows
            )
        connection.execute("COMMIT")
    finally:
        connection.close()


async def _seed_postgres(
    url: str, prefix: str, start: int, count: int, groups: dict[str, int], seeded: Seeded
) -> None:
    import asyncpg  # type: ignore[import-untyped]

    connection = await asyncpg.connect(
        url.replace("postgresql+asyncpg://", "postgres://").replace("postgresql://", "postgres://")
    )
    try:
        async with connection.transaction():
            first = await connection.fetchval("SELECT coalesce(max(pk), 0) + 1 FROM resources")
            for table, rows in _rows(prefix, start, count, groups, first, seeded):
                await connection.copy_records_to_table(table, records=rows, columns=COLUMNS[table])
            await connection.execute(
                "SELECT setval(pg_get_serial_sequence('resources', 'pk'), (SELECT max(pk) FROM resources))"
            )
        await connection.execute("ANALYZE")
    finally:
        await connection.close()


def seed(
    database_url: str,
    prefix: str,
    start: int,
    count: int,
    groups: dict[str, int] | None = None,
    seeded: Seeded | None = None,
) -> Seeded:
    """Insert users ``prefix{start..start+count-1}``; then, for each ``groups[name] = n``, a group whose
    members are the first n users inserted by this call. Migrates the database first."""
    began = time.perf_counter()
    seeded = seeded or Seeded()
    asyncio.run(_prepare(database_url))
    if "://" not in database_url:
        _seed_sqlite(database_url, prefix, start, count, groups or {}, seeded)
    else:
        asyncio.run(_seed_postgres(database_url, prefix, start, count, groups or {}, seeded))
    seeded.seconds += time.perf_counter() - began
    return seeded
