"""Safety brakes: pause, and the mass-deprovision brake.

Both live in the database (``settings`` table) so that every process and the CLI see them. While
paused, SCIM writes are stored and marked dirty but nothing reaches the controller. The brake engages
when more than ``brake_max`` identities, or more than ``brake_share`` of the managed ones (once at least
``brake_min`` are involved), would be disabled or deleted within ``brake_window`` seconds — the shape of
an IdP bug or a mis-scoped group. Held actions stay queued (nothing is lost) until ``ziti-scim resume``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from app.constants import DESTRUCTIVE_ACTIONS
from app.store import audit, provisioning, queue, settings
from app.store.db import Database

PAUSED = "paused"


def brake_key(source: str) -> str:
    return f"brake:{source}"


def release_key(source: str) -> str:
    return f"brake_release:{source}"


async def engaged_brakes(db: Database) -> dict[str, dict[str, Any]]:
    """The engaged brakes, by source (each source has its own: one IdP's mistake is held on its own)."""
    async with db.transaction() as tx:
        brakes = await settings.with_prefix(tx, brake_key(""))
    return {key.split(":", 1)[1]: value for key, value in brakes.items()}


@dataclass(frozen=True)
class BrakeConfig:
    max_count: int = 100
    max_share: float = 0.25
    min_count: int = 10
    window: float = 3600.0


class Held(Exception):
    """A destructive action withheld by the brake; the user stays queued."""


async def read_setting(db: Database, key: str) -> Any:
    """``settings[key]`` (None when unset), in a transaction of its own."""
    async with db.transaction() as tx:
        return await settings.get(tx, key)


async def write_setting(db: Database, key: str, value: Any) -> None:
    """Set (or, with None, unset) ``settings[key]``, in a transaction of its own."""
    async with db.transaction(write=True) as tx:
        await settings.put(tx, key, value)


async def resume(db: Database) -> dict[str, dict[str, Any]]:
    """Lift pause and every brake, and make every queued user due now; return the brakes released.

    Releasing a brake lets the actions it held through: they become an allowance on top of the limits,
    counted from the release, so the brake does not trip again on the very actions reviewed.
    """
    released = await engaged_brakes(db)
    for source in released:
        async with db.transaction() as tx:
            held = await provisioning.queued_with_error(tx, source, "brake")
        await write_setting(db, release_key(source), {"released_at": time.time(), "allowance": held})
        await write_setting(db, brake_key(source), None)
    await write_setting(db, PAUSED, None)
    async with db.transaction(write=True) as tx:
        await queue.make_all_due(tx)
    return released


class Safety:
    def __init__(self, db: Database, brake: BrakeConfig, *, cache_seconds: float = 1.0) -> None:
        self.db = db
        self.config = brake
        self.cache_seconds = cache_seconds
        self._cache: dict[str, tuple[float, Any]] = {}
        self._lock = asyncio.Lock()
        self._reserved = 0

    async def _setting(self, key: str) -> Any:
        cached = self._cache.get(key)
        now = time.monotonic()
        if cached is not None and now - cached[0] < self.cache_seconds:
            return cached[1]
        value = await read_setting(self.db, key)
        self._cache[key] = (now, value)
        return value

    async def paused(self) -> bool:
        return bool(await self._setting(PAUSED))

    async def brake(self, source: str) -> dict[str, Any] | None:
        value = await self._setting(brake_key(source))
        return value if isinstance(value, dict) else None

    async def acquire_destructive(self, source: str, action: str) -> None:
        """Reserve one destructive action, or raise :class:`Held` (engaging the brake if it trips)."""
        async with self._lock:
            if await self.brake(source) is not None:
                raise Held("held by the mass-deprovision brake (ziti-scim resume releases it)")
            since = time.time() - self.config.window
            allowance = 0
            release = await self._setting(release_key(source))
            if isinstance(release, dict) and release.get("released_at", 0) > since:
                since = float(release["released_at"])
                allowance = int(release.get("allowance", 0))
            async with self.db.transaction() as tx:
                done = await audit.count(tx, source, since=since, actions=DESTRUCTIVE_ACTIONS, outcome="done")
                managed = await provisioning.managed_count(tx, source)
            count = max(0, int(done) + self._reserved + 1 - allowance)
            share = count / managed if managed else 1.0
            if count > self.config.max_count or (
                count > self.config.min_count and share > self.config.max_share
            ):
                reason = (
                    f"{count} disable/delete actions within {int(self.config.window)} s "
                    f"({share:.0%} of {managed} managed identities)"
                )
                await write_setting(
                    self.db,
                    brake_key(source),
                    {"engaged_at": time.time(), "reason": reason, "action": action},
                )
                self._cache.pop(brake_key(source), None)
                raise Held(f"mass-deprovision brake engaged: {reason}")
            self._reserved += 1

    def release_destructive(self) -> None:
        """A reserved action that was not made (its call failed): it leaves no audit row."""
        self._reserved = max(0, self._reserved - 1)

    async def complete_destructive(self, record: Callable[[], Awaitable[None]]) -> None:
        """A reserved action was made: write its audit row (``record``) and drop the reservation together.

        Under the same lock as :meth:`acquire_destructive`, so that a count in progress sees the action
        either as reserved or as a done row, never as neither (nor both).
        """
        async with self._lock:
            try:
                await record()
            finally:
                self._reserved = max(0, self._reserved - 1)
