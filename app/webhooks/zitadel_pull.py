"""The ZITADEL repair: read every user and grant from the API and converge the source's store to it.

ZITADEL drops an event delivery that fails (no retries, research/zitadel.md §3), so a periodic pull is
what makes the webhook path reliable; ``ziti-scim sync`` runs the same pull once. Every change goes
through the same :class:`~app.webhooks.apply.EventApplier` as the webhooks, i.e. through the source's
SCIM application: users are upserted (attributes, activation, lockout), the grant table is replaced by
ZITADEL's grants and each user's ``roles`` recomputed, and users ZITADEL no longer has are deleted
(only after both lists were read completely, so a failed read never deletes anything).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from app.webhooks.apply import ApplyFailed, ApplyRetry, EventApplier
from app.webhooks.authentik_fetcher import IdpFetchError
from app.webhooks.events import UserDelete, UserUpsert
from app.webhooks.zitadel_api import ZitadelApi, zitadel_user_events

__all__ = ["PullReport", "ZitadelPuller", "pull_zitadel_users"]

log = logging.getLogger("ziti_scim.webhooks")

_GRANT_STATES = {"USER_GRANT_STATE_ACTIVE": True, "USER_GRANT_STATE_INACTIVE": False}


@dataclass
class PullReport:
    users: int = 0
    grants: int = 0
    deleted: int = 0
    changes: list[str] = field(default_factory=list)


async def pull_zitadel_users(applier: EventApplier, api: ZitadelApi) -> PullReport:
    """Converge the applier's source to ZITADEL's users and grants (see the module docstring)."""
    users = await api.list_users()
    grants = await api.list_grants()
    report = PullReport()
    known: set[str] = set()
    for user in users:
        events = zitadel_user_events(user)
        if not isinstance(events[0], UserUpsert):
            continue
        known.add(events[0].source_user_id)
        try:
            await applier.apply(events)
        except ApplyFailed as failure:
            # One user the mapping refuses must not stop the repair of the others.
            report.changes.append(f"user {events[0].source_user_id} refused: {failure.detail}")
            continue
        report.users += 1
    state = applier.state
    stale = await state.grant_ids()
    touched: set[str] = set()
    for grant in grants:
        grant_id, user_id, active = (
            grant.get("id"),
            grant.get("userId"),
            _GRANT_STATES.get(str(grant.get("state"))),
        )
        if not isinstance(grant_id, str) or not isinstance(user_id, str) or active is None:
            continue
        roles = [key for key in grant.get("roleKeys") or [] if isinstance(key, str)]
        await state.put_grant(grant_id, user_id, roles, active)
        stale.discard(grant_id)
        touched.add(user_id)
        report.grants += 1
    for grant_id in stale:
        user_id = await state.grant_user(grant_id)
        await state.drop_grant(grant_id)
        if user_id is not None:
            touched.add(user_id)
    for user_id in sorted(touched & known):
        await applier.sync_roles(user_id)
    for external_id in sorted(set(await applier.user_ids()) - known):
        await applier.apply([UserDelete(external_id)])
        report.deleted += 1
    report.changes.insert(0, f"{report.users} users, {report.grants} grants, {report.deleted} deleted")
    return report


class ZitadelPuller:
    """Runs :func:`pull_zitadel_users` every ``interval`` seconds until stopped."""

    def __init__(self, applier: EventApplier, api: ZitadelApi, interval: float = 900.0) -> None:
        self.applier = applier
        self.api = api
        self.interval = interval
        self._task: asyncio.Task[None] | None = None

    async def run_once(self) -> PullReport | None:
        try:
            report = await pull_zitadel_users(self.applier, self.api)
        except (IdpFetchError, ApplyRetry) as error:
            log.warning("zitadel pull of source %s failed: %s", self.applier.app.source.name, error)
            return None
        log.info("zitadel pull of source %s: %s", self.applier.app.source.name, "; ".join(report.changes))
        return report

    async def _loop(self) -> None:
        while True:
            await self.run_once()
            await asyncio.sleep(self.interval)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="zitadel-pull")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
