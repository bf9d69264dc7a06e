"""Which database failures are the client's and which are transient.

A *data error* is a value the database cannot hold: too long for its column, out of a numeric range,
text that is not valid for the type (SQLSTATE class 22, "data exception", in PostgreSQL's
``errcodes.txt``). Retrying it can never succeed, so it is answered as the client's error (400), never as
a retryable 503. SQLAlchemy's asyncpg adapter maps only some asyncpg classes to its own exception types
(class 22 arrives as a plain ``DBAPIError``), so the SQLSTATE of the driver's error decides.
"""

from __future__ import annotations

from sqlalchemy.exc import DataError, DBAPIError


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
