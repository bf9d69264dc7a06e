"""The emulator's Starlette application factory and routing table.

Serves ``/edge/management/v1`` and ``/edge/client/v1`` (``docs/controller-api.md`` §1 "Base paths") with the
behaviours listed in §11. Every error, including unknown paths (404 ``NOT_FOUND``),
wrong verbs (405 ``METHOD_NOT_ALLOWED``) and emulator bugs (500 ``UNHANDLED``), is answered with the
controller's error envelope; a Python traceback never reaches the client.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route, Router
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import oidc, routes_auth, routes_config, routes_enroll, routes_identities, routes_policies
from .entities import RequestRecord
from .errors import ApiError, method_not_allowed, not_found, unhandled
from .ids import new_id
from .profile import Version
from .reqctx import Ctx, Handler, error_response, read_body
from .routes_version import version
from .spec import EXTRA_HINT, load_spec
from .state import EmulatorState, Flavor

log = logging.getLogger("ziti_emulator")

MANAGEMENT_BASE = "/edge/management/v1"
CLIENT_BASE = "/edge/client/v1"

# (path template, method, handler, auth, permission resource or None)
_R = tuple[str, str, Handler, bool, str | None]

_SHARED: list[_R] = [
    ("/authenticate", "POST", routes_auth.authenticate, False, None),
    ("/current-api-session", "GET", routes_auth.current_api_session, True, None),
    ("/current-api-session", "DELETE", routes_auth.logout, True, None),
    ("/current-identity", "GET", routes_auth.current_identity, True, None),
]

_MANAGEMENT: list[_R] = [
    ("/identities", "GET", routes_identities.list_identities, True, "identity"),
    ("/identities", "POST", routes_identities.create_identity, True, "identity"),
    ("/identities/{id}", "GET", routes_identities.detail_identity, True, "identity"),
    ("/identities/{id}", "PUT", routes_identities.put_identity, True, "identity"),
    ("/identities/{id}", "PATCH", routes_identities.patch_identity, True, "identity"),
    ("/identities/{id}", "DELETE", routes_identities.delete_identity, True, "identity"),
    ("/identities/{id}/disable", "POST", routes_identities.disable_identity, True, "identity"),
    ("/identities/{id}/enable", "POST", routes_identities.enable_identity, True, "identity"),
    (
        "/identities/{id}/service-policies",
        "GET",
        routes_identities.identity_service_policies,
        True,
        "identity",
    ),
    (
        "/identities/{id}/edge-router-policies",
        "GET",
        routes_identities.identity_edge_router_policies,
        True,
        "identity",
    ),
    ("/identities/{id}/authenticators", "GET", routes_identities.identity_authenticators, True, "identity"),
    ("/identities/{id}/enrollments", "GET", routes_identities.identity_enrollments, True, "identity"),
    ("/identity-types", "GET", routes_policies.list_identity_types, True, "identity"),
    ("/identity-types/{id}", "GET", routes_policies.detail_identity_type, True, "identity"),
    ("/identity-role-attributes", "GET", routes_policies.identity_role_attributes, True, "identity"),
    ("/external-jwt-signers", "GET", routes_config.list_signers, True, "external-jwt-signer"),
    ("/external-jwt-signers", "POST", routes_config.create_signer, True, "external-jwt-signer"),
    ("/external-jwt-signers/{id}", "GET", routes_config.detail_signer, True, "external-jwt-signer"),
    ("/external-jwt-signers/{id}", "PUT", routes_config.put_signer, True, "external-jwt-signer"),
    ("/external-jwt-signers/{id}", "PATCH", routes_config.patch_signer, True, "external-jwt-signer"),
    ("/external-jwt-signers/{id}", "DELETE", routes_config.delete_signer, True, "external-jwt-signer"),
    ("/auth-policies", "GET", routes_config.list_auth_policies, True, "auth-policy"),
    ("/auth-policies", "POST", routes_config.create_auth_policy, True, "auth-policy"),
    ("/auth-policies/{id}", "GET", routes_config.detail_auth_policy, True, "auth-policy"),
    ("/auth-policies/{id}", "PUT", routes_config.put_auth_policy, True, "auth-policy"),
    ("/auth-policies/{id}", "PATCH", routes_config.patch_auth_policy, True, "auth-policy"),
    ("/auth-policies/{id}", "DELETE", routes_config.delete_auth_policy, True, "auth-policy"),
]

for _coll, _res in (("/service-policies", "service-policy"), ("/edge-router-policies", "edge-router-policy")):
    _MANAGEMENT += [
        (_coll, "GET", routes_policies.list_policies, True, _res),
        (_coll, "POST", routes_policies.create_policy, True, _res),
        (_coll + "/{id}", "GET", routes_policies.detail_policy, True, _res),
        (_coll + "/{id}", "PUT", routes_policies.put_policy, True, _res),
        (_coll + "/{id}", "PATCH", routes_policies.patch_policy, True, _res),
        (_coll + "/{id}", "DELETE", routes_policies.delete_policy, True, _res),
        (_coll + "/{id}/identities", "GET", routes_policies.policy_identities, True, _res),
    ]

_CLIENT: list[_R] = [
    ("/external-jwt-signers", "GET", routes_config.list_client_signers, False, None),
    ("/enroll/token", "POST", routes_enroll.enroll_token, False, None),
]


def _endpoint(
    handler: Handler, template: str, api: str, auth: bool, resource: str | None
) -> Callable[..., Any]:
    async def run(request: Request) -> Response:
        state: EmulatorState = request.app.state.emulator
        try:
            raw = await read_body(request)
            ctx = Ctx(state, request, api, template, raw)
            if auth:
                ctx.authenticate()
                if resource is not None:
                    ctx.require(resource)
            return await handler(ctx)
        except ApiError as err:
            return error_response(err, request)

    run.__name__ = getattr(handler, "__name__", "endpoint")
    return run


def _routes(table: list[_R], api: str) -> list[Route]:
    by_path: dict[str, dict[str, Callable[..., Any]]] = {}
    for template, method, handler, auth, resource in table:
        by_path.setdefault(template, {})[method] = _endpoint(handler, template, api, auth, resource)
    routes = []
    for template, handlers in by_path.items():
        if "GET" in handlers:
            handlers["HEAD"] = handlers["GET"]  # Starlette routes HEAD to GET endpoints
        routes.append(Route(template, _dispatch(handlers), methods=list(handlers)))
    return routes


def _dispatch(handlers: dict[str, Callable[..., Any]]) -> Callable[..., Any]:
    async def dispatch(request: Request) -> Response:
        response: Response = await handlers[request.method](request)
        return response

    return dispatch


async def _http_error(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    err = not_found() if status == 404 else method_not_allowed() if status == 405 else unhandled(str(exc))
    return error_response(err, request)


async def _discard(message: Message) -> None:
    """An ASGI ``send`` that drops the response (fault injection after the change was applied)."""


class EmulatorMiddleware:
    """Fault injection, latency, the request log and the last-resort 500 envelope."""

    def __init__(self, app: ASGIApp, state: EmulatorState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = self.state
        method, path = str(scope["method"]), str(scope["path"])
        query = scope.get("query_string", b"").decode("latin-1")
        status = 0

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                # logged before the client can see the answer, so tests never race the log
                state.requests.append(RequestRecord(state.now(), method, path, query, status))
            await send(message)

        try:
            if state.faults.latency > 0:
                await asyncio.sleep(state.faults.latency)
            fault = state.faults.take(method, path)
            if fault is not None and fault.apply:
                await self.app(scope, receive, _discard)  # the change happens; its answer is lost
            if fault is None:
                await self.app(scope, receive, send_wrapper)
            elif fault.envelope:
                err = fault.api_error()
                await JSONResponse(err.body(new_id()), err.status, headers=err.headers)(
                    scope, receive, send_wrapper
                )
            else:
                headers = (
                    {"Retry-After": str(int(fault.retry_after))} if fault.retry_after is not None else None
                )
                phrase = {502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout"}
                text = phrase.get(fault.status, "injected fault")
                await PlainTextResponse(text, fault.status, headers=headers)(scope, receive, send_wrapper)
        except Exception:  # noqa: BLE001 - last resort: never let a traceback reach the client
            log.exception("emulator bug while serving %s %s", method, path)
            if status == 0:
                body = unhandled("internal emulator error").body(new_id())
                await JSONResponse(body, 500)(scope, receive, send_wrapper)


def create_emulator_app(
    *,
    admin_username: str = "admin",
    admin_password: str,
    session_timeout: float = 1800.0,
    spec_path: str | Path | None = None,
    client_spec_path: str | Path | None = None,
    clock: Callable[[], float] = time.time,
    flavor: Flavor = "2.0",
    jwks_verify: ssl.SSLContext | str | bool = True,
    version: Version | None = None,
    state: EmulatorState | None = None,
    node: str = "",
) -> Starlette:
    """Build the emulator. The state is ``app.state.emulator`` (:class:`EmulatorState`).

    ``spec_path`` is the controller's ``management.yml``; if given, every JSON body is validated against it
    and violations land in ``state.spec_violations``. ``client.yml`` next to it (or ``client_spec_path``) is
    used for the client API. ``version`` (``1.6``, ``1.8``, ``2.0``, ``2.0.3``; default the newest, or 1.6
    when ``flavor="1.6"``) selects the controller release imitated (see ``profile.py``).

    HA: pass the ``state`` of another app and a distinct ``node`` name to get a second controller node of
    the same cluster: entities and OIDC signing keys are shared (raft), legacy ``zt-session`` API sessions
    and OIDC auth requests stay with the node that created them.
    """
    if state is not None:
        state.ha = True
        return _build_app(state, node)
    spec = load_spec(spec_path) if spec_path is not None else None
    if spec is None:
        log.info(
            "request bodies are not validated against the controller's OpenAPI spec (no spec given; "
            "validation needs a management.yml and jsonschema + PyYAML: %s)",
            EXTRA_HINT,
        )
    client_spec = None
    if client_spec_path is not None:
        client_spec = load_spec(client_spec_path)
    elif spec_path is not None and (Path(spec_path).parent / "client.yml").is_file():
        client_spec = load_spec(Path(spec_path).parent / "client.yml")
    state = EmulatorState(
        admin_username=admin_username,
        admin_password=admin_password,
        session_timeout=session_timeout,
        clock=clock,
        flavor=flavor,
        spec=spec,
        client_spec=client_spec,
        jwks_verify=jwks_verify,
        version=version,
    )
    return _build_app(state, node)


def _build_app(state: EmulatorState, node: str) -> Starlette:
    routes = [
        Route("/version", version, methods=["GET", "HEAD"]),
        Route("/", version, methods=["GET", "HEAD"]),
        Route(MANAGEMENT_BASE + "/version", version, methods=["GET", "HEAD"]),
        Route(CLIENT_BASE + "/version", version, methods=["GET", "HEAD"]),
        Mount("/oidc", app=oidc.router()),
        Mount(
            MANAGEMENT_BASE, app=Router(_routes(_SHARED + _MANAGEMENT, "management"), redirect_slashes=False)
        ),
        Mount(CLIENT_BASE, app=Router(_routes(_SHARED + _CLIENT, "client"), redirect_slashes=False)),
    ]
    app = Starlette(routes=routes, exception_handlers={HTTPException: _http_error})
    app.router.redirect_slashes = False
    app.state.emulator = state
    app.state.emulator_node = node
    app.add_middleware(EmulatorMiddleware, state=state)
    return app
