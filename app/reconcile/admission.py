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

from collections.abc import Iterable
from typing import Any

from scim2_models import InvalidValueException, UniquenessException

from app.mapping import GroupRef, MappingError, map_user
from app.reconcile.settings import SourceSettings
from app.reconcile.skipped import unmappable_message
from app.reconcile.target import target_of
from app.store import provisioning
from app.store.types import Admission, ProvisioningView, RecordRead, StoredGroup, Transaction


def group_refs(groups: Iterable[StoredGroup]) -> list[GroupRef]:
    """The mapping's view of a user's stored groups."""
    return [GroupRef(id=g.id, display_name=g.display_name, external_id=g.external_id) for g in groups]


class ProvisioningHooks:
    """The storage hooks (:class:`app.store.storage.UserHooks`) of the provisioning stage."""

    def __init__(self, settings: dict[str, SourceSettings]) -> None:
        self.settings = settings

    async def admit(
        self,
        tx: Transaction,
        source: str,
        user_id: str,
        document: dict[str, Any],
        groups: list[dict[str, Any]],
        before: dict[str, Any] | None = None,
        record: RecordRead | None = None,
    ) -> Admission:
        """Admit the write (see the module): what :meth:`view` will show of the user, and whether the
        storage marks it dirty in the same transaction.

        A write that leaves the user's identity as it was last applied is not marked: its converge would
        find nothing to do, and the user shows its record as it is (``synced``). That takes both:

        - the document's own part of the identity is unchanged: ``before`` (the stored document this
          write replaces) and the new one map to the same identity when mapped without groups, and
          have the same ``userName``. On PostgreSQL a concurrent change of the user's groups may be
          converged from ``before`` (this write not committed yet); role attributes are the union of
          the document's and the groups' (:mod:`app.mapping.roles`), so that converge then reaches
          this document's identity as well. The record already claims this externalId and userName;
        - the record is settled, with no change waiting, and its target is the one the new document
          maps to (:func:`~app.store.provisioning.settled_now`; ``record`` when the write's
          transaction read it with the user's row).

        Anything else (a new user, a change of the identity, a record not settled, a change already
        waiting) is marked and shows ``pending``."""
        settings = self.settings[source]
        refs = [GroupRef(id=g["value"], display_name=g.get("display") or "") for g in groups]
        user_name = document.get("userName")
        try:
            desired = map_user(document, refs, settings.mapping).identity
        except MappingError as error:
            message = unmappable_message(error)
            if settings.unmappable == "refuse":
                raise InvalidValueException(detail=message) from error
            shown = await provisioning.admit_skipped(
                tx, source, user_id, user_name=user_name, message=message
            )
            return Admission(_entry(provisioning.shown(shown, dirty=True)))
        target = target_of(desired, document)
        same_user_name = before is not None and before.get("userName") == user_name
        # Mapped without groups, the document gives the target itself when the user has none.
        if same_user_name and _own(before, settings) == (_own(document, settings) if refs else target):
            # Same externalId and userName: the record's claim already holds them, no upsert needed.
            if record is None:
                record = RecordRead(await provisioning.settled_now(tx, source, user_id))
            settled = record.settled
            if settled is not None and provisioning.settled_target(settled) == target:
                view = ProvisioningView(settled["state"], settled["identity_id"], settled["last_error"])
                return Admission(_entry(view), converge=False)
        try:
            shown = await provisioning.admit(
                tx, source, user_id, external_id=desired.external_id, user_name=user_name
            )
        except provisioning.ExternalIdTaken as error:
            raise UniquenessException(detail=str(error)) from error
        return Admission(_entry(provisioning.shown(shown, dirty=True)))

    async def release(self, tx: Transaction, source: str, user_id: str) -> None:
        await provisioning.release_external_id(tx, source, user_id)

    async def view(
        self, tx: Transaction, source: str, user_ids: list[str]
    ) -> dict[str, dict[str, Any]]:
        shown = await provisioning.view(tx, source, user_ids)
        return {user_id: _entry(record) for user_id, record in shown.items()}


def _own(document: dict[str, Any] | None, settings: SourceSettings) -> dict[str, Any] | None:
    """The identity ``document`` maps to without groups (None: it cannot be mapped)."""
    if document is None:
        return None
    try:
        return target_of(map_user(document, [], settings.mapping).identity, document)
    except MappingError:
        return None


def _entry(shown: ProvisioningView) -> dict[str, Any]:
    """The status extension's attributes for a record as a SCIM response shows it."""
    entry: dict[str, Any] = {"provisioningState": shown.state}
    if shown.identity_id:
        entry["identityId"] = shown.identity_id
    if shown.last_error and shown.state != "synced":
        entry["lastError"] = shown.last_error
    return entry
