"""Read-only views of the store for diagnostics: SCIM users with their groups and provisioning record,
and the service's ``settings`` facts (the mass-deprovision brake).

Diagnostics never write and never create the database: :func:`open_existing` refuses a SQLite file that
does not exist instead of letting the driver create an empty one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.mapping import GroupRef
from app.reconcile.admission import group_refs
from app.store import audit, desired, provisioning, queue, settings
from app.store.db import Database, database_url, sqlite_path
from app.store.errors import StoreError
from app.store.types import AuditRow, ProvisioningRecord


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
    path = sqlite_path(database_url(url_or_path))
    if path is not None and path != ":memory:" and not Path(path).is_file():
        raise StoreUnavailable(f"the SQLite database {path} does not exist (run `ziti-scim serve` once)")
    return Database(url_or_path)


async def load_users(db: Database, source: str | None = None) -> list[StoredUser]:
    """All users (of ``source``, or of every source), ordered by source then creation."""
    try:
        async with db.transaction() as tx:
            users = await desired.users(tx, source)
            records = await provisioning.records(tx, source)
            pending = await queue.marked(tx, source)
            conflicts: dict[tuple[str, str | None], AuditRow] = {}
            if any(r.get("state") == "conflict" for r in records.values()):
                conflicts = await audit.latest_of_action(tx, "conflict", source)
    except (StoreError, OSError) as error:
        raise StoreUnavailable(_describe(error)) from error
    stored = []
    for user in users:
        key = (user.source, user.user_id)
        record = records.get(key) or ProvisioningRecord()
        conflict = conflicts.get(key) if record.get("state") == "conflict" else None
        stored.append(
            StoredUser(
                source=user.source,
                user_id=user.user_id,
                document=user.document,
                groups=tuple(group_refs(user.groups)),
                claimed_external_id=record.get("external_id"),
                identity_id=record.get("identity_id"),
                state=record.get("state"),
                last_error=record.get("last_error"),
                dirty=key in pending,
                conflict=(conflict["identity_id"], conflict["error"] or "") if conflict is not None else None,
            )
        )
    return stored


async def user_by_identity(db: Database, identity_id: str) -> tuple[str, str] | None:
    """``(source, user_id)`` of the SCIM user whose identity this is, per the provisioning records."""
    try:
        async with db.transaction() as tx:
            return await provisioning.user_of_identity(tx, identity_id)
    except (StoreError, OSError) as error:
        raise StoreUnavailable(_describe(error)) from error


async def read_setting(db: Database, key: str) -> Any | None:
    """The JSON value of ``settings[key]``, or None when the row is absent."""
    try:
        async with db.transaction() as tx:
            return await settings.get(tx, key)
    except (StoreError, OSError) as error:
        raise StoreUnavailable(_describe(error)) from error


async def read_settings_like(db: Database, prefix: str) -> dict[str, Any]:
    """``{key: value}`` of the settings whose key starts with ``prefix``."""
    try:
        async with db.transaction() as tx:
            return await settings.with_prefix(tx, prefix)
    except (StoreError, OSError) as error:
        raise StoreUnavailable(_describe(error)) from error


def _describe(error: StoreError | OSError) -> str:
    text = str(getattr(error, "orig", None) or error).splitlines()[0]
    if "no such table" in text or "does not exist" in text:
        return f"the database is not initialised ({text}); run `ziti-scim serve` once to migrate it"
    return f"cannot read the database: {text}"
