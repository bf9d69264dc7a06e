"""List endpoints: filter, sort, pagination and the list envelope.

Follows ``controller/internal/routes/routes.go GetRequestPaging`` and ``controller/models/base_model.go``
(``docs/controller-api.md`` §3.2): ``limit`` defaults to 10, values above 500 are clamped
to 500, ``0`` or anything below -1 becomes 10, ``-1`` means no limit; ``offset`` defaults to 0 and is clamped
to 100000; ``limit``/``skip`` written inside ``filter`` win; ``meta.pagination`` echoes the effective values
and ``meta.filterableFields`` lists the public fields. Default order is by id (the store's byte order).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from starlette.responses import JSONResponse

from .entities import AuthPolicy, ExtJwtSigner, Identity, Policy
from .errors import invalid_filter, invalid_pagination
from .reqctx import Ctx
from .zitiql import FieldSet, FilterError, compile_predicate, parse_query, sort_entities

E = TypeVar("E")
JSON = dict[str, Any]

DEFAULT_LIMIT = 10
MAX_LIMIT = 500
MAX_OFFSET = 100000


def _int_param(ctx: Ctx, name: str) -> int | None:
    raw = ctx.request.query_params.get(name)
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except ValueError as exc:
        raise invalid_pagination(f"{name} must be an integer, got {raw!r}") from exc


def paging(ctx: Ctx) -> tuple[int, int]:
    limit = _int_param(ctx, "limit")
    offset = _int_param(ctx, "offset")
    if limit is None or limit == 0 or limit < -1:
        limit = DEFAULT_LIMIT
    elif limit > MAX_LIMIT:
        limit = MAX_LIMIT
    offset = min(max(offset or 0, 0), MAX_OFFSET)
    return limit, offset


def select(ctx: Ctx, items: Iterable[E], fields: FieldSet[E]) -> tuple[list[E], int, int, int]:
    """(page, limit, offset, totalCount) for the request's filter and paging parameters."""
    limit, offset = paging(ctx)
    text = ctx.request.query_params.get("filter") or ""
    try:
        query = parse_query(text)
        predicate = compile_predicate(query.predicate, fields)
        matched = [e for e in items if predicate(e)]
        matched = sort_entities(matched, query.sort or (("id", False),), fields)
    except FilterError as exc:
        raise invalid_filter(str(exc)) from exc
    if query.limit is not None:
        limit = query.limit if query.limit == -1 else min(query.limit, MAX_LIMIT) or DEFAULT_LIMIT
    if query.skip is not None:
        offset = min(query.skip, MAX_OFFSET)
    page = matched[offset:] if limit == -1 else matched[offset : offset + limit]
    return page, limit, offset, len(matched)


def list_response(
    ctx: Ctx, items: Iterable[E], fields: FieldSet[E], render: Callable[[E], JSON]
) -> JSONResponse:
    with ctx.state.lock:
        page, limit, offset, total = select(ctx, list(items), fields)
        data = [render(e) for e in page]
    meta = {
        "pagination": {"limit": limit, "offset": offset, "totalCount": total},
        "filterableFields": fields.names(),
    }
    return JSONResponse({"data": data, "meta": meta})


def identity_fields(ctx: Ctx) -> FieldSet[Identity]:
    state = ctx.state
    return FieldSet(
        scalars={
            "id": lambda i: i.id,
            "name": lambda i: i.name,
            "externalId": lambda i: i.external_id,
            "isAdmin": lambda i: i.is_admin,
            "isDefaultAdmin": lambda i: i.is_default_admin,
            "authPolicyId": lambda i: i.auth_policy_id,
            "type": lambda i: i.type_id,
            "typeId": lambda i: i.type_id,
            "disabled": lambda i: i.is_disabled(state.now()),
            "disabledAt": lambda i: i.disabled_at,
            "disabledUntil": lambda i: i.disabled_until,
            "hasApiSession": lambda i: state.has_session(i.id),
            "defaultHostingPrecedence": lambda i: i.default_hosting_precedence,
            "defaultHostingCost": lambda i: i.default_hosting_cost,
            "createdAt": lambda i: i.created_at,
            "updatedAt": lambda i: i.updated_at,
        },
        sets={"roleAttributes": lambda i: i.role_attributes, "permissions": lambda i: i.permissions or []},
        tags=lambda i: i.tags,
    )


def signer_fields() -> FieldSet[ExtJwtSigner]:
    return FieldSet(
        scalars={
            "id": lambda s: s.id,
            "name": lambda s: s.name,
            "issuer": lambda s: s.issuer,
            "audience": lambda s: s.audience,
            "enabled": lambda s: s.enabled,
            "claimsProperty": lambda s: s.claims_property,
            "useExternalId": lambda s: s.use_external_id,
            "kid": lambda s: s.kid,
            "jwksEndpoint": lambda s: s.jwks_endpoint,
            "externalAuthUrl": lambda s: s.external_auth_url,
            "clientId": lambda s: s.client_id,
            "createdAt": lambda s: s.created_at,
            "updatedAt": lambda s: s.updated_at,
        },
        tags=lambda s: s.tags,
    )


def auth_policy_fields() -> FieldSet[AuthPolicy]:
    return FieldSet(
        scalars={
            "id": lambda p: p.id,
            "name": lambda p: p.name,
            "createdAt": lambda p: p.created_at,
            "updatedAt": lambda p: p.updated_at,
        },
        tags=lambda p: p.tags,
    )


def policy_fields(ctx: Ctx, kind: str) -> FieldSet[Policy]:
    flavor16 = ctx.state.flavor == "1.6"

    def policy_type(p: Policy) -> Any:
        # controller-api.md §6: 1.6 stores the type as an int (1 Dial, 2 Bind), 2.0 as "Dial"/"Bind"
        return {"Dial": 1, "Bind": 2}.get(p.type or "") if flavor16 else p.type

    scalars: dict[str, Callable[[Policy], Any]] = {
        "id": lambda p: p.id,
        "name": lambda p: p.name,
        "semantic": lambda p: p.semantic,
        "createdAt": lambda p: p.created_at,
        "updatedAt": lambda p: p.updated_at,
    }
    sets: dict[str, Callable[[Policy], Any]] = {"identityRoles": lambda p: p.identity_roles}
    if kind == "service":
        scalars["type"] = policy_type
        sets["serviceRoles"] = lambda p: p.service_roles
        sets["postureCheckRoles"] = lambda p: p.posture_check_roles
    else:
        scalars["isSystem"] = lambda p: p.is_system
        sets["edgeRouterRoles"] = lambda p: p.edge_router_roles
    return FieldSet(scalars=scalars, sets=sets, tags=lambda p: p.tags)
