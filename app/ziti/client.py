"""Async client for the OpenZiti Edge Management API (``/edge/management/v1``).

Contract: edge-api ``management.yml`` (Swagger 2.0, v0.27.5 for ziti 1.6.20; v0.28.2 nearest to 2.0.x) and
``docs/controller-api.md`` §1 (transport, envelopes, errors), §2 (authentication), §3 (identities) and
§8 (limits), with the controller sources each rests on (``controller/internal/routes/identity_router.go``,
``controller/response/responder.go``, ``controller/command/rate_limiter.go`` ...). What this client adds
on top of plain HTTP:

* one API session, reused, renewed before it expires and re-obtained once on 401 (see ``session.py``): an
  OIDC access token (``oidc.py``) when the controller is 2.x or HA and offers ``OIDC_AUTH`` in
  ``GET /version``, the legacy node-local ``zt-session`` otherwise (``session_mode``);
* at most ``max_concurrency`` requests in flight (default 8): the controller queues writes in a
  100-deep command queue and answers 429 when it is full (§8);
* retries with exponential backoff + full jitter on connect errors/timeouts, 429, 502, 503, 504, honouring
  ``Retry-After``, bounded by attempts and a total deadline, and only where repeating is safe
  (see ``retry.py``);
* paging with ``limit=500`` (the controller's maximum) and ``offset`` until ``totalCount``;
* typed exceptions from the error envelope (see ``errors.py``);
* an ``on_request(method, path_template, status, seconds)`` hook and :attr:`ZitiClient.stats` counters.

The API is httpx (requests, responses, errors; ``transport=`` / ``http_client=`` inject another wire, as the
tests and the in-process emulator do), but by default the bytes go through aiohttp (``transport.py``): through
httpx's own transport (httpcore) a controller call cost about half of the convergence worker's CPU per user,
through aiohttp a third of that (README "Benchmarks"). Its errors are mapped by what they mean for a retry: a
refused, unresolvable or timed-out connect, a TLS failure and a wait for a free connection are
``ConnectError`` / ``ConnectTimeout`` / ``PoolTimeout`` (never sent: retried even for a create, except TLS); a
read timeout is ``ReadTimeout``, and a server that closes the connection after the request, a truncated or
malformed answer are ``RemoteProtocolError`` / ``ReadError`` / ``WriteError`` (the controller may have applied
it: a create then raises :class:`ZitiOutcomeUnknown`). aiohttp's own silent resend of an idempotent request is
off: every attempt is counted here.

Entities are returned as the controller's JSON objects (``dict[str, Any]``) so that fields added by newer
controllers pass through untouched.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal
from urllib.parse import quote

import httpx

from app.ziti.errors import (
    ZitiAuthenticationFailed,
    ZitiError,
    ZitiOutcomeUnknown,
    ZitiProtocolError,
    ZitiTLSError,
    ZitiUnauthorized,
    ZitiUnavailable,
    error_from_response,
)
from app.ziti.filters import (
    FilterValue,
    filter_safe_fragment,
    survives_controller,
    ziti_filter_contains,
    ziti_filter_eq,
    ziti_filter_in,
    ziti_filter_tag_eq,
    ziti_identifier,
)
from app.ziti.oidc import OidcFlowError, OidcLogin, OidcTokens
from app.ziti.retry import (
    RETRYABLE_STATUSES,
    RetryPolicy,
    backoff_delay,
    is_tls_error,
    parse_retry_after,
    request_certainly_not_sent,
    status_is_retryable,
    transport_error_is_retryable,
)
from app.ziti.session import (
    DEFAULT_IDLE_REAUTH_AFTER,
    AuthResult,
    CertCredentials,
    Credentials,
    ZitiSession,
)
from app.ziti.tls import build_ssl_context
from app.ziti.transport import AiohttpTransport

__all__ = [
    "ZitiClient",
    "ZitiClientStats",
    "RequestHook",
    "JSONObject",
    "MANAGEMENT_API_PATH",
    "PAGE_SIZE",
    "DEFAULT_TIMEOUT",
    "normalize_base_url",
    "SessionMode",
]

logger = logging.getLogger(__name__)

JSONObject = dict[str, Any]
SessionMode = Literal["auto", "oidc", "legacy"]
RequestHook = Callable[[str, str, int | None, float], None]
"""``on_request(method, path_template, status, seconds)``: called once per HTTP attempt (retries and
``/authenticate`` included). ``path_template`` has ids replaced by ``{id}`` (low cardinality for metrics);
``status`` is None when no response arrived; ``seconds`` is the wire time, excluding the wait for a slot."""

MANAGEMENT_API_PATH = "/edge/management/v1"
PAGE_SIZE = 500  # controller maximum; larger values are clamped (controller-api.md §3.2)
MAX_OFFSET = 100_000  # controller clamps offset to this (controller-api.md §8)
MAX_IDS_PER_LIST = 100
"""Ids in one ``id in [...]`` filter of :meth:`ZitiClient.get_identities` (keeps the URL short)."""
DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=10.0)
_USER_AGENT = "ziti-scim"
_NO_BODY: Any = object()


@dataclass
class ZitiClientStats:
    """Counters of controller traffic since the client was created.

    ``requests`` counts HTTP attempts (each retry and each ``/authenticate`` is one);
    ``by_status`` counts responses by HTTP status; ``transport_errors`` attempts without a response;
    ``retries`` scheduled retries; ``authentications`` successful ``/authenticate`` calls.
    """

    requests: int = 0
    transport_errors: int = 0
    retries: int = 0
    authentications: int = 0
    by_status: Counter[int] = field(default_factory=Counter)


def normalize_base_url(base_url: str) -> str:
    """Validate ``http(s)://host[:port][/path]``; an empty path becomes ``/edge/management/v1``."""
    try:
        url = httpx.URL(base_url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise ValueError(f"invalid Ziti controller URL {base_url!r}: {exc}") from exc
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError(f"Ziti controller URL must be http(s)://host[:port][/path], got {base_url!r}")
    if url.query or url.fragment or url.userinfo:
        raise ValueError("Ziti controller URL must not contain credentials, a query or a fragment")
    path = url.path.rstrip("/") or MANAGEMENT_API_PATH
    return str(url.copy_with(path=path)).rstrip("/")


def _id_segment(value: str, what: str) -> str:
    if not isinstance(value, str) or not value or value in (".", ".."):
        raise ValueError(f"{what} must be a non-empty string, got {value!r}")
    return quote(value, safe="")


def _decode_json(response: httpx.Response, method: str, path: str) -> Any:
    """Decoded JSON body, or None for an empty body (identity disable answers an empty 200)."""
    if not response.content.strip():
        return None
    try:
        return json.loads(response.content)
    except ValueError as exc:
        raise ZitiProtocolError(
            f"controller answered HTTP {response.status_code} with a body that is not JSON",
            status=response.status_code,
            method=method,
            path=path,
        ) from exc


def _envelope_data(response: httpx.Response, method: str, path: str) -> Any:
    body = _decode_json(response, method, path)
    if not isinstance(body, dict) or "data" not in body:
        raise ZitiProtocolError(
            "controller response has no 'data' envelope",
            status=response.status_code,
            method=method,
            path=path,
        )
    return body["data"]


def _retype(err: ZitiError, cls: type[ZitiError], message: str | None = None) -> ZitiError:
    return cls(
        message or err.message,
        status=err.status,
        code=err.code,
        request_id=err.request_id,
        cause=err.cause,
        method=err.method,
        path=err.path,
    )


class ZitiClient:
    """Edge Management API client. Use as ``async with ZitiClient(...) as client:`` or call :meth:`close`.

    Parameters:
        base_url: ``https://HOST:PORT`` (``/edge/management/v1`` is appended when there is no path) or the
            full API base. ``http://`` is accepted for the local emulator.
        credentials: :class:`~app.ziti.session.PasswordCredentials` or
            :class:`~app.ziti.session.CertCredentials`.
        ca_bundle: PEM CA bundle the controller certificate is verified against (None: system store).
        insecure: disable TLS verification (logged once as a WARNING).
        timeout: per-attempt httpx timeout (not applied to an injected ``http_client``).
        max_concurrency: maximum requests in flight (>= 1).
        retry: retry bounds (:class:`~app.ziti.retry.RetryPolicy`).
        transport: an ``httpx.AsyncBaseTransport`` to send through (tests, emulator in-process). TLS then
            belongs to that transport: ``ca_bundle``/``insecure`` are rejected; for cert auth the
            transport must present the client certificate.
        http_client: a ready ``httpx.AsyncClient`` (not closed by :meth:`close`); same TLS rule.
        on_request: hook, see :data:`RequestHook`. Exceptions it raises are logged and ignored.
        idle_reauth_after: re-authenticate before use when the session was idle this long (seconds).
        logout_on_close: ``DELETE /current-api-session`` on close (best effort, 2 s; legacy sessions only).
        session_mode: ``auto`` (default: OIDC when ``GET /version`` reports 2.x or ``HA_CONTROLLER`` together
            with ``OIDC_AUTH``, else ``zt-session``), ``oidc`` or ``legacy``.
        sleep, clock, rng: injectable for tests (backoff sleeps, idle tracking and deadline, jitter).
    """

    def __init__(
        self,
        base_url: str,
        credentials: Credentials,
        *,
        ca_bundle: str | os.PathLike[str] | None = None,
        insecure: bool = False,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        max_concurrency: int = 8,
        retry: RetryPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        http_client: httpx.AsyncClient | None = None,
        on_request: RequestHook | None = None,
        idle_reauth_after: float = DEFAULT_IDLE_REAUTH_AFTER,
        logout_on_close: bool = True,
        session_mode: SessionMode = "auto",
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be >= 1")
        if session_mode not in ("auto", "oidc", "legacy"):
            raise ValueError("session_mode must be 'auto', 'oidc' or 'legacy'")
        if transport is not None and http_client is not None:
            raise ValueError("pass either transport or http_client, not both")
        if (transport is not None or http_client is not None) and (ca_bundle is not None or insecure):
            raise ValueError(
                "ca_bundle/insecure configure the built-in transport; set TLS on the injected one"
            )
        self._base_url = normalize_base_url(base_url)
        self._credentials = credentials
        is_https = self._base_url.startswith("https://")
        if isinstance(credentials, CertCredentials) and not is_https:
            raise ValueError("certificate authentication needs an https:// controller URL")

        if http_client is not None:
            self._http = http_client
            self._owns_http = False
        else:
            if transport is None:
                ssl_context = build_ssl_context(
                    ca_bundle=ca_bundle,
                    insecure=insecure,
                    client_cert=credentials if isinstance(credentials, CertCredentials) else None,
                )
                # Retries are ours (backoff, idempotency rules): the transport never repeats a request.
                transport = AiohttpTransport(ssl_context=ssl_context, max_connections=max_concurrency)
            self._http = httpx.AsyncClient(transport=transport, timeout=timeout, trust_env=False)
            self._owns_http = True

        if insecure and is_https:
            logger.warning(
                "TLS certificate verification for the Ziti controller %s is DISABLED (insecure=True); "
                "use a CA bundle in production",
                self._base_url,
            )
        if not is_https and not _is_loopback(httpx.URL(self._base_url).host):
            logger.warning(
                "Ziti controller %s is reached over plain HTTP: credentials travel unencrypted",
                self._base_url,
            )

        self._retry = retry or RetryPolicy()
        self._semaphore = asyncio.Semaphore(max_concurrency)
        self._max_concurrency = max_concurrency
        self._on_request = on_request
        self._sleep = sleep
        self._clock = clock
        self._rng = rng or random.Random()
        self._session = ZitiSession(idle_reauth_after=idle_reauth_after, clock=clock)
        self._logout_on_close = logout_on_close
        self._session_mode: SessionMode = session_mode
        self._oidc: OidcLogin | None = None
        self._refresh_token: str | None = None
        self.controller_version: str | None = None
        self._closed = False
        self.stats = ZitiClientStats()

    # ------------------------------------------------------------------ lifecycle

    @property
    def base_url(self) -> str:
        return self._base_url

    @property
    def max_concurrency(self) -> int:
        return self._max_concurrency

    @property
    def session_kind(self) -> str:
        """``oidc``, ``legacy`` or ``undecided`` (before the first authentication in ``auto`` mode)."""
        return self._session_mode if self._session_mode != "auto" else "undecided"

    async def __aenter__(self) -> ZitiClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Log the API session out (best effort) and close the HTTP client if this object created it."""
        if self._closed:
            return
        self._closed = True
        token = self._session.clear()
        try:
            if token is not None and self._logout_on_close and self._oidc is None:
                try:
                    await asyncio.wait_for(
                        self._send(
                            "DELETE", "/current-api-session", "/current-api-session", None, None, token
                        ),
                        timeout=2.0,
                    )
                except (httpx.HTTPError, TimeoutError) as exc:
                    logger.debug("Ziti session logout failed: %s", type(exc).__name__)
        finally:
            if self._owns_http:
                await self._http.aclose()

    async def authenticate(self) -> None:
        """Open an API session now (fail fast at start-up); later calls reuse it."""
        self._check_open()
        await self._session.obtain(self._authenticate)

    # ------------------------------------------------------------------ identities

    async def iter_identities(self, filter: str | None = None) -> AsyncIterator[JSONObject]:
        """Yield identities page by page (``GET /identities``, limit 500, offset until totalCount)."""
        async for item in self._iter_collection("/identities", filter):
            yield item

    async def list_identities(self, filter: str | None = None) -> list[JSONObject]:
        """All identities matching the ZitiQL ``filter`` (see :mod:`app.ziti.filters`)."""
        return [item async for item in self._iter_collection("/identities", filter)]

    async def find_identities_by_external_id(self, external_id: str) -> list[JSONObject]:
        """Identities whose ``externalId`` equals ``external_id`` exactly (0 or 1: it is a unique index)."""
        if not isinstance(external_id, str) or not external_id.strip():
            raise ValueError("external_id must be a non-empty string")
        return await self._find_exact("externalId", external_id)

    async def find_identities_by_name(self, name: str) -> list[JSONObject]:
        """Identities whose ``name`` equals ``name`` exactly (0 or 1: it is a unique index)."""
        if not isinstance(name, str) or not name:
            raise ValueError("name must be a non-empty string")
        return await self._find_exact("name", name)

    async def find_identities_by_tag(self, key: str, value: FilterValue) -> list[JSONObject]:
        """Identities with ``tags.<key> = value`` (tag keys: letters and ``_`` only, see filters.py)."""
        if isinstance(value, str):
            ziti_filter_tag_eq(key, None)  # validates the key
            return await self._find_exact(f"tags.{key}", value)
        return await self.list_identities(ziti_filter_tag_eq(key, value))

    async def _find_exact(self, field: str, value: str) -> list[JSONObject]:
        """``field = value`` that also works for values the controller's filter decoding mangles.

        ``storage/zitiql/util.go ParseZqlString`` decodes ``CORP\\\\tom`` as ``CORP<TAB>om``, so such values
        (and control characters the grammar cannot express) are searched with ``contains`` on their longest
        clean fragment, or ``!= null`` when there is none. Every result is checked exactly here.
        """
        if survives_controller(value):
            flt = ziti_filter_eq(field, value)
        else:
            fragment = filter_safe_fragment(value)
            flt = ziti_filter_contains(field, fragment) if fragment else f"{ziti_identifier(field)} != null"
        return [item for item in await self.list_identities(flt) if _field_of(item, field) == value]

    async def get_identity(self, identity_id: str) -> JSONObject:
        """``GET /identities/{id}`` detail object. Raises :class:`ZitiNotFound` for an unknown id."""
        path = f"/identities/{_id_segment(identity_id, 'identity_id')}"
        response = await self._request("GET", "/identities/{id}", path, idempotent=True)
        return self._object(response, "GET", path)

    async def get_identities(self, identity_ids: list[str]) -> dict[str, JSONObject]:
        """The identity details of these ids in one ``GET /identities?filter=id in [...]`` (the list
        answers the same detail objects as ``GET /identities/{id}``); an unknown id is simply absent.

        At most :data:`MAX_IDS_PER_LIST` ids, each surviving the controller's filter decoding (see
        :meth:`_find_exact`); callers fall back to :meth:`get_identity` otherwise."""
        if not identity_ids or len(identity_ids) > MAX_IDS_PER_LIST:
            raise ValueError(f"get_identities takes 1 to {MAX_IDS_PER_LIST} ids")
        if not all(isinstance(i, str) and i and survives_controller(i) for i in identity_ids):
            raise ValueError("an identity id would not survive the controller's filter decoding")
        wanted = set(identity_ids)
        found = await self.list_identities(ziti_filter_in("id", sorted(wanted)))
        return {str(item["id"]): item for item in found if item.get("id") in wanted}

    async def create_identity(self, body: Mapping[str, Any]) -> str:
        """``POST /identities`` and return the new id.

        ``body`` follows edge-api ``identityCreate``: ``name``, ``type`` and ``isAdmin`` are required;
        typical extras are ``externalId``, ``authPolicyId``, ``roleAttributes``, ``tags``.

        Retries: a create is NOT idempotent, so it is repeated only when the controller certainly did not
        process it (connection never established, 429 from the command rate limiter, 503 without leader).
        If it fails after the request may have reached the controller (read timeout, dropped connection,
        502/504) this raises :class:`ZitiOutcomeUnknown` and the identity may exist. The reconciler must
        then look it up by ``externalId`` (:meth:`find_identities_by_external_id`) or by its SCIM tag
        (:meth:`find_identities_by_tag`) before creating it again. A repeated create of an identity that
        does exist fails with :class:`ZitiDuplicate` (``field`` ``name`` or ``externalId``): that, too,
        means "look it up", not "give up".
        """
        if not isinstance(body, Mapping):
            raise TypeError("identity body must be a mapping")
        missing = [key for key in ("name", "type", "isAdmin") if key not in body]
        if missing:
            raise ValueError(f"identity body is missing required field(s): {', '.join(missing)}")
        response = await self._request(
            "POST", "/identities", "/identities", json_body=dict(body), idempotent=False
        )
        data = _envelope_data(response, "POST", "/identities")
        new_id = data.get("id") if isinstance(data, dict) else None
        if not isinstance(new_id, str) or not new_id:
            raise ZitiProtocolError(
                "create response carries no id",
                status=response.status_code,
                method="POST",
                path="/identities",
            )
        return new_id

    async def patch_identity(self, identity_id: str, fields: Mapping[str, Any]) -> None:
        """``PATCH /identities/{id}``: only the keys given change.

        On the controller a JSON ``null`` means "leave unchanged" (``controller/api/json_fields.go
        GetJsonFields`` skips nulls), so ``externalId: None`` is sent as ``""``, which the controller stores
        as null: passing None here still clears the externalId. Other None values leave their field as is.
        ``tags: {}`` clears the tags only on 1.8+ (1.6 ignores an empty map).

        An empty ``fields`` sends nothing. Beware (controller-api.md §3.5): a rename onto an existing name is
        answered 200 and silently drops the whole patch; re-read the identity after renaming.
        """
        if not isinstance(fields, Mapping):
            raise TypeError("patch fields must be a mapping")
        path = f"/identities/{_id_segment(identity_id, 'identity_id')}"
        if not fields:
            return
        body = dict(fields)
        if "externalId" in body and body["externalId"] is None:
            body["externalId"] = ""
        await self._request("PATCH", "/identities/{id}", path, json_body=body, idempotent=True)

    async def delete_identity(self, identity_id: str, *, missing_ok: bool = False) -> None:
        """``DELETE /identities/{id}``. With ``missing_ok`` an unknown id is not an error.

        A 404 on a retry after an attempt whose outcome is unknown counts as success (the first one
        deleted it).
        """
        path = f"/identities/{_id_segment(identity_id, 'identity_id')}"
        await self._request(
            "DELETE",
            "/identities/{id}",
            path,
            idempotent=True,
            missing_ok=missing_ok,
            missing_ok_after_uncertain=True,
        )

    async def disable_identity(self, identity_id: str, duration_minutes: int = 0) -> None:
        """``POST /identities/{id}/disable`` with ``{"durationMinutes": n}``; 0 means indefinitely.

        The controller answers 200 with an EMPTY body (not an envelope); the body is not decoded.
        Disabling also deletes the identity's API sessions (controller-api.md §3.6).
        """
        if (
            isinstance(duration_minutes, bool)
            or not isinstance(duration_minutes, int)
            or duration_minutes < 0
        ):
            raise ValueError("duration_minutes must be an integer >= 0")
        path = f"/identities/{_id_segment(identity_id, 'identity_id')}/disable"
        await self._request(
            "POST",
            "/identities/{id}/disable",
            path,
            json_body={"durationMinutes": duration_minutes},
            idempotent=True,
        )

    async def enable_identity(self, identity_id: str) -> None:
        """``POST /identities/{id}/enable`` (clears ``disabledAt``/``disabledUntil``)."""
        path = f"/identities/{_id_segment(identity_id, 'identity_id')}/enable"
        await self._request("POST", "/identities/{id}/enable", path, idempotent=True)

    # ------------------------------------------------------------------ read-only collections

    async def list_auth_policies(self, filter: str | None = None) -> list[JSONObject]:
        """All auth policies (``GET /auth-policies``); the built-in one has id ``default``."""
        return [item async for item in self._iter_collection("/auth-policies", filter)]

    async def get_auth_policy(self, policy_id: str) -> JSONObject:
        """``GET /auth-policies/{id}``. Raises :class:`ZitiNotFound` for an unknown id."""
        path = f"/auth-policies/{_id_segment(policy_id, 'policy_id')}"
        response = await self._request("GET", "/auth-policies/{id}", path, idempotent=True)
        return self._object(response, "GET", path)

    async def list_external_jwt_signers(self, filter: str | None = None) -> list[JSONObject]:
        """All external JWT signers (``GET /external-jwt-signers``)."""
        return [item async for item in self._iter_collection("/external-jwt-signers", filter)]

    async def list_service_policies(self, filter: str | None = None) -> list[JSONObject]:
        """All service policies (``GET /service-policies``)."""
        return [item async for item in self._iter_collection("/service-policies", filter)]

    async def list_edge_router_policies(self, filter: str | None = None) -> list[JSONObject]:
        """All edge-router policies (``GET /edge-router-policies``)."""
        return [item async for item in self._iter_collection("/edge-router-policies", filter)]

    # ------------------------------------------------------------------ internals

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("ZitiClient is closed")

    @staticmethod
    def _object(response: httpx.Response, method: str, path: str) -> JSONObject:
        data = _envelope_data(response, method, path)
        if not isinstance(data, dict):
            raise ZitiProtocolError(
                "detail response 'data' is not an object",
                status=response.status_code,
                method=method,
                path=path,
            )
        return data

    async def _iter_collection(self, path: str, filter: str | None) -> AsyncIterator[JSONObject]:
        """Offset paging: ``limit=500``, ``offset`` advanced by the items received, until ``totalCount``.

        A ``limit``/``skip`` inside ``filter`` overrides the query parameters on the controller; a page
        that brings nothing new is therefore reported instead of looping forever.
        """
        if filter is not None and not isinstance(filter, str):
            raise TypeError("filter must be a string or None")
        seen: set[str] = set()
        offset = 0
        while True:
            if offset > MAX_OFFSET:
                raise ZitiProtocolError(
                    f"{path}: more than {MAX_OFFSET} results; the controller cannot page past that offset, "
                    "narrow the filter",
                    method="GET",
                    path=path,
                )
            params: dict[str, str | int] = {"limit": PAGE_SIZE, "offset": offset}
            if filter:
                params["filter"] = filter
            response = await self._request("GET", path, path, params=params, idempotent=True)
            body = _decode_json(response, "GET", path)
            data = body.get("data") if isinstance(body, dict) else None
            meta = body.get("meta") if isinstance(body, dict) else None
            pagination = meta.get("pagination") if isinstance(meta, dict) else None
            total = pagination.get("totalCount") if isinstance(pagination, dict) else None
            if not isinstance(data, list) or isinstance(total, bool) or not isinstance(total, int | float):
                raise ZitiProtocolError(
                    "list response lacks data[] or meta.pagination.totalCount",
                    status=response.status_code,
                    method="GET",
                    path=path,
                )
            new = 0
            for item in data:
                if not isinstance(item, dict):
                    raise ZitiProtocolError("list item is not an object", method="GET", path=path)
                item_id = item.get("id")
                key = item_id if isinstance(item_id, str) else json.dumps(item, sort_keys=True)
                if key in seen:
                    continue
                seen.add(key)
                new += 1
                yield item
            offset += len(data)
            if not data or offset >= total:
                return
            if new == 0:
                raise ZitiProtocolError(
                    f"{path}: paging does not advance (does the filter contain 'limit'/'skip'?)",
                    method="GET",
                    path=path,
                )

    async def _authenticate(self) -> AuthResult:
        """A new API session: OIDC or legacy ``zt-session`` (decided once, see ``session_mode``)."""
        if self._session_mode == "auto":
            self._session_mode = await self._detect_session_mode()
        if self._session_mode == "oidc":
            return await self._authenticate_oidc()
        return await self._authenticate_legacy()

    async def _detect_session_mode(self) -> SessionMode:
        """``GET <management>/version`` (``version_router.go``, unauthenticated): OIDC on 2.x or HA.

        1.x keeps ``zt-session``: disabling an identity deletes its legacy sessions at once, whereas 1.x
        does not revoke OIDC tokens of a disabled identity (``env/appenv.go ProcessJwt``).
        """
        try:
            response = await self._request(
                "GET", "/version", "/version", idempotent=True, authenticated=False
            )
            data = _envelope_data(response, "GET", "/version")
        except ZitiError as err:
            if err.status is None or err.status >= 500:
                raise  # unreachable, TLS or overloaded: decide on a later attempt
            logger.info("GET /version failed (%s); using zt-session API sessions", err.message)
            return "legacy"
        data = data if isinstance(data, dict) else {}
        version = data.get("version")
        self.controller_version = version if isinstance(version, str) else None
        capabilities = data.get("capabilities")
        caps = set(capabilities) if isinstance(capabilities, list) else set()
        major = _major(self.controller_version)
        oidc = "OIDC_AUTH" in caps and (major >= 2 or "HA_CONTROLLER" in caps)
        logger.info(
            "Ziti controller %s (capabilities %s): %s API sessions",
            self.controller_version or "?",
            ",".join(sorted(str(c) for c in caps)) or "-",
            "OIDC" if oidc else "zt-session",
        )
        return "oidc" if oidc else "legacy"

    async def _authenticate_oidc(self) -> AuthResult:
        """Refresh the OIDC tokens when possible, else log in again (``oidc.py``)."""
        if self._oidc is None:
            url = httpx.URL(self._base_url)
            self._oidc = OidcLogin(f"{url.scheme}://{url.netloc.decode()}", self._send_url)
        tokens: OidcTokens | None = None
        if self._refresh_token is not None:
            try:
                tokens = await self._oidc.refresh(self._refresh_token)
            except OidcFlowError as err:
                logger.info("OIDC refresh failed (%s); logging in again", err)
            except httpx.TransportError as exc:
                raise self._transport_failure(exc, "POST", "/oidc/oauth/token", True) from exc
        if tokens is None:
            body = self._credentials.auth_body()
            try:
                tokens = await self._oidc.login(self._credentials.method, body)
            except OidcFlowError as err:
                cls = ZitiAuthenticationFailed if err.credentials else ZitiUnavailable
                raise cls(
                    f"OIDC login to the Ziti controller failed: {err}",
                    status=err.status,
                    method="POST",
                    path="/oidc/login",
                ) from err
            except httpx.TransportError as exc:
                raise self._transport_failure(exc, "POST", "/oidc/login", True) from exc
            logger.info(
                "authenticated to Ziti controller %s (OIDC, method=%s)",
                self._base_url,
                self._credentials.method,
            )
        self._refresh_token = tokens.refresh_token or self._refresh_token
        self.stats.authentications += 1
        return AuthResult(token=tokens.access_token, expiration_seconds=tokens.expires_in, absolute=True)

    async def _authenticate_legacy(self) -> AuthResult:
        """``POST /authenticate?method=<password|cert>`` → token from ``data.token`` or ``zt-session``."""
        method = self._credentials.method
        try:
            response = await self._request(
                "POST",
                "/authenticate",
                "/authenticate",
                params={"method": method},
                json_body=self._credentials.auth_body(),
                idempotent=True,
                authenticated=False,
            )
        except ZitiUnauthorized as err:
            if isinstance(err, ZitiAuthenticationFailed):
                raise
            raise _retype(err, ZitiAuthenticationFailed) from err
        body = _decode_json(response, "POST", "/authenticate")
        data = body.get("data") if isinstance(body, dict) else None
        token = data.get("token") if isinstance(data, dict) else None
        if not isinstance(token, str) or not token:
            token = response.headers.get("zt-session")
        if not token:
            raise ZitiProtocolError(
                "authenticate response carries no session token",
                status=response.status_code,
                method="POST",
                path="/authenticate",
            )
        expiration = data.get("expirationSeconds") if isinstance(data, dict) else None
        identity = data.get("identity") if isinstance(data, dict) else None
        self.stats.authentications += 1
        logger.info(
            "authenticated to Ziti controller %s (method=%s, identity=%s)",
            self._base_url,
            method,
            identity.get("name") if isinstance(identity, dict) else "?",
        )
        exp = (
            float(expiration)
            if isinstance(expiration, int | float) and not isinstance(expiration, bool)
            else None
        )
        return AuthResult(token=token, expiration_seconds=exp)

    async def _request(
        self,
        method: str,
        template: str,
        path: str,
        *,
        params: Mapping[str, str | int] | None = None,
        json_body: Any = _NO_BODY,
        idempotent: bool,
        authenticated: bool = True,
        missing_ok: bool = False,
        missing_ok_after_uncertain: bool = False,
    ) -> httpx.Response:
        """One logical request: session, retries, 401 re-authentication, error mapping."""
        self._check_open()
        content: bytes | None = None
        if json_body is not _NO_BODY:
            # Serialise up front so bad input fails before anything is sent (and NaN is refused).
            content = json.dumps(json_body, separators=(",", ":"), allow_nan=False).encode()
        policy = self._retry
        deadline = self._clock() + policy.total_deadline
        attempts = 0
        reauthenticated = False
        maybe_applied = False  # an earlier attempt may have been processed by the controller
        while True:
            token: str | None = None
            if authenticated:
                token = self._session.usable_token() or await self._session.obtain(self._authenticate)
            attempts += 1
            try:
                response = await self._send(method, template, path, params, content, token)
            except httpx.TransportError as exc:
                if not request_certainly_not_sent(exc):
                    maybe_applied = True
                delay = (
                    self._next_delay(attempts, deadline, None)
                    if transport_error_is_retryable(exc, idempotent=idempotent)
                    else None
                )
                if delay is None:
                    raise self._transport_failure(exc, method, path, idempotent) from exc
                logger.warning(
                    "Ziti %s %s failed (%s); retry %d in %.2fs",
                    method,
                    template,
                    type(exc).__name__,
                    attempts,
                    delay,
                )
                await self._sleep(delay)
                continue

            status = response.status_code
            if token is not None and status != 401:
                self._session.touch(token)
            if status == 401 and authenticated and not reauthenticated:
                # Expired/unknown session: re-authenticate once (shared by concurrent callers).
                reauthenticated = True
                attempts -= 1
                logger.info("Ziti session rejected on %s %s; re-authenticating", method, template)
                await self._session.obtain(self._authenticate, stale=token)
                continue
            if status in RETRYABLE_STATUSES:
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
                delay = (
                    self._next_delay(attempts, deadline, retry_after)
                    if status_is_retryable(status, idempotent=idempotent)
                    else None
                )
                if delay is None:
                    raise self._status_failure(response, method, path, idempotent, retry_after)
                if status in (502, 504):
                    maybe_applied = True
                logger.warning(
                    "Ziti %s %s answered HTTP %d; retry %d in %.2fs",
                    method,
                    template,
                    status,
                    attempts,
                    delay,
                )
                await self._sleep(delay)
                continue
            if 200 <= status < 300:
                return response
            if status == 404 and (missing_ok or (missing_ok_after_uncertain and maybe_applied)):
                return response
            if 300 <= status < 400 or status < 200:
                raise ZitiProtocolError(
                    f"unexpected HTTP status {status} (redirects are not followed)",
                    status=status,
                    method=method,
                    path=path,
                )
            raise self._status_failure(response, method, path, idempotent, None)

    def _next_delay(self, attempts: int, deadline: float, retry_after: float | None) -> float | None:
        """Delay before the next attempt, or None when the attempt or time budget is spent."""
        policy = self._retry
        if attempts >= policy.max_attempts:
            return None
        if retry_after is not None:
            if retry_after > policy.max_retry_after:
                return None
            delay = retry_after
        else:
            delay = backoff_delay(policy, attempts, self._rng)
        if self._clock() + delay > deadline:
            return None
        self.stats.retries += 1
        return delay

    @staticmethod
    def _status_failure(
        response: httpx.Response, method: str, path: str, idempotent: bool, retry_after: float | None
    ) -> ZitiError:
        err = error_from_response(
            response.status_code, response.content, method=method, path=path, retry_after=retry_after
        )
        if not idempotent and response.status_code in (502, 504):
            return _retype(
                err,
                ZitiOutcomeUnknown,
                f"gateway answered HTTP {response.status_code}; the controller may have applied the request",
            )
        return err

    @staticmethod
    def _transport_failure(exc: httpx.TransportError, method: str, path: str, idempotent: bool) -> ZitiError:
        kind = type(exc).__name__
        if is_tls_error(exc):
            return ZitiTLSError(f"TLS with the Ziti controller failed: {exc}", method=method, path=path)
        if not idempotent and not request_certainly_not_sent(exc):
            return ZitiOutcomeUnknown(
                f"{kind} after the request was sent; the controller may have applied it",
                method=method,
                path=path,
            )
        detail = str(exc) or "connection closed"
        return ZitiUnavailable(f"Ziti controller unreachable: {kind}: {detail}", method=method, path=path)

    async def _send(
        self,
        method: str,
        template: str,
        path: str,
        params: Mapping[str, str | int] | None,
        content: bytes | None,
        token: str | None,
    ) -> httpx.Response:
        """One HTTP attempt inside the concurrency bound; reports to stats and ``on_request``."""
        headers = {"Accept": "application/json", "User-Agent": _USER_AGENT}
        if content is not None:
            headers["Content-Type"] = "application/json"
        if token is not None:
            if self._oidc is not None:
                headers["Authorization"] = f"Bearer {token}"
            else:
                headers["zt-session"] = token
        return await self._send_url(method, template, self._base_url + path, params, content, headers)

    async def _send_url(
        self,
        method: str,
        template: str,
        url: str,
        params: Mapping[str, str | int] | Mapping[str, str] | None,
        content: bytes | None,
        headers: Mapping[str, str],
    ) -> httpx.Response:
        """One HTTP attempt to ``url`` (redirects not followed) inside the concurrency bound."""
        headers = {"Accept": "application/json", "User-Agent": _USER_AGENT, **headers}
        async with self._semaphore:
            started = time.perf_counter()
            status: int | None = None
            try:
                response = await self._http.request(
                    method, url, params=params, content=content, headers=headers, follow_redirects=False
                )
                status = response.status_code
                return response
            finally:
                elapsed = time.perf_counter() - started
                self.stats.requests += 1
                if status is None:
                    self.stats.transport_errors += 1
                else:
                    self.stats.by_status[status] += 1
                self._emit(method, template, status, elapsed)

    def _emit(self, method: str, template: str, status: int | None, seconds: float) -> None:
        if self._on_request is None:
            return
        try:
            self._on_request(method, template, status, seconds)
        except Exception:  # a metrics bug must not break provisioning
            logger.exception("on_request hook failed")


def _major(version: str | None) -> int:
    """2 for ``v2.0.3``; 0 when unknown."""
    digits = (version or "").lstrip("vV").split(".")[0]
    return int(digits) if digits.isdigit() else 0


def _field_of(item: JSONObject, field: str) -> Any:
    """``item["tags"]["k"]`` for ``tags.k``; ``item[field]`` otherwise."""
    value: Any = item
    for part in field.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _is_loopback(host: str) -> bool:
    return host in ("localhost", "::1") or host.startswith("127.")
