"""The controller client's default wire: an ``httpx`` transport that sends through ``aiohttp``.

:class:`~app.ziti.client.ZitiClient` speaks ``httpx`` (requests, responses, errors, and the ``transport=`` /
``http_client=`` injection points used by tests and the in-process emulator); underneath, by default, the
bytes go through an :class:`aiohttp.ClientSession`. Through httpx's own transport (httpcore) a controller
call took about half of the convergence worker's CPU per provisioned user, much of it pool bookkeeping (a
``select()`` per pooled connection per request to see whether it is still readable); the same call
through aiohttp's keep-alive pool costs about a third of that client CPU (README "Benchmarks").

What this transport promises, so that the retry rules of ``retry.py`` keep their meaning:

* **Errors say whether the request can have reached the controller.** aiohttp's exceptions are mapped
  precisely (the mapping of ``httpx-aiohttp`` turns every ``ClientConnectionError``, even a server that
  closed the connection after reading the request, into ``ConnectTimeout``, i.e. "never sent"):

  ============================================================  ==========================================
  aiohttp                                                        httpx (meaning for a retry)
  ============================================================  ==========================================
  ``ClientConnectorCertificateError`` / ``ClientConnectorSSLError``  ``ConnectError`` caused by the
                                                                  ``ssl.SSLError`` (TLS: never retried)
  ``ClientConnectorError`` (refused, unreachable, DNS)            ``ConnectError`` (not sent)
  ``ConnectionTimeoutError`` (TCP/TLS connect)                    ``ConnectTimeout`` (not sent)
  waiting longer than ``timeout.pool`` for one of our slots       ``PoolTimeout`` (not sent)
  ``SocketTimeoutError`` / other ``ServerTimeoutError``           ``ReadTimeout`` (outcome unknown)
  ``ServerDisconnectedError``, a malformed response               ``RemoteProtocolError`` (outcome unknown)
  ``ClientConnectionResetError`` (peer gone while writing)        ``WriteError`` (outcome unknown)
  ``ClientOSError``, ``ClientPayloadError``, other ``OSError``    ``ReadError`` (outcome unknown)
  ``InvalidURL`` / a non-HTTP URL                                 ``UnsupportedProtocol``
  any other ``aiohttp.ClientError``                               ``RemoteProtocolError`` (outcome unknown)
  ============================================================  ==========================================

  The aiohttp exception is kept as ``__cause__``.
* **Retries are the caller's.** aiohttp silently repeats an idempotent request once when a pooled
  connection turns out closed (RFC 9112 §9.3.1); that repetition is switched off, so that every attempt
  is one the client counts, reports to ``on_request`` and backs off for.
* **Timeouts** come from httpx's per-request ``timeout`` extension: ``connect`` bounds the TCP + TLS
  connect, ``read`` each wait for response bytes, ``pool`` the wait for a free connection slot
  (``max_connections``, the client's ``max_concurrency``). aiohttp has no write timeout; request bodies
  here are small JSON documents.
* **Nothing added behind the caller's back**: the headers httpx built are sent as they are (no
  ``User-Agent`` / ``Accept`` / ``Content-Type`` of aiohttp's own), bodies are passed through undecoded
  (httpx decodes ``Content-Encoding`` as it does on its own transport), no cookie jar
  (:class:`aiohttp.DummyCookieJar`; the httpx client keeps its own), no proxy or ``.netrc`` from the
  environment (``trust_env=False``), redirects are not followed.
* TLS uses the :class:`ssl.SSLContext` given (``tls.py``: CA bundle, insecure, client certificate).

Responses are read whole before they are returned (the controller answers JSON envelopes, at most a page
of 500 entities), which gives the connection back to the pool at once and keeps every read error inside
:meth:`AiohttpTransport.handle_async_request`. The session is created on the first request, inside the
running event loop.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterator
from contextlib import contextmanager

import aiohttp
import httpx
from yarl import URL

__all__ = ["AiohttpTransport", "DEFAULT_KEEPALIVE_EXPIRY"]

DEFAULT_KEEPALIVE_EXPIRY = 5.0
"""Seconds an idle connection is kept (httpx's default ``Limits.keepalive_expiry``)."""

# aiohttp adds these when absent; httpx has already decided on each of them.
_SKIP_AUTO_HEADERS = ("Accept", "Accept-Encoding", "User-Agent", "Content-Type")
_HTTP_11 = {"http_version": b"HTTP/1.1"}


class AiohttpTransport(httpx.AsyncBaseTransport):
    """``httpx.AsyncBaseTransport`` over one :class:`aiohttp.ClientSession` (HTTP/1.1, keep-alive).

    ``ssl_context`` verifies ``https://`` servers (None: aiohttp's default, the system trust store);
    ``max_connections`` bounds the connections (and so the requests) in flight; ``keepalive_expiry`` is
    how long an idle connection is kept.
    """

    def __init__(
        self,
        *,
        ssl_context: ssl.SSLContext | None = None,
        max_connections: int = 8,
        keepalive_expiry: float = DEFAULT_KEEPALIVE_EXPIRY,
    ) -> None:
        if max_connections < 1:
            raise ValueError("max_connections must be >= 1")
        self._ssl: ssl.SSLContext | bool = ssl_context if ssl_context is not None else True
        self._max_connections = max_connections
        self._keepalive_expiry = keepalive_expiry
        self._session: aiohttp.ClientSession | None = None
        # Our own slots, so that a wait for one can be told apart from a slow connect (aiohttp reports
        # both as ConnectionTimeoutError); the connector's limit is the same number and never waits.
        self._slots = asyncio.Semaphore(max_connections)
        self._timeouts: dict[tuple[float | None, float | None], aiohttp.ClientTimeout] = {}
        self._closed = False

    def _open(self) -> aiohttp.ClientSession:
        if self._closed:
            raise RuntimeError("the transport is closed")
        connector = aiohttp.TCPConnector(
            ssl=self._ssl,
            limit=self._max_connections,
            keepalive_timeout=self._keepalive_expiry,
        )
        session = aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False,
            trust_env=False,
            skip_auto_headers=_SKIP_AUTO_HEADERS,
            timeout=aiohttp.ClientTimeout(),
        )
        # aiohttp's one silent repetition of an idempotent request on a closed pooled connection; there is
        # no public switch (aiohttp's own test client turns it off the same way).
        session._retry_connection = False
        self._session = session
        return session

    def _client_timeout(self, request: httpx.Request) -> aiohttp.ClientTimeout:
        timeout = request.extensions.get("timeout") or {}
        key = (timeout.get("connect"), timeout.get("read"))
        cached = self._timeouts.get(key)
        if cached is None:
            # total/connect stay unset: `connect` in aiohttp also covers the pool wait, which is ours.
            cached = aiohttp.ClientTimeout(sock_connect=key[0], sock_read=key[1])
            self._timeouts[key] = cached
        return cached

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        session = self._session or self._open()
        body = await request.aread()
        client_timeout = self._client_timeout(request)
        await self._acquire_slot(request)
        try:
            with _mapped_errors(request):
                async with session.request(
                    request.method,
                    URL(str(request.url), encoded=True),
                    headers=request.headers.multi_items(),
                    data=body or None,
                    allow_redirects=False,
                    timeout=client_timeout,
                ) as response:
                    content = await response.read()
                    status = response.status
                    headers = response.raw_headers
                    reason = response.reason
        finally:
            self._slots.release()
        extensions: dict[str, object] = dict(_HTTP_11)
        if reason:
            extensions["reason_phrase"] = reason.encode("latin-1", "replace")
        return httpx.Response(
            status,
            headers=list(headers),
            stream=httpx.ByteStream(content),
            request=request,
            extensions=extensions,
        )

    async def _acquire_slot(self, request: httpx.Request) -> None:
        if not self._slots.locked():
            await self._slots.acquire()
            return
        timeout = request.extensions.get("timeout") or {}
        try:
            async with asyncio.timeout(timeout.get("pool")):
                await self._slots.acquire()
        except TimeoutError as exc:
            raise httpx.PoolTimeout("no free connection to the controller in time", request=request) from exc

    async def aclose(self) -> None:
        self._closed = True
        session, self._session = self._session, None
        if session is not None:
            await session.close()


@contextmanager
def _mapped_errors(request: httpx.Request) -> Iterator[None]:
    """Re-raise aiohttp's exceptions as the httpx ones of the same meaning (see the module docstring)."""
    try:
        yield
    except (aiohttp.ClientError, OSError) as exc:
        raise _map(exc, request) from exc


def _map(exc: BaseException, request: httpx.Request) -> httpx.TransportError:
    message = str(exc) or type(exc).__name__
    # Order matters: aiohttp's classes inherit from each other and from the builtin ones.
    if isinstance(exc, aiohttp.ClientConnectorError):  # incl. TLS (ClientSSLError) and DNS failures
        return httpx.ConnectError(message, request=request)
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return httpx.ConnectTimeout(message, request=request)
    if isinstance(exc, aiohttp.ServerTimeoutError) or isinstance(exc, TimeoutError):
        return httpx.ReadTimeout(message, request=request)
    if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientResponseError):
        return httpx.RemoteProtocolError(message, request=request)
    if isinstance(exc, aiohttp.ClientConnectionResetError):
        return httpx.WriteError(message, request=request)
    if isinstance(exc, aiohttp.ClientOSError | aiohttp.ClientPayloadError | OSError):
        return httpx.ReadError(message, request=request)
    if isinstance(exc, aiohttp.InvalidURL | aiohttp.NonHttpUrlClientError):
        return httpx.UnsupportedProtocol(message, request=request)
    return httpx.RemoteProtocolError(message, request=request)
