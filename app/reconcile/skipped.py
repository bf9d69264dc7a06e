"""Users that are stored but not provisioned, because a value their identity needs is missing.

RFC 7643 §4.1 makes nearly every User attribute optional (``{"userName": "x"}`` is a valid user), while a
mapping may need one of them, e.g. the primary email of the ``generic`` preset for the identity's
``externalId``. Such a user gets ``provisioningState: skipped`` with a ``lastError`` naming the missing
attribute (see :mod:`app.reconcile.admission`), is counted by the ``ziti_scim_skipped_users`` gauge and
listed by ``ziti-scim doctor``, and is provisioned by the write that brings the attribute.
"""

from __future__ import annotations

from app.mapping import MappingError
from app.store import provisioning
from app.store.db import Database

SKIPPED = "skipped"


def unmappable_message(error: MappingError) -> str:
    return f"{error.attribute}: {error.detail} (needed for the OpenZiti identity)"


async def skipped_counts(db: Database) -> dict[str, int]:
    """Skipped users per source (sources without any are absent)."""
    async with db.transaction() as tx:
        return await provisioning.count_in_state(tx, SKIPPED)
