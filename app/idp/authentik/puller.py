"""The authentik repair: read every user and group from the API and converge the source's store to it.

authentik's webhook delivery is lossy (a notification is sent by a background task that gives up after a
few tries, and the default body is ambiguous), so an authentik source with ``authentik_url`` and
``authentik_token`` is also pulled every ``authentik_pull_interval`` seconds (900 by default; the first
one an interval after start), like a ZITADEL source (:mod:`app.idp.zitadel.puller`); ``ziti-scim
sync`` runs it once too.

Each user is written as the API describes it (only what differs, :meth:`EventApplier.write_user`) with
its groups (by group id, so renames follow); each group's name and members are set from the API. Users
of the store that the lists do not contain are deleted (through the store, which marks them for the
reconciler) **only** when both lists were read completely and the token is proven to see every user
(a superuser token, :meth:`AuthentikUserFetcher.sees_everything`); otherwise they are reported, kept.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from app.idp.authentik.api import AuthentikUserFetcher, group_snapshot
from app.idp.authentik.webhook import user_events
from app.webhooks.apply import ApplyFailed, ApplyRetry, EventApplier
from app.webhooks.errors import IdpFetchError, WebhookInvalid
from app.webhooks.events import UserDelete, UserGroups, UserUpsert
from app.webhooks.periodic import Periodic

__all__ = ["AuthentikPuller", "AuthentikPullReport", "pull_authentik"]

log = logging.getLogger("ziti_scim.webhooks")


@dataclass
class AuthentikPullReport:
    users: int = 0
    groups: int = 0
    deleted: int = 0
    kept_unseen: int = 0
    changes: list[str] = field(default_factory=list)


async def pull_authentik(applier: EventApplier, api: AuthentikUserFetcher) -> AuthentikPullReport:
    """Converge the source's store to authentik's users and groups (see the module docstring)."""
    # The store is read first: a user a delivery creates while the lists are read is never a candidate.
    stored = set(await applier.user_ids())
    users = await api.list_users()
    groups = await api.list_groups()
    report = AuthentikPullReport()
    seen: set[str] = set()
    for obj in users:
        try:
            events = user_events(obj)
        except WebhookInvalid as invalid:
            report.changes.append(f"a user object was unusable: {invalid.reason}")
            continue
        for event in events:
            if isinstance(event, UserUpsert):
                seen.add(event.source_user_id)
                try:
                    if await applier.write_user(event.source_user_id, event.user) != "unchanged":
                        report.users += 1
                except ApplyFailed as failure:
                    report.changes.append(f"user {event.source_user_id} refused: {failure.detail}")
                    break
            elif isinstance(event, UserGroups):
                await applier.user_groups(event.source_user_id, event.group_names, event.group_ids)
    for obj in groups:
        await applier.group_snapshot(group_snapshot(obj))
        report.groups += 1
    unseen = sorted(stored - seen)
    if unseen and await api.sees_everything():
        for external_id in unseen:
            await applier.apply([UserDelete(external_id)])
            report.deleted += 1
    else:
        report.kept_unseen = len(unseen)
    report.changes.insert(
        0,
        f"{report.users} users written, {report.groups} groups, {report.deleted} deleted"
        + (f", {report.kept_unseen} not visible to the token (kept)" if report.kept_unseen else ""),
    )
    return report


class AuthentikPuller(Periodic):
    """Runs :func:`pull_authentik` every ``interval`` seconds until stopped.

    The first pull waits one interval: at start-up the webhooks are already live and a pull racing the
    first deliveries only adds load; ``ziti-scim sync`` pulls at once when asked.
    """

    first_delay = True

    def __init__(
        self, source: str, applier: EventApplier, api: AuthentikUserFetcher, interval: float = 900.0
    ) -> None:
        super().__init__(f"authentik-pull-{source}")
        self.source = source
        self.applier = applier
        self.api = api
        self.interval = interval

    async def run_once(self) -> AuthentikPullReport | None:
        try:
            report = await pull_authentik(self.applier, self.api)
        except (IdpFetchError, ApplyRetry, ApplyFailed) as error:
            log.warning("authentik pull of source %s failed: %s", self.source, error)
            return None
        log.info("authentik pull of source %s: %s", self.source, "; ".join(report.changes))
        return report
