"""``/authenticate``, ``/current-api-session`` and ``/current-identity`` (management and client APIs).

Implements ``docs/controller-api.md`` §2.1 (``method=password``: 200 with the ``zt-session`` header and
``data.token``; bad credentials or a disabled identity give 401 ``INVALID_AUTH``; a missing username/password
gives 400 ``COULD_NOT_VALIDATE``), §2.3 (``method=ext-jwt``, see ``extjwt.py``), §2.5 (``GET/DELETE
/current-api-session``). ``method=cert`` is not emulated (plain HTTP has no client certificate) and always
fails with ``INVALID_AUTH``.
"""

from __future__ import annotations

import secrets

from starlette.responses import Response

from . import render
from .entities import Identity
from .errors import (
    COULD_NOT_VALIDATE_MESSAGE,
    ApiError,
    field_error,
    invalid_auth,
    nested_cause,
    unauthorized,
)
from .extjwt import ExtJwtFailure, authenticate_ext_jwt
from .oidc import node_of
from .reqctx import Ctx, empty_ok, envelope

METHODS = ("password", "cert", "ext-jwt")


def _fail(ctx: Ctx, method: str, reason: str, **details: object) -> ApiError:
    ctx.state.record_auth_failure(method, reason, dict(details))
    return invalid_auth()


def _password_identity(ctx: Ctx, body: object) -> Identity:
    data = body if isinstance(body, dict) else {}
    username, password = data.get("username"), data.get("password")
    if not isinstance(username, str) or not isinstance(password, str) or not username or not password:
        raise ApiError(
            400,
            "COULD_NOT_VALIDATE",
            COULD_NOT_VALIDATE_MESSAGE,
            nested_cause("username and password fields are required"),
        )
    with ctx.state.lock:
        identity = next((i for i in ctx.state.identities.values() if i.updb_username == username), None)
        if identity is None or not secrets.compare_digest(
            (identity.updb_password or "").encode(), password.encode()
        ):
            raise _fail(ctx, "password", "invalid username or password", username=username)
        if identity.is_disabled(ctx.state.now()):
            raise _fail(ctx, "password", "identity is disabled", identityId=identity.id)
        policy = ctx.state.auth_policies.get(identity.auth_policy_id)
        if policy is None or not policy.primary.get("updb", {}).get("allowed"):
            raise _fail(
                ctx, "password", "auth policy does not allow updb authentication", identityId=identity.id
            )
        return identity


def _ext_jwt_unauthorized(ctx: Ctx, failure: ExtJwtFailure) -> ApiError:
    """2.0: 401 ``UNAUTHORIZED`` with a ``openziti-primary-ext-jwt`` challenge naming the accepted signers.

    CHANGELOG 2.0.0 "OIDC External JWT - Primary Authentication" (``common/security_tokens.go``);
    1.x answers 401 ``INVALID_AUTH`` without a header.
    """
    with ctx.state.lock:
        signers = [s for s in ctx.state.signers.values() if s.enabled]
    kind = failure.kind
    description = {
        "missing": "no matching token was provided",
        "expired": "token expired",
    }.get(kind, "token is invalid")
    ids = "|".join(s.id for s in signers)
    issuers = "|".join(s.issuer for s in signers)
    challenge = (
        f'Bearer realm="openziti-primary-ext-jwt" error="{kind}" error_description="{description}" '
        f'id="{ids}" issuer="{issuers}"'
    )
    return unauthorized(headers={"WWW-Authenticate": challenge})


async def authenticate(ctx: Ctx) -> Response:
    method = ctx.request.query_params.get("method")
    if method is None:
        raise field_error("method", "method in query is required", "")
    if method not in METHODS:
        raise field_error("method", "method in query should be one of [password cert ext-jwt]", method)
    body = ctx.json_body()
    if method == "password":
        identity = _password_identity(ctx, body)
        authenticator_id = identity.updb_id or ""
    elif method == "ext-jwt":
        try:
            result = await authenticate_ext_jwt(ctx.state, ctx.request.headers.getlist("authorization"))
        except ExtJwtFailure as failure:
            err = _fail(ctx, "ext-jwt", failure.reason, **failure.details)
            if ctx.state.profile.www_authenticate:
                err = _ext_jwt_unauthorized(ctx, failure)
            raise err from failure
        identity, authenticator_id = result.identity, result.signer.id
    else:
        raise _fail(ctx, "cert", "no client certificate presented (cert auth is not emulated)")
    session = ctx.state.create_session(
        identity,
        method=method,
        ip=ctx.client_ip,
        authenticator_id=authenticator_id,
        node=node_of(ctx.request),
    )
    return envelope(render.api_session(ctx.state, session), headers={"zt-session": session.token})


async def current_api_session(ctx: Ctx) -> Response:
    assert ctx.session is not None
    return envelope(render.api_session(ctx.state, ctx.session))


async def logout(ctx: Ctx) -> Response:
    assert ctx.session is not None
    with ctx.state.lock:
        ctx.state.sessions.pop(ctx.session.token, None)
    return empty_ok()


async def current_identity(ctx: Ctx) -> Response:
    assert ctx.identity is not None
    with ctx.state.lock:
        return envelope(render.identity(ctx.state, ctx.identity))
