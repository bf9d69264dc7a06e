"""The types of the store's operations: what the modules of :mod:`app.store` take and give back.

Every operation of the store (:mod:`app.store.queue`, :mod:`app.store.provisioning`,
:mod:`app.store.audit`, :mod:`app.store.settings`, :mod:`app.store.desired`, :mod:`app.store.idp_events`)
takes a :data:`Transaction`: the handle that :meth:`app.store.db.Database.transaction` yields. Operations
that must commit together are called with the same handle, inside one ``async with db.transaction(...)``
block: the block is the unit of work, and nothing is committed until it ends (nothing at all if it
raises). A block that writes says so when it opens (``write=True``): on SQLite that takes the single
writer's turn (``BEGIN IMMEDIATE``), on PostgreSQL it makes the reads that must lock their rows do so.

Code outside :mod:`app.store` never sees a table or a SQL statement: it sees these types.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple, TypeAlias, TypedDict

from sqlalchemy.ext.asyncio import AsyncConnection

Transaction: TypeAlias = AsyncConnection
"""An open transaction of the store (see the module docstring); only :mod:`app.store` looks inside."""

Json: TypeAlias = Any
"""A JSON value as the database stores it (``settings`` values, applied fields)."""


@dataclass(frozen=True)
class StoredGroup:
    """A SCIM Group a user is a member of (RFC 7643 §4.2): its server id, ``displayName``, ``externalId``."""

    id: str
    display_name: str
    external_id: str | None = None


@dataclass(frozen=True)
class Claim:
    """A lease on one user's dirty mark (:mod:`app.store.queue`).

    ``generation`` is the mark's generation when it was claimed: settling the claim drops the mark only
    if no write marked the user again since. ``attempts`` counts the failed converges so far.
    """

    source: str
    user_id: str
    generation: int
    attempts: int


@dataclass(frozen=True)
class AuditEntry:
    """One controller action ziti-scim took or attempted, with what asked for it and how it went."""

    source: str
    action: str
    outcome: str
    user_id: str | None = None
    user_name: str | None = None
    identity_id: str | None = None
    request_id: str | None = None
    operation: str | None = None
    error: str | None = None


class AuditRow(TypedDict):
    """An :class:`AuditEntry` as stored: with its id (insertion order) and time (Unix seconds)."""

    id: int
    at: float
    source: str
    request_id: str | None
    operation: str | None
    user_id: str | None
    user_name: str | None
    identity_id: str | None
    action: str
    outcome: str
    error: str | None


class ProvisioningRecord(TypedDict, total=False):
    """What the store knows of one user's identity on the controller (:mod:`app.store.provisioning`).

    A record read from the store has every key; the type is not total only so that ``{}`` can stand for
    "no record yet" where a caller reads it with ``.get``.
    """

    source: str
    user_id: str
    identity_id: str | None
    external_id: str | None
    """The externalId the mapping gives the user, unique across sources; None once the user is gone."""
    user_name: str | None
    state: str
    """``pending``, ``synced``, ``failed``, ``conflict``, ``skipped`` or ``disabled``."""
    last_error: str | None
    applied: dict[str, Any] | None
    """``{"fields": …, "target": …}``: the identity fields last written to the controller."""
    adopted: bool
    updated_at: float


@dataclass(frozen=True)
class UserState:
    """A user's SCIM document and its groups, or ``document=None`` once the user is deleted, and its
    provisioning record (None before the first write admitted it)."""

    document: dict[str, Any] | None
    groups: tuple[StoredGroup, ...]
    provisioning: ProvisioningRecord | None


@dataclass(frozen=True)
class DesiredUser:
    """A stored SCIM user of one source with the groups it is a member of."""

    source: str
    user_id: str
    document: dict[str, Any]
    groups: tuple[StoredGroup, ...]


@dataclass(frozen=True)
class RecordRead:
    """A user's provisioning record as its write's transaction read it with the user's row:
    :func:`app.store.provisioning.settled_of` it (the record if settled and not marked dirty, else None)."""

    settled: ProvisioningRecord | None


class Admission(NamedTuple):
    """What admitting a user's write (:meth:`app.store.storage.UserHooks.admit`) tells the storage."""

    view: dict[str, Any] | None
    """What :meth:`~app.store.storage.UserHooks.view` will show of the user after the write, or None
    (the response then reads it back)."""
    converge: bool = True
    """False when the write leaves the user's identity as it was last applied, with no other change of
    it waiting: the storage then leaves it unmarked (its converge would find nothing to do)."""


@dataclass(frozen=True)
class ProvisioningView:
    """The provisioning attributes a SCIM response shows for a user (the ziti extension)."""

    state: str
    """The record's state, or ``pending`` while the user is marked dirty (a change not converged yet)."""
    identity_id: str | None
    last_error: str | None


@dataclass(frozen=True)
class StoredEvent:
    """One event of an IdP's per-aggregate event log (:mod:`app.store.idp_events`)."""

    source: str
    aggregate_id: str
    sequence: int
    aggregate_type: str
    event_type: str
    payload: dict[str, Any]
    received_at: float


__all__ = [
    "Admission",
    "RecordRead",
    "AuditEntry",
    "AuditRow",
    "Claim",
    "DesiredUser",
    "Json",
    "ProvisioningRecord",
    "ProvisioningView",
    "StoredEvent",
    "StoredGroup",
    "Transaction",
    "UserState",
]
