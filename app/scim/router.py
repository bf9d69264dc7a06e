"""The ASGI entry of the SCIM endpoint: bearer authentication selects the source, then its SCIM app serves.

Each source has its own scim2-server application (its own tolerance policy and a storage scoped to
its resources), so the token decides what a client may see: a resource of another source is simply
not found (404). Discovery (RFC 7644 §4) needs no token.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import re
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Protocol
from urllib.parse import quote

import orjson
from scim2_models import InvalidValueException, PayloadTooLargeException, SCIMException, UnauthorizedException
from scim2_server.applications.asgi import ASGIApplication
from scim2_server.requests import ScimRequest
from scim2_server.responses import ScimResponse
from scim2_server.routing import Operation
from starlette.requests import ClientDisconnect

from app.auth.bearer import Authenticator
from app.config import SourceConfig
from app.constants import STATUS_EXTENSION
from app.observability.metrics import Metrics
from app.observability.request_id import request_id_from
from app.scim.handler import ZitiScimHandler
from app.scim.limits import RequestLimits
from app.scim.provider import load_provider
from app.scim.quirks import Quirks, QuirksFor, with_options
from app.scim.ratelimit import TokenBucket, TooManyRequests, retry_after
from app.scim.service import ZitiScimService
from app.store.db import Database
from app.store.errors import is_conflict, is_data_error, is_unavailable, sqlstate
from app.store.offload import off_loop
from app.store.storage import SqlStorage, UserHooks

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

log = logging.getLogger("ziti_scim.scim")

OFF_LOOP_ITEMS = 1000
"""A response body with a list longer than this is JSON-encoded in a worker thread."""

WRITES = {Operation.create, Operation.replace, Operation.patch, Operation.delete}
PLURAL_SPC = "/ServiceProviderConfigs"
DISCOVERY = {
    Operation.service_provider_config,
    Operation.resource_types,
    Operation.resource_type,
    Operation.schemas,
    Operation.schema,
}


CONFLICT_ATTEMPTS = 3
"""How many times a request runs when its transaction keeps losing a conflict (:func:`is_conflict`)."""


class ServiceUnavailable(SCIMException):
    """A transient failure of the database: the client may retry (RFC 7644 §3.12 lists 503)."""

    status = 503
    _default_detail = "The service is temporarily unavailable, retry later"


class AfterWrite(Protocol):
    """Called once a SCIM write committed, with the users it marked dirty (``fresh``: none of them has an
    identity yet, so their converge is a create); True if it waited for them."""

    async def __call__(self, users: set[tuple[str, str]], *, fresh: bool = False) -> bool: ...


def _generic(source: SourceConfig) -> Quirks:
    """Without an IdP registry (``quirks``): the generic defaults with the source's own overrides."""
    return with_options(Quirks(kind=source.kind), source)


class SourceApplication(ASGIApplication):
    """scim2-server's ASGI application for one source."""

    def __init__(
        self,
        source: SourceConfig,
        db: Database,
        hooks: UserHooks | None = None,
        after_write: AfterWrite | None = None,
        limits: RequestLimits | None = None,
        quirks: QuirksFor | None = None,
    ) -> None:
        provider = load_provider(source.policy)
        storage = SqlStorage(db, provider, source.name, hooks)
        self.quirks = (quirks or _generic)(source)
        super().__init__(storage, provider, ZitiScimService(provider, self.quirks, limits))
        self.source = source
        self.db = db
        self.hooks = hooks
        self.after_write = after_write
        self.sql_storage = storage

    async def serve(
        self, request: ScimRequest, *, request_id: str | None = None, label: str | None = None
    ) -> ScimResponse:
        """Serve one request; ``request_id`` and ``label`` go with the dirty marks it makes (audit log).

        A request whose transaction PostgreSQL rolled back to break a deadlock or a serialization conflict
        (e.g. a group's members marked while the reconciler settles some of them) is run again: nothing of
        it was applied. Only when that keeps happening does the client get 503 and retry itself.
        """
        for attempt in range(1, CONFLICT_ATTEMPTS + 1):
            try:
                response = await self._dispatch(request, request_id, label)
                break
            except Exception as exception:
                if is_conflict(exception) and attempt < CONFLICT_ATTEMPTS:
                    state = sqlstate(exception)
                    log.info("%s %s: conflict (SQLSTATE %s), run again", request.method, request.path, state)
                    await asyncio.sleep(random.uniform(0, 0.05 * attempt))
                    continue
                response = self.handle_exception(request, exception)
                break
        return self.finalize_response(request, response)

    async def dispatch_request(self, request: ScimRequest) -> ScimResponse:
        return await self._dispatch(request, None, None)

    async def _dispatch(
        self, request: ScimRequest, request_id: str | None, label: str | None
    ) -> ScimResponse:
        try:
            operation = self.service.match(request).operation
        except SCIMException:
            operation = None
        write = operation in WRITES
        storage = self.sql_storage.bound(write=write, request_id=request_id, operation=label)
        response = await ZitiScimHandler(self.service, storage).handle(request)
        touched = storage.touched
        waited = False
        if write and touched and self.after_write is not None:
            waited = await self.after_write(touched, fresh=touched <= storage.fresh)
        if waited:
            await self._refresh_provisioning_view(response)
        return response

    async def _refresh_provisioning_view(self, response: ScimResponse) -> None:
        """Show the provisioning state reached during the source's ``wait_for_sync`` in the response."""
        body = response.body
        if self.hooks is None or not body or body.get("meta", {}).get("resourceType") != "User":
            return
        async with self.db.transaction() as conn:
            view = await self.hooks.view(conn, self.source.name, [str(body.get("id"))])
        if body.get("id") in view:
            body[STATUS_EXTENSION] = view[str(body["id"])]
            if STATUS_EXTENSION not in body.setdefault("schemas", []):
                body["schemas"].append(STATUS_EXTENSION)

    def handle_exception(self, request: ScimRequest, exception: Exception) -> ScimResponse:
        if is_data_error(exception):
            # A value the database cannot hold (e.g. beyond its numeric range): the client's to fix.
            log.info("%s %s -> 400: the database refused a value", request.method, request.path)
            return self.service.error_response(InvalidValueException(detail="A value cannot be stored"))
        if is_unavailable(exception) or isinstance(exception, OSError | TimeoutError):
            # The database is unreachable or restarting: transient, retry.
            # The SQLSTATE says why (the driver's message is not logged: it may quote values).
            state = sqlstate(exception) or "-"
            log.warning("database error on %s %s: %s (SQLSTATE %s)", request.method, request.path,
                        type(exception).__name__, state)
            response = self.service.error_response(ServiceUnavailable())
            response.headers["Retry-After"] = "1"
            return response
        if isinstance(exception, SCIMException):
            log.info(
                "%s %s -> %s %s", request.method, request.path, exception.status, exception.scim_type or ""
            )
            return self.service.error_response(exception)
        log.exception("unexpected error on %s %s", request.method, request.path)
        return self.service.error_response(exception)

    @staticmethod
    async def send_response(response: ScimResponse, send: Send) -> None:
        """scim2-server's ASGI send, encoding with orjson; a large body (a big group, a long page) is
        encoded off the loop."""
        body = response.body
        if body is None:
            encoded = b""
        elif any(isinstance(v, list) and len(v) > OFF_LOOP_ITEMS for v in body.values()):
            encoded = await off_loop(dump_json, body)
        else:
            encoded = dump_json(body)
        headers = [(name.encode(), value.encode()) for name, value in response.headers.items()]
        await send({"type": "http.response.start", "status": int(response.status), "headers": headers})
        await send({"type": "http.response.body", "body": encoded})

    def finalize_response(self, request: ScimRequest, response: ScimResponse) -> ScimResponse:
        response = super().finalize_response(request, response)
        # Location headers echo the request URL: percent-encode what HTTP forbids there (RFC 9110 §5.5).
        for name in ("Location", "Content-Location"):
            value = response.headers.get(name)
            if value is not None and _NOT_URL_TEXT.search(value):
                response.headers[name] = quote(value, safe=_URL_SAFE)
        return response


_URL_SAFE = ":/?#[]@!$&'()*+,;=%~-._"
_NOT_URL_TEXT = re.compile(r"[^\x21-\x7e]")
"""A character HTTP forbids in a header's URL: a control, a space, or beyond ASCII."""


class ScimRouter:
    """Authenticate, bound the body, and hand the request to the source's application.

    ``quirks`` gives each source's SCIM quirks (:func:`app.idp.registry.quirks_for`, passed in by the
    server and the CLI); without it every source gets the generic ones with its own option overrides.
    """

    def __init__(
        self,
        sources: Iterable[SourceConfig],
        db: Database,
        *,
        max_body_bytes: int = 1024 * 1024,
        hooks: UserHooks | None = None,
        after_write: AfterWrite | None = None,
        metrics: Metrics | None = None,
        limits: RequestLimits | None = None,
        quirks: QuirksFor | None = None,
    ) -> None:
        self.apps = {
            source.name: SourceApplication(source, db, hooks, after_write, limits, quirks)
            for source in sources
        }
        self.authenticator = Authenticator(
            [app.source for app in self.apps.values()],
            raw_token_sources=[name for name, app in self.apps.items() if app.quirks.raw_token],
        )
        self.max_body_bytes = max_body_bytes
        self.discovery = SourceApplication(SourceConfig(name="-discovery-"), db)
        self.metrics = metrics
        # Off unless a source sets rate_limit (requests/s); IdP full syncs are bursty by nature.
        self.buckets = {
            name: TokenBucket(rate, float(app.source.options.get("rate_burst", 2 * rate)))
            for name, app in self.apps.items()
            if (rate := float(app.source.options.get("rate_limit", 0))) > 0
        }

    async def authenticate(self, authorization: str | None) -> SourceApplication | None:
        """The source this static token or IdP access token belongs to (see :mod:`app.auth.bearer`)."""
        name = await self.authenticator.authenticate(authorization)
        return self.apps[name] if name is not None else None

    async def _body(self, receive: Receive) -> bytes | None:
        """Read the body, or None once it exceeds the limit (the rest is drained, not kept)."""
        body = bytearray()
        too_large = False
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ClientDisconnect  # nobody to answer; logged once by app.serving.QuietDisconnect
            chunk = message.get("body", b"")
            if not too_large:
                body.extend(chunk)
                too_large = len(body) > self.max_body_bytes
            more = message.get("more_body", False)
        return None if too_large else bytes(body)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.discovery.serve_lifespan(receive, send)
            return
        if scope["path"].endswith(PLURAL_SPC):
            # authentik's sfdc (Salesforce) compatibility mode asks for the plural form.
            scope = {**scope, "path": scope["path"][: -len(PLURAL_SPC)] + "/ServiceProviderConfig"}
        app = self.discovery
        request = ScimRequest(
            method=scope["method"],
            base_url=app.get_base_url(scope),
            path=app.split_path(app.get_path(scope)),
            query={},
            headers=[(name.decode("latin-1"), value.decode("latin-1")) for name, value in scope["headers"]],
        )
        request_id = request_id_from(request.header("X-Request-Id"))
        try:
            operation = app.service.match(request).operation
        except SCIMException:
            operation = None
        response: ScimResponse | None = None
        if operation not in DISCOVERY:
            source_app = await self.authenticate(request.header("Authorization"))
            if source_app is None:
                response = app.service.error_response(
                    UnauthorizedException(detail="A valid bearer token is required")
                )
                response.headers["WWW-Authenticate"] = 'Bearer realm="ziti-scim"'
            else:
                app = source_app
        if response is None and (bucket := self.buckets.get(app.source.name)) is not None:
            wait = bucket.take()
            if wait:
                response = app.service.error_response(TooManyRequests())
                response.headers["Retry-After"] = retry_after(wait)
                if self.metrics is not None:
                    self.metrics.rate_limited.labels(app.source.name).inc()
        started = time.perf_counter()
        if response is None:
            length = request.header("Content-Length")
            body = (
                None
                if length and length.isdigit() and int(length) > self.max_body_bytes
                else await self._body(receive)
            )
            if body is None:
                response = app.service.error_response(
                    PayloadTooLargeException(detail=f"The body exceeds {self.max_body_bytes} bytes")
                )
            else:
                label = f"{request.method} {operation.value if operation else '-'}"
                response = await app.serve(
                    await app.read_request(scope, _replay(body)), request_id=request_id, label=label
                )
        response = app.finalize_response(request, response)
        response.headers["X-Request-Id"] = request_id
        await app.send_response(response, send)
        source = app.source.name if app is not self.discovery else "-"
        status = int(response.status)
        if self.metrics is not None:
            self.metrics.scim_requests.labels(
                source, operation.value if operation else "unknown", str(status)
            ).inc()
        log.info(
            "scim request",
            extra={
                "request_id": request_id,
                "source": source,
                "method": request.method,
                "path": request.path,
                "status": status,
                "duration_ms": round((time.perf_counter() - started) * 1000, 2),
            },
        )


def dump_json(body: Any) -> bytes:
    """A response body as JSON (UTF-8): orjson, several times faster than ``json`` for the same text;
    ``json`` for what orjson refuses (an integer beyond 64 bits, which SQLite's JSON text can hold)."""
    try:
        return orjson.dumps(body)
    except TypeError:
        return json.dumps(body).encode()


def _replay(body: bytes) -> Receive:
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive
