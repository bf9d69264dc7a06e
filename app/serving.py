"""How ``serve`` runs uvicorn: connection limits and read deadlines, so slow clients cannot hold the server.

uvicorn bounds concurrency (``limit_concurrency``: past it a new request is answered 503) and idle
keep-alive connections (``timeout_keep_alive``, armed only once a response is sent), but it waits for a
request's headers and body forever: a client that sends a partial request line keeps its connection,
and its file descriptor, for as long as it likes (slowloris). :func:`deadline_protocol` wraps uvicorn's
HTTP protocol with two deadlines, one timer per connection:

- ``header_timeout``: from the connection (or the first byte of a next request on a kept-alive
  connection) to the end of the request's headers; on expiry ``408`` and close;
- ``body_timeout``: from the end of the headers to the end of the body; on expiry the connection is closed
  (the application sees a disconnect; ``408`` if it has not answered yet).

The deadlines are not re-armed by each byte received, so trickling a byte at a time does not help.

:class:`QuietDisconnect` turns a client that leaves mid-request (starlette's ``ClientDisconnect``, e.g.
an IdP giving up on a webhook delivery) into one INFO line instead of an ERROR with a traceback: nothing
failed on the server's side, and nobody is left to answer.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.auto import AutoHTTPProtocol
from uvicorn.protocols.http.h11_impl import H11Protocol

from app.config import LimitsConfig

log = logging.getLogger("ziti_scim.serving")

_TIMEOUT_ANSWER = b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"


def _peer(address: Any) -> str:
    return f"{address[0]}:{address[1]}" if address else "?"


def deadline_protocol(header_timeout: float, body_timeout: float, base: Any = AutoHTTPProtocol) -> Any:
    """uvicorn's HTTP protocol class ``base`` with the read deadlines of the module docstring."""

    class DeadlineProtocol(base):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.deadline: asyncio.TimerHandle | None = None
            self.awaiting: str | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:
            super().connection_made(transport)
            self._arm("headers", header_timeout)

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            before = self.cycle
            super().data_received(data)
            cycle = self.cycle
            if self.transport.is_closing():
                self._disarm()
            elif cycle is not None and cycle is not before:  # a request's headers are in
                if cycle.more_body:
                    self._arm("body", body_timeout)
                else:
                    self._disarm()
            elif cycle is None or cycle.response_complete:  # bytes of a (next) request's headers
                if self.awaiting != "headers":
                    self._arm("headers", header_timeout)
            elif not cycle.more_body and self.awaiting == "body":
                self._disarm()

        def _arm(self, what: str, seconds: float) -> None:
            self._disarm()
            self.awaiting = what
            self.deadline = asyncio.get_running_loop().call_later(seconds, self._expire, what, seconds)

        def _disarm(self) -> None:
            if self.deadline is not None:
                self.deadline.cancel()
            self.deadline, self.awaiting = None, None

        def _expire(self, what: str, seconds: float) -> None:
            self.deadline, self.awaiting = None, None
            if self.transport.is_closing():
                return
            client = _peer(self.client)
            log.info("closing the connection of %s: request %s not received in %gs", client, what, seconds)
            if self.cycle is None or not self.cycle.response_started or self.cycle.response_complete:
                self.transport.write(_TIMEOUT_ANSWER)
            self.transport.close()

    return DeadlineProtocol


def uvicorn_options(limits: LimitsConfig) -> dict[str, Any]:
    """The keyword arguments of ``uvicorn.run`` / ``uvicorn.Config`` that apply ``limits``.

    The HTTP parser is h11 even when httptools is installed (uvicorn's ``auto`` would take it): httptools
    refuses a request whose header value holds a control character (e.g. DEL in ``X-Request-Id``) with
    uvicorn's plain-text 400 before the application sees it, where h11 lets the service answer and clean
    the value (:mod:`app.observability.request_id`). The event loop is uvicorn's ``auto`` (uvloop).
    """
    return {
        "http": deadline_protocol(limits.header_timeout, limits.body_timeout, base=H11Protocol),
        "limit_concurrency": limits.limit_concurrency,
        "timeout_keep_alive": limits.timeout_keep_alive,
    }


class QuietDisconnect:
    """ASGI middleware: a ``ClientDisconnect`` raised below is logged at INFO and not propagated."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self.app(scope, receive, send)
        except ClientDisconnect:
            client = _peer(scope.get("client"))
            log.info("client disconnected: %s %s from %s", scope.get("method"), scope.get("path"), client)
