"""Reading what a user should look like on the controller, and what was last written there."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from app.mapping import GroupRef
from app.store.tables import members, provisioning, resources


@dataclass(frozen=True)
class UserState:
    """A user's SCIM document and its groups, or ``document=None`` once the user is deleted."""

    document: dict[str, Any] | None
    groups: tuple[GroupRef, ...]
    provisioning: dict[str, Any] | None


async def read_user_state(conn: AsyncConnection, source: str, user_id: str) -> UserState:
    row = (
        await conn.execute(
            select(resources.c.pk, resources.c.data).where(
                resources.c.source == source, resources.c.resource_type == "User", resources.c.id == user_id
            )
        )
    ).first()
    groups: list[GroupRef] = []
    if row is not None:
        group = resources.alias("g")
        query = (
            select(group.c.id, group.c.data, group.c.external_id)
            .join(members, members.c.group_pk == group.c.pk)
            .where(members.c.member_pk == row.pk)
            .order_by(group.c.pk)
        )
        for group_id, data, external_id in await conn.execute(query):
            groups.append(
                GroupRef(
                    id=group_id, display_name=str(data.get("displayName") or ""), external_id=external_id
                )
            )
    record = (
        await conn.execute(
            select(provisioning).where(provisioning.c.source == source, provisioning.c.user_id == user_id)
        )
    ).first()
    return UserState(
        document=dict(row.data) if row is not None else None,
        groups=tuple(groups),
        provisioning=dict(record._mapping) if record is not None else None,
    )
