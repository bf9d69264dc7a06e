"""The one place where ziti-scim changes the controller: create, patch, disable, enable, delete, adopt.

Every controller write of the reconciler and of ``ziti-scim sync`` goes through :meth:`Actuator.act`,
which, in order:

1. checks ownership: an existing identity is changed only when it carries ziti-scim's provenance tags
   for the acting source (:mod:`app.reconcile.settings`), an adoption never takes an admin identity
   (``isAdmin``/``isDefaultAdmin``), and no admin identity is disabled or deleted;
2. runs the caller's ``before`` step (the reconciler records "a change is in flight" there, so that a
   lost answer is resolved by re-reading the controller next time);
3. applies the mass-deprovision brake to ``disable`` and ``delete`` (:mod:`app.reconcile.safety`);
4. makes the call, then writes the audit row and counts the metric.

The call is passed as a callable, not as a coroutine: if a step before it fails (the database is gone,
the brake holds), the call is simply never made, and no coroutine is left un-awaited.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from app.constants import DESTRUCTIVE_ACTIONS
from app.observability import audit
from app.observability.metrics import Metrics
from app.reconcile.safety import Held, Safety
from app.reconcile.settings import MANAGER, TAG_ID, TAG_MANAGED_BY, TAG_SOURCE
from app.store.db import Database

log = logging.getLogger("ziti_scim.reconcile")

T = TypeVar("T")
ACTIONS = ("create", "patch", "disable", "enable", "delete", "adopt", "take-over", "untag")
"""``take-over``: another source's identity (``takeover_from``); ``untag``: an adopted one handed back."""


@dataclass(frozen=True)
class Origin:
    """Who a controller change is for and what asked for it (the audit row's context)."""

    source: str
    user_id: str | None = None
    user_name: str | None = None
    request_id: str | None = None
    operation: str | None = None


class NotOurs(Exception):
    """The identity is not ziti-scim's to change (untagged, another source's, or an admin)."""


def _tags(identity: Mapping[str, Any]) -> Mapping[str, Any]:
    tags = identity.get("tags")
    return tags if isinstance(tags, Mapping) else {}


def check_ownership(origin: Origin, action: str, identity: Mapping[str, Any] | None) -> None:
    """Raise :class:`NotOurs` unless ``action`` may be applied to ``identity`` (as last read)."""
    if identity is None or action == "create":
        return
    admin = bool(identity.get("isAdmin")) or bool(identity.get("isDefaultAdmin"))
    tags = _tags(identity)
    if action in ("adopt", "take-over"):
        # Whether the identity may be claimed at all is app.reconcile.ownership's decision; the actuator
        # only keeps the one rule that holds whatever the configuration: an admin is never claimed.
        if admin:
            raise NotOurs(f"identity {identity.get('id')} is an admin: never adopted or taken over")
        return
    if tags.get(TAG_MANAGED_BY) != MANAGER or tags.get(TAG_SOURCE) != origin.source:
        raise NotOurs(f"identity {identity.get('id')} is not managed by ziti-scim for {origin.source}")
    if origin.user_id is not None and tags.get(TAG_ID) not in (None, origin.user_id):
        raise NotOurs(f"identity {identity.get('id')} is tagged for another user")
    if admin and action in DESTRUCTIVE_ACTIONS:
        raise NotOurs(f"identity {identity.get('id')} is an admin: never disabled or deleted")


class Actuator:
    """Applies controller changes with the ownership check, the brake, the audit row and the metric."""

    def __init__(self, db: Database, *, safety: Safety | None = None, metrics: Metrics | None = None) -> None:
        self.db = db
        self.safety = safety
        self.metrics = metrics

    async def act(
        self,
        origin: Origin,
        action: str,
        identity_id: str | None,
        call: Callable[[], Awaitable[T]],
        *,
        identity: Mapping[str, Any] | None = None,
        before: Callable[[], Awaitable[None]] | None = None,
        audit_to: list[audit.AuditEntry] | None = None,
    ) -> T:
        """Make one controller change. ``identity`` is the identity as last read, when it was read.

        ``audit_to`` collects the audit row instead of writing it, for a caller that writes it in the
        same transaction as its own bookkeeping (not for disable/delete, which the brake counts at once).
        """
        assert action in ACTIONS, action
        check_ownership(origin, action, identity)
        if before is not None:
            await before()
        destructive = action in DESTRUCTIVE_ACTIONS and self.safety is not None
        if destructive:
            assert self.safety is not None
            await self.safety.acquire_destructive(origin.source, action)
        try:
            result = await call()
        except BaseException:
            if destructive:
                assert self.safety is not None
                self.safety.release_destructive()
            raise
        created = result if isinstance(result, str) else None
        entry = self.entry(origin, action, identity_id or created, "done")
        if destructive:
            # The brake counts done disable/delete rows: the row is written as the reservation drops.
            assert self.safety is not None
            await self.safety.complete_destructive(lambda: audit.record(self.db, [entry]))
        elif audit_to is not None:
            audit_to.append(entry)
        else:
            await audit.record(self.db, [entry])
        if self.metrics is not None:
            self.metrics.controller_actions.labels(action).inc()
        log.info(
            "controller action",
            extra={
                "source": origin.source,
                "user_id": origin.user_id,
                "action": action,
                "identity_id": identity_id or created,
                "outcome": "done",
                "request_id": origin.request_id,
            },
        )
        return result

    @staticmethod
    def entry(
        origin: Origin, action: str, identity_id: str | None, outcome: str, error: str | None = None
    ) -> audit.AuditEntry:
        return audit.AuditEntry(
            source=origin.source,
            user_id=origin.user_id,
            user_name=origin.user_name,
            request_id=origin.request_id,
            operation=origin.operation,
            identity_id=identity_id,
            action=action,
            outcome=outcome,
            error=error,
        )

    async def refused(
        self, origin: Origin, action: str, identity_id: str | None, outcome: str, error: str
    ) -> None:
        """Audit a change that was not made (held by the brake, not ours, failed)."""
        await audit.record(self.db, [self.entry(origin, action, identity_id, outcome, error)])


__all__ = ["ACTIONS", "Actuator", "Held", "NotOurs", "Origin", "check_ownership"]
