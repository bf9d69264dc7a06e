"""Admission of a user write: what the mapping yields, and whether its externalId is free.

Runs inside the SCIM transaction (a storage hook). An externalId another user already claims (in any
source) is 409 ``uniqueness``; the claim is a unique index, so two concurrent writes cannot both win.

A user the mapping cannot turn into an identity (a value it needs is missing, e.g. the primary email of
the ``generic`` preset: RFC 7643 §4.1.2 makes ``emails`` optional) is, by default (source option
``unmappable = "store"``), stored and answered 201 with ``provisioningState: skipped`` and a
``lastError`` naming the missing attribute; the write that brings the attribute provisions it. It keeps
the externalId it had claimed, if any, so that claim cannot move to another user meanwhile. With
``unmappable = "refuse"`` it is 400 ``invalidValue`` naming the attribute, and nothing is stored.
"""

from __future__ import annotations

import time
from typing import Any

from scim2_models import InvalidValueException, UniquenessException
from sqlalchemy import and_, exists, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from app.mapping import GroupRef, MappingError, map_user
from app.reconcile.settings import SourceSettings
from app.reconcile.skipped import SKIPPED, unmappable_message
from app.store.db import upsert
from app.store.tables import dirty, provisioning


class ProvisioningHooks:
    """The storage hooks (:class:`app.store.storage.UserHooks`) of the provisioning stage."""

    def __init__(self, settings: dict[str, SourceSettings], *, is_sqlite: bool) -> None:
        self.settings = settings
        self.is_sqlite = is_sqlite

    async def admit(
        self,
        conn: AsyncConnection,
        source: str,
        user_id: str,
        document: dict[str, Any],
        groups: list[dict[str, Any]],
    ) -> None:
        settings = self.settings[source]
        refs = [GroupRef(id=g["value"], display_name=g.get("display") or "") for g in groups]
        insert = upsert(provisioning, is_sqlite=self.is_sqlite)
        user_name = document.get("userName")
        try:
            desired = map_user(document, refs, settings.mapping).identity
        except MappingError as error:
            message = unmappable_message(error)
            if settings.unmappable == "refuse":
                raise InvalidValueException(detail=message) from error
            values = {
                "user_name": user_name,
                "state": SKIPPED,
                "last_error": message,
                "updated_at": time.time(),
            }
            await conn.execute(
                insert.values(source=source, user_id=user_id, adopted=False, **values).on_conflict_do_update(
                    index_elements=["source", "user_id"], set_=values
                )
            )
            return
        statement = insert.values(
            source=source,
            user_id=user_id,
            external_id=desired.external_id,
            user_name=user_name,
            state="pending",
            adopted=False,
            updated_at=time.time(),
        ).on_conflict_do_update(
            index_elements=["source", "user_id"],
            set_={"external_id": desired.external_id, "user_name": user_name},
        )
        try:
            async with conn.begin_nested():
                await conn.execute(statement)
        except IntegrityError as error:
            raise UniquenessException(
                detail=f"externalId {desired.external_id!r} is already provisioned for another user"
            ) from error

    async def release(self, conn: AsyncConnection, source: str, user_id: str) -> None:
        await conn.execute(
            update(provisioning)
            .where(provisioning.c.source == source, provisioning.c.user_id == user_id)
            .values(external_id=None)
        )

    async def view(
        self, conn: AsyncConnection, source: str, user_ids: list[str]
    ) -> dict[str, dict[str, Any]]:
        pending = exists().where(
            and_(dirty.c.source == provisioning.c.source, dirty.c.user_id == provisioning.c.user_id)
        )
        query = select(
            provisioning.c.user_id,
            provisioning.c.identity_id,
            provisioning.c.state,
            provisioning.c.last_error,
            pending.label("dirty"),
        ).where(provisioning.c.source == source, provisioning.c.user_id.in_(user_ids))
        view: dict[str, dict[str, Any]] = {}
        for row in await conn.execute(query):
            state = "pending" if row.dirty else row.state
            entry: dict[str, Any] = {"provisioningState": state}
            if row.identity_id:
                entry["identityId"] = row.identity_id
            if row.last_error and state != "synced":
                entry["lastError"] = row.last_error
            view[row.user_id] = entry
        return view
