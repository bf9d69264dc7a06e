"""``/service-policies``, ``/edge-router-policies``, ``/identity-role-attributes`` and ``/identity-types``.

Implements ``docs/controller-api.md`` §6 (CRUD, ``filter`` on ``anyOf(identityRoles)``, ``type`` as an int
in 1.6 filters), "Attributes in use" (``GET /identity-role-attributes``: attributes carried by identities,
only ``filter`` on ``id`` honoured, ``limit``/``offset`` query parameters ignored) and §3.1
(``/identity-types``: ``Default`` and ``Router``, ids equal names).
"""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse, Response

from . import policy_ops, render
from .errors import field_error, invalid_filter, not_found
from .listing import identity_fields, list_response, policy_fields
from .reqctx import Ctx, created, empty_ok, envelope
from .zitiql import FieldSet, FilterError, compile_predicate, parse_query, sort_entities

IDENTITY_TYPES = ("Default", "Router")


def _kind(ctx: Ctx) -> str:
    return "service" if ctx.template.startswith("/service-policies") else "edge-router"


def _collection(kind: str) -> str:
    return "service-policies" if kind == "service" else "edge-router-policies"


async def list_policies(ctx: Ctx) -> Response:
    kind = _kind(ctx)
    items = list(policy_ops.store_of(ctx.state, kind).values())
    return list_response(ctx, items, policy_fields(ctx, kind), lambda p: render.policy(ctx.state, p))


async def create_policy(ctx: Ctx) -> Response:
    kind = _kind(ctx)
    data = ctx.json_body()
    if data is None:
        raise field_error("policy", "policy in body is required", "")
    policy = policy_ops.create_policy(ctx.state, kind, data)
    return created(_collection(kind), policy.id)


async def detail_policy(ctx: Ctx) -> Response:
    with ctx.state.lock:
        policy = policy_ops.get_policy(ctx.state, _kind(ctx), ctx.param("id"))
        return envelope(render.policy(ctx.state, policy))


async def _update(ctx: Ctx, patch: bool) -> Response:
    data = ctx.json_body()
    if data is None:
        raise field_error("policy", "policy in body is required", "")
    policy_ops.update_policy(ctx.state, _kind(ctx), ctx.param("id"), data, patch=patch)
    return empty_ok()


async def put_policy(ctx: Ctx) -> Response:
    return await _update(ctx, False)


async def patch_policy(ctx: Ctx) -> Response:
    return await _update(ctx, True)


async def delete_policy(ctx: Ctx) -> Response:
    policy_ops.delete_policy(ctx.state, _kind(ctx), ctx.param("id"))
    return empty_ok()


async def policy_identities(ctx: Ctx) -> Response:
    state = ctx.state
    with state.lock:
        policy = policy_ops.get_policy(state, _kind(ctx), ctx.param("id"))
        items = [i for i in state.identities.values() if policy_ops.matches(policy, i)]
    return list_response(ctx, items, identity_fields(ctx), lambda i: render.identity(state, i))


async def identity_role_attributes(ctx: Ctx) -> Response:
    with ctx.state.lock:
        values = sorted({a for i in ctx.state.identities.values() for a in i.role_attributes})
    fields: FieldSet[str] = FieldSet(scalars={"id": lambda v: v})
    try:
        query = parse_query(ctx.request.query_params.get("filter") or "")
        predicate = compile_predicate(query.predicate, fields)
        matched = sort_entities([v for v in values if predicate(v)], query.sort, fields)
    except FilterError as exc:
        raise invalid_filter(str(exc)) from exc
    offset = query.skip or 0
    limit = query.limit if query.limit is not None else -1
    page = matched[offset:] if limit == -1 else matched[offset : offset + limit]
    meta = {"pagination": {"limit": limit, "offset": offset, "totalCount": len(matched)}}
    return JSONResponse({"data": page, "meta": meta})


def _identity_type(type_id: str) -> dict[str, Any]:
    return {
        "id": type_id,
        "name": type_id,
        "createdAt": "1970-01-01T00:00:00.000Z",
        "updatedAt": "1970-01-01T00:00:00.000Z",
        "tags": {},
        "_links": render.links("identity-types", type_id),
    }


async def list_identity_types(ctx: Ctx) -> Response:
    data = [_identity_type(t) for t in IDENTITY_TYPES]
    meta = {"pagination": {"limit": 10, "offset": 0, "totalCount": len(data)}}
    return JSONResponse({"data": data, "meta": meta})


async def detail_identity_type(ctx: Ctx) -> Response:
    type_id = ctx.param("id")
    if type_id not in IDENTITY_TYPES:
        raise not_found()
    return envelope(_identity_type(type_id))
