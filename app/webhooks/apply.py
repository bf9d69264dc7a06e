"""Apply neutral webhook events (:mod:`app.webhooks.events`) to a source through its own SCIM application.

Every change is a SCIM request (RFC 7644 §3) served by the source's
:class:`~app.scim.router.SourceApplication`, exactly as if the IdP had sent it over SCIM: the same
validation, the same storage (dirty marks in the same transaction), the same mapping admission and the
same inline reconcile. The IdP's user id is the SCIM ``externalId`` and users are found with the filter
``externalId eq "<id>"`` (RFC 7644 §3.4.2.2).

* ``UserUpsert`` creates the user, or replaces the attributes it carries (a path-less PATCH replace,
  RFC 7644 §3.5.2.3), so what it does not describe (roles from grants, groups) is kept. A user created
  over SCIM without an ``externalId`` and the same ``userName`` is adopted (Asgardeo's SCIM connector
  sends no ``externalId``, but its webhooks carry the user id).
* ``UserActive``/``UserLocked`` are remembered apart (:class:`~app.store.webhook_state.IdpState`); SCIM
  ``active`` is ``active and not locked``.
* ZITADEL grants: the grant → user link and the grant's role keys are stored; the user's ``roles`` are
  the union of the role keys of its active grants (preset ``zitadel``).
* ZITADEL deliveries do not come here event by event: :mod:`app.webhooks.zitadel_sync` folds each
  aggregate's events in sequence order and applies the result with :meth:`EventApplier.write_user`
  (only the attributes that differ are written), the grant methods of :class:`IdpState` and
  :meth:`EventApplier.sync_roles`.
* Asgardeo role assignments (``RoleMembers``) add or remove ``roles`` values. Group events
  (``GroupMembers``) change the SCIM Group (``externalId`` = the IdP's group id) and ``RoleGroups`` give
  a role to every member of a group. Each reason a user holds a role is remembered as a row of
  :class:`IdpState` (``asg:role:<role>:<user>`` direct, ``asg:member:<group>:<user>`` through a group, whose
  roles are the row ``asg:group:<group>``); a role is removed from a user only when no reason is left,
  so losing a group never strips a role the user also holds directly.
* authentik ``UserGroups`` makes the user a member of exactly those groups (by ``externalId`` when the
  group's id is known, else by ``displayName``), creating the groups that do not exist yet.
  ``GroupSnapshot`` makes a group's name and members what the IdP's API said; ``GroupDelete`` deletes it
  (the store re-maps its members; deletions of identities only ever go through the reconciler).
* ``FetchUser`` / ``FetchGroup`` are resolved by the IdP's API (``resolver``) and the resulting events
  applied.
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
    FetchGroup,
    FetchUser,
    GrantActive,
    GrantDelete,
    GrantUpsert,
    GroupDelete,
    GroupMembers,
    GroupSnapshot,
    Ignored,
    RoleGroups,
    RoleMembers,
    UserActive,
    UserDelete,
    UserGroups,
    UserLocked,
    UserPatch,
    UserUpsert,
    WebhookEvent,
)

__all__ = ["ApplyFailed", "ApplyRetry", "EventApplier", "GroupResolver", "UserResolver"]

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


class GroupResolver(Protocol):
    """Reads a group (name and members) from the IdP's API when a delivery named it."""

    async def resolve_group(self, event: FetchGroup) -> tuple[WebhookEvent, ...]: ...


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
        self,
        app: SourceApplication,
        state: IdpState,
        *,
        resolver: UserResolver | None = None,
        group_resolver: GroupResolver | None = None,
    ) -> None:
        self.app = app
        self.state = state
        self.resolver = resolver
        self.group_resolver = group_resolver

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
        if isinstance(event, FetchGroup):
            if self.group_resolver is None:
                raise ApplyFailed(
                    422, "the delivery names a group without its members and no IdP API is configured"
                )
            for resolved in await self.group_resolver.resolve_group(event):
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
            return await self.user_groups(event.source_user_id, event.group_names, event.group_ids)
        if isinstance(event, GroupMembers):
            return await self.group_members(event)
        if isinstance(event, RoleGroups):
            return await self.role_groups(event)
        if isinstance(event, GroupSnapshot):
            return await self.group_snapshot(event)
        if isinstance(event, GroupDelete):
            return await self.group_delete(event.group_id)
        return False

    async def upsert(self, idp_user_id: str, user: dict[str, Any]) -> bool:
        document = {**user, "externalId": idp_user_id}
        if "active" in document:
            document["active"] = await self.state.set_flag(idp_user_id, active=bool(document["active"]))
        current = await self._find_or_adoptable(idp_user_id, document)
        if current is None:
            try:
                await self._create(idp_user_id, document)
                return True
            except ApplyFailed as failure:
                # A concurrent delivery (or the periodic pull) created it first: update that one.
                if failure.status != HTTPStatus.CONFLICT:
                    raise
                current = await self.find_user(idp_user_id)
                if current is None:
                    raise
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

    async def _add_role(self, idp_user_id: str, role: str) -> bool:
        current = await self.find_user(idp_user_id)
        if current is None or any(r.get("value") == role for r in current.get("roles", [])):
            return False
        await self._patch(str(current["id"]), [{"op": "add", "path": "roles", "value": [{"value": role}]}])
        return True

    async def _drop_role_if_unheld(self, idp_user_id: str, role: str) -> bool:
        if role in await self.state.roles_of(idp_user_id):
            return False  # still held directly or through another group
        current = await self.find_user(idp_user_id)
        if current is None or not any(r.get("value") == role for r in current.get("roles", [])):
            return False
        path = f"roles[value eq {_quoted(role)}]"
        await self._patch(str(current["id"]), [{"op": "remove", "path": path}])
        return True

    async def role_members(self, event: RoleMembers) -> bool:
        if event.truncated:
            log.warning(
                "role %s: the IdP truncated its member lists; some assignments are missing", event.role_name
            )
        changed = False
        for idp_user_id in event.added_user_ids:
            grant = f"asg:role:{event.role_name}:{idp_user_id}"
            await self.state.put_grant(grant, idp_user_id, [event.role_name])
            changed |= await self._add_role(idp_user_id, event.role_name)
        for idp_user_id in event.removed_user_ids:
            await self.state.drop_grant(f"asg:role:{event.role_name}:{idp_user_id}")
            changed |= await self._drop_role_if_unheld(idp_user_id, event.role_name)
        return changed

    # -- groups -------------------------------------------------------------------------------

    async def _find_group(self, group_id: str, name: str | None) -> dict[str, Any] | None:
        found = await self._search("Groups", f"externalId eq {_quoted(group_id)}")
        if not found and name:
            # A group first created by name (before its id was known) is adopted.
            found = [g for g in await self._search("Groups", f"displayName eq {_quoted(name)}")
                     if not g.get("externalId")]
        return found[0] if found else None

    async def _ensure_group(self, group_id: str, name: str | None) -> str | None:
        """The SCIM id of the IdP's group, created (or renamed) to ``name``; None if unknown and unnamed."""
        group = await self._find_group(group_id, name)
        if group is None:
            if not name:
                return None
            body = {"schemas": [GROUP_SCHEMA], "displayName": name, "externalId": group_id}
            return await self._create_group(body)
        value: dict[str, Any] = {}
        if name and group.get("displayName") != name:
            value["displayName"] = name
        if group.get("externalId") != group_id:
            value["externalId"] = group_id
        if value:
            await self._patch(str(group["id"]), [{"op": "replace", "value": value}], "Groups")
        return str(group["id"])

    async def _create_group(self, body: dict[str, Any]) -> str:
        """Create a group; if a concurrent delivery (or the pull) created it first, that one's id."""
        try:
            return str(((await self._scim("POST", "/Groups", body)).body or {}).get("id"))
        except ApplyFailed as failure:
            if failure.status != HTTPStatus.CONFLICT:
                raise
            found = await self._search("Groups", f"displayName eq {_quoted(body['displayName'])}")
            if not found:
                raise
            return str(found[0]["id"])

    async def _member_ids(self, group_scim_id: str) -> dict[str, str]:
        """``SCIM user id → externalId`` of the group's members."""
        response = await self._scim("GET", f"/Groups/{group_scim_id}")
        members = [str(m["value"]) for m in (response.body or {}).get("members", []) if m.get("value")]
        result: dict[str, str] = {}
        for user_id in members:
            user = await self._scim("GET", f"/Users/{user_id}")
            if int(user.status) == HTTPStatus.OK and (user.body or {}).get("externalId"):
                result[user_id] = str((user.body or {})["externalId"])
        return result

    async def _set_membership(self, group_scim_id: str, idp_user_id: str, member: bool) -> bool:
        current = await self.find_user(idp_user_id)
        if current is None:
            return False
        user_id = str(current["id"])
        held = any(str(g.get("value")) == group_scim_id for g in current.get("groups", []))
        if held == member:
            return False
        operation = (
            {"op": "add", "path": "members", "value": [{"value": user_id}]}
            if member
            else {"op": "remove", "path": f"members[value eq {_quoted(user_id)}]"}
        )
        await self._patch(group_scim_id, [operation], "Groups")
        return True

    async def _group_roles(self, group_id: str) -> list[str]:
        return await self.state.roles_of(f"#group:{group_id}")

    async def _known_members(self, group_id: str) -> set[str]:
        prefix = f"asg:member:{group_id}:"
        return {grant[len(prefix) :] for grant in await self.state.grant_ids() if grant.startswith(prefix)}

    async def group_members(self, event: GroupMembers) -> bool:
        group_scim_id = await self._ensure_group(event.group_id, event.group_name)
        roles = await self._group_roles(event.group_id)
        changed = group_scim_id is not None
        for idp_user_id in event.added_user_ids:
            await self.state.put_grant(f"asg:member:{event.group_id}:{idp_user_id}", idp_user_id, roles)
            if group_scim_id is not None:
                changed |= await self._set_membership(group_scim_id, idp_user_id, True)
            for role in roles:
                changed |= await self._add_role(idp_user_id, role)
        for idp_user_id in event.removed_user_ids:
            await self.state.drop_grant(f"asg:member:{event.group_id}:{idp_user_id}")
            if group_scim_id is not None:
                changed |= await self._set_membership(group_scim_id, idp_user_id, False)
            for role in roles:
                changed |= await self._drop_role_if_unheld(idp_user_id, role)
        return changed

    async def role_groups(self, event: RoleGroups) -> bool:
        if event.truncated:
            log.warning("role %s: the IdP truncated its group lists; some are missing", event.role_name)
        changed = False
        for (group_id, name), give in [(g, True) for g in event.added_groups] + [
            (g, False) for g in event.removed_groups
        ]:
            roles = [r for r in await self._group_roles(group_id) if r != event.role_name]
            if give:
                roles.append(event.role_name)
            await self.state.put_grant(f"asg:group:{group_id}", f"#group:{group_id}", roles)
            members = await self._known_members(group_id)
            group = await self._find_group(group_id, name)
            if group is not None:
                members |= set((await self._member_ids(str(group["id"]))).values())
            for idp_user_id in sorted(members):
                await self.state.put_grant(f"asg:member:{group_id}:{idp_user_id}", idp_user_id, roles)
                if give:
                    changed |= await self._add_role(idp_user_id, event.role_name)
                else:
                    changed |= await self._drop_role_if_unheld(idp_user_id, event.role_name)
        return changed

    async def group_snapshot(self, event: GroupSnapshot) -> bool:
        group_scim_id = await self._ensure_group(event.group_id, event.group_name)
        if group_scim_id is None:
            return False
        members = await self._member_ids(group_scim_id)
        wanted = set(event.member_ids)
        for user_id, idp_user_id in members.items():
            if idp_user_id not in wanted:
                path = f"members[value eq {_quoted(user_id)}]"
                await self._patch(group_scim_id, [{"op": "remove", "path": path}], "Groups")
        for idp_user_id in sorted(wanted - set(members.values())):
            await self._set_membership(group_scim_id, idp_user_id, True)
        return True

    async def group_delete(self, group_id: str) -> bool:
        for grant in await self.state.grant_ids():
            if grant.startswith(f"asg:member:{group_id}:") or grant == f"asg:group:{group_id}":
                await self.state.drop_grant(grant)
        group = await self._find_group(group_id, None)
        if group is None:
            return False
        await self._scim("DELETE", f"/Groups/{group['id']}")
        return True

    async def user_groups(
        self, idp_user_id: str, names: Sequence[str], group_ids: Sequence[str | None] = ()
    ) -> bool:
        current = await self.find_user(idp_user_id)
        if current is None:
            return False
        user_id = str(current["id"])
        held = {str(g["value"]) for g in current.get("groups", []) if g.get("value")}
        ids = list(group_ids) + [None] * (len(names) - len(group_ids))
        wanted: set[str] = set()
        for name, group_id in dict.fromkeys(zip(names, ids, strict=True)):
            group_scim_id: str | None
            if group_id is not None:
                group_scim_id = await self._ensure_group(group_id, name)
            else:
                by_name = await self._search("Groups", f"displayName eq {_quoted(name)}")
                if by_name:
                    group_scim_id = str(by_name[0]["id"])
                else:
                    group_scim_id = await self._create_group({"schemas": [GROUP_SCHEMA], "displayName": name})
            if group_scim_id is None:
                continue
            wanted.add(group_scim_id)
            if group_scim_id not in held:
                operation = {"op": "add", "path": "members", "value": [{"value": user_id}]}
                await self._patch(group_scim_id, [operation], "Groups")
        for group_scim_id in held - wanted:
            path = f"members[value eq {_quoted(user_id)}]"
            await self._patch(group_scim_id, [{"op": "remove", "path": path}], "Groups")
        return True
