"""Bulk seeding straight into ziti-scim's tables, for the growth scenarios (what is measured is HTTP).

The rows are exactly what the storage layer writes: the stored document is computed by
``SqlStorage._document`` for the first user and checked against the fast builder used for the rest,
and the indexed columns come from ``SqlStorage._columns``.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from scim2_models import Context
from sqlalchemy import func, insert, select, text

from app.config import SourceConfig
from app.scim.router import SourceApplication
from app.store.db import Database, fold
from app.store.storage import SqlStorage, now_iso
from app.store.tables import emails, members, resources
from bench.common import SOURCE, email, group_body, user_body

BATCH = 5000


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
    user_pks: list[int] = field(default_factory=list)
    group_ids: dict[str, str] = field(default_factory=dict)
    group_pks: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


class Seeder:
    def __init__(self, database_url: str) -> None:
        self.url = database_url

    async def _check_document(self, db: Database) -> None:
        application = SourceApplication(SourceConfig(name=SOURCE), db)
        user_type = next(r for r in application.provider.resource_types if r.name == "User")
        model = application.provider.model_for(user_type)
        body = user_body("check", 0)
        resource = model.model_validate(body, scim_ctx=Context.RESOURCE_CREATION_REQUEST)
        expected = SqlStorage._document(resource)
        if expected != stored_document(body):
            raise AssertionError(f"seed document differs from the storage's: {expected} != {stored_document(body)}")

    async def _next_pk(self, conn: Any) -> int:
        return int((await conn.execute(select(func.coalesce(func.max(resources.c.pk), 0)))).scalar_one()) + 1

    async def seed(
        self, prefix: str, start: int, count: int, groups: dict[str, int] | None = None, seeded: Seeded | None = None
    ) -> Seeded:
        """Insert users ``prefix{start..start+count-1}``; then, for each ``groups[name] = n``, a group whose
        members are the first n users inserted by this call. Migrates the database first."""
        began = time.perf_counter()
        seeded = seeded or Seeded()
        db = Database(self.url)
        try:
            await db.migrate()
            await self._check_document(db)
            now = now_iso()
            async with db.transaction(write=True) as conn:
                pk = await self._next_pk(conn)
                new_pks: list[int] = []
                for offset in range(0, count, BATCH):
                    rows, mails = [], []
                    for index in range(start + offset, start + min(count, offset + BATCH)):
                        document = stored_document(user_body(prefix, index))
                        resource_id = str(uuid.uuid4())
                        rows.append(
                            {
                                "pk": pk,
                                "source": SOURCE,
                                "resource_type": "User",
                                "id": resource_id,
                                "created": now,
                                "last_modified": now,
                                "version": 1,
                                **SqlStorage._columns("User", document),
                            }
                        )
                        mails.append({"owner_pk": pk, "value_ci": fold(email(prefix, index))})
                        seeded.user_ids.append(resource_id)
                        seeded.user_pks.append(pk)
                        new_pks.append(pk)
                        pk += 1
                    await conn.execute(insert(resources), rows)
                    await conn.execute(insert(emails), mails)
                for name, size in (groups or {}).items():
                    document = group_body(name)
                    group_id = str(uuid.uuid4())
                    await conn.execute(
                        insert(resources),
                        [
                            {
                                "pk": pk,
                                "source": SOURCE,
                                "resource_type": "Group",
                                "id": group_id,
                                "created": now,
                                "last_modified": now,
                                "version": 1,
                                **SqlStorage._columns("Group", document),
                            }
                        ],
                    )
                    seeded.group_ids[name] = group_id
                    seeded.group_pks[name] = pk
                    for offset in range(0, size, BATCH):
                        await conn.execute(
                            insert(members),
                            [
                                {"group_pk": pk, "member_pk": member, "display": None}
                                for member in new_pks[offset : min(size, offset + BATCH)]
                            ],
                        )
                    pk += 1
                if not db.is_sqlite:
                    await conn.execute(
                        text("SELECT setval(pg_get_serial_sequence('resources', 'pk'), (SELECT max(pk) FROM resources))")
                    )
            if not db.is_sqlite:
                async with db.engine.connect() as conn:
                    await conn.execute(text("COMMIT"))
                    await conn.execute(text("ANALYZE"))
        finally:
            await db.dispose()
        seeded.seconds += time.perf_counter() - began
        return seeded


def seed(database_url: str, prefix: str, start: int, count: int, groups: dict[str, int] | None = None,
         seeded: Seeded | None = None) -> Seeded:
    return asyncio.run(Seeder(database_url).seed(prefix, start, count, groups, seeded))
