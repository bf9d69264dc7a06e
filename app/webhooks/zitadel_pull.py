"""The ZITADEL repair: read every user and grant from the API and converge the source's store to it.

ZITADEL drops an event delivery that fails (an Actions v2 target gets no retries), so a periodic pull is
what makes the webhook path reliable; ``ziti-scim sync`` runs the same pull once. The API's view of each
user and grant is recorded as the aggregate's base in the event log and the aggregate folded and applied
exactly as for a delivery (:class:`~app.webhooks.zitadel_sync.ZitadelAggregates`, whose docstring says how
the pull and the events combine): users are upserted (attributes, activation, lockout), grants stored and
each touched user's ``roles`` recomputed. Grants and users ZITADEL no longer has are removed from the
store (only after both lists were read completely, so a failed read never deletes anything); the pull
keeps their events and writes no tombstone, and it never brings back a user or grant a ``removed`` event
deleted.

The pull never deletes what it could not see. Actions v2 executions are instance-wide, so webhooks bring
users of every organisation, while the organisation-scoped token the docs recommend lists only its own.
A stored user (or a grant of it) missing from the lists is removed only when its organisation
(``resourceOwner``, remembered from its events or an earlier read) is one the pull listed: the source's
``zitadel_organizations`` when set (users of other organisations are then not even taken from the
lists), otherwise the organisations of the users listed. A user whose organisation is unknown is kept
and reported.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from app.webhooks.apply import ApplyFailed, ApplyRetry, Outcome
from app.webhooks.authentik_fetcher import IdpFetchError
from app.webhooks.events import UserDelete
from app.webhooks.periodic import Periodic
from app.webhooks.zitadel_api import ZitadelApi
from app.webhooks.zitadel_sync import ZitadelAggregates

__all__ = ["PullReport", "ZitadelPuller", "pull_zitadel_users"]

log = logging.getLogger("ziti_scim.webhooks")


@dataclass
class PullReport:
    users: int = 0
    grants: int = 0
    deleted: int = 0
    changes: list[str] = field(default_factory=list)


def _owner(item: dict[str, Any]) -> str | None:
    details = item.get("details")
    owner = details.get("resourceOwner") if isinstance(details, dict) else None
    return owner if isinstance(owner, str) and owner else None


async def pull_zitadel_users(
    aggregates: ZitadelAggregates, api: ZitadelApi, organizations: Collection[str] | None = None
) -> PullReport:
    """Converge the source's store to ZITADEL's users and grants (see the module docstring)."""
    users = await api.list_users()
    grants = await api.list_grants()
    if organizations:
        users = [user for user in users if _owner(user) in organizations]
        listed = {str(user.get("userId")) for user in users}
        grants = [grant for grant in grants if str(grant.get("userId")) in listed]
        seen_orgs = set(organizations)
    else:
        seen_orgs = {owner for user in users if (owner := _owner(user)) is not None}
    applier = aggregates.applier
    report = PullReport()
    known: set[str] = set()
    for user in users:
        user_id = user.get("userId")
        try:
            applied = await aggregates.snapshot_user(user, Outcome())
        except ApplyFailed as failure:
            # One user the mapping refuses must not stop the repair of the others (nor delete it).
            known.add(str(user_id))
            report.changes.append(f"user {user_id} refused: {failure.detail}")
            continue
        if applied is not None:
            known.add(applied)
            report.users += 1
    state = applier.state
    stale = await state.grant_ids()
    touched: set[str] = set()
    for grant in grants:
        stored = await aggregates.snapshot_grant(grant, Outcome())
        if stored is None:
            continue
        grant_id, user_id = stored
        stale.discard(grant_id)
        if user_id is not None:
            touched.add(user_id)
            report.grants += 1
    unseen: dict[str, bool] = {}

    async def visible(user_id: str) -> bool:
        if user_id not in unseen:
            unseen[user_id] = await aggregates.organization_of(user_id) in seen_orgs
        return unseen[user_id]

    for grant_id in stale:
        user_id = await state.grant_user(grant_id)
        if user_id is not None and user_id not in known and not await visible(user_id):
            continue  # a grant of a user of an organisation the pull did not list
        await state.drop_grant(grant_id)
        if user_id is not None:
            touched.add(user_id)
    for user_id in sorted(touched & known):
        await applier.sync_roles(user_id)
    kept = 0
    for external_id in sorted(set(await applier.user_ids()) - known):
        if not await visible(external_id):
            kept += 1
            continue
        await applier.apply([UserDelete(external_id)])
        report.deleted += 1
    await aggregates.compact()
    summary = f"{report.users} users, {report.grants} grants, {report.deleted} deleted"
    if kept:
        summary += f", {kept} of organisations not listed kept"
    report.changes.insert(0, summary)
    return report


class ZitadelPuller(Periodic):
    """Runs :func:`pull_zitadel_users` every ``interval`` seconds until stopped."""

    def __init__(
        self,
        aggregates: ZitadelAggregates,
        api: ZitadelApi,
        interval: float = 900.0,
        organizations: Collection[str] | None = None,
    ) -> None:
        super().__init__(f"zitadel-pull-{aggregates.source}")
        self.aggregates = aggregates
        self.api = api
        self.interval = interval
        self.organizations = organizations

    async def run_once(self) -> PullReport | None:
        try:
            report = await pull_zitadel_users(self.aggregates, self.api, self.organizations)
        except (IdpFetchError, ApplyRetry) as error:
            log.warning("zitadel pull of source %s failed: %s", self.aggregates.source, error)
            return None
        log.info("zitadel pull of source %s: %s", self.aggregates.source, "; ".join(report.changes))
        return report
