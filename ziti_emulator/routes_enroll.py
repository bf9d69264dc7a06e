"""``POST /edge/client/v1/enroll/token``: OIDC/JWT token enrollment (ziti 2.0.x only).

Implements ``docs/controller-api.md`` §7: the Bearer JWT is verified against the signers (issuer, audience,
signature); the name comes from ``enrollNameClaimsSelector`` (default ``/sub``), the external id from
``claimsProperty``, the role attributes from ``enrollAttributeClaimsSelector`` (string or list, empty strings
dropped). An identity that already has that ``externalId`` gives 409 ``ENROLLMENT_IDENTITY_ALREADY_ENROLLED``
(the case of a user that SCIM pre-provisioned); the signer must have ``enrollToTokenEnabled`` and its
``enrollAuthPolicyId`` must allow ext-jwt with this signer, else 409 ``INVALID_ENROLLMENT_NOT_ALLOWED``; a
name collision is 500 ``UNHANDLED``. A bad token is 400 ``INVALID_ENROLLMENT_TOKEN``. 1.6.x has no handler:
go-openapi answers 501. Certificate enrollment (``clientCsr``) is not emulated.
"""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse, Response

from . import identity_ops
from .entities import ExtJwtSigner
from .errors import ApiError, field_error, unhandled
from .extjwt import ExtJwtFailure, bearer_candidates, resolve_claim, verify_jwt
from .reqctx import Ctx, empty_ok


def _refuse(ctx: Ctx, status: int, code: str, message: str, reason: str) -> ApiError:
    ctx.state.record_auth_failure("enroll-token", reason)
    return ApiError(status, code, message)


def _attributes(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value] if value else []
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str) and v]
    return []


def _policy_allows(ctx: Ctx, signer: ExtJwtSigner) -> bool:
    policy = ctx.state.auth_policies.get(signer.enroll_auth_policy_id)
    if policy is None:
        return False
    ext = policy.primary.get("extJwt", {})
    allowed = ext.get("allowedSigners") or []
    return bool(ext.get("allowed")) and (not allowed or signer.id in allowed)


async def enroll_token(ctx: Ctx) -> Response:
    if ctx.state.flavor == "1.6":
        return JSONResponse("operation enroll.EnrollToken has not yet been implemented", status_code=501)
    body = ctx.json_body()
    if isinstance(body, dict) and body.get("clientCsr"):
        raise field_error("clientCsr", "certificate enrollment is not emulated", "")
    tokens = bearer_candidates(ctx.request.headers.getlist("authorization"))
    bad_token = (400, "INVALID_ENROLLMENT_TOKEN", "The supplied token is not valid")
    if not tokens:
        raise _refuse(ctx, *bad_token, "no Bearer token in the Authorization header")
    try:
        signer, claims = await verify_jwt(ctx.state, tokens[0])
    except ExtJwtFailure as failure:
        raise _refuse(ctx, *bad_token, failure.reason) from failure
    name = resolve_claim(claims, signer.enroll_name_claims_selector, ctx.state.flavor)
    external_id = resolve_claim(claims, signer.claims_property, ctx.state.flavor)
    if not isinstance(name, str) or not name or not isinstance(external_id, str) or not external_id:
        raise _refuse(ctx, *bad_token, "name or id claim missing or not a non-empty string")
    attributes: list[str] = []
    if signer.enroll_attribute_claims_selector:
        attributes = _attributes(
            resolve_claim(claims, signer.enroll_attribute_claims_selector, ctx.state.flavor)
        )
    with ctx.state.lock:
        if ctx.state.identity_by_external_id(external_id) is not None:
            raise _refuse(
                ctx,
                409,
                "ENROLLMENT_IDENTITY_ALREADY_ENROLLED",
                "The identity is already enrolled",
                "an identity with this externalId already exists",
            )
        if not signer.enroll_to_token_enabled or not _policy_allows(ctx, signer):
            raise _refuse(
                ctx,
                409,
                "INVALID_ENROLLMENT_NOT_ALLOWED",
                "The enrollment is not allowed",
                "token enrollment is not enabled for this signer or its auth policy",
            )
        if ctx.state.identity_by_name(name) is not None:
            raise unhandled("could not create identity: duplicate name")
        body_for_create = {
            "name": name,
            "type": "Default",
            "isAdmin": False,
            "externalId": external_id,
            "roleAttributes": attributes,
            "authPolicyId": signer.enroll_auth_policy_id,
        }
        identity_ops.create_identity(ctx.state, body_for_create, out_of_band=True)
    return empty_ok()
