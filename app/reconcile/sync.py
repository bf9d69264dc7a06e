"""Full comparison of desired users with managed identities, and the repair of drift (``ziti-scim sync``).

Only identities carrying ziti-scim's provenance tags are considered, so an identity ziti-scim does not
manage is never listed, changed or deleted. The repair goes through the reconciler: a drifted user's
record is set to what the controller really holds and the user is marked dirty, so the reconciler
sends exactly the difference.

Orphans (identities tagged for this deployment and one of its sources whose user the database does not
know) are only proposed: ``sync --delete-orphans`` removes them per the source's ``on_delete`` (or
``on_delete_adopted``), each through the mass-deprovision brake and into the audit log. A source the
database knows no users of never deletes any (a fresh or restored database), and identities of another
deployment are never orphans of this one (:mod:`app.reconcile.ownership`). Every change goes through the
actuator (:mod:`app.reconcile.actuator`), like the reconciler's: ownership re-checked on a fresh read, the
brake applied (what it holds stays on the controller until ``ziti-scim resume``), an audit row for each
change made, held or refused.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from app.mapping import MappingError, map_user
from app.reconcile import ownership
from app.reconcile.actuator import NotOurs, Origin
from app.reconcile.admission import group_refs
from app.reconcile.reconciler import Reconciler, observed_fields
from app.reconcile.safety import Held, write_setting
from app.reconcile.settings import MANAGER, TAG_ID, TAG_MANAGED_BY
from app.reconcile.target import target_fields
from app.store import locks, provisioning, queue
from app.store.db import Database
from app.store.desired import read_user_state, user_ids
from app.ziti.errors import ZitiNotFound
from app.ziti.filters import ziti_filter_tag_eq

if TYPE_CHECKING:
    from app.reconcile.provisioner import Provisioner
    from app.reconcile.worker import Worker

Action = Literal[
    "create", "patch", "enable", "disable", "delete-orphan", "disable-orphan", "untag-orphan", "unmappable"
]
ORPHAN_ACTIONS = ("delete-orphan", "disable-orphan", "untag-orphan")
ORPHAN_ACTION: dict[str, Action] = {
    "delete": "delete-orphan",
    "disable": "disable-orphan",
    "untag": "untag-orphan",
}
NO_USERS = "kept: the database knows no users of this source"


@dataclass
class PlanItem:
    action: Action
    source: str
    user_id: str | None
    identity_id: str | None
    changes: dict[str, Any] = field(default_factory=dict)
    detail: str = ""

    def describe(self) -> str:
        who = f"{self.source}/{self.user_id}" if self.user_id else self.source
        changes = ", ".join(f"{k}: {v[0]!r} -> {v[1]!r}" for k, v in self.changes.items())
        target = f" identity {self.identity_id}" if self.identity_id else ""
        return (
            f"{self.action:<15} {who}{target}"
            + (f"  [{changes}]" if changes else "")
            + (f"  {self.detail}" if self.detail else "")
        )


SYNC_LOCK = 0x5A17_5C13
"""The PostgreSQL advisory lock key a full sync holds, so that replicas never run two at once."""


@asynccontextmanager
async def exclusive(db: Database) -> AsyncIterator[None]:
    """Hold the full-sync lock (PostgreSQL advisory lock; SQLite has a single process)."""
    async with locks.exclusive(db, SYNC_LOCK):
        yield


async def plan(reconciler: Reconciler) -> list[PlanItem]:
    """What ``sync`` would change, without changing anything."""
    client, db = reconciler.client, reconciler.db
    managed = {
        identity["id"]: identity
        async for identity in client.iter_identities(ziti_filter_tag_eq(TAG_MANAGED_BY, MANAGER))
    }
    deployment = await reconciler.deployment()
    items: list[PlanItem] = []
    claimed: set[str] = set()
    known: dict[str, int] = {}
    for source, settings in reconciler.settings.items():
        owner = await reconciler.owner(settings)
        async with db.transaction() as tx:
            users = await user_ids(tx, source)
        known[source] = len(users)
        for user_id in users:
            async with db.transaction() as tx:
                state = await read_user_state(tx, source, user_id)
            assert state.document is not None
            try:
                desired = map_user(state.document, group_refs(state.groups), settings.mapping).identity
            except MappingError as error:
                items.append(
                    PlanItem("unmappable", source, user_id, None, detail=f"{error.attribute}: {error.detail}")
                )
                # A skipped user keeps the identity it already has: never an orphan to clean up.
                if kept := (state.provisioning or {}).get("identity_id"):
                    claimed.add(str(kept))
                continue
            target = target_fields(desired)
            disabled = state.document.get("active") is False
            record = state.provisioning or {}
            identity = managed.get(record.get("identity_id") or "")
            if identity is None or not ownership.owns(identity, owner, user_id, recorded=True):
                detail = f"externalId {desired.external_id!r}"
                if record.get("state") == "conflict":
                    detail += " (conflict: held by an identity ziti-scim does not own, see doctor)"
                items.append(PlanItem("create", source, user_id, None, detail=detail))
                continue
            claimed.add(identity["id"])
            observed = observed_fields(identity)
            changes = {
                k: (observed[k], target[k]) for k in target if k != "name" and observed[k] != target[k]
            }
            applied_name = ((record.get("applied") or {}).get("fields") or {}).get("name")
            if observed["name"] != applied_name and observed["name"] != target["name"]:
                changes["name"] = (observed["name"], applied_name or target["name"])
            if changes:
                items.append(PlanItem("patch", source, user_id, identity["id"], changes))
            if observed["disabled"] != disabled:
                items.append(PlanItem("disable" if disabled else "enable", source, user_id, identity["id"]))
    for identity_id, identity in managed.items():
        if identity_id in claimed:
            continue
        source_name = ownership.orphan_source(identity, deployment, reconciler.settings)
        if source_name is None:
            continue  # another deployment's, or a source this configuration does not serve: not ours
        owner_settings = reconciler.settings[source_name]
        user = str(ownership.tags_of(identity).get(TAG_ID))
        async with db.transaction() as tx:
            state = await read_user_state(tx, source_name, user)
        if state.document is not None:
            continue  # the user exists but points at another identity: its own item covers it
        how = ownership.removal(
            ownership.is_adopted(identity), owner_settings.on_delete, owner_settings.on_delete_adopted
        )
        if how == "disable" and identity.get("disabled"):
            continue
        action = ORPHAN_ACTION[how]
        detail = str(identity.get("name"))
        if not ownership.may_delete_orphans(known.get(source_name, 0)):
            detail += f"  ({NO_USERS})"
        items.append(PlanItem(action, source_name, user, identity_id, detail=detail))
    return items


async def apply(reconciler: Reconciler, items: list[PlanItem]) -> None:
    """Repair what :func:`plan` found (orphans aside); the reconciler converges the marked users later."""
    client, db = reconciler.client, reconciler.db
    for item in items:
        if item.user_id is None or item.action in ("unmappable", *ORPHAN_ACTIONS):
            continue
        async with db.transaction(write=True) as tx:
            applied: dict[str, Any] | None = None
            if item.action != "create":
                assert item.identity_id is not None
                identity = await client.get_identity(item.identity_id)
                record = await provisioning.get(tx, item.source, item.user_id) or {}
                fields = observed_fields(identity)
                base = ((record.get("applied") or {}).get("fields") or {}).get("name")
                if base and item.changes.get("name") is None:
                    fields["name"] = base
                applied = {"fields": fields, "target": None}
            await provisioning.record_drift(
                tx, item.source, item.user_id, applied=applied, identity_lost=item.action == "create"
            )
            await queue.mark(tx, item.source, [item.user_id])


async def remove_orphans(reconciler: Reconciler, items: list[PlanItem], report: Callable[[str], None]) -> int:
    """Remove the proposed orphans (``--delete-orphans``); return how many were left (held, kept, changed)."""
    client, db, actuator = reconciler.client, reconciler.db, reconciler.actuator
    deployment = await reconciler.deployment()
    left = 0
    held: set[str] = set()
    for item in items:
        if item.action not in ORPHAN_ACTIONS:
            continue
        assert item.identity_id is not None and item.user_id is not None
        if NO_USERS in item.detail or item.source in held:
            left += 1
            continue
        try:
            identity = await client.get_identity(item.identity_id)
        except ZitiNotFound:
            continue  # gone meanwhile
        async with db.transaction() as tx:
            state = await read_user_state(tx, item.source, item.user_id)
        if (
            ownership.orphan_source(identity, deployment, reconciler.settings) != item.source
            or ownership.tags_of(identity).get(TAG_ID) != item.user_id
            or state.document is not None
        ):
            left += 1  # changed since the plan: the next sync looks again
            continue
        action = item.action.removesuffix("-orphan")
        identity_id = item.identity_id
        origin = Origin(item.source, item.user_id, operation="sync --delete-orphans")

        released = {"tags": ownership.released_tags(identity)}

        async def change(
            action: str = action, identity_id: str = identity_id, released: Any = released
        ) -> None:
            if action == "delete":
                await client.delete_identity(identity_id, missing_ok=True)
            elif action == "disable":
                await client.disable_identity(identity_id)
            else:
                await client.patch_identity(identity_id, released)

        try:
            await actuator.act(origin, action, identity_id, change, identity=identity)
        except NotOurs as error:
            await actuator.refused(origin, action, identity_id, "refused", str(error))
            left += 1
        except Held as error:
            await actuator.refused(origin, action, identity_id, "held", str(error))
            report(
                f"  {item.source}: {error}; review (ziti-scim audit), then ziti-scim resume and sync again"
            )
            held.add(item.source)
            left += 1
    return left


LAST_FULL_SYNC = "last_full_sync"
SETTLE_POLL = 0.2


async def _unsettled(db: Database, marked: set[tuple[str, str]]) -> int:
    """How many marked users are still being converged (:func:`app.store.queue.unsettled`)."""
    async with db.transaction() as tx:
        return await queue.unsettled(tx, marked)


async def settle(worker: Worker, marked: set[tuple[str, str]], *, timeout: float) -> None:
    """Converge the users ``sync`` marked, also those a running service claimed first.

    ``sync`` runs next to the live service (the normal case): the service's worker may hold the lease
    of a row ``sync`` just marked, so :meth:`Worker.drain` finds nothing to claim and returns while
    that user is still being converged. Re-planning then would report a difference that is about to
    vanish; so this waits until each marked row is finished, or its lease expires (a dead holder) and
    the drain takes it over.
    """
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while True:
        await worker.drain(timeout=max(0.0, end - loop.time()))
        if not marked or loop.time() >= end or not await _unsettled(worker.reconciler.db, marked):
            return
        await asyncio.sleep(SETTLE_POLL)


def _split(items: list[PlanItem]) -> tuple[list[PlanItem], list[PlanItem]]:
    """The changes to make, and the users skipped for a missing value."""
    return [i for i in items if i.action != "unmappable"], [i for i in items if i.action == "unmappable"]


async def run(
    provisioner: Provisioner,
    *,
    dry_run: bool,
    report: Callable[[str], None],
    delete_orphans: bool = False,
) -> int:
    """Plan, print, and (unless ``dry_run``) repair; 0 when nothing is left to repair.

    Users skipped for a missing value (``unmappable``) are listed apart: nothing here can repair them
    (the IdP's next write that brings the value does), so they are neither changes nor differences.
    Orphans are removed only with ``delete_orphans``; otherwise they are listed as proposals and do
    not count as differences left.
    """
    reconciler = provisioner.reconciler
    items, skipped = _split(await plan(reconciler))
    report(f"{len(items)} change(s) {'would be made' if dry_run else 'to make'}:")
    for item in items:
        report("  " + item.describe())
    if skipped:
        report(f"{len(skipped)} user(s) skipped, a value their identity needs is missing:")
        for item in skipped:
            report("  " + item.describe())
    orphans = [item for item in items if item.action in ORPHAN_ACTIONS]
    if orphans and not delete_orphans:
        report(f"{len(orphans)} orphan(s) proposed, none removed (`sync --delete-orphans` removes them)")
    if dry_run:
        return 0
    if orphans and delete_orphans:
        await remove_orphans(reconciler, orphans, report)
    changes = [item for item in items if item.action not in ORPHAN_ACTIONS]
    if changes or (orphans and delete_orphans):
        await apply(reconciler, changes)
        marked = {
            (item.source, item.user_id)
            for item in changes
            if item.user_id is not None and item.action in ("create", "patch", "enable", "disable")
        }
        await settle(provisioner.worker, marked, timeout=600)
        # Orphans count as left only when asked to remove them and they could be (not held back by rule).
        remaining = [
            item
            for item in _split(await plan(reconciler))[0]
            if item.action not in ORPHAN_ACTIONS or (delete_orphans and NO_USERS not in item.detail)
        ]
        report(f"after repair: {len(remaining)} difference(s) left")
        for item in remaining:
            report("  " + item.describe())
        if remaining:
            return 1
    await write_setting(reconciler.db, LAST_FULL_SYNC, time.time())
    return 0
