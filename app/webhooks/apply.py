"""Apply neutral webhook events (:mod:`app.webhooks.events`) to a source through its own SCIM application.

Every change is a SCIM request (RFC 7644 §3) served by the source's
:class:`~app.scim.router.SourceApplication`, exactly as if the IdP had sent it over SCIM: the same
validation, the same storage (dirty marks in the same transaction), the same mapping admission and the
same inline reconcile. The IdP's user id is the SCIM ``externalId`` and users are found with the filter
``externalId eq "<id>"`` (RFC 7644 §3.4.2.2).

* ``UserUpsert`` creates the user, or replaces the attributes it carries (a path-less PATCH replace,
  RFC 7644 §3.5.2.3), so what it does not describe (roles from grants, groups) is kept. A user created
  over SCIM without an ``externalId`` and the same ``userName`` is adopted (Asgardeo sends no id over
  SCIM, asgardeo.md §A3, but its webhooks do).
* ``UserActive``/``UserLocked`` are remembered apart (:class:`~app.store.webhook_state.IdpState`); SCIM
  ``active`` is ``active and not locked``.
* ZITADEL grants: the grant → user link and the grant's role keys are stored; the user's ``roles`` are
  the union of the role keys of its active grants (research/zitadel.md §6, preset ``zitadel``).
* ZITADEL deliveries do not come here event by event: :mod:`app.webhooks.zitadel_sync` folds each
  aggregate's events in sequence order and applies the result with :meth:`EventApplier.write_user`
  (only the attributes that differ are written), the grant methods of :class:`IdpState` and
  :meth:`EventApplier.sync_roles`.
* Asgardeo role assignments (``RoleMembers``) add or remove ``roles`` values.
* authentik ``UserGroups`` makes the user a member of exactly those groups (by ``displayName``),
  creating the groups that do not exist yet.
* ``FetchUser`` is resolved by the IdP's API (``resolver``) and the resulting events applied.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Protocol

from scim2_server.requests import ScimRequest
from scim2_server.responses import ScimResponse

from app.scim.router import SourceApplication
from app.store.webhook_state import IdpState
from app.webhooks.events import (
    Challenge,
    FetchUser,
    GrantActive,
    GrantDelete,
    GrantUpsert,
    Ignored,
    RoleMembers,
    UserActive,
    UserDelete,
    UserGroups,
    UserLocked,
    UserPatch,
    UserUpsert,
    WebhookEvent,
)

__all__ = ["ApplyFailed", "ApplyRetry", "EventApplier", "UserResolver"]

log = logging.getLogger("ziti_scim.webhooks")

USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Group"
PATCH_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
BASE_URL = "http://webhooks.invalid/scim/v2"
_PAGE = 200
_SYNC_ROUNDS = 4


class ApplyFailed(Exception):
    """The store refused a change (a SCIM 4xx: a mapping that yields no identity, a uniqueness clash).

    Retrying the same delivery cannot succeed; the message is the SCIM error detail (no secrets).
    """

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


class ApplyRetry(Exception):
    """A transient failure (database, IdP API): the delivery should be retried."""


class UserResolver(Protocol):
    """Reads a user from the IdP's API when a delivery named it without its attributes."""

    async def resolve(self, event: FetchUser) -> tuple[WebhookEvent, ...]: ...


@dataclass
class Outcome:
    """What one delivery changed, for the response and the log."""

    applied: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def _json(value: Any) -> bytes:
    return json.dumps(value).encode()


def _quoted(value: str) -> str:
    return json.dumps(value)


def _covers(current: Any, wanted: Any) -> bool:
    """``current`` already holds ``wanted`` (sub-attributes it does not name, e.g. ``display``, ignored)."""
    if isinstance(wanted, dict):
        return isinstance(current, dict) and all(_covers(current.get(k), v) for k, v in wanted.items())
    if isinstance(wanted, list):
        return (
            isinstance(current, list)
            and len(current) == len(wanted)
            and all(_covers(c, w) for c, w in zip(current, wanted, strict=True))
        )
    return bool(current == wanted)


class EventApplier:
    """Applies the events of one source's deliveries; see the module docstring for the rules."""

    def __init__(
        self, app: SourceApplication, state: IdpState, *, resolver: UserResolver | None = None
    ) -> None:
        self.app = app
        self.state = state
        self.resolver = resolver

    # -- the SCIM side ------------------------------------------------------------------------

    async def _scim(
        self, method: str, path: str, body: Any = None, query: dict[str, str] | None = None
    ) -> ScimResponse:
        request = ScimRequest(
            method=method,
            base_url=BASE_URL,
            path=path,
            query=query or {},
            headers={"Content-Type": "application/scim+json"},
            body=b"" if body is None else _json(body),
        )
        response = await self.app.serve(request)
        status = int(response.status)
        if status >= 500:
            raise ApplyRetry(f"SCIM {method} {path.split('/')[1]} answered {status}")
        if status >= 400 and status != HTTPStatus.NOT_FOUND:
            detail = str((response.body or {}).get("detail") or HTTPStatus(status).phrase)
            raise ApplyFailed(status, detail)
        return response

    async def _search(self, endpoint: str, scim_filter: str) -> list[dict[str, Any]]:
        response = await self._scim("GET", f"/{endpoint}", query={"filter": scim_filter})
        return list((response.body or {}).get("Resources", []))

    async def find_user(self, idp_user_id: str) -> dict[str, Any] | None:
        found = await self._search("Users", f"externalId eq {_quoted(idp_user_id)}")
        return found[0] if found else None

    async def _patch(
        self, resource_id: str, operations: list[dict[str, Any]], endpoint: str = "Users"
    ) -> None:
        if operations:
            await self._scim(
                "PATCH", f"/{endpoint}/{resource_id}", {"schemas": [PATCH_SCHEMA], "Operations": operations}
            )

    async def user_ids(self) -> dict[str, str]:
        """``externalId → SCIM id`` of every user of the source (for a full repair)."""
        result: dict[str, str] = {}
        start = 1
        while True:
            response = await self._scim(
                "GET",
                "/Users",
                query={"startIndex": str(start), "count": str(_PAGE), "attributes": "externalId"},
            )
            page = list((response.body or {}).get("Resources", []))
            result.update({str(u["externalId"]): str(u["id"]) for u in page if u.get("externalId")})
            if len(page) < _PAGE:
                return result
            start += len(page)

    # -- events -------------------------------------------------------------------------------

    async def apply(self, events: Iterable[WebhookEvent]) -> Outcome:
        outcome = Outcome()
        for event in events:
            await self._apply(event, outcome)
        return outcome

    async def _apply(self, event: WebhookEvent, outcome: Outcome) -> None:
        name = type(event).__name__
        if isinstance(event, Ignored | Challenge):
            outcome.skipped.append(f"{name}: {getattr(event, 'reason', 'challenge')}")
            return
        if isinstance(event, FetchUser):
            if self.resolver is None:
                raise ApplyFailed(
                    422, "the delivery names a user without its attributes and no IdP API is configured"
                )
            for resolved in await self.resolver.resolve(event):
                await self._apply(resolved, outcome)
            return
        done = await self._dispatch(event)
        (outcome.applied if done else outcome.skipped).append(name)

    async def _dispatch(self, event: WebhookEvent) -> bool:
        if isinstance(event, UserUpsert):
            return await self.upsert(event.source_user_id, event.user)
        if isinstance(event, UserPatch):
            return await self.patch_user(event)
        if isinstance(event, UserActive):
            return await self.set_active(
                event.source_user_id, await self.state.set_flag(event.source_user_id, active=event.active)
            )
        if isinstance(event, UserLocked):
            return await self.set_active(
                event.source_user_id, await self.state.set_flag(event.source_user_id, locked=event.locked)
            )
        if isinstance(event, UserDelete):
            return await self.delete_user(event.source_user_id)
        if isinstance(event, GrantUpsert):
            return await self.grant(event)
        if isinstance(event, GrantActive | GrantDelete):
            return await self.change_grant(event)
        if isinstance(event, RoleMembers):
            return await self.role_members(event)
        if isinstance(event, UserGroups):
            return await self.user_groups(event.source_user_id, event.group_names)
        return False

    async def upsert(self, idp_user_id: str, user: dict[str, Any]) -> bool:
        document = {**user, "externalId": idp_user_id}
        if "active" in document:
            document["active"] = await self.state.set_flag(idp_user_id, active=bool(document["active"]))
        current = await self._find_or_adoptable(idp_user_id, document)
        if current is None:
            await self._create(idp_user_id, document)
            return True
        value = {key: item for key, item in document.items() if key.lower() != "schemas"}
        await self._patch(str(current["id"]), [{"op": "replace", "value": value}])
        return True

    async def _find_or_adoptable(self, idp_user_id: str, document: dict[str, Any]) -> dict[str, Any] | None:
        current = await self.find_user(idp_user_id)
        if current is None and isinstance(document.get("userName"), str):
            same_name = await self._search("Users", f"userName eq {_quoted(document['userName'])}")
            if same_name and not same_name[0].get("externalId"):
                current = same_name[0]
        return current

    async def _create(self, idp_user_id: str, document: dict[str, Any]) -> None:
        document = dict(document)
        roles = await self.state.roles_of(idp_user_id)
        if roles:
            document["roles"] = [{"value": role} for role in roles]
        await self._scim("POST", "/Users", {"schemas": [USER_SCHEMA], **document})

    async def write_user(self, idp_user_id: str, document: dict[str, Any]) -> str:
        """Make the user match ``document`` (a complete description): create it, or replace only the
        attributes that differ, so that applying the same state again writes nothing.

        Returns ``"created"``, ``"updated"`` or ``"unchanged"``. The user's ``roles`` (from grants) and
        groups are kept.
        """
        document = {**document, "externalId": idp_user_id}
        current = await self._find_or_adoptable(idp_user_id, document)
        if current is None:
            try:
                await self._create(idp_user_id, document)
                return "created"
            except ApplyFailed as failure:
                # A concurrent delivery for the same user may have created it first: update that one.
                if failure.status != HTTPStatus.CONFLICT:
                    raise
                current = await self.find_user(idp_user_id)
                if current is None:
                    raise
        value = {
            key: item
            for key, item in document.items()
            if key.lower() != "schemas" and not _covers(current.get(key), item)
        }
        if not value:
            return "unchanged"
        await self._patch(str(current["id"]), [{"op": "replace", "value": value}])
        return "updated"

    async def patch_user(self, event: UserPatch) -> bool:
        current = await self.find_user(event.source_user_id)
        if current is None:
            if self.resolver is not None:
                for resolved in await self.resolver.resolve(FetchUser(event.source_user_id)):
                    await self._dispatch(resolved)
                return True
            log.info("webhook change for an unknown user ignored (no IdP API to read it from)")
            return False
        operations: list[dict[str, Any]] = []
        if event.changes:
            operations.append({"op": "replace", "value": dict(event.changes)})
        operations += [{"op": "remove", "path": path} for path in event.removed]
        await self._patch(str(current["id"]), operations)
        return True

    async def set_active(self, idp_user_id: str, active: bool) -> bool:
        current = await self.find_user(idp_user_id)
        if current is None:
            return False
        await self._patch(str(current["id"]), [{"op": "replace", "path": "active", "value": active}])
        return True

    async def delete_user(self, idp_user_id: str) -> bool:
        current = await self.find_user(idp_user_id)
        await self.state.forget_user(idp_user_id)
        if current is None:
            return False
        await self._scim("DELETE", f"/Users/{current['id']}")
        return True

    # -- roles and groups ---------------------------------------------------------------------

    async def sync_roles(self, idp_user_id: str) -> bool:
        """Make the user's ``roles`` the union of its active grants' role keys.

        Two deliveries changing grants of the same user may sync concurrently, the one that read the
        grants first writing last: whoever writes checks the grants again afterwards and repeats.
        """
        for _ in range(_SYNC_ROUNDS):
            current = await self.find_user(idp_user_id)
            if current is None:
                return False
            roles = await self.state.roles_of(idp_user_id)
            if [r.get("value") for r in current.get("roles", [])] == roles:
                return True
            operation = (
                {"op": "replace", "path": "roles", "value": [{"value": role} for role in roles]}
                if roles
                else {"op": "remove", "path": "roles"}
            )
            await self._patch(str(current["id"]), [operation])
            if await self.state.roles_of(idp_user_id) == roles:
                return True
        log.warning("roles of a webhook user kept changing; the next grant event or pull syncs them")
        return True

    async def grant(self, event: GrantUpsert) -> bool:
        idp_user_id = event.source_user_id or await self.state.grant_user(event.grant_id)
        if idp_user_id is None:
            log.info("grant event for an unknown grant ignored (the periodic pull repairs it)")
            return False
        await self.state.put_grant(event.grant_id, idp_user_id, event.role_keys)
        return await self.sync_roles(idp_user_id)

    async def change_grant(self, event: GrantActive | GrantDelete) -> bool:
        idp_user_id = await self.state.grant_user(event.grant_id)
        if idp_user_id is None:
            return False
        if isinstance(event, GrantActive):
            await self.state.set_grant_active(event.grant_id, event.active)
        else:
            await self.state.drop_grant(event.grant_id)
        return await self.sync_roles(idp_user_id)

    async def role_members(self, event: RoleMembers) -> bool:
        if event.truncated:
            log.warning(
                "role %s: the IdP truncated its member lists; some assignments are missing", event.role_name
            )
        changed = False
        for idp_user_id in event.added_user_ids:
            current = await self.find_user(idp_user_id)
            if current is not None:
                await self._patch(
                    str(current["id"]),
                    [{"op": "add", "path": "roles", "value": [{"value": event.role_name}]}],
                )
                changed = True
        for idp_user_id in event.removed_user_ids:
            current = await self.find_user(idp_user_id)
            if current is not None and any(
                r.get("value") == event.role_name for r in current.get("roles", [])
            ):
                path = f"roles[value eq {_quoted(event.role_name)}]"
                await self._patch(str(current["id"]), [{"op": "remove", "path": path}])
                changed = True
        return changed

    async def user_groups(self, idp_user_id: str, names: Sequence[str]) -> bool:
        current = await self.find_user(idp_user_id)
        if current is None:
            return False
        user_id = str(current["id"])
        wanted = list(dict.fromkeys(names))
        held = {str(g.get("display")): str(g["value"]) for g in current.get("groups", []) if g.get("value")}
        for name in wanted:
            if name in held:
                continue
            found = await self._search("Groups", f"displayName eq {_quoted(name)}")
            if found:
                group_id = str(found[0]["id"])
                operation = {"op": "add", "path": "members", "value": [{"value": user_id}]}
                await self._patch(group_id, [operation], "Groups")
            else:
                body = {"schemas": [GROUP_SCHEMA], "displayName": name, "members": [{"value": user_id}]}
                await self._scim("POST", "/Groups", body)
        for name, group_id in held.items():
            if name not in wanted:
                path = f"members[value eq {_quoted(user_id)}]"
                await self._patch(group_id, [{"op": "remove", "path": path}], "Groups")
        return True
