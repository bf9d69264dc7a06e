"""Converge one user's OpenZiti identity to the user's desired state (create, patch, disable, delete).

Idempotent and level-triggered: it compares the desired identity with what was last applied and sends
only the difference, so an unchanged user costs no controller call and a created one costs one. It
never touches an identity it did not create or explicitly adopt: every identity it writes carries the
provenance tags of :mod:`app.reconcile.settings`, and it only acts on identity ids it recorded.

Controller quirks handled here (ziti-api.md §3.5, §3.7): identities are PATCHed, never PUT (PUT clears
omitted fields and re-enables); a rename onto a taken name is silently dropped by the controller and an
externalId collision on PATCH is a 500, so both are checked before patching; a create whose outcome is
unknown is resolved by looking the identity up by externalId and tags on the next attempt.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Literal

from sqlalchemy import delete, update
from sqlalchemy.ext.asyncio import AsyncConnection

from app.mapping import DesiredIdentity, MappingError, candidate_names, map_user
from app.observability import audit
from app.observability.metrics import Metrics
from app.reconcile import queue
from app.reconcile.actuator import Actuator, NotOurs, Origin
from app.reconcile.desired import UserState, read_user_state
from app.reconcile.safety import Held, Safety
from app.reconcile.settings import MANAGER, TAG_ID, TAG_MANAGED_BY, TAG_SOURCE, SourceSettings
from app.reconcile.skipped import SKIPPED, unmappable_message
from app.store.db import Database
from app.store.tables import provisioning
from app.ziti.client import ZitiClient
from app.ziti.errors import (
    ZitiDuplicate,
    ZitiError,
    ZitiNotFound,
    ZitiOutcomeUnknown,
    ZitiRateLimited,
    ZitiUnauthorized,
    ZitiUnavailable,
)

log = logging.getLogger("ziti_scim.reconcile")

Outcome = Literal["synced", "deprovisioned", "pending", "failed", "skipped", "held", "busy"]
MAX_NAME_SUFFIX = 50
FIELDS = ("name", "externalId", "roleAttributes", "authPolicyId", "isAdmin")


HELD_RECHECK = 60.0
CHANGE_IN_FLIGHT = "a change was sent to the controller; its outcome is not known yet"


Step = Callable[[AsyncConnection], Awaitable[None]]


@dataclass
class _Context:
    """The converge in progress: who it is for (the audit log) and the bookkeeping it leaves.

    The bookkeeping (``steps``: the provisioning record, the audit rows of the changes made) is written
    in one transaction with the settling of the dirty mark, once the converge is over.
    """

    claim: queue.Claim
    origin: Origin
    attempt: tuple[str, str | None] | None = None
    marked: bool = False
    entries: list[audit.AuditEntry] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)


_CONTEXT: ContextVar[_Context | None] = ContextVar("ziti_scim_converge", default=None)


class Permanent(Exception):
    """A failure that retrying will not fix (shown as provisioningState=failed with this message)."""


class Unmappable(Exception):
    """The user lacks an attribute its identity needs (provisioningState=skipped until a write brings it).

    Not a failure: RFC 7643 lets a user omit e.g. ``emails``; nothing is sent to the controller, and an
    identity the user already has is left as it is (see :mod:`app.reconcile.admission`).
    """


@dataclass
class Applied:
    """What is on the controller for a user, as far as ziti-scim manages it."""

    identity_id: str
    fields: dict[str, Any]
    adopted: bool = False


def target_fields(identity: DesiredIdentity) -> dict[str, Any]:
    return {
        "name": identity.name,
        "externalId": identity.external_id,
        "roleAttributes": sorted(identity.role_attributes),
        "authPolicyId": identity.auth_policy_id,
        "isAdmin": identity.is_admin,
    }


def observed_fields(identity: dict[str, Any]) -> dict[str, Any]:
    """The managed fields of a controller identity detail (ziti-api.md §3.4)."""
    return {
        "name": identity.get("name"),
        "externalId": identity.get("externalId"),
        "roleAttributes": sorted(identity.get("roleAttributes") or []),
        "authPolicyId": identity.get("authPolicyId") or "default",
        "isAdmin": bool(identity.get("isAdmin")),
        "disabled": bool(identity.get("disabled")),
    }


def is_ours(identity: dict[str, Any], source: str, user_id: str) -> bool:
    tags = identity.get("tags") or {}
    return bool(
        tags.get(TAG_MANAGED_BY) == MANAGER and tags.get(TAG_SOURCE) == source and tags.get(TAG_ID) == user_id
    )


def _transient(error: BaseException) -> bool:
    return isinstance(
        error, ZitiUnavailable | ZitiRateLimited | ZitiOutcomeUnknown | ZitiUnauthorized | OSError
    )


class Reconciler:
    """Converges users, one at a time per user, many users at once."""

    def __init__(
        self,
        db: Database,
        client: ZitiClient,
        settings: dict[str, SourceSettings],
        *,
        safety: Safety | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.db = db
        self.client = client
        self.settings = settings
        self.safety = safety
        self.metrics = metrics
        self.actuator = Actuator(db, safety=safety, metrics=metrics)
        # One lock per user being converged in this process; entries vanish when nobody holds them.
        self.held: dict[tuple[str, str], queue.Claim] = {}
        """The claims being worked on, whose leases the worker renews."""
        self._locks: weakref.WeakValueDictionary[tuple[str, str], asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )

    def _lock(self, key: tuple[str, str]) -> asyncio.Lock:
        lock = self._locks.get(key)
        if lock is None:
            lock = asyncio.Lock()
            self._locks[key] = lock
        return lock

    # -- entry points ---------------------------------------------------------------------------

    async def converge_claimed(self, claim: queue.Claim) -> Outcome:
        """Converge a user whose dirty mark this process holds, then settle the mark."""
        async with self._lock((claim.source, claim.user_id)):
            self.held[(claim.source, claim.user_id)] = claim
            try:
                context = _Context(claim, Origin(claim.source, claim.user_id))
                outcome = await self._converge(context)
                async with self.db.transaction(write=True) as conn:
                    for step in context.steps:
                        await step(conn)
                    if context.entries:
                        await audit.record(self.db, context.entries)
                    if outcome == "pending":
                        await queue.retry_later(self.db, claim, queue.backoff(claim.attempts))
                    elif outcome == "held":
                        await queue.retry_later(self.db, claim, HELD_RECHECK)
                    else:
                        await queue.finish(self.db, claim)
            finally:
                self.held.pop((claim.source, claim.user_id), None)
        if self.metrics is not None:
            self.metrics.reconcile_outcomes.labels(claim.source, outcome).inc()
        return outcome

    async def converge(self, source: str, user_id: str) -> Outcome:
        """Claim and converge one user now (the inline path); 'busy' if another worker holds it."""
        claim = await queue.claim(self.db, source, user_id)
        if claim is None:
            return "busy"
        return await self.converge_claimed(claim)

    async def _audit(
        self, action: str, identity_id: str | None, outcome: str, error: str | None = None
    ) -> None:
        context = _CONTEXT.get()
        if context is None:
            return
        context.entries.append(Actuator.entry(context.origin, action, identity_id, outcome, error))
        log.info(
            "controller action",
            extra={
                "source": context.claim.source,
                "user_id": context.claim.user_id,
                "action": action,
                "identity_id": identity_id,
                "outcome": outcome,
                "request_id": context.origin.request_id,
            },
        )

    async def _act(
        self,
        action: str,
        identity_id: str | None,
        call: Callable[[], Awaitable[Any]],
        *,
        identity: dict[str, Any] | None = None,
    ) -> Any:
        """Make one controller change through the actuator (ownership, brake, audit, metric)."""
        context = _CONTEXT.get()
        assert context is not None

        async def mark_in_flight() -> None:
            if not context.marked:
                # Recorded before the first change: if its answer is lost (crash, timeout), the next
                # attempt re-reads the controller instead of trusting what was last recorded.
                await self._record_failure(
                    context.claim.source, context.claim.user_id, CHANGE_IN_FLIGHT, failed=False
                )
                context.marked = True

        context.attempt = (action, identity_id)
        try:
            return await self.actuator.act(
                context.origin,
                action,
                identity_id,
                call,
                identity=identity,
                before=mark_in_flight,
                audit_to=context.entries,
            )
        finally:
            context.attempt = None

    # -- the algorithm ------------------------------------------------------------------------------

    async def _converge(self, context: _Context) -> Outcome:
        claim = context.claim
        source, user_id = claim.source, claim.user_id
        settings = self.settings.get(source)
        if settings is None:
            return "failed"
        async with self.db.transaction() as conn:
            state = await read_user_state(conn, source, user_id)
            request_id, operation = await queue.request_info(conn, claim)
        record = state.provisioning or {}
        context.origin = Origin(source, user_id, record.get("user_name"), request_id, operation)
        token = _CONTEXT.set(context)
        try:
            if self.safety is not None and await self.safety.paused():
                return "held"
            if state.document is None:
                await self._deprovision(settings, user_id, state)
                return "deprovisioned"
            await self._provision(settings, user_id, state)
            return "synced"
        except Held as error:
            context.steps.append(self._failure(source, user_id, str(error), failed=False))
            await self._audit(*self._attempted(context), "held", str(error))
            log.warning("user %s/%s held: %s", source, user_id, error)
            return "held"
        except Unmappable as error:
            context.steps.append(self._failure(source, user_id, str(error), failed=True, state=SKIPPED))
            await self._audit(*self._attempted(context), SKIPPED, str(error))
            log.info("user %s/%s skipped: %s", source, user_id, error)
            return "skipped"
        except (Permanent, NotOurs) as error:
            context.steps.append(self._failure(source, user_id, str(error), failed=True))
            await self._audit(*self._attempted(context), "failed", str(error))
            log.warning("user %s/%s failed: %s", source, user_id, error)
            return "failed"
        except Exception as error:  # noqa: BLE001 - any other error is retried, never lost
            message = str(error) or type(error).__name__
            if not _transient(error) and isinstance(error, ZitiError):
                context.steps.append(self._failure(source, user_id, message, failed=True))
                await self._audit(*self._attempted(context), "failed", message)
                log.warning("user %s/%s failed: %s", source, user_id, error)
                return "failed"
            context.steps.append(self._failure(source, user_id, message, failed=False))
            await self._audit(*self._attempted(context), "retry", message)
            log.info("user %s/%s pending: %s", source, user_id, error)
            return "pending"
        finally:
            _CONTEXT.reset(token)

    @staticmethod
    def _attempted(context: _Context) -> tuple[str, str | None]:
        return context.attempt if context.attempt else ("none", None)

    async def _provision(self, settings: SourceSettings, user_id: str, state: UserState) -> None:
        assert state.document is not None
        try:
            desired = map_user(state.document, list(state.groups), settings.mapping).identity
        except MappingError as error:
            raise Unmappable(unmappable_message(error)) from error
        target = target_fields(desired)
        target["disabled"] = state.document.get("active") is False
        record = state.provisioning or {}
        applied = record.get("applied") or {}
        if (
            record.get("identity_id")
            and record.get("state") == "synced"
            and not record.get("last_error")
            and applied.get("target") == target
        ):
            return
        current = (
            Applied(record["identity_id"], dict(applied.get("fields") or {}), bool(record.get("adopted")))
            if record.get("identity_id")
            else None
        )
        if current is not None and record.get("last_error"):
            # The last attempt did not finish cleanly: what is recorded may be stale, read the truth.
            try:
                current.fields = observed_fields(await self.client.get_identity(current.identity_id))
            except ZitiNotFound:
                current = None
        if current is None:
            lost = await self._lost_identity(settings, user_id, record)
            if lost is not None:
                current = Applied(
                    lost["id"], observed_fields(lost), bool((lost.get("tags") or {}).get("scimAdopted"))
                )
        if current is None:
            current = await self._create_or_adopt(settings, user_id, desired, target)
        try:
            await self._update(settings, user_id, current, target)
        except ZitiNotFound:
            # Deleted out of band: create it again.
            current = await self._create_or_adopt(settings, user_id, desired, target)
            await self._update(settings, user_id, current, target)
        await self._record_success(settings.name, user_id, current, target)

    async def _create_or_adopt(
        self, settings: SourceSettings, user_id: str, desired: DesiredIdentity, target: dict[str, Any]
    ) -> Applied:
        body: dict[str, Any] = {
            "type": "User",
            "isAdmin": desired.is_admin,
            "externalId": desired.external_id,
            "authPolicyId": desired.auth_policy_id,
            "roleAttributes": sorted(desired.role_attributes),
            "tags": settings.tags(user_id),
        }
        names = (
            candidate_names(desired.name, MAX_NAME_SUFFIX)
            if settings.mapping.name_conflict == "suffix"
            else iter([desired.name])
        )
        for name in names:
            try:
                identity_id = await self._act(
                    "create", None, partial(self.client.create_identity, {**body, "name": name})
                )
            except ZitiDuplicate as error:
                if error.field == "name":
                    continue
                return await self._claim_existing(settings, user_id, desired)
            fields = {k: v for k, v in target.items() if k != "disabled"}
            fields["name"] = name
            return Applied(identity_id, {**fields, "disabled": False})
        raise Permanent(f"identity name {desired.name!r} is taken by an identity ziti-scim does not manage")

    async def _claim_existing(
        self, settings: SourceSettings, user_id: str, desired: DesiredIdentity
    ) -> Applied:
        """An identity already has this externalId: ours (a lost create), a deleted user's, or unmanaged."""
        found = await self.client.find_identities_by_external_id(desired.external_id)
        if not found:
            raise ZitiUnavailable("identity create conflicted but the identity cannot be found; retrying")
        identity = found[0]
        tags = identity.get("tags") or {}
        if is_ours(identity, settings.name, user_id):
            return Applied(identity["id"], observed_fields(identity), bool(tags.get("scimAdopted")))
        if tags.get(TAG_MANAGED_BY) == MANAGER:
            # Managed for another user; the externalId claim index guarantees that user is gone.
            log.info("taking over identity %s of deleted user %s", identity["id"], tags.get(TAG_ID))
        elif settings.adopt == "refuse":
            raise Permanent(
                f"identity {identity['id']} ({identity.get('name')}) already has externalId "
                f"{desired.external_id!r} and is not managed by ziti-scim (adopt = refuse)"
            )
        else:
            log.info("adopting unmanaged identity %s for %s/%s", identity["id"], settings.name, user_id)
        merged = {**tags, **settings.tags(user_id)}
        if tags.get(TAG_MANAGED_BY) != MANAGER:
            merged["scimAdopted"] = True
        await self._act(
            "adopt",
            identity["id"],
            lambda: self.client.patch_identity(identity["id"], {"tags": merged}),
            identity=identity,
        )
        return Applied(identity["id"], observed_fields(identity), adopted=bool(merged.get("scimAdopted")))

    async def _free_name(self, base: str, identity_id: str, suffix: bool) -> str | None:
        """A name for this identity: the base, or the first free suffixed one (None if refused)."""
        for name in candidate_names(base, MAX_NAME_SUFFIX if suffix else 1):
            holders = await self.client.find_identities_by_name(name)
            if not holders or all(h.get("id") == identity_id for h in holders):
                return name
        return None

    async def _update(
        self, settings: SourceSettings, user_id: str, current: Applied, target: dict[str, Any]
    ) -> None:
        fields = current.fields
        diff = {k: target[k] for k in FIELDS if k != "name" and fields.get(k) != target[k]}
        base = target["name"]
        same_name = fields.get("name") in set(candidate_names(base, MAX_NAME_SUFFIX))
        if not same_name:
            name = await self._free_name(
                base, current.identity_id, settings.mapping.name_conflict == "suffix"
            )
            if name is None:
                raise Permanent(
                    f"identity name {base!r} is taken by another identity (name_conflict = refuse)"
                )
            diff["name"] = name
        if "externalId" in diff:
            holders = await self.client.find_identities_by_external_id(target["externalId"])
            if any(h.get("id") != current.identity_id for h in holders):
                raise Permanent(f"externalId {target['externalId']!r} is already used by another identity")
        if diff:
            await self._act(
                "patch", current.identity_id, lambda: self.client.patch_identity(current.identity_id, diff)
            )
            fields.update(diff)
        if bool(fields.get("disabled")) != target["disabled"]:
            if target["disabled"]:
                await self._act(
                    "disable", current.identity_id, lambda: self.client.disable_identity(current.identity_id)
                )
            else:
                await self._act(
                    "enable", current.identity_id, lambda: self.client.enable_identity(current.identity_id)
                )
            fields["disabled"] = target["disabled"]

    async def _lost_identity(
        self, settings: SourceSettings, user_id: str, record: dict[str, Any] | None
    ) -> dict[str, Any] | None:
        """The identity an earlier attempt may have created without our knowing (its answer was lost).

        Only looked for when no identity is recorded and an earlier attempt failed, so the normal
        create path still costs a single controller call.
        """
        if not record or record.get("identity_id") or not record.get("last_error"):
            return None
        found = await self.client.find_identities_by_tag(TAG_ID, user_id)
        return next((identity for identity in found if is_ours(identity, settings.name, user_id)), None)

    async def _deprovision(self, settings: SourceSettings, user_id: str, state: UserState) -> None:
        record = state.provisioning
        identity_id = record.get("identity_id") if record else None
        if not identity_id and (lost := await self._lost_identity(settings, user_id, record)) is not None:
            identity_id = lost["id"]
        if identity_id:
            try:
                identity = await self.client.get_identity(identity_id)
            except ZitiNotFound:
                identity = None
            if identity is not None and not is_ours(identity, settings.name, user_id):
                log.warning(
                    "identity %s is no longer tagged for %s/%s: left untouched",
                    identity_id,
                    settings.name,
                    user_id,
                )
            elif identity is not None and settings.on_delete == "disable":
                if not identity.get("disabled"):
                    await self._act(
                        "disable",
                        identity_id,
                        lambda: self.client.disable_identity(identity_id),
                        identity=identity,
                    )

                async def disabled(conn: AsyncConnection) -> None:
                    await conn.execute(
                        update(provisioning)
                        .where(provisioning.c.source == settings.name, provisioning.c.user_id == user_id)
                        .values(state="disabled", last_error=None, updated_at=time.time())
                    )

                self._step(disabled)
                return
            elif identity is not None:
                await self._act(
                    "delete",
                    identity_id,
                    lambda: self.client.delete_identity(identity_id, missing_ok=True),
                    identity=identity,
                )

        async def forget(conn: AsyncConnection) -> None:
            await conn.execute(
                delete(provisioning).where(
                    provisioning.c.source == settings.name, provisioning.c.user_id == user_id
                )
            )

        self._step(forget)

    # -- bookkeeping ---------------------------------------------------------------------------------

    @staticmethod
    def _step(step: Step) -> None:
        """Leave bookkeeping for the settling transaction of the converge in progress."""
        context = _CONTEXT.get()
        assert context is not None
        context.steps.append(step)

    def _upsert(self) -> Any:
        return self.db.upsert(provisioning)

    async def _record_success(
        self, source: str, user_id: str, current: Applied, target: dict[str, Any]
    ) -> None:
        values = {
            "identity_id": current.identity_id,
            "state": "synced",
            "last_error": None,
            "applied": {"fields": current.fields, "target": target},
            "adopted": current.adopted,
            "updated_at": time.time(),
        }
        statement = (
            self._upsert()
            .values(source=source, user_id=user_id, **values)
            .on_conflict_do_update(index_elements=["source", "user_id"], set_=values)
        )

        async def record(conn: AsyncConnection) -> None:
            await conn.execute(statement)

        self._step(record)

    async def _record_failure(self, source: str, user_id: str, message: str, *, failed: bool) -> None:
        async with self.db.transaction(write=True) as conn:
            await self._failure(source, user_id, message, failed=failed)(conn)

    @staticmethod
    def _failure(source: str, user_id: str, message: str, *, failed: bool, state: str = "failed") -> Step:
        values: dict[str, Any] = {"last_error": message[:1000], "updated_at": time.time()}
        if failed:
            values["state"] = state

        async def record(conn: AsyncConnection) -> None:
            await conn.execute(
                update(provisioning)
                .where(provisioning.c.source == source, provisioning.c.user_id == user_id)
                .values(**values)
            )

        return record
