"""What the webhook receivers keep besides SCIM resources: accepted deliveries, ZITADEL grants, IdP flags.

* :class:`SqlReplayGuard` implements :class:`app.webhooks.replay.ReplayGuard` on a table with a unique
  key, so two concurrent deliveries of the same key cannot both be accepted (one INSERT wins).
* :class:`IdpState` remembers ZITADEL grants (``user.grant.changed``/``removed`` carry only the grant id,
  research/zitadel.md §6) and each user's activation and lockout flags.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from sqlalchemy import Table, and_, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from app.store.db import Database
from app.store.tables import idp_grants, idp_user_flags, webhook_deliveries

__all__ = ["IdpState", "SqlReplayGuard"]


class SqlReplayGuard:
    """Accepted delivery keys in ``webhook_deliveries`` until they expire (shared by every process)."""

    def __init__(self, db: Database, *, clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self.clock = clock

    def _insert(self) -> sqlite.Insert | postgresql.Insert:
        return (sqlite.insert if self.db.is_sqlite else postgresql.insert)(webhook_deliveries)

    async def seen(self, key: str) -> bool:
        async with self.db.transaction() as conn:
            query = select(webhook_deliveries.c.key).where(
                webhook_deliveries.c.key == key, webhook_deliveries.c.expires_at > self.clock()
            )
            return (await conn.execute(query)).first() is not None

    async def remember(self, key: str, expires_at: float) -> bool:
        now = self.clock()
        async with self.db.transaction(write=True) as conn:
            # Expired keys go first: an old key can be claimed again, and the table stays small.
            await conn.execute(delete(webhook_deliveries).where(webhook_deliveries.c.expires_at <= now))
            result = await conn.execute(
                self._insert()
                .values(key=key, expires_at=expires_at)
                .on_conflict_do_nothing(index_elements=["key"])
            )
            return bool(result.rowcount == 1)

    async def forget(self, key: str) -> None:
        async with self.db.transaction(write=True) as conn:
            await conn.execute(delete(webhook_deliveries).where(webhook_deliveries.c.key == key))


class IdpState:
    """Grants and activation flags of one source's IdP users (keyed by the IdP's user id)."""

    def __init__(self, db: Database, source: str) -> None:
        self.db = db
        self.source = source

    def _insert(self, table: Table) -> sqlite.Insert | postgresql.Insert:
        return (sqlite.insert if self.db.is_sqlite else postgresql.insert)(table)

    # -- grants -------------------------------------------------------------------------------

    async def grant_user(self, grant_id: str) -> str | None:
        async with self.db.transaction() as conn:
            row = (
                await conn.execute(
                    select(idp_grants.c.idp_user_id).where(
                        idp_grants.c.source == self.source, idp_grants.c.grant_id == grant_id
                    )
                )
            ).first()
            return None if row is None else str(row.idp_user_id)

    async def put_grant(
        self, grant_id: str, idp_user_id: str, role_keys: Iterable[str], active: bool = True
    ) -> None:
        keys = list(dict.fromkeys(role_keys))
        async with self.db.transaction(write=True) as conn:
            statement = self._insert(idp_grants).values(
                source=self.source, grant_id=grant_id, idp_user_id=idp_user_id, role_keys=keys, active=active
            )
            await conn.execute(
                statement.on_conflict_do_update(
                    index_elements=["source", "grant_id"],
                    set_={"idp_user_id": idp_user_id, "role_keys": keys, "active": active},
                )
            )

    async def set_grant_active(self, grant_id: str, active: bool) -> None:
        async with self.db.transaction(write=True) as conn:
            await conn.execute(
                update(idp_grants)
                .where(idp_grants.c.source == self.source, idp_grants.c.grant_id == grant_id)
                .values(active=active)
            )

    async def drop_grant(self, grant_id: str) -> None:
        async with self.db.transaction(write=True) as conn:
            await conn.execute(
                delete(idp_grants).where(
                    idp_grants.c.source == self.source, idp_grants.c.grant_id == grant_id
                )
            )

    async def grant_ids(self) -> set[str]:
        async with self.db.transaction() as conn:
            query = select(idp_grants.c.grant_id).where(idp_grants.c.source == self.source)
            return {str(row.grant_id) for row in await conn.execute(query)}

    async def roles_of(self, idp_user_id: str) -> list[str]:
        """The union of the role keys of the user's active grants, in a stable order."""
        async with self.db.transaction() as conn:
            query = (
                select(idp_grants.c.role_keys)
                .where(
                    idp_grants.c.source == self.source,
                    idp_grants.c.idp_user_id == idp_user_id,
                    idp_grants.c.active.is_(True),
                )
                .order_by(idp_grants.c.grant_id)
            )
            roles: dict[str, None] = {}
            for row in await conn.execute(query):
                roles.update(dict.fromkeys(str(key) for key in row.role_keys or []))
            return list(roles)

    async def forget_user(self, idp_user_id: str) -> None:
        async with self.db.transaction(write=True) as conn:
            await _forget(conn, self.source, idp_user_id)

    # -- activation and lockout ---------------------------------------------------------------

    async def set_flag(
        self, idp_user_id: str, *, active: bool | None = None, locked: bool | None = None
    ) -> bool:
        """Record a change of one flag and return the effective SCIM ``active`` (active and not locked)."""
        async with self.db.transaction(write=True) as conn:
            key = and_(idp_user_flags.c.source == self.source, idp_user_flags.c.idp_user_id == idp_user_id)
            row = (await conn.execute(select(idp_user_flags).where(key))).first()
            new_active = active if active is not None else (True if row is None else bool(row.active))
            new_locked = locked if locked is not None else (False if row is None else bool(row.locked))
            statement = self._insert(idp_user_flags).values(
                source=self.source, idp_user_id=idp_user_id, active=new_active, locked=new_locked
            )
            await conn.execute(
                statement.on_conflict_do_update(
                    index_elements=["source", "idp_user_id"],
                    set_={"active": new_active, "locked": new_locked},
                )
            )
            return new_active and not new_locked


async def _forget(conn: AsyncConnection, source: str, idp_user_id: str) -> None:
    await conn.execute(
        delete(idp_grants).where(idp_grants.c.source == source, idp_grants.c.idp_user_id == idp_user_id)
    )
    await conn.execute(
        delete(idp_user_flags).where(
            idp_user_flags.c.source == source, idp_user_flags.c.idp_user_id == idp_user_id
        )
    )
