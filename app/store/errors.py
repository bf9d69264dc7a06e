"""Which database failures are the client's and which are transient: the store's error vocabulary.

A *data error* is a value the database cannot hold: too long for its column, out of a numeric range,
text that is not valid for the type (SQLSTATE class 22, "data exception", in PostgreSQL's
``errcodes.txt``). Retrying it can never succeed, so it is answered as the client's error (400), never as
a retryable 503. SQLAlchemy's asyncpg adapter maps only some asyncpg classes to its own exception types
(class 22 arrives as a plain ``DBAPIError``), so the SQLSTATE of the driver's error decides.

An *unavailable* error is the database being unreachable, restarting or timing out: transient, retried.

Code outside :mod:`app.store` catches the store's failures through these names, never through the
database library's.
"""

from __future__ import annotations

from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, ProgrammingError, SQLAlchemyError

StoreError = SQLAlchemyError
"""Any failure of the store's database (unreachable, not migrated, a refused value)."""

DatabaseError = DBAPIError
"""A failure the database driver reported: unreachable, timed out, or a statement it refused."""


def sqlstate(error: BaseException) -> str | None:
    """The SQLSTATE of a driver error wrapped by SQLAlchemy, when the driver reports one."""
    orig = getattr(error, "orig", None)
    state = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    return state if isinstance(state, str) else None


def is_data_error(error: BaseException) -> bool:
    """True for a value the database refuses (see the module docstring)."""
    if isinstance(error, DataError):
        return True
    state = sqlstate(error)
    return isinstance(error, DBAPIError) and state is not None and state.startswith("22")


CONFLICTS = frozenset({"40001", "40P01"})
"""SQLSTATEs of a transaction PostgreSQL rolled back to break a conflict with another one
(serialization_failure, deadlock_detected): nothing of it was applied, so running it again is safe."""


def is_conflict(error: BaseException) -> bool:
    """True when the whole transaction was rolled back for a conflict (:data:`CONFLICTS`): retry it."""
    return isinstance(error, DBAPIError) and sqlstate(error) in CONFLICTS


def is_unavailable(error: BaseException) -> bool:
    """True for a driver-reported failure that is not about the statement or its values: the database is
    unreachable, restarting or timing out (a constraint or a schema error is not transient)."""
    return isinstance(error, DBAPIError) and not isinstance(error, IntegrityError | ProgrammingError)


__all__ = [
    "CONFLICTS",
    "DatabaseError",
    "StoreError",
    "is_conflict",
    "is_data_error",
    "is_unavailable",
    "sqlstate",
]
