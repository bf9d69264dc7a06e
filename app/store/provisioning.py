"""Provisioning records: what the store knows of each user's identity on the controller.

One record per ``(source, user_id)``. A SCIM write admits the user (:func:`admit`, :func:`admit_skipped`)
in its own transaction, claiming the externalId its mapping gives it: the claim is a unique index across
sources, so two users can never claim the identity one IdP token resolves to, even when written at once.
The reconciler's settling transaction writes the outcome of a converge (:func:`record_synced`,
:func:`record_error`, :func:`record_disabled`, :func:`forget`). A record's ``state`` is one of
``pending``, ``synced``, ``failed``, ``conflict``, ``skipped``, ``disabled``.

Every operation runs in the caller's transaction (:data:`app.store.types.Transaction`).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from contextlib import nullcontext
from dataclasses import replace
from typing import Any, NamedTuple, cast

from sqlalchemy import Float, String, Text, and_, bindparam, delete, exists, func, select, update
from sqlalchemy.exc import IntegrityError

from app.store.db import upsert
from app.store.tables import dirty, provisioning
from app.store.types import ProvisioningRecord, ProvisioningView, Transaction

MAX_ERROR = 1000
"""``last_error`` is cut to this many characters."""


class ExternalIdTaken(Exception):
    """Another user (of any source) already claims this externalId; nothing was written."""

    def __init__(self, external_id: str) -> None:
        super().__init__(f"externalId {external_id!r} is already provisioned for another user")
        self.external_id = external_id


_SHOWN = (provisioning.c.state, provisioning.c.identity_id, provisioning.c.last_error)
"""What a SCIM response shows of a record (:class:`ProvisioningView`)."""


def _insert(tx: Transaction) -> Any:
    return upsert(provisioning, is_sqlite=tx.dialect.name == "sqlite")


def _key(source: str, user_id: str) -> Any:
    return and_(provisioning.c.source == source, provisioning.c.user_id == user_id)


def _admit_statement(is_sqlite: bool) -> Any:
    """The admission upsert, built once per dialect (building it cost more than running it)."""
    insert = upsert(provisioning, is_sqlite=is_sqlite)
    return (
        insert.values(
            source=bindparam("a_source"),
            user_id=bindparam("a_user_id"),
            external_id=bindparam("a_external_id"),
            user_name=bindparam("a_user_name"),
            state="pending",
            adopted=False,
            updated_at=bindparam("a_updated_at"),
        )
        .on_conflict_do_update(
            index_elements=["source", "user_id"],
            set_={"external_id": insert.excluded.external_id, "user_name": insert.excluded.user_name},
        )
        .returning(*_SHOWN)
    )


_ADMIT = {True: _admit_statement(True), False: _admit_statement(False)}


async def admit(
    tx: Transaction, source: str, user_id: str, *, external_id: str, user_name: str | None
) -> ProvisioningView:
    """Claim ``external_id`` for the user; a new record is ``pending``, an existing one keeps its state.

    Returns the record as written (``RETURNING``: the SCIM response shows it without reading it again).

    Raises :class:`ExternalIdTaken` when another user holds it; the caller's transaction is left usable
    and unchanged: on PostgreSQL the attempt runs in a savepoint (a failed statement aborts the whole
    transaction there); SQLite undoes only the failed statement, so a savepoint's two statements are
    spared on every SCIM write.
    """
    is_sqlite = tx.dialect.name == "sqlite"
    parameters = {
        "a_source": source,
        "a_user_id": user_id,
        "a_external_id": external_id,
        "a_user_name": user_name,
        "a_updated_at": time.time(),
    }
    try:
        async with nullcontext() if is_sqlite else tx.begin_nested():
            row = (await tx.execute(_ADMIT[is_sqlite], parameters)).one()
    except IntegrityError as error:
        raise ExternalIdTaken(external_id) from error
    return ProvisioningView(row.state, row.identity_id, row.last_error)


async def admit_skipped(
    tx: Transaction, source: str, user_id: str, *, user_name: str | None, message: str
) -> ProvisioningView:
    """The user cannot be mapped to an identity: state ``skipped`` with ``message`` as its last error.

    The externalId it claimed before, if any, stays claimed (so that it cannot move to another user
    meanwhile), and so does the identity it has. Returns the record as written.
    """
    values = {"user_name": user_name, "state": "skipped", "last_error": message, "updated_at": time.time()}
    row = (
        await tx.execute(
            _insert(tx)
            .values(source=source, user_id=user_id, adopted=False, **values)
            .on_conflict_do_update(index_elements=["source", "user_id"], set_=values)
            .returning(*_SHOWN)
        )
    ).one()
    return ProvisioningView(row.state, row.identity_id, row.last_error)


async def release_external_id(tx: Transaction, source: str, user_id: str) -> None:
    """The user is deleted: its externalId is free for another user (its identity is still recorded)."""
    await tx.execute(update(provisioning).where(_key(source, user_id)).values(external_id=None))


async def get(tx: Transaction, source: str, user_id: str) -> ProvisioningRecord | None:
    """The user's record, or None."""
    row = (await tx.execute(select(provisioning).where(_key(source, user_id)))).first()
    return cast(ProvisioningRecord, dict(row._mapping)) if row is not None else None


async def records(tx: Transaction, source: str | None = None) -> dict[tuple[str, str], ProvisioningRecord]:
    """Every record, of ``source`` or of every source, by ``(source, user_id)``."""
    query = select(provisioning)
    if source is not None:
        query = query.where(provisioning.c.source == source)
    return {
        (row.source, row.user_id): cast(ProvisioningRecord, dict(row._mapping))
        for row in await tx.execute(query)
    }


def shown(record: ProvisioningView, *, dirty: bool) -> ProvisioningView:
    """What SCIM responses show of a record: a user still marked dirty shows ``pending``, whatever its
    record says (a change is not converged yet)."""
    return replace(record, state="pending") if dirty else record


async def view(tx: Transaction, source: str, user_ids: list[str]) -> dict[str, ProvisioningView]:
    """What SCIM responses show of these users' records, by user id (users without a record are absent).

    A user still marked dirty shows ``pending`` (:func:`shown`).
    """
    parameters = {"v_source": source, "v_user_ids": list(user_ids)}
    return {
        row.user_id: shown(ProvisioningView(row.state, row.identity_id, row.last_error), dirty=row.dirty)
        for row in await tx.execute(_VIEW, parameters)
    }


_VIEW = select(
    provisioning.c.user_id,
    provisioning.c.identity_id,
    provisioning.c.state,
    provisioning.c.last_error,
    exists()
    .where(and_(dirty.c.source == provisioning.c.source, dirty.c.user_id == provisioning.c.user_id))
    .label("dirty"),
).where(
    provisioning.c.source == bindparam("v_source"),
    provisioning.c.user_id.in_(bindparam("v_user_ids", expanding=True)),
)
"""The view's query, built once."""


def settled_target(record: ProvisioningRecord | None) -> dict[str, Any] | None:
    """The identity fields last applied for the user (``applied["target"]``) if its record is settled:
    an identity, state ``synced``, no error. None otherwise: a converge has something to look at."""
    if not record or not record.get("identity_id") or record.get("state") != "synced":
        return None
    if record.get("last_error"):
        return None
    target = (record.get("applied") or {}).get("target")
    return target if isinstance(target, dict) else None


SETTLED_COLUMNS = (
    provisioning.c.identity_id.label("s_identity_id"),
    provisioning.c.state.label("s_state"),
    provisioning.c.last_error.label("s_last_error"),
    provisioning.c.applied.label("s_applied"),
    exists()
    .where(and_(dirty.c.source == provisioning.c.source, dirty.c.user_id == provisioning.c.user_id))
    .label("s_dirty"),
)
"""What :func:`settled_of` reads of a record, as columns of a query on the provisioning table (or joined
to it: a user's row and its record in one statement, :class:`app.store.storage.SqlStorage`)."""


def settled_of(row: Any) -> ProvisioningRecord | None:
    """The record (``identity_id``, ``state``, ``last_error``, ``applied``) of a row with the
    :data:`SETTLED_COLUMNS` if it is settled (:func:`settled_target`) and the user is not marked dirty;
    else None.

    A mark stays until the converge that claimed it settles, in the transaction that writes the record:
    with no mark, no converge is under way, and the record is what the controller was last given.
    """
    if row is None or row.s_dirty:
        return None
    record: ProvisioningRecord = {
        "identity_id": row.s_identity_id,
        "state": row.s_state,
        "last_error": row.s_last_error,
        "applied": row.s_applied,
    }
    return record if settled_target(record) is not None else None


async def settled_now(tx: Transaction, source: str, user_id: str) -> ProvisioningRecord | None:
    """:func:`settled_of` the user's record, read now."""
    return settled_of((await tx.execute(_SETTLED, {"s_source": source, "s_user_id": user_id})).first())


_SETTLED = select(*SETTLED_COLUMNS).where(
    provisioning.c.source == bindparam("s_source"), provisioning.c.user_id == bindparam("s_user_id")
)
"""The query of :func:`settled_now`, built once."""


class Synced(NamedTuple):
    """A converged user's record (:func:`record_synced_all`)."""

    source: str
    user_id: str
    identity_id: str
    applied: dict[str, Any]
    adopted: bool


class Outcome(NamedTuple):
    """A converge's error (:func:`record_errors`); ``state`` None keeps the state."""

    source: str
    user_id: str
    message: str
    state: str | None = None


def _synced_statement(is_sqlite: bool) -> Any:
    insert = upsert(provisioning, is_sqlite=is_sqlite)
    kept = ("identity_id", "state", "last_error", "applied", "adopted", "updated_at")
    return insert.on_conflict_do_update(
        index_elements=["source", "user_id"], set_={name: insert.excluded[name] for name in kept}
    )


_SYNCED = {True: _synced_statement(True), False: _synced_statement(False)}
_BY_KEY = and_(provisioning.c.source == bindparam("b_source"), provisioning.c.user_id == bindparam("b_user"))
_ERROR = (
    update(provisioning)
    .where(_BY_KEY)
    .values(
        last_error=bindparam("b_error", type_=Text),
        state=func.coalesce(bindparam("b_state", type_=String), provisioning.c.state),
        updated_at=bindparam("b_at", type_=Float),
    )
)
_DISABLED = (
    update(provisioning)
    .where(_BY_KEY)
    .values(state="disabled", last_error=None, updated_at=bindparam("b_at", type_=Float))
)
_FORGET = delete(provisioning).where(_BY_KEY)


def _ordered(rows: Iterable[Any]) -> list[Any]:
    # In key order, so that concurrent transactions lock rows in the same order (PostgreSQL).
    return sorted(rows, key=lambda row: (row.source, row.user_id))


async def record_synced(
    tx: Transaction,
    source: str,
    user_id: str,
    *,
    identity_id: str,
    applied: dict[str, Any],
    adopted: bool,
) -> None:
    """The user's identity is converged: state ``synced``, no error, ``applied`` what was written."""
    await record_synced_all(tx, [Synced(source, user_id, identity_id, applied, adopted)])


async def record_synced_all(tx: Transaction, records: Sequence[Synced]) -> None:
    """:func:`record_synced` of many users, one statement (executemany) for all of them."""
    if not records:
        return
    now = time.time()
    rows = [
        {
            "source": record.source,
            "user_id": record.user_id,
            "identity_id": record.identity_id,
            "state": "synced",
            "last_error": None,
            "applied": record.applied,
            "adopted": record.adopted,
            "updated_at": now,
        }
        for record in _ordered(records)
    ]
    await tx.execute(_SYNCED[tx.dialect.name == "sqlite"], rows)


async def record_error(
    tx: Transaction, source: str, user_id: str, message: str, *, state: str | None = None
) -> None:
    """Set the record's last error (cut to :data:`MAX_ERROR` characters), and its state if given.

    ``state=None`` keeps the state: a transient failure, or a change in flight, is not a verdict.
    A user without a record is left without one.
    """
    await record_errors(tx, [Outcome(source, user_id, message, state)])


async def record_errors(tx: Transaction, outcomes: Sequence[Outcome]) -> None:
    """:func:`record_error` of many users, one statement (executemany) for all of them."""
    if not outcomes:
        return
    now = time.time()
    rows = [
        {
            "b_source": outcome.source,
            "b_user": outcome.user_id,
            "b_error": outcome.message[:MAX_ERROR],
            "b_state": outcome.state,
            "b_at": now,
        }
        for outcome in _ordered(outcomes)
    ]
    await tx.execute(_ERROR, rows)


async def record_disabled(tx: Transaction, source: str, user_id: str) -> None:
    """The deleted user's identity is kept, disabled: state ``disabled``, no error."""
    await record_disabled_all(tx, [(source, user_id)])


async def record_disabled_all(tx: Transaction, users: Sequence[tuple[str, str]]) -> None:
    """:func:`record_disabled` of many ``(source, user_id)``, one statement for all of them."""
    if users:
        now = time.time()
        await tx.execute(_DISABLED, [{"b_source": s, "b_user": u, "b_at": now} for s, u in sorted(users)])


async def forget(tx: Transaction, source: str, user_id: str) -> None:
    """Drop the record (the deleted user's identity is gone, or handed back)."""
    await forget_all(tx, [(source, user_id)])


async def forget_all(tx: Transaction, users: Sequence[tuple[str, str]]) -> None:
    """:func:`forget` of many ``(source, user_id)``, one statement for all of them."""
    if users:
        await tx.execute(_FORGET, [{"b_source": s, "b_user": u} for s, u in sorted(users)])


async def record_drift(
    tx: Transaction, source: str, user_id: str, *, applied: dict[str, Any] | None, identity_lost: bool
) -> None:
    """What the controller really holds differs from the record (``ziti-scim sync``): state ``pending``.

    ``applied`` replaces what was last written; ``identity_lost`` also forgets the identity id, so the
    next converge creates (or finds) one.
    """
    values: dict[str, Any] = {"applied": applied, "state": "pending", "updated_at": time.time()}
    if identity_lost:
        values["identity_id"] = None
    await tx.execute(update(provisioning).where(_key(source, user_id)).values(**values))


async def count_in_state(tx: Transaction, state: str) -> dict[str, int]:
    """How many records are in ``state``, per source (sources without any are absent)."""
    query = (
        select(provisioning.c.source, func.count())
        .where(provisioning.c.state == state)
        .group_by(provisioning.c.source)
    )
    return {str(source): int(count) for source, count in await tx.execute(query)}


async def managed_count(tx: Transaction, source: str) -> int:
    """How many of ``source``'s users have an identity recorded."""
    query = (
        select(func.count())
        .select_from(provisioning)
        .where(provisioning.c.source == source, provisioning.c.identity_id.is_not(None))
    )
    return int((await tx.execute(query)).scalar_one())


async def queued_with_error(tx: Transaction, source: str, fragment: str) -> int:
    """How many of ``source``'s users are still marked dirty with a last error containing ``fragment``."""
    query = (
        select(func.count())
        .select_from(provisioning)
        .join(dirty, and_(dirty.c.source == provisioning.c.source, dirty.c.user_id == provisioning.c.user_id))
        .where(
            provisioning.c.source == source,
            provisioning.c.last_error.contains(fragment, autoescape=True),
        )
    )
    return int((await tx.execute(query)).scalar_one())


async def user_of_identity(tx: Transaction, identity_id: str) -> tuple[str, str] | None:
    """``(source, user_id)`` of the record holding this identity, or None."""
    row = (
        await tx.execute(
            select(provisioning.c.source, provisioning.c.user_id).where(
                provisioning.c.identity_id == identity_id
            )
        )
    ).first()
    return (str(row.source), str(row.user_id)) if row is not None else None


__all__ = [
    "MAX_ERROR",
    "ExternalIdTaken",
    "Outcome",
    "Synced",
    "admit",
    "admit_skipped",
    "count_in_state",
    "forget",
    "forget_all",
    "get",
    "managed_count",
    "queued_with_error",
    "record_disabled",
    "record_disabled_all",
    "record_drift",
    "record_error",
    "record_errors",
    "record_synced",
    "record_synced_all",
    "records",
    "release_external_id",
    "shown",
    "user_of_identity",
    "view",
]
