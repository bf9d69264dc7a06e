"""The deployment id: which ziti-scim installation an identity belongs to (tag ``scimDeployment``).

Generated once (a random UUID) and kept in the ``settings`` table, so every replica on one database
shares it; ``[server] deployment_id`` sets it explicitly, so that a database restored from a backup, or
rebuilt from scratch, keeps owning the identities it made. Two installations pointed at one controller
have different ids and never touch each other's identities (:mod:`app.reconcile.ownership`).
"""

from __future__ import annotations

import re
import uuid

from app.reconcile.safety import read_setting, write_setting
from app.store import settings
from app.store.db import Database

DEPLOYMENT_KEY = "deployment_id"
VALID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


async def deployment_id(db: Database, configured: str | None = None) -> str:
    """The configured id (stored, so the database remembers it), else the stored one, else a new one."""
    stored = await read_setting(db, DEPLOYMENT_KEY)
    if configured:
        if stored != configured:
            await write_setting(db, DEPLOYMENT_KEY, configured)
        return configured
    if isinstance(stored, str) and stored:
        return stored
    async with db.transaction(write=True) as tx:
        # Two replicas starting at once: the first insert wins, both read it back.
        await settings.put_new(tx, DEPLOYMENT_KEY, uuid.uuid4().hex)
    value = await read_setting(db, DEPLOYMENT_KEY)
    assert isinstance(value, str)
    return value
