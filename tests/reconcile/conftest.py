"""The reconciler on its own: a real (SQLite) store holding the users, an in-memory controller.

``harness`` writes users and groups as a SCIM write leaves them: the resource and its memberships in the
store's tables, the provisioning record of :class:`app.reconcile.admission.ProvisioningHooks`, a dirty
mark (:func:`app.store.queue.mark`), converges one user through
:meth:`app.reconcile.reconciler.Reconciler.converge_claimed` as the worker does, and reads back the
provisioning record and the audit rows. No network, no worker, no timing.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import pytest
from sqlalchemy import delete, insert, select

from app.mapping import load_mapping
from app.reconcile.admission import ProvisioningHooks
from app.reconcile.reconciler import Outcome, Reconciler
from app.reconcile.settings import SourceSettings
from app.store import audit, provisioning, queue
from app.store.db import Database
from app.store.tables import members, resources
from app.ziti.client import ZitiClient
from tests.reconcile.fake_controller import FakeController

SOURCE = "idp"
DEPLOYMENT = "dep-test"
USER = "urn:ietf:params:scim:schemas:core:2.0:User"


def user_document(
    user_id: str, user_name: str, *, email: str | None = None, active: bool = True, **extra: Any
) -> dict[str, Any]:
    document: dict[str, Any] = {"schemas": [USER], "id": user_id, "userName": user_name, "active": active}
    if email is not None:
        document["emails"] = [{"value": email, "primary": True}]
    return {**document, **extra}


@dataclass
class Harness:
    db: Database
    controller: FakeController
    settings: SourceSettings
    _pks: itertools.count[int] = field(default_factory=lambda: itertools.count(1000))

    def reconciler(self) -> Reconciler:
        client = cast(ZitiClient, self.controller)
        return Reconciler(self.db, client, {SOURCE: self.settings}, deployment=DEPLOYMENT)

    def hooks(self) -> ProvisioningHooks:
        """The write stage's own bookkeeping (the provisioning record a SCIM write leaves)."""
        return ProvisioningHooks({SOURCE: self.settings})

    def configure(self, **options: Any) -> None:
        """Change the source's settings (``on_delete``, ``adopt``, ``mapping`` ...) for later converges."""
        self.settings = dataclasses.replace(self.settings, **options)

    async def put_user(self, user_id: str, user_name: str, *, groups: Sequence[str] = (), **fields: Any) -> None:
        """Create or replace a user (and put it in ``groups``, made as needed), as a SCIM write does."""
        document = user_document(user_id, user_name, **fields)
        now = "2026-01-01T00:00:00Z"
        async with self.db.transaction(write=True) as tx:
            await tx.execute(delete(resources).where(resources.c.id == user_id))
            pk = next(self._pks)
            await tx.execute(
                insert(resources).values(
                    pk=pk, source=SOURCE, resource_type="User", id=user_id, user_name_ci=user_name.lower(),
                    external_id=None, data=document, created=now, last_modified=now, version=1,
                )
            )
            for name in groups:
                group_pk = (
                    await tx.execute(select(resources.c.pk).where(resources.c.id == f"group-{name}"))
                ).scalar()
                if group_pk is None:
                    group_pk = next(self._pks)
                    await tx.execute(
                        insert(resources).values(
                            pk=group_pk, source=SOURCE, resource_type="Group", id=f"group-{name}",
                            display_name_ci=name.lower(), data={"displayName": name}, created=now,
                            last_modified=now, version=1,
                        )
                    )
                await tx.execute(insert(members).values(group_pk=group_pk, member_pk=pk))
            refs = [{"value": f"group-{name}", "display": name} for name in groups]
            await self.hooks().admit(tx, SOURCE, user_id, document, refs)

    async def delete_user(self, user_id: str) -> None:
        async with self.db.transaction(write=True) as tx:
            await tx.execute(delete(resources).where(resources.c.id == user_id))
            await self.hooks().release(tx, SOURCE, user_id)

    async def converge(self, user_id: str, reconciler: Reconciler | None = None) -> Outcome:
        """Mark the user dirty, claim it and converge it once, as the worker does."""
        async with self.db.transaction(write=True) as tx:
            await queue.mark(tx, SOURCE, [user_id])
            claim = await queue.claim(tx, SOURCE, user_id)
        assert claim is not None
        return await (reconciler or self.reconciler()).converge_claimed(claim)

    async def record(self, user_id: str) -> dict[str, Any] | None:
        async with self.db.transaction() as tx:
            found = await provisioning.get(tx, SOURCE, user_id)
        return dict(found) if found is not None else None

    async def dirty(self, user_id: str) -> bool:
        async with self.db.transaction() as tx:
            return (SOURCE, user_id) in await queue.marked(tx, SOURCE)

    async def audit(self) -> list[tuple[str, str | None, str]]:
        """``(action, identity_id, outcome)`` of every audit row, oldest first."""
        async with self.db.transaction() as tx:
            rows = await audit.read(tx, limit=1000)
        return [(row["action"], row["identity_id"], row["outcome"]) for row in reversed(rows)]


@pytest.fixture
async def harness(sqlite_url: str) -> AsyncIterator[Harness]:
    db = Database(sqlite_url)
    settings = SourceSettings(name=SOURCE, mapping=load_mapping({"preset": "generic"}))
    try:
        yield Harness(db, FakeController(), settings)
    finally:
        await db.dispose()
