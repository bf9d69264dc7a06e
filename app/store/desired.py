"""The desired state of users, as the reconciler and the diagnostics read it: a user's SCIM document,
the groups it is a member of, and its provisioning record.

Every operation runs in the caller's transaction (:data:`app.store.types.Transaction`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, cast

from sqlalchemy import select

from app.store.db import CHUNK, chunks_by_source
from app.store.tables import members, provisioning, resources
from app.store.types import DesiredUser, ProvisioningRecord, StoredGroup, Transaction, UserState


def _group_ref(group_id: str, data: dict[str, Any] | None, external_id: str | None) -> StoredGroup:
    name = str((data or {}).get("displayName") or "")
    return StoredGroup(id=group_id, display_name=name, external_id=external_id)


async def read_user_state(tx: Transaction, source: str, user_id: str) -> UserState:
    """The user's document (None once deleted), its groups (in creation order) and its record."""
    return (await read_user_states(tx, [(source, user_id)]))[(source, user_id)]


async def read_user_states(
    tx: Transaction, keys: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], UserState]:
    """:func:`read_user_state` of many ``(source, user_id)`` keys at once, by key: three queries in all,
    whatever the number of users (the reconciler reads the users of a claimed batch together)."""
    wanted = list(chunks_by_source(keys))
    documents: dict[tuple[str, str], dict[str, Any]] = {}
    pks: dict[int, tuple[str, str]] = {}
    records: dict[tuple[str, str], ProvisioningRecord] = {}
    groups: dict[tuple[str, str], list[StoredGroup]] = {}
    for source, chunk in wanted:
        # By id alone (the unique index), the rest checked here: with ``source = ?`` in the query, SQLite's
        # planner scans every resource of the source instead (see SqlStorage._lookup).
        c = resources.c
        rows = await tx.execute(
            select(c.pk, c.id, c.data, c.source, c.resource_type).where(c.id.in_(chunk))
        )
        for row in rows:
            if row.source == source and row.resource_type == "User":
                documents[(source, str(row.id))] = dict(row.data)
                pks[row.pk] = (source, str(row.id))
        found = await tx.execute(
            select(provisioning).where(provisioning.c.source == source, provisioning.c.user_id.in_(chunk))
        )
        for record in found:
            records[(source, str(record.user_id))] = cast(ProvisioningRecord, dict(record._mapping))
    found_pks = list(pks)
    group = resources.alias("g")
    for start in range(0, len(found_pks), CHUNK):
        query = (
            select(members.c.member_pk, group.c.id, group.c.data, group.c.external_id)
            .join(group, members.c.group_pk == group.c.pk)
            .where(members.c.member_pk.in_(found_pks[start : start + CHUNK]))
            .order_by(group.c.pk)
        )
        for member_pk, group_id, data, external_id in await tx.execute(query):
            groups.setdefault(pks[member_pk], []).append(_group_ref(group_id, data, external_id))
    return {
        key: UserState(
            document=documents.get(key),
            groups=tuple(groups.get(key, ())),
            provisioning=records.get(key),
        )
        for source, chunk in wanted
        for key in ((source, user_id) for user_id in chunk)
    }


async def user_ids(tx: Transaction, source: str) -> list[str]:
    """The ids of ``source``'s users, in creation order."""
    query = (
        select(resources.c.id)
        .where(resources.c.source == source, resources.c.resource_type == "User")
        .order_by(resources.c.pk)
    )
    return [str(row.id) for row in await tx.execute(query)]


async def users(tx: Transaction, source: str | None = None) -> list[DesiredUser]:
    """Every user with its groups, of ``source`` or of every source, by source then creation order."""
    query = select(resources.c.pk, resources.c.source, resources.c.id, resources.c.data).where(
        resources.c.resource_type == "User"
    )
    if source is not None:
        query = query.where(resources.c.source == source)
    rows = (await tx.execute(query.order_by(resources.c.source, resources.c.pk))).all()
    group = resources.alias("g")
    membership = select(members.c.member_pk, group.c.id, group.c.data, group.c.external_id).join(
        group, group.c.pk == members.c.group_pk
    )
    if source is not None:
        membership = membership.where(group.c.source == source)
    groups: dict[int, list[StoredGroup]] = {}
    for member_pk, group_id, data, external_id in await tx.execute(membership.order_by(group.c.pk)):
        groups.setdefault(member_pk, []).append(_group_ref(group_id, data, external_id))
    return [
        DesiredUser(str(row.source), str(row.id), dict(row.data or {}), tuple(groups.get(row.pk, ())))
        for row in rows
    ]


__all__ = ["read_user_state", "read_user_states", "user_ids", "users"]
