"""``/external-jwt-signers`` and ``/auth-policies`` endpoints.

Implements ``docs/controller-api.md`` §4 (management CRUD; the client API's unauthenticated
``GET /edge/client/v1/external-jwt-signers``) and §5 (auth-policy CRUD).
"""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from . import auth_policy_ops, render, signer_ops
from .errors import field_error
from .listing import auth_policy_fields, list_response, signer_fields
from .reqctx import Ctx, created, empty_ok, envelope


def _body(ctx: Ctx, param: str) -> Any:
    data = ctx.json_body()
    if data is None:
        raise field_error(param, f"{param} in body is required", "")
    return data


# ---- external JWT signers ----------------------------------------------------------------------------


async def list_signers(ctx: Ctx) -> Response:
    state = ctx.state
    return list_response(
        ctx, list(state.signers.values()), signer_fields(), lambda s: render.signer(state, s)
    )


async def list_client_signers(ctx: Ctx) -> Response:
    state = ctx.state
    signers = [s for s in state.signers.values() if s.enabled]
    return list_response(ctx, signers, signer_fields(), lambda s: render.client_signer(state, s))


async def create_signer(ctx: Ctx) -> Response:
    signer = signer_ops.create_signer(ctx.state, _body(ctx, "externalJwtSigner"))
    return created("external-jwt-signers", signer.id)


async def detail_signer(ctx: Ctx) -> Response:
    with ctx.state.lock:
        return envelope(render.signer(ctx.state, signer_ops.get_signer(ctx.state, ctx.param("id"))))


async def put_signer(ctx: Ctx) -> Response:
    signer_ops.update_signer(ctx.state, ctx.param("id"), _body(ctx, "externalJwtSigner"), patch=False)
    return empty_ok()


async def patch_signer(ctx: Ctx) -> Response:
    signer_ops.update_signer(ctx.state, ctx.param("id"), _body(ctx, "externalJwtSigner"), patch=True)
    return empty_ok()


async def delete_signer(ctx: Ctx) -> Response:
    signer_ops.delete_signer(ctx.state, ctx.param("id"))
    return empty_ok()


# ---- auth policies --------------------------------------------------------------------------------


async def list_auth_policies(ctx: Ctx) -> Response:
    return list_response(
        ctx, list(ctx.state.auth_policies.values()), auth_policy_fields(), render.auth_policy
    )


async def create_auth_policy(ctx: Ctx) -> Response:
    policy = auth_policy_ops.create_auth_policy(ctx.state, _body(ctx, "authPolicy"))
    return created("auth-policies", policy.id)


async def detail_auth_policy(ctx: Ctx) -> Response:
    with ctx.state.lock:
        return envelope(render.auth_policy(auth_policy_ops.get_auth_policy(ctx.state, ctx.param("id"))))


async def put_auth_policy(ctx: Ctx) -> Response:
    auth_policy_ops.update_auth_policy(ctx.state, ctx.param("id"), _body(ctx, "authPolicy"), patch=False)
    return empty_ok()


async def patch_auth_policy(ctx: Ctx) -> Response:
    auth_policy_ops.update_auth_policy(ctx.state, ctx.param("id"), _body(ctx, "authPolicy"), patch=True)
    return empty_ok()


async def delete_auth_policy(ctx: Ctx) -> Response:
    auth_policy_ops.delete_auth_policy(ctx.state, ctx.param("id"))
    return empty_ok()
