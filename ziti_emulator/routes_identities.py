"""``/identities`` endpoints of the management API.

Implements ``docs/controller-api.md`` §3.1 (endpoint table: list, create 201, detail, PUT, PATCH, DELETE,
``/disable`` with its **empty 200 body**, ``/enable``, related lists), §3.2 (filters,
``roleFilter``/``roleSemantic``), §2.6 (2.0: non-admins may not create/modify admins or set ``permissions``
and may not use PUT; all 401 ``UNAUTHORIZED``) and §6 (``/identities/{id}/service-policies`` and
``/edge-router-policies`` list the matching policies).
"""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse, Response

from . import identity_ops, render
from .bodyfields import updated_fields
from .entities import Policy
from .errors import field_error, nested_cause, unauthorized
from .listing import identity_fields, list_response, paging, policy_fields
from .policy_ops import matches
from .reqctx import Ctx, created, empty_ok, envelope


def _body(ctx: Ctx, param: str) -> Any:
    data = ctx.json_body()
    if data is None:
        raise field_error(param, f"{param} in body is required", "")
    return data


def _guard_non_admin(ctx: Ctx, data: Any, *, put: bool = False, patch: bool = False) -> None:
    """Restrictions on identities that act through ``permissions`` rather than ``isAdmin``.

    ``controller/internal/routes/identity_router.go``: ``Create`` refuses ``isAdmin: true`` or non-empty
    ``permissions``; ``Update`` (PUT) is refused; ``Patch`` refuses ANY non-null ``isAdmin``,
    ``permissions`` or ``isDefaultAdmin`` key (``fields.IsUpdated``, even ``isAdmin: false``). All 401
    ``UNAUTHORIZED`` (``nonAdminNotAllowedError``).
    """
    if ctx.is_full_admin():
        return
    if put:
        raise unauthorized(
            nested_cause("non-admins may not use the PUT method, use PATCH instead")
        )
    if not isinstance(data, dict):
        return
    if patch:
        updated = updated_fields(data, empty_map_counts=ctx.state.profile.empty_map_patch_clears)
        for key in ("permissions", "isAdmin", "isDefaultAdmin"):
            if key in updated:
                raise unauthorized(nested_cause(f"non-admins may not modify the identity field '{key}'"))
        return
    if data.get("permissions"):
        raise unauthorized(nested_cause("non-admins may not create users with permissions"))
    if data.get("isAdmin") is True:
        raise unauthorized(nested_cause("non-admins may not create admin users"))


async def list_identities(ctx: Ctx) -> Response:
    items = list(ctx.state.identities.values())
    role_filter = ctx.request.query_params.getlist("roleFilter")
    if role_filter:
        semantic = ctx.request.query_params.get("roleSemantic") or "AllOf"
        probe = Policy(kind="service", id="", name="", created_at=0, updated_at=0, semantic=semantic)
        probe.identity_roles = role_filter
        items = [i for i in items if matches(probe, i)]
    return list_response(ctx, items, identity_fields(ctx), lambda i: render.identity(ctx.state, i))


async def create_identity(ctx: Ctx) -> Response:
    data = _body(ctx, "identity")
    _guard_non_admin(ctx, data)
    identity = identity_ops.create_identity(ctx.state, data)
    return created("identities", identity.id)


async def detail_identity(ctx: Ctx) -> Response:
    with ctx.state.lock:
        identity = identity_ops.get_identity(ctx.state, ctx.param("id"))
        return envelope(render.identity(ctx.state, identity))


async def put_identity(ctx: Ctx) -> Response:
    _guard_non_admin(ctx, None, put=True)
    identity_ops.update_identity(ctx.state, ctx.param("id"), _body(ctx, "identity"), patch=False)
    return empty_ok()


async def patch_identity(ctx: Ctx) -> Response:
    data = _body(ctx, "identity")
    if not ctx.is_full_admin():
        target = identity_ops.get_identity(ctx.state, ctx.param("id"))
        if target.is_admin or target.is_default_admin:
            raise unauthorized(nested_cause("non-admins may not modify admin identities"))
    _guard_non_admin(ctx, data, patch=True)
    identity_ops.update_identity(ctx.state, ctx.param("id"), data, patch=True)
    return empty_ok()


async def delete_identity(ctx: Ctx) -> Response:
    if not ctx.is_full_admin():
        # identity_router.go Delete: "non-admin may not delete admin identities"
        target = ctx.state.identities.get(ctx.param("id"))
        if target is not None and (target.is_admin or target.is_default_admin):
            raise unauthorized(nested_cause("non-admin may not delete admin identities"))
    identity_ops.delete_identity(ctx.state, ctx.param("id"))
    return empty_ok()


async def disable_identity(ctx: Ctx) -> Response:
    identity_ops.disable_identity(ctx.state, ctx.param("id"), _body(ctx, "disable"))
    # controller-api.md §1/§3.6: the controller's Disable handler writes nothing, so Go answers an empty 200
    return Response(status_code=200)


async def enable_identity(ctx: Ctx) -> Response:
    identity_ops.enable_identity(ctx.state, ctx.param("id"))
    return empty_ok()


def _policies_of(ctx: Ctx, kind: str) -> Response:
    state = ctx.state
    with state.lock:
        identity = identity_ops.get_identity(state, ctx.param("id"))
        store = state.service_policies if kind == "service" else state.edge_router_policies
        items = [p for p in store.values() if matches(p, identity)]
    return list_response(ctx, items, policy_fields(ctx, kind), lambda p: render.policy(state, p))


async def identity_service_policies(ctx: Ctx) -> Response:
    return _policies_of(ctx, "service")


async def identity_edge_router_policies(ctx: Ctx) -> Response:
    return _policies_of(ctx, "edge-router")


def _plain_list(ctx: Ctx, data: list[dict[str, Any]]) -> Response:
    limit, offset = paging(ctx)
    page = data[offset:] if limit == -1 else data[offset : offset + limit]
    meta = {"pagination": {"limit": limit, "offset": offset, "totalCount": len(data)}}
    return JSONResponse({"data": page, "meta": meta})


async def identity_authenticators(ctx: Ctx) -> Response:
    with ctx.state.lock:
        identity = identity_ops.get_identity(ctx.state, ctx.param("id"))
        data = []
        if identity.updb_id is not None:
            item = render.links("authenticators", identity.updb_id)
            data.append(
                {
                    "id": identity.updb_id,
                    "method": "updb",
                    "username": identity.updb_username,
                    "identityId": identity.id,
                    "identity": render.entity_ref("identities", identity.id, identity.name),
                    "_links": item,
                }
            )
    return _plain_list(ctx, data)


async def identity_enrollments(ctx: Ctx) -> Response:
    with ctx.state.lock:
        identity = identity_ops.get_identity(ctx.state, ctx.param("id"))
        data = [
            {**record, "method": method, "identityId": identity.id}
            for method, record in identity.enrollments.items()
        ]
    return _plain_list(ctx, data)
