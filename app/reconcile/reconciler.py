"""Converge one user's OpenZiti identity to the user's desired state (create, patch, disable, delete).

Idempotent and level-triggered: it compares the desired identity with what was last applied and sends
only the difference, so an unchanged user costs no controller call and a created one costs one. It
never touches an identity it did not create or explicitly adopt: every identity it writes carries the
provenance tags of :mod:`app.reconcile.settings`, it only acts on identity ids it recorded and re-reads
(to check they are still its own, :mod:`app.reconcile.ownership`) before changing them — the re-reads of
converges running at the same time go as one list call (:mod:`app.ziti.reads`), each made after it was
asked for, never a cached answer —, and an identity
that already holds a user's externalId or name is adopted, taken over or left untouched as a conflict
(provisioningState ``conflict``) by the rules of :mod:`app.reconcile.ownership`.

Controller quirks handled here (controller-api.md §3.5, §3.7): identities are PATCHed, never PUT (PUT clears
omitted fields and re-enables); a rename onto a taken name is silently dropped by the controller and an
externalId collision on PATCH is a 500, so both are checked before patching; a create whose outcome is
unknown (a timeout, or a 429/503 from an HA controller that applied it before answering) is resolved
by looking the identity up by ziti-scim's own tags before creating again; a 404 on PATCH is checked with
a GET (an unknown ``authPolicyId`` is also a 404) before the identity is taken as deleted out of band.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Literal

from app.mapping import DesiredIdentity, MappingError, candidate_names, map_user
from app.observability import audit
from app.observability.metrics import Metrics
from app.reconcile import ownership
from app.reconcile.actuator import Actuator, NotOurs, Origin
from app.reconcile.admission import group_refs
from app.reconcile.deployment import deployment_id
from app.reconcile.safety import Held, Safety
from app.reconcile.settings import TAG_DEPLOYMENT, TAG_ID, TAG_SOURCE, SourceSettings
from app.reconcile.skipped import SKIPPED, unmappable_message
from app.reconcile.state_reads import StateReads
from app.reconcile.target import target_of
from app.store import audit as audit_log
from app.store import provisioning, queue
from app.store.db import Database
from app.store.desired import read_user_state
from app.store.group_commit import Batched, GroupCommit
from app.store.types import ProvisioningRecord, UserState
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
from app.ziti.reads import CoalescedReads

log = logging.getLogger("ziti_scim.reconcile")

Outcome = Literal["synced", "deprovisioned", "pending", "failed", "skipped", "conflict", "held"]
MAX_NAME_SUFFIX = 50
FIELDS = ("name", "externalId", "roleAttributes", "authPolicyId", "isAdmin")


HELD_RECHECK = 60.0
CHANGE_IN_FLIGHT = "a change was sent to the controller; its outcome is not known yet"


Step = Batched[Any]
"""A bookkeeping write of a converge, applied with the same writes of the other converges settling in the
same transaction (one executemany each, :class:`app.store.group_commit.GroupCommit`)."""


@dataclass
class _Context:
    """The converge in progress: who it is for (the audit log) and the bookkeeping it leaves.

    Passed explicitly to every step of the algorithm. The bookkeeping (``steps``: the provisioning
    record; ``entries``: the audit rows of the changes made) is written in one transaction with the
    settling of the dirty mark, once the converge is over.
    """

    claim: queue.Claim
    origin: Origin
    attempt: tuple[str, str | None] | None = None
    marked: bool = False
    entries: list[audit.AuditEntry] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)


class Permanent(Exception):
    """A failure that retrying will not fix (shown as provisioningState=failed with this message)."""


class Conflict(Permanent):
    """Another identity holds what this user needs; it is left untouched (provisioningState=conflict).

    ``reason`` and ``identity_id`` go to the audit log and ``doctor`` only; the SCIM client sees
    :data:`app.reconcile.ownership.PUBLIC_CONFLICT`.
    """

    def __init__(self, reason: str, identity_id: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.identity_id = identity_id


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


def observed_fields(identity: dict[str, Any]) -> dict[str, Any]:
    """The managed fields of a controller identity detail (controller-api.md §3.4)."""
    return {
        "name": identity.get("name"),
        "externalId": identity.get("externalId"),
        "roleAttributes": sorted(identity.get("roleAttributes") or []),
        "authPolicyId": identity.get("authPolicyId") or "default",
        "isAdmin": bool(identity.get("isAdmin")),
        "disabled": bool(identity.get("disabled")),
    }


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
        deployment: str | None = None,
    ) -> None:
        self.db = db
        self.configured_deployment = deployment
        self._deployment: str | None = None
        self._deployment_lock = asyncio.Lock()
        self.client = client
        self.settings = settings
        self.safety = safety
        self.metrics = metrics
        self.actuator = Actuator(db, safety=safety, metrics=metrics)
        self.reads = CoalescedReads(client)
        """The re-reads before a change, of concurrent converges, made together (one list call)."""
        self.states = StateReads(db)
        """The state reads of concurrent converges, made together (one read transaction)."""
        self.commits = GroupCommit(db)
        """The bookkeeping writes of concurrent converges, committed together (group commit)."""
        # One lock per user being converged in this process; entries vanish when nobody holds them.
        self.held: dict[tuple[str, str], queue.Claim] = {}
        """The claims being worked on, whose leases the worker renews."""
        self._locks: weakref.WeakValueDictionary[tuple[str, str], asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )

    async def deployment(self) -> str:
        """This installation's deployment id (:mod:`app.reconcile.deployment`), read once."""
        if self._deployment is None:
            async with self._deployment_lock:  # the first converges of a batch read it once, not each
                if self._deployment is None:
                    self._deployment = await deployment_id(self.db, self.configured_deployment)
        return self._deployment

    async def owner(self, settings: SourceSettings) -> ownership.Owner:
        return ownership.Owner(
            deployment=await self.deployment(),
            source=settings.name,
            adopt=settings.adopt == "adopt",
            takeover_from=settings.takeover_from,
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

                settle: list[Step] = [
                    *context.steps,
                    *(Batched(audit_log.record, entry) for entry in context.entries),
                ]
                if outcome == "pending":
                    settle.append(Batched(queue.retry_later_all, (claim, queue.backoff(claim.attempts))))
                elif outcome == "held":
                    settle.append(Batched(queue.retry_later_all, (claim, HELD_RECHECK)))
                else:
                    settle.append(Batched(queue.finish_all, claim))
                # Committed with the other converges' bookkeeping; returns once it is committed.
                await self.commits.run_all(settle)
            finally:
                self.held.pop((claim.source, claim.user_id), None)
        if self.metrics is not None:
            self.metrics.reconcile_outcomes.labels(claim.source, outcome).inc()
        return outcome

    async def _audit(
        self, context: _Context, action: str, identity_id: str | None, outcome: str, error: str | None = None
    ) -> None:
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
        context: _Context,
        action: str,
        identity_id: str | None,
        call: Callable[[], Awaitable[Any]],
        *,
        identity: dict[str, Any] | None = None,
    ) -> Any:
        """Make one controller change through the actuator (ownership, brake, audit, metric)."""

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
        state, (request_id, operation) = await self.states.read(source, user_id)
        record = state.provisioning or {}
        context.origin = Origin(source, user_id, record.get("user_name"), request_id, operation)
        try:
            if self.safety is not None and await self.safety.paused():
                return "held"
            if state.document is None:
                await self._deprovision(context, settings, user_id, state)
                return "deprovisioned"
            await self._provision(context, settings, user_id, state)
            return "synced"
        except Conflict as error:
            public = ownership.PUBLIC_CONFLICT
            context.steps.append(self._failure(source, user_id, public, failed=True, state="conflict"))
            await self._audit(context, "conflict", error.identity_id, "refused", error.reason)
            if self.metrics is not None:
                self.metrics.ownership_conflicts.labels(source).inc()
            log.warning("user %s/%s conflict: %s", source, user_id, error.reason)
            return "conflict"
        except Held as error:
            context.steps.append(self._failure(source, user_id, str(error), failed=False))
            await self._audit(context, *self._attempted(context), "held", str(error))
            log.warning("user %s/%s held: %s", source, user_id, error)
            return "held"
        except Unmappable as error:
            context.steps.append(self._failure(source, user_id, str(error), failed=True, state=SKIPPED))
            await self._audit(context, *self._attempted(context), SKIPPED, str(error))
            log.info("user %s/%s skipped: %s", source, user_id, error)
            return "skipped"
        except (Permanent, NotOurs) as error:
            context.steps.append(self._failure(source, user_id, str(error), failed=True))
            await self._audit(context, *self._attempted(context), "failed", str(error))
            log.warning("user %s/%s failed: %s", source, user_id, error)
            return "failed"
        except Exception as error:  # noqa: BLE001 - any other error is retried, never lost
            message = str(error) or type(error).__name__
            if not _transient(error) and isinstance(error, ZitiError):
                context.steps.append(self._failure(source, user_id, message, failed=True))
                await self._audit(context, *self._attempted(context), "failed", message)
                log.warning("user %s/%s failed: %s", source, user_id, error)
                return "failed"
            context.steps.append(self._failure(source, user_id, message, failed=False))
            await self._audit(context, *self._attempted(context), "retry", message)
            log.info("user %s/%s pending: %s", source, user_id, error)
            return "pending"

    @staticmethod
    def _attempted(context: _Context) -> tuple[str, str | None]:
        return context.attempt if context.attempt else ("none", None)

    async def _provision(
        self, context: _Context, settings: SourceSettings, user_id: str, state: UserState
    ) -> None:
        assert state.document is not None
        try:
            desired = map_user(state.document, group_refs(state.groups), settings.mapping).identity
        except MappingError as error:
            raise Unmappable(unmappable_message(error)) from error
        target = target_of(desired, state.document)
        record = state.provisioning or {}
        applied = record.get("applied") or {}
        if provisioning.settled_target(state.provisioning) == target:
            return
        owner = await self.owner(settings)
        current = None
        if recorded := record.get("identity_id"):
            # About to write: re-read it, so that the diff is exact and an identity that stopped being
            # ours (re-tagged, made an admin) is never changed.
            try:
                identity = await self.reads.get(recorded)
            except ZitiNotFound:
                identity = None
            if identity is not None:
                # isAdmin is ours to change only where this user's mapping grants it, or granted it before.
                granted = desired.is_admin or (applied.get("fields") or {}).get("isAdmin") is True
                decision = ownership.check_owned(identity, owner, user_id, admin_granted=granted)
                if not decision.allowed:
                    raise Conflict(decision.reason, identity["id"])
                if ownership.tags_of(identity).get(TAG_DEPLOYMENT) is None:
                    # Made before deployment ids: the database vouches for it; tag it once.
                    tags = ownership.claimed_tags(identity, owner, user_id, "ours")
                    await self._act(
                        context,
                        "patch",
                        identity["id"],
                        lambda: self.client.patch_identity(identity["id"], {"tags": tags}),
                        identity=identity,
                    )
                current = Applied(identity["id"], observed_fields(identity), ownership.is_adopted(identity))
        if current is None:
            lost = await self._lost_identity(owner, user_id, record)
            if lost is not None:
                current = Applied(lost["id"], observed_fields(lost), ownership.is_adopted(lost))
        if current is None:
            current = await self._create_or_adopt(context, settings, owner, user_id, desired, target)
        try:
            await self._update(context, settings, user_id, current, target)
        except ZitiNotFound as error:
            # A 404 may name another entity (an unknown authPolicyId): only a 404 on GET means deleted.
            try:
                await self.client.get_identity(current.identity_id)
            except ZitiNotFound:
                current = await self._create_or_adopt(context, settings, owner, user_id, desired, target)
                await self._update(context, settings, user_id, current, target)
            else:
                field = error.cause.get("field") if isinstance(error.cause, dict) else None
                what = f"{field} {target[field]!r}" if field in target else "an entity the change names"
                raise Permanent(f"{what} does not exist on the controller: {error}") from error
        self._record_success(context, settings.name, user_id, current, target)

    async def _create_or_adopt(
        self,
        context: _Context,
        settings: SourceSettings,
        owner: ownership.Owner,
        user_id: str,
        desired: DesiredIdentity,
        target: dict[str, Any],
    ) -> Applied:
        body: dict[str, Any] = {
            "type": "User",
            "isAdmin": desired.is_admin,
            "externalId": desired.external_id,
            "authPolicyId": desired.auth_policy_id,
            "roleAttributes": sorted(desired.role_attributes),
            "tags": settings.tags(user_id, owner.deployment),
        }
        suffix = settings.mapping.name_conflict == "suffix"
        names = candidate_names(desired.name, MAX_NAME_SUFFIX) if suffix else iter([desired.name])
        looked = False
        for name in names:
            try:
                identity_id = await self._act(
                    context,
                    "create", None, partial(self.client.create_identity, {**body, "name": name})
                )
            except ZitiDuplicate as error:
                # Adoption and our own earlier create (applied, then answered 429/503) come before the
                # name check: the holder of the name may be the identity this user should get.
                if not looked or error.field != "name":
                    looked = True
                    existing = await self._existing(context, settings, owner, user_id, desired)
                    if existing is not None:
                        return existing
                    if error.field != "name":
                        raise ZitiUnavailable(
                            "identity create conflicted but the identity cannot be found; retrying"
                        ) from error
                continue
            fields = {k: v for k, v in target.items() if k != "disabled"}
            fields["name"] = name
            return Applied(identity_id, {**fields, "disabled": False})
        holders = await self.client.find_identities_by_name(desired.name) if not suffix else []
        raise Conflict(
            f"identity name {desired.name!r} is taken by an identity ziti-scim may not adopt "
            f"(name_conflict = {settings.mapping.name_conflict})",
            holders[0].get("id") if holders else None,
        )

    async def _existing(
        self,
        context: _Context,
        settings: SourceSettings,
        owner: ownership.Owner,
        user_id: str,
        desired: DesiredIdentity,
    ) -> Applied | None:
        """After a refused create: our own identity (found by our tags), one to adopt or take over, or
        a :class:`Conflict`; None when nothing holds the user's externalId."""
        tagged = await self.client.find_identities_by_tag(TAG_ID, user_id)
        mine = ownership.lost_create(tagged, owner, user_id)
        if mine is not None:
            return Applied(str(mine["id"]), observed_fields(dict(mine)), ownership.is_adopted(mine))
        found = await self.client.find_identities_by_external_id(desired.external_id)
        if not found:
            return None
        identity = found[0]
        tags = ownership.tags_of(identity)
        gone = False
        if ownership.is_managed(identity) and tags.get(TAG_SOURCE) == settings.name and tags.get(TAG_ID):
            async with self.db.transaction() as tx:
                previous = await read_user_state(tx, settings.name, str(tags[TAG_ID]))
            gone = previous.document is None
        decision = ownership.classify(
            identity,
            owner,
            user_id,
            desired.external_id,
            previous_user_gone=gone,
            admin_granted=desired.is_admin,
        )
        if decision.verdict == "conflict":
            raise Conflict(decision.reason, identity["id"])
        if decision.verdict == "ours":
            return Applied(identity["id"], observed_fields(identity), ownership.is_adopted(identity))
        log.info(
            "%s identity %s for %s/%s: %s",
            decision.verdict,
            identity["id"],
            settings.name,
            user_id,
            decision.reason,
        )
        merged = ownership.claimed_tags(identity, owner, user_id, decision.verdict)
        await self._act(
            context,
            decision.verdict,
            identity["id"],
            lambda: self.client.patch_identity(identity["id"], {"tags": merged}),
            identity=identity,
        )
        adopted = ownership.is_adopted({"tags": merged})
        return Applied(identity["id"], observed_fields(identity), adopted=adopted)

    async def _free_name(self, base: str, identity_id: str, suffix: bool) -> str | None:
        """A name for this identity: the base, or the first free suffixed one (None if refused)."""
        for name in candidate_names(base, MAX_NAME_SUFFIX if suffix else 1):
            holders = await self.client.find_identities_by_name(name)
            if not holders or all(h.get("id") == identity_id for h in holders):
                return name
        return None

    async def _update(
        self,
        context: _Context,
        settings: SourceSettings,
        user_id: str,
        current: Applied,
        target: dict[str, Any],
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
                raise Conflict(
                    f"identity name {base!r} is taken by another identity (name_conflict = refuse)"
                )
            diff["name"] = name
        if "externalId" in diff:
            holders = await self.client.find_identities_by_external_id(target["externalId"])
            other = next((h for h in holders if h.get("id") != current.identity_id), None)
            if other is not None:
                raise Conflict(
                    f"externalId {target['externalId']!r} is used by another identity", other.get("id")
                )
        if diff:
            await self._act(
                context,
                "patch", current.identity_id, lambda: self.client.patch_identity(current.identity_id, diff)
            )
            fields.update(diff)
        if bool(fields.get("disabled")) != target["disabled"]:
            if target["disabled"]:
                await self._act(
                    context,
                    "disable", current.identity_id, lambda: self.client.disable_identity(current.identity_id)
                )
            else:
                await self._act(
                    context,
                    "enable", current.identity_id, lambda: self.client.enable_identity(current.identity_id)
                )
            fields["disabled"] = target["disabled"]

    async def _lost_identity(
        self, owner: ownership.Owner, user_id: str, record: ProvisioningRecord | None
    ) -> dict[str, Any] | None:
        """The identity an earlier attempt may have created without our knowing (its answer was lost).

        Only looked for when no identity is recorded and an earlier attempt failed, so the normal
        create path still costs a single controller call; found by our tags only.
        """
        if not record or record.get("identity_id") or not record.get("last_error"):
            return None
        found = await self.client.find_identities_by_tag(TAG_ID, user_id)
        lost = ownership.lost_create(found, owner, user_id)
        return dict(lost) if lost is not None else None

    async def _deprovision(
        self, context: _Context, settings: SourceSettings, user_id: str, state: UserState
    ) -> None:
        record = state.provisioning or {}
        owner = await self.owner(settings)
        identity_id = record.get("identity_id")
        identity: dict[str, Any] | None = None
        if identity_id:
            try:
                identity = await self.reads.get(identity_id)
            except ZitiNotFound:
                identity = None
        elif (lost := await self._lost_identity(owner, user_id, record)) is not None:
            identity, identity_id = lost, lost["id"]
        if identity is not None and identity_id:
            granted = ((record.get("applied") or {}).get("fields") or {}).get("isAdmin") is True
            decision = ownership.check_owned(identity, owner, user_id, admin_granted=granted)
            adopted = ownership.is_adopted(identity) or bool(record.get("adopted"))
            how = ownership.removal(adopted, settings.on_delete, settings.on_delete_adopted)
            if not decision.allowed:
                log.warning(
                    "identity %s of %s/%s left untouched: %s",
                    identity_id,
                    settings.name,
                    user_id,
                    decision.reason,
                )
                await self._audit(context, "conflict", identity_id, "refused", decision.reason)
                if self.metrics is not None:
                    self.metrics.ownership_conflicts.labels(settings.name).inc()
            elif how == "disable":
                if not identity.get("disabled"):
                    await self._act(
                        context,
                        "disable",
                        identity_id,
                        lambda: self.client.disable_identity(identity_id),
                        identity=identity,
                    )
                context.steps.append(Batched(provisioning.record_disabled_all, (settings.name, user_id)))
                return
            elif how == "untag":
                tags = ownership.released_tags(identity)
                await self._act(
                    context,
                    "untag",
                    identity_id,
                    lambda: self.client.patch_identity(identity_id, {"tags": tags}),
                    identity=identity,
                )
            else:
                await self._act(
                    context,
                    "delete",
                    identity_id,
                    lambda: self.client.delete_identity(identity_id, missing_ok=True),
                    identity=identity,
                )
        context.steps.append(Batched(provisioning.forget_all, (settings.name, user_id)))

    # -- bookkeeping ---------------------------------------------------------------------------------

    @staticmethod
    def _record_success(
        context: _Context, source: str, user_id: str, current: Applied, target: dict[str, Any]
    ) -> None:
        """Leave the synced record for the settling transaction of the converge."""
        applied = {"fields": current.fields, "target": target}
        record = provisioning.Synced(source, user_id, current.identity_id, applied, current.adopted)
        context.steps.append(Batched(provisioning.record_synced_all, record))

    async def _record_failure(self, source: str, user_id: str, message: str, *, failed: bool) -> None:
        await self.commits.run_all([self._failure(source, user_id, message, failed=failed)])

    @staticmethod
    def _failure(source: str, user_id: str, message: str, *, failed: bool, state: str = "failed") -> Step:
        verdict = state if failed else None
        return Batched(provisioning.record_errors, provisioning.Outcome(source, user_id, message, verdict))
