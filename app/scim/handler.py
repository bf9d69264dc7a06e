"""The request handler: scim2-server's ``AsyncScimHandler`` plus a membership PATCH that scales.

scim2-server applies a PATCH by loading the whole resource, patching it in memory and writing it
back. For a group that is O(members) per PATCH (a 50,000-member group reloads and revalidates 50,000
members to add one), which is the shape of every IdP's membership sync. A PATCH on a Group whose
operations touch ``members`` only through add, remove (by value list, by ``members[value eq "…"]``
or all) and replace is applied here as a delta on the membership table instead; its other operations
are applied by scim2-models on the group without its members, so the semantics stay the library's.
Anything else falls back to the generic path. Both run in one transaction (RFC 7644 §3.5.2: atomic).

The membership PATCH IdPs send most — ``add``/``remove`` of ``members`` with a list of ``{"value": id}``,
authentik's one operation per member (RFC 7644 §3.5.2.1/§3.5.2.2) — is read straight from the decoded
body (:func:`plain_member_delta`), without building scim2-models' PatchOp (whose validation costs tens of
µs per operation); any other shape takes the validated path. Such a PATCH is not held to
``max_patch_operations`` either: that cap bounds the generic path, quadratic in the operations, while the
delta path is linear and bounded by the body size. authentik sends every member of a group in one PATCH
when ``bulk.maxOperations`` is 0 (its ``_patch_chunked``), so a 1,001-member group would be refused.

Two more client accommodations live here: a Group always shows ``members`` (``[]`` when empty) unless the
request excluded it, since authentik and Okta read a missing list as "unknown" and then never remove a
member; and a source with ``partial_put`` merges a User PUT into the stored resource (Asgardeo's PUT
carries only the changed attributes), so omitted attributes are kept.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, cast

from scim2_models import (
    Context,
    PatchOp,
    ResourceType,
    ResponseParameters,
    ScimPolicy,
    SearchRequest,
    UniquenessException,
)
from scim2_models.path import AttrPath, CompareOperator, Comparison, ValuePath
from scim2_server.conditions import Conditions
from scim2_server.handler import AsyncScimHandler
from scim2_server.requests import ScimRequest
from scim2_server.responses import ScimResponse
from scim2_server.routing import Operation
from scim2_server.storage import async_search_page, projection

from app.scim.limits import check_patch_size
from app.scim.service import NothingToPatch, ZitiScimService
from app.store.offload import off_loop, off_loop_if
from app.store.storage import SqlStorage


@dataclass
class MemberDelta:
    """A Group PATCH's membership operations, applied as ``remove`` then ``add`` minus ``withdrawn``.

    RFC 7644 §3.5.2 applies operations in order; removing first is the same except for a member added
    and then removed in one request, which ``withdrawn`` holds (its add is still checked, not written).
    """

    add: list[dict[str, Any]] = field(default_factory=list)
    remove: list[str] = field(default_factory=list)
    replace_all: bool = False
    other: list[Any] = field(default_factory=list)
    withdrawn: set[str] = field(default_factory=set)

    def adding(self, values: list[dict[str, Any]]) -> None:
        self.add.extend(values)
        self.withdrawn.difference_update(item["value"] for item in values)

    def removing(self, ids: list[str]) -> None:
        added = {item["value"] for item in self.add}
        self.remove.extend(ids)
        self.withdrawn.update(member_id for member_id in ids if member_id in added)


def _is_members(path: AttrPath) -> bool:
    return (
        path.attr.lower() == "members"
        and path.sub_attr is None
        and (path.uri is None or path.uri.lower() == "urn:ietf:params:scim:schemas:core:2.0:group")
    )


def _values(value: Any) -> list[dict[str, Any]] | None:
    items = value if isinstance(value, list) else [value] if value is not None else []
    result = []
    for item in items:
        if hasattr(item, "model_dump"):
            item = item.model_dump(mode="json")
        if not isinstance(item, dict) or not isinstance(item.get("value"), str):
            return None
        result.append(item)
    return result


def member_delta(patch_op: PatchOp[Any], policy: ScimPolicy) -> MemberDelta | None:
    """Split a Group PATCH into a membership delta and the other operations, or None if it cannot be."""
    delta = MemberDelta()
    for operation in patch_op.operations or []:
        kind = str(operation.op.value).lower()
        node = operation.path.ast if operation.path is not None else None
        if node is None:
            value = operation.value
            if isinstance(value, dict) and any(key.lower().endswith("members") for key in value):
                return None
            delta.other.append(operation)
            continue
        if isinstance(node, AttrPath) and _is_members(node):
            values = _values(operation.value)
            if values is None:
                return None
            if kind == "add":
                delta.adding(values)
            elif kind == "replace":
                delta.add, delta.remove, delta.replace_all, delta.withdrawn = values, [], True, set()
            elif kind == "remove" and operation.value is None:
                delta.add, delta.remove, delta.replace_all, delta.withdrawn = [], [], True, set()
            elif kind == "remove" and policy.remove_value_as_filter == ScimPolicy.RemoveValue.apply:
                delta.removing([item["value"] for item in values])
            else:
                return None
            continue
        if (
            isinstance(node, ValuePath)
            and _is_members(node.attr_path)
            and node.sub_attr is None
            and kind == "remove"
            and isinstance(node.val_filter, Comparison)
            and node.val_filter.attr_path == AttrPath(attr="value")
            and node.val_filter.op is CompareOperator.eq
            and isinstance(node.val_filter.value, str)
        ):
            delta.removing([node.val_filter.value])
            continue
        if isinstance(node, AttrPath | ValuePath):
            head = node if isinstance(node, AttrPath) else node.attr_path
            if head.attr.lower() == "members":
                return None
        delta.other.append(operation)
    if delta.replace_all and delta.remove:
        return None
    return delta


PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
_MEMBER_PATHS = frozenset({"members", "urn:ietf:params:scim:schemas:core:2.0:group:members"})
_PLAIN_MEMBER_KEYS = frozenset({"value", "display", "type"})


def plain_member_delta(payload: Any, policy: ScimPolicy) -> MemberDelta | None:
    """The membership delta of a decoded PatchOp body made only of ``add`` / ``remove`` operations on
    ``members`` whose values are ``{"value": id}`` objects (``display`` and ``type`` strings allowed), or
    None for any other body, which is then validated by scim2-models.

    What the validated path would make of such a body (:func:`member_delta`), read without validating it
    into models: the keys are the exact ones of RFC 7644 §3.5.2 and of authentik's traces (a body spelled
    otherwise takes the validated path), an id must be a non-empty string without NUL, and a ``remove``
    with a value list follows the source's ``remove_value_as_filter`` like the validated path.
    """
    if type(payload) is not dict or payload.keys() != {"schemas", "Operations"}:
        return None
    operations = payload["Operations"]
    if payload["schemas"] != [PATCH_OP] or type(operations) is not list or not operations:
        return None
    removes = policy.remove_value_as_filter == ScimPolicy.RemoveValue.apply
    delta = MemberDelta()
    for operation in operations:
        if type(operation) is not dict or operation.keys() != {"op", "path", "value"}:
            return None
        kind, path, values = operation["op"], operation["path"], operation["value"]
        if type(kind) is not str or type(path) is not str or path.lower() not in _MEMBER_PATHS:
            return None
        if type(values) is not list or not values:
            return None
        for item in values:
            if type(item) is not dict or not item.keys() <= _PLAIN_MEMBER_KEYS:
                return None
            value = item.get("value")
            if type(value) is not str or not value or "\x00" in value:
                return None
            if any(type(item[key]) is not str or "\x00" in item[key] for key in item.keys() - {"value"}):
                return None
        kind = kind.lower()
        if kind == "add":
            delta.adding([{"value": item["value"], "display": item.get("display")} for item in values])
        elif kind == "remove" and removes:
            delta.removing([item["value"] for item in values])
        else:
            return None
    return delta


def _display_name(payload: dict[str, Any]) -> Any:
    return next((v for k, v in payload.items() if k.lower() == "displayname"), None)


def _renames(patch_op: PatchOp[Any]) -> bool:
    """Whether a Group PATCH may change ``displayName`` (by path, or in a path-less value)."""
    for operation in patch_op.operations or []:
        path = str(operation.path) if operation.path is not None else ""
        if path.lower().rsplit(":", 1)[-1] == "displayname":
            return True
        value = operation.value
        if not path and isinstance(value, dict) and _display_name(value) is not None:
            return True
        if not path and getattr(value, "display_name", None) is not None:
            return True
    return False


def _wants_members(query: Mapping[str, str]) -> bool:
    def names(key: str) -> set[str]:
        parts = query.get(key, "").split(",")
        return {part.strip().rsplit(":", 1)[-1].lower() for part in parts if part.strip()}

    attributes = names("attributes")
    return "members" not in names("excludedAttributes") and (not attributes or "members" in attributes)


def with_empty_members(body: dict[str, Any] | None, query: Mapping[str, str]) -> None:
    """Give each Group of a response body ``members: []`` when it has none, unless the client excluded it."""
    if not body or not _wants_members(query):
        return
    for resource in body.get("Resources", [body]):
        if isinstance(resource, dict) and resource.get("meta", {}).get("resourceType") == "Group":
            resource.setdefault("members", [])


OFF_LOOP_BYTES = 64 * 1024
"""A PATCH body larger than this is checked, decoded and validated in a worker thread."""
OFF_LOOP_OPERATIONS = 20
"""A PATCH with more operations than this is validated and applied in a worker thread."""
OFF_LOOP_PAGE = 1000
"""A search page of more resources than this is answered (validated, dumped) in a worker thread."""
OFF_LOOP_VALUES = 200
"""A resource holding more multi-valued attribute values than this (members, groups, emails, …, summed)
is patched and published in a worker thread."""


def _large(resource: Any) -> bool:
    """Whether a model or a stored document holds more than :data:`OFF_LOOP_VALUES` list values."""
    if isinstance(resource, dict):
        values: Any = resource.values()
    else:
        values = vars(resource).values() if hasattr(resource, "__dict__") else ()
    return sum(len(value) for value in values if isinstance(value, list)) > OFF_LOOP_VALUES


class ZitiScimHandler(AsyncScimHandler):
    """AsyncScimHandler with the membership fast path, partial PUT and the ``members: []`` rule."""

    storage: SqlStorage
    service: ZitiScimService

    async def handle(self, request: ScimRequest) -> ScimResponse:
        response = await super().handle(request)
        with_empty_members(response.body, request.query)
        return response

    async def create(self, request: ScimRequest) -> ScimResponse:
        if self.service.quirks.unique_group_names:
            with self.service.provider:
                target = self.service.route(request, Operation.create)
                resource_type = self.service.resource_type_at(cast(str, target.endpoint))
                # Decoded a second time for a Group only: a User's body is decoded once.
                is_group = resource_type.name == "Group"
                content_type = request.header("Content-Type")
                payload = self.service.decode_body(request.body, content_type) if is_group else None
            if is_group and isinstance(payload, dict):
                await self._refuse_duplicate_group(resource_type, payload)
        # scim2-server's create, answered from what was stored (ZitiScimService.answer).
        with self.service.provider:
            target = self.service.route(request, Operation.create)
            resource_type = self.service.resource_type_at(cast(str, target.endpoint))
            self.service.authorize(request, target, resource_type)
            resource = self.service.read_creation(resource_type, request.body, request.header("Content-Type"))
            async with self.storage.operation():
                created = await self.storage.create(resource_type, resource, answer=True)
            response = await off_loop_if(
                _large(created),
                self.service.answer,
                request.base_url,
                created,
                Context.RESOURCE_CREATION_RESPONSE,
                None,
                HTTPStatus.CREATED,
            )
            response.headers["Location"] = response.headers["Content-Location"]
            return response

    async def _refuse_duplicate_group(
        self, resource_type: ResourceType, payload: dict[str, Any], *, allowed: int = 0
    ) -> None:
        """409 when more than ``allowed`` groups of the source already carry the name (case-insensitive).

        A create checks before its insert (``allowed=0``); a rename checks after its write, in the same
        transaction, so the 409 rolls it back (``allowed=1``: the renamed group itself). On SQLite writers
        are serialised, so two concurrent writes cannot both pass; on PostgreSQL they could.
        """
        name = _display_name(payload)
        if isinstance(name, str):
            query = {"filter": f"displayName eq {json.dumps(name)}", "count": 1}
            search = SearchRequest[Any].model_validate(query)
            if ((await self.storage.search([resource_type], search)).total or 0) > allowed:
                raise UniquenessException(detail=f"a group named {name!r} already exists")

    async def _current_name(self, resource_type: ResourceType, group_id: str) -> str:
        """The group's stored name, read without its members (a group may have tens of thousands)."""
        without_members: ResponseParameters[Any] = ResponseParameters(
            excluded_attributes=["members"]  # type: ignore[list-item]  # validated into paths by pydantic
        )
        current = await self.storage.get(resource_type, group_id, response_parameters=without_members)
        return str(getattr(current, "display_name", "") or "")

    async def replace(self, request: ScimRequest) -> ScimResponse:
        with self.service.provider:
            target = self.service.route(request, Operation.replace)
            resource_type = self.service.resource_type_at(cast(str, target.endpoint))
        if resource_type.name == "Group" and self.service.quirks.unique_group_names:
            with self.service.provider:
                payload = self.service.decode_body(request.body, request.header("Content-Type"))
            name = _display_name(payload) if isinstance(payload, dict) else None
            if not isinstance(name, str):
                return await self._replace(request)
            async with self.storage.operation():
                before = await self._current_name(resource_type, cast(str, target.resource_id))
                response = await self._replace(request)
                # Only a real rename is checked: legacy duplicates may keep their name.
                if int(response.status) < 300 and name.casefold() != before.casefold():
                    await self._refuse_duplicate_group(resource_type, {"displayName": name}, allowed=1)
                return response
        if not self.service.quirks.partial_put or resource_type.name != "User":
            return await self._replace(request)
        async with self.storage.operation():
            current = await self.storage.get(resource_type, cast(str, target.resource_id))
            merged = self._merged_body(current, request)
            rewritten = ScimRequest(
                request.method, request.base_url, request.path, request.query, request.headers, merged
            )
            return await self._replace(rewritten)

    async def _replace(self, request: ScimRequest) -> ScimResponse:
        """scim2-server's replace, the new state answered from what was stored (ZitiScimService.answer)."""
        with self.service.provider:
            target = self.service.route(request, Operation.replace)
            resource_type = self.service.resource_type_at(cast(str, target.endpoint))
            self.service.authorize(request, target, resource_type)
            response_parameters = self.service.read_response_parameters(resource_type, request.query)
            # Validated before the write transaction: on SQLite it holds the single writer's turn.
            content_type = request.header("Content-Type")
            replacement = self.service.read_replacement(resource_type, request.body, content_type)
            async with self.storage.operation():
                # With its status: a PUT of a user showing one writes and converges again (the status'
                # schema is not in the replacement), as an IdP re-sending a user retries a conflict.
                current = await self.storage.get(resource_type, cast(str, target.resource_id))
                assert current.meta is not None
                version = current.meta.version
                replaced = self.service.apply_replacement(
                    current, replacement, self.service.read_conditions(request)
                )
                if replaced is None:
                    stored = await self.storage.unchanged(resource_type, current)
                else:
                    stored = await self.storage.update(
                        resource_type, replaced, expected_version=version, answer=True
                    )
            response = await off_loop_if(
                _large(stored),
                self.service.answer,
                request.base_url,
                stored,
                Context.RESOURCE_REPLACEMENT_RESPONSE,
                response_parameters,
            )
            return self.service.me_response(request, target, response)

    async def search(self, request: ScimRequest) -> ScimResponse:
        """scim2-server's search with GET, the found resources answered from what is stored."""
        with self.service.provider:
            target = self.service.route(request, Operation.search)
            resource_types = self.service.searched_types(target.endpoint)
            authorized_types = self.service.authorized_types(request, target, resource_types)
            search_request, position = self.service.read_search_query(resource_types, request.query)
            async with self.storage.operation():
                if search_request.cursor is None:
                    page = await self.storage.search(
                        authorized_types, search_request, position=position, answer=True
                    )
                else:
                    page = await async_search_page(
                        self.storage, authorized_types, search_request, position=position
                    )
            return await off_loop_if(
                len(page.resources) > OFF_LOOP_PAGE,
                self.service.search_response,
                request.base_url,
                resource_types,
                page,
                search_request,
            )

    def _merged_body(self, current: Any, request: ScimRequest) -> bytes:
        """The stored user with the PUT body's attributes over it (top-level keys, case-insensitive)."""
        with self.service.provider:
            resource_type = self.service.get_resource_type("User")
            model = self.service.get_model(resource_type)
            decoded = self.service.decode_body(request.body, request.header("Content-Type"))
            payload = self.service.normalize(model, decoded)
        if not isinstance(payload, dict):
            return request.body
        stored = current.model_dump(mode="json", exclude={"meta", "groups"})
        given = {key.lower() for key in payload}
        merged = {key: value for key, value in stored.items() if key.lower() not in given}
        merged.update(payload)
        schemas = [*stored.get("schemas", []), *[s for s in payload.get("schemas", []) if isinstance(s, str)]]
        merged["schemas"] = list(dict.fromkeys(schemas))
        return json.dumps(merged).encode()

    async def patch(self, request: ScimRequest) -> ScimResponse:
        try:
            return await self._patch(request)
        except NothingToPatch:
            with self.service.provider:
                target = self.service.route(request, Operation.patch)
                resource_type = self.service.resource_type_at(cast(str, target.endpoint))
                parameters = self.service.read_response_parameters(resource_type, request.query)
                resource = await self.storage.get(resource_type, cast(str, target.resource_id))
                return self.service.patch_response(request.base_url, resource, parameters)

    async def query(self, request: ScimRequest) -> ScimResponse:
        """scim2-server's GET of one resource, the response of a large one built in a worker thread.

        Publishing a group of 50,000 members takes seconds of CPU; off the event loop, other requests
        and health probes are served meanwhile. A usual user is published here (no thread hop).
        """
        with self.service.provider:
            target = self.service.route(request, Operation.query)
            resource_type = self.service.resource_type_at(cast(str, target.endpoint))
            self.service.authorize(request, target, resource_type)
            response_parameters = self.service.read_response_parameters(resource_type, request.query)
            async with self.storage.operation():
                resource = await self.storage.get(
                    resource_type,
                    cast(str, target.resource_id),
                    **projection(self.storage, response_parameters),
                    answer=True,
                )
            response = await off_loop_if(
                _large(resource),
                self.service.query_answer,
                request.base_url,
                resource,
                response_parameters,
                self.service.read_conditions(request),
            )
            return self.service.me_response(request, target, response)

    async def patch_resource(
        self,
        resource_type: ResourceType,
        resource_id: str,
        patch_op: PatchOp[Any],
        conditions: Conditions,
        *,
        answer: bool = False,
    ) -> Any:
        """scim2-server's PATCH application, the CPU-bound part in a worker thread when it is large.

        Applying up to ``max_patch_operations`` operations to a resource holding up to
        ``max_attribute_values`` values per attribute can take a while; in a thread it leaves the event
        loop free to serve health probes and other sources meanwhile (the GIL is handed over every few ms).
        A usual PATCH (a few operations on a usual user) is applied here: the hop would cost more.
        """
        current = await self.storage.get(resource_type, resource_id, views=not answer)
        assert current.meta is not None
        version = current.meta.version
        large = _large(current) or len(patch_op.operations or ()) > OFF_LOOP_OPERATIONS
        patched = await off_loop_if(large, self.service.apply_patch, current, patch_op, conditions)
        if patched is None:
            return await self.storage.unchanged(resource_type, current) if answer else current
        return await self.storage.update(resource_type, patched, expected_version=version, answer=answer)

    async def _patch(self, request: ScimRequest) -> ScimResponse:
        with self.service.provider:
            target = self.service.route(request, Operation.patch)
            resource_type = self.service.resource_type_at(cast(str, target.endpoint))
            self.service.authorize(request, target, resource_type)
            response_parameters = self.service.read_response_parameters(resource_type, request.query)
            content_type = request.header("Content-Type")
            policy = self.service.provider.policy or ScimPolicy()
            if resource_type.name == "Group":
                return await self._patch_group(request, target, resource_type, response_parameters, policy)
            # Validating up to max_patch_operations operations takes tens of ms: then not on the event loop.
            if len(request.body) > OFF_LOOP_BYTES:  # even checking and decoding it takes a while
                patch_op = await off_loop(self.service.read_patch, resource_type, request.body, content_type)
            else:
                payload = self.service.decode_patch(request.body, content_type)
                large = self.service.patch_operation_count(payload) > OFF_LOOP_OPERATIONS
                patch_op = await off_loop_if(large, self.service.validate_patch, resource_type, payload)
            # scim2-server's AsyncScimHandler.patch from here on, answered from what was stored
            async with self.storage.operation():
                resource = await self.patch_resource(
                    resource_type,
                    cast(str, target.resource_id),
                    patch_op,
                    self.service.read_conditions(request),
                    answer=True,
                )
            response = await off_loop_if(
                _large(resource),
                self.service.patch_response,
                request.base_url,
                resource,
                response_parameters,
            )
            return self.service.me_response(request, target, response)

    def _decode_group_patch(self, body: bytes, content_type: str | None) -> Any:
        """A Group PATCH body decoded, not validated (the operation cap waits for its shape)."""
        self.service.ensure_patch_supported()
        return self.service.decode_body(body, content_type)

    async def _patch_group(
        self,
        request: ScimRequest,
        target: Any,
        resource_type: ResourceType,
        response_parameters: ResponseParameters[Any],
        policy: ScimPolicy,
    ) -> ScimResponse:
        content_type = request.header("Content-Type")
        large_body = len(request.body) > OFF_LOOP_BYTES  # decoding it takes a while
        payload = await off_loop_if(large_body, self._decode_group_patch, request.body, content_type)
        delta = plain_member_delta(payload, policy)
        patch_op: PatchOp[Any] | None = None
        if delta is None:
            check_patch_size(payload, self.service.limits)
            large = self.service.patch_operation_count(payload) > OFF_LOOP_OPERATIONS
            validated: PatchOp[Any] = await off_loop_if(
                large, self.service.validate_patch, resource_type, payload
            )
            patch_op, delta = validated, member_delta(validated, policy)
        renames = patch_op is not None and self.service.quirks.unique_group_names and _renames(patch_op)
        group_id = cast(str, target.resource_id)
        async with self.storage.operation():
            before = await self._current_name(resource_type, group_id) if renames else ""
            if delta is None:
                assert patch_op is not None
                resource = await self.patch_resource(
                    resource_type, group_id, patch_op, self.service.read_conditions(request)
                )
            else:
                resource = await self._patch_members(
                    resource_type,
                    group_id,
                    patch_op,
                    delta,
                    self.service.read_conditions(request),
                    response_parameters,
                )
            name = getattr(resource, "display_name", None)
            # Only a real rename is checked: IdPs re-send the name, and legacy duplicates keep theirs.
            if renames and isinstance(name, str) and name.casefold() != before.casefold():
                await self._refuse_duplicate_group(resource_type, {"displayName": name}, allowed=1)
        return await off_loop_if(
            _large(resource), self.service.patch_response, request.base_url, resource, response_parameters
        )

    async def _patch_members(
        self,
        resource_type: ResourceType,
        group_id: str,
        patch_op: PatchOp[Any] | None,
        delta: MemberDelta,
        conditions: Conditions,
        response_parameters: ResponseParameters[Any],
    ) -> Any:
        without_members: ResponseParameters[Any] = ResponseParameters(
            excluded_attributes=["members"]  # type: ignore[list-item]  # validated into paths by pydantic
        )
        current = await self.storage.get(resource_type, group_id, response_parameters=without_members)
        assert current.meta is not None
        version = current.meta.version
        self.service.check_preconditions(current, "PATCH", conditions)
        document = None
        if delta.other and patch_op is not None:
            partial = type(patch_op)(operations=delta.other)  # type: ignore[call-arg]  # populate by name
            if partial.patch(current):
                document = SqlStorage._document(current)
        await self.storage.change_members(
            group_id,
            add=delta.add,
            remove=delta.remove,
            withdrawn=delta.withdrawn,
            replace_all=delta.replace_all,
            document=document,
            expected_version=version,
        )
        return await self.storage.get(resource_type, group_id, response_parameters=response_parameters)


__all__ = ["ZitiScimHandler", "member_delta", "Context"]
