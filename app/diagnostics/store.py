"""Read-only views of the store for diagnostics: SCIM users with their groups and provisioning record,
and the service's ``settings`` facts (the mass-deprovision brake).

Diagnostics never write and never create the database: :func:`open_existing` refuses a SQLite file that
does not exist instead of letting the driver create an empty one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine.url import make_url
from sqlalchemy.exc import SQLAlchemyError

from app.mapping import GroupRef
from app.store.db import Database, database_url
from app.store.tables import audit, dirty, members, provisioning, resources, settings


class StoreUnavailable(Exception):
    """The database cannot be read (missing file, not migrated, unreachable); the message says which."""


@dataclass(frozen=True)
class StoredUser:
    """A SCIM user of one source, as the reconciler sees it."""

    source: str
    user_id: str
    document: dict[str, Any]
    groups: tuple[GroupRef, ...]
    claimed_external_id: str | None = None
    identity_id: str | None = None
    state: str | None = None
    last_error: str | None = None
    dirty: bool = False
    conflict: tuple[str | None, str] | None = None
    """For state ``conflict``: the other identity's id and why (from the audit log; operators only)."""

    @property
    def user_name(self) -> str:
        value = self.document.get("userName")
        return value if isinstance(value, str) else self.user_id

    @property
    def active(self) -> bool:
        return self.document.get("active") is not False


def open_existing(url_or_path: str) -> Database:
    """A :class:`Database` for an existing store (SQLite file must exist; servers are not probed here)."""
    url = database_url(url_or_path)
    if url.startswith("sqlite"):
        path = make_url(url).database
        if path and path != ":memory:" and not Path(path).is_file():
            raise StoreUnavailable(f"the SQLite database {path} does not exist (run `ziti-scim serve` once)")
    return Database(url_or_path)


async def load_users(db: Database, source: str | None = None) -> list[StoredUser]:
    """All users (of ``source``, or of every source), ordered by source then creation."""
    try:
        async with db.engine.connect() as conn:
            query = select(resources.c.pk, resources.c.source, resources.c.id, resources.c.data).where(
                resources.c.resource_type == "User"
            )
            if source is not None:
                query = query.where(resources.c.source == source)
            rows = (await conn.execute(query.order_by(resources.c.source, resources.c.pk))).all()
            group = resources.alias("g")
            membership = select(members.c.member_pk, group.c.id, group.c.data, group.c.external_id).join(
                group, group.c.pk == members.c.group_pk
            )
            if source is not None:
                membership = membership.where(group.c.source == source)
            groups: dict[int, list[GroupRef]] = {}
            for member_pk, group_id, data, external_id in await conn.execute(membership.order_by(group.c.pk)):
                name = str((data or {}).get("displayName") or "")
                groups.setdefault(member_pk, []).append(GroupRef(group_id, name, external_id))
            records_query = select(provisioning)
            dirty_query = select(dirty.c.source, dirty.c.user_id)
            if source is not None:
                records_query = records_query.where(provisioning.c.source == source)
                dirty_query = dirty_query.where(dirty.c.source == source)
            records = {(r.source, r.user_id): r for r in await conn.execute(records_query)}
            pending = {(r.source, r.user_id) for r in await conn.execute(dirty_query)}
            conflicts: dict[tuple[str, str], tuple[str | None, str]] = {}
            if any(r.state == "conflict" for r in records.values()):
                audit_query = select(
                    audit.c.source, audit.c.user_id, audit.c.identity_id, audit.c.error
                ).where(audit.c.action == "conflict")
                if source is not None:
                    audit_query = audit_query.where(audit.c.source == source)
                for row in await conn.execute(audit_query.order_by(audit.c.id)):
                    conflicts[(row.source, row.user_id)] = (row.identity_id, row.error or "")
    except (SQLAlchemyError, OSError) as error:
        raise StoreUnavailable(_describe(error)) from error
    users = []
    for row in rows:
        record = records.get((row.source, row.id))
        users.append(
            StoredUser(
                source=row.source,
                user_id=row.id,
                document=dict(row.data or {}),
                groups=tuple(groups.get(row.pk, ())),
                claimed_external_id=record.external_id if record is not None else None,
                identity_id=record.identity_id if record is not None else None,
                state=record.state if record is not None else None,
                last_error=record.last_error if record is not None else None,
                dirty=(row.source, row.id) in pending,
                conflict=conflicts.get((row.source, row.id))
                if record is not None and record.state == "conflict"
                else None,
            )
        )
    return users


async def user_by_identity(db: Database, identity_id: str) -> tuple[str, str] | None:
    """``(source, user_id)`` of the SCIM user whose identity this is, per the provisioning records."""
    try:
        async with db.engine.connect() as conn:
            row = (
                await conn.execute(
                    select(provisioning.c.source, provisioning.c.user_id).where(
                        provisioning.c.identity_id == identity_id
                    )
                )
            ).first()
    except (SQLAlchemyError, OSError) as error:
        raise StoreUnavailable(_describe(error)) from error
    return (row.source, row.user_id) if row is not None else None


async def read_setting(db: Database, key: str) -> Any | None:
    """The JSON value of ``settings[key]``, or None when the row is absent."""
    try:
        async with db.engine.connect() as conn:
            row = (await conn.execute(select(settings.c.value).where(settings.c.key == key))).first()
    except (SQLAlchemyError, OSError) as error:
        raise StoreUnavailable(_describe(error)) from error
    return row.value if row is not None else None


async def read_settings_like(db: Database, prefix: str) -> dict[str, Any]:
    """``{key: value}`` of the settings whose key starts with ``prefix``."""
    try:
        async with db.engine.connect() as conn:
            rows = await conn.execute(
                select(settings.c.key, settings.c.value).where(
                    settings.c.key.startswith(prefix, autoescape=True)
                )
            )
            return {row.key: row.value for row in rows}
    except (SQLAlchemyError, OSError) as error:
        raise StoreUnavailable(_describe(error)) from error


def _describe(error: SQLAlchemyError | OSError) -> str:
    text = str(getattr(error, "orig", None) or error).splitlines()[0]
    if "no such table" in text or "does not exist" in text:
        return f"the database is not initialised ({text}); run `ziti-scim serve` once to migrate it"
    return f"cannot read the database: {text}"
