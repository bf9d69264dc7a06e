"""Per-request plumbing: body reading (1 MiB cap), JSON decoding, spec validation, sessions, permissions.

Implements ``docs/controller-api.md`` §1 "Bodies" (413 ``REQUEST_ENTITY_TOO_LARGE`` over 1 MiB,
``COULD_NOT_PARSE_BODY`` for malformed JSON, JSON only), §2.1/§2.5 (``zt-session`` header, 401
``UNAUTHORIZED``; 1.6 ignores tokens that are not UUIDs; 2.0 adds ``WWW-Authenticate``) and §2.6 (1.6: admins
only; 2.0: ``permissions``).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .entities import ApiSession, Identity
from .errors import (
    ApiError,
    could_not_parse_body,
    field_error,
    request_entity_too_large,
    unauthorized,
)
from .ids import new_id
from .oidc import node_of
from .spec import LoadedSpec, check_request_body
from .state import EmulatorState

MAX_BODY = 1024 * 1024
JSON = dict[str, Any]

_ACTIONS = {"GET": "read", "POST": "create", "PUT": "update", "PATCH": "update", "DELETE": "delete"}
# CHANGELOG 2.0.0 "WWW-Authenticate Headers" (common/security_tokens.go)
_MISSING = 'error="missing" error_description="no matching token was provided"'
_CHALLENGE_INVALID = 'zt-session realm="zt-session" error="invalid" error_description="token is invalid"'
_CHALLENGE_NONE = f'zt-session realm="zt-session" {_MISSING},Bearer realm="openziti-oidc" {_MISSING}'
_BEARER_INVALID = 'Bearer realm="openziti-oidc" error="invalid" error_description="token is invalid"'
_BEARER_EXPIRED = 'Bearer realm="openziti-oidc" error="expired" error_description="token expired"'
MAX_BEARER_HEADERS = 3  # common/security_tokens.go NewSecurityTokenCtx reads up to three Bearer values


async def read_body(request: Request) -> bytes:
    """The raw body, refusing more than 1 MiB without buffering it all."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY:
        raise request_entity_too_large()
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise request_entity_too_large()
        chunks.append(chunk)
    return b"".join(chunks)


def envelope(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"data": data, "meta": {}}, status_code=status, headers=headers)


def empty_ok() -> JSONResponse:
    return envelope({})


def created(collection: str, entity_id: str) -> JSONResponse:
    """controller-api.md §1: 201
    ``{"data":{"id","_links":{"self":{"href":"./<collection>/<id>"}}},"meta":{}}``."""
    data = {"id": entity_id, "_links": {"self": {"href": f"./{collection}/{entity_id}"}}}
    return envelope(data, status=201)


def error_response(err: ApiError, request: Request) -> Response:
    """The error envelope; JSON only if the client accepts it (controller-api.md §1 "Errors")."""
    accept = request.headers.get("accept", "")
    headers = dict(err.headers)
    if accept and not any(
        a.strip().split(";")[0] in ("*/*", "application/json", "application/*") for a in accept.split(",")
    ):
        return Response(status_code=err.status, headers=headers)
    return JSONResponse(err.body(new_id()), status_code=err.status, headers=headers)


class Ctx:
    """What a handler needs about the current request."""

    def __init__(
        self, state: EmulatorState, request: Request, api: str, template: str, raw_body: bytes
    ) -> None:
        self.state = state
        self.request = request
        self.api = api
        self.template = template
        self.raw_body = raw_body
        self.session: ApiSession | None = None
        self.identity: Identity | None = None

    def param(self, name: str) -> str:
        return str(self.request.path_params[name])

    @property
    def client_ip(self) -> str:
        return self.request.client.host if self.request.client else ""

    def _spec(self) -> LoadedSpec | None:
        if self.api == "client":
            return self.state.client_spec or self.state.spec
        return self.state.spec

    def _violation(self, error: str) -> None:
        self.state.record_violation(self.request.method, self.request.url.path, error, template=self.template)

    def json_body(self) -> Any:
        """Decode and validate the body; None when no body was sent."""
        spec = self._spec()
        op = spec.find_operation(self.request.method, self.template) if spec else None
        param = op.param_name if op else "body"
        if not self.raw_body.strip():
            if spec is not None:
                problems = check_request_body(spec, self.request.method, self.template, None, present=False)
                if problems:
                    self._violation(problems[0].reason)
                    raise field_error(problems[0].field, problems[0].reason, "")
            return None
        content_type = self.request.headers.get("content-type", "")
        media = content_type.split(";")[0].strip().lower()
        if media != "application/json":
            reason = f'unsupported media type "{content_type}", only [application/json] are allowed'
            self._violation(reason)
            raise field_error("Content-Type", reason, content_type)
        try:
            data = json.loads(self.raw_body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            message = f'parsing {param} body from "" failed, because {exc}'
            self._violation(message)
            raise could_not_parse_body(message) from exc
        if spec is not None:
            problems = check_request_body(spec, self.request.method, self.template, data)
            for problem in problems:
                self._violation(problem.reason)
            if problems:
                first = problems[0]
                if first.kind == "parse":
                    raise could_not_parse_body(first.reason)
                raise field_error(first.field, first.reason, first.value)
        return data

    def authenticate(self) -> Identity:
        """Resolve ``zt-session`` (node-local) or an OIDC ``Authorization: Bearer`` token, else 401."""
        token = self.request.headers.get("zt-session")
        profile = self.state.profile
        challenge = profile.www_authenticate
        if token is not None and profile.version == "1.6":
            try:
                uuid.UUID(token)
            except ValueError:
                token = None  # 1.6 silently ignores a zt-session that is not a UUID
        bearers = [
            v[len("Bearer ") :].strip()
            for v in self.request.headers.getlist("authorization")
            if v.startswith("Bearer ")
        ][:MAX_BEARER_HEADERS]
        if not token and bearers:
            return self._authenticate_bearer(bearers, challenge)
        if not token:
            raise unauthorized(headers={"WWW-Authenticate": _CHALLENGE_NONE} if challenge else None)
        session = self.state.session_for_token(token, node_of(self.request))
        identity = self.state.identities.get(session.identity_id) if session else None
        if session is None or identity is None:
            raise unauthorized(headers={"WWW-Authenticate": _CHALLENGE_INVALID} if challenge else None)
        self.session, self.identity = session, identity
        return identity

    def _authenticate_bearer(self, bearers: list[str], challenge: bool) -> Identity:
        """OIDC access tokens (``controller/env/appenv.go ProcessJwt``): any HA node accepts them.

        Before 2.0.3 a disabled identity's token stays valid until it expires (ProcessJwt never checks
        ``Disabled``); 2.0.3 refuses it.
        """
        now = self.state.now()
        outcome = "invalid"
        for bearer in bearers:
            claims = self.state.oidc.decode(bearer, kind="a", now=now)
            if isinstance(claims, str):
                outcome = claims if outcome == "invalid" else outcome
                continue
            identity = self.state.identities.get(str(claims["sub"]))
            if identity is None or (self.state.profile.oidc_checks_disabled and identity.is_disabled(now)):
                continue
            self.identity = identity
            self.session = ApiSession(
                id=str(claims.get("z_asid", "")),
                token=bearer,
                identity_id=identity.id,
                created_at=float(claims.get("iat", now)),
                last_activity_at=now,
                ip_address=self.client_ip,
                auth_method="oidc",
                authenticator_id="",
                node=node_of(self.request),
            )
            return identity
        header = _BEARER_EXPIRED if outcome == "expired" else _BEARER_INVALID
        raise unauthorized(headers={"WWW-Authenticate": header} if challenge else None)

    def is_full_admin(self) -> bool:
        return self.identity is not None and (self.identity.is_admin or self.identity.is_default_admin)

    def require(self, resource: str) -> None:
        """controller-api.md §2.6: admins may do anything; in 2.0 ``permissions`` grant
        ``resource[.action]``."""
        if self.is_full_admin():
            return
        perms = (
            set(self.identity.permissions or []) if self.identity and self.state.flavor != "1.6" else set()
        )
        action = _ACTIONS.get(self.request.method, "read")
        if action == "create" and self.template.endswith(("/disable", "/enable")):
            action = "update"
        if (
            resource in perms
            or f"{resource}.{action}" in perms
            or (action == "read" and "admin_readonly" in perms)
        ):
            return
        raise unauthorized()


Handler = Callable[[Ctx], Awaitable[Response]]
