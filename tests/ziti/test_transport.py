"""The aiohttp-backed transport over real sockets on 127.0.0.1: what it sends, what it keeps (nothing), how
many connections it opens, and above all which httpx error each failure becomes, since the client's retry
rules (``retry.py``) and the reconciler's "create outcome unknown" resolution rest on that meaning.

Failures come from a raw asyncio HTTP/1.1 server whose answer to each request is scripted: answer, close
the connection after reading the request, stall, truncate, or send garbage. A refused and a timed-out
connect use a port that is bound but not listening and a listen queue already full.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import aiohttp
import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from ziti_support import PASSWORD, USERNAME

from app.ziti.client import ZitiClient
from app.ziti.errors import ZitiOutcomeUnknown, ZitiTLSError
from app.ziti.retry import RetryPolicy, is_tls_error, request_certainly_not_sent, transport_error_is_retryable
from app.ziti.session import PasswordCredentials
from app.ziti.tls import build_ssl_context
from app.ziti.transport import AiohttpTransport, _mapped_errors
from tests.support.live import live_server, loopback_socket
from tests.support.tls import TlsFiles

API = "/edge/management/v1"
RETRY = RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.02, total_deadline=10.0)
CLOSE = b"close"  # answer: drop the connection without a response
STALL = b"stall"  # answer: never respond (until the server stops)


@dataclass
class Seen:
    method: str
    target: str
    headers: list[tuple[str, str]]
    body: bytes
    connection: int


@dataclass
class RawServer:
    """HTTP/1.1 on 127.0.0.1 in the test's own loop; ``answer(seen)`` gives the bytes to write (or
    CLOSE / STALL). Connections stay open for the next request unless the answer said otherwise."""

    answer: Callable[[Seen], Awaitable[bytes] | bytes]
    sock: socket.socket | None = None
    seen: list[Seen] = field(default_factory=list)
    connections: int = 0
    _server: asyncio.Server | None = None
    _writers: list[asyncio.StreamWriter] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def start(self) -> RawServer:
        sock = self.sock or loopback_socket()
        self._server = await asyncio.start_server(self._serve, sock=sock)
        return self

    async def stop(self) -> None:
        self._stop.set()
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        number = self.connections
        self._writers.append(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                headers = [tuple(line.split(": ", 1)) for line in lines[1:] if line]
                length = int(next((v for k, v in headers if k.lower() == "content-length"), "0"))
                body = await reader.readexactly(length) if length else b""
                seen = Seen(method, target, [(k, v) for k, v in headers], body, number)
                self.seen.append(seen)
                reply = self.answer(seen)
                data = await reply if not isinstance(reply, bytes) else reply
                if data == CLOSE:
                    break
                if data == STALL:
                    await self._stop.wait()
                    break
                writer.write(data)
                await writer.drain()
                if b"connection: close" in data.lower():
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def reply(status: int, body: bytes = b"", *, headers: tuple[tuple[str, str], ...] = ()) -> bytes:
    reasons = {200: "OK", 201: "Created", 404: "Not Found"}
    lines = [f"HTTP/1.1 {status} {reasons.get(status, 'Whatever')}", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def envelope(data: object, *, close: bool = False) -> bytes:
    headers = (("Content-Type", "application/json"),) + ((("Connection", "close"),) if close else ())
    return reply(200, json.dumps({"data": data, "meta": {}}).encode(), headers=headers)


def controller(create: Callable[[Seen], Awaitable[bytes] | bytes]) -> Callable[[Seen], Awaitable[bytes] | bytes]:
    """A zt-session controller whose ``POST /identities`` (and GETs) answer as ``create`` says."""

    def answer(seen: Seen) -> Awaitable[bytes] | bytes:
        if seen.target.startswith(f"{API}/authenticate"):
            return envelope({"token": "tok", "expirationSeconds": 1800})
        return create(seen)

    return answer


@contextlib.asynccontextmanager
async def raw_server(
    answer: Callable[[Seen], Awaitable[bytes] | bytes], sock: socket.socket | None = None
) -> AsyncIterator[RawServer]:
    server = await RawServer(answer, sock).start()
    try:
        yield server
    finally:
        await server.stop()


@contextlib.asynccontextmanager
async def transport(**kwargs: object) -> AsyncIterator[AiohttpTransport]:
    t = AiohttpTransport(**kwargs)  # type: ignore[arg-type]
    try:
        yield t
    finally:
        await t.aclose()


def ziti(url: str, **kwargs: object) -> ZitiClient:
    options: dict[str, object] = {
        "retry": RETRY,
        "session_mode": "legacy",
        "logout_on_close": False,
        **kwargs,
    }
    return ZitiClient(url, PasswordCredentials(USERNAME, PASSWORD), **options)  # type: ignore[arg-type]


def request(url: str, method: str = "GET", **kwargs: object) -> httpx.Request:
    return httpx.Request(method, url, **kwargs)  # type: ignore[arg-type]


async def test_sends_exactly_what_httpx_built_and_decodes_the_answer_once() -> None:
    document = json.dumps({"data": {"id": "x" * 300}, "meta": {}}).encode()

    def answer(seen: Seen) -> bytes:
        return reply(
            201,
            gzip.compress(document),
            headers=(("Content-Type", "application/json"), ("Content-Encoding", "gzip"), ("X-Id", "1")),
        )

    async with raw_server(answer) as server, transport() as t:
        async with httpx.AsyncClient(transport=t, trust_env=False) as http:
            built = http.build_request(
                "POST",
                f"{server.url}{API}/identities/a%2Fb",
                params={"filter": 'name = "tom \\\\ x"', "limit": 500},
                content=b'{"name":"x"}',
                headers={"Content-Type": "application/json", "zt-session": "tok"},
            )
            response = await http.send(built)

    (seen,) = server.seen
    assert seen.method == "POST"
    assert seen.target == built.url.raw_path.decode()  # path and query not re-quoted
    assert [(k.lower(), v) for k, v in seen.headers] == [(k.lower(), v) for k, v in built.headers.multi_items()]
    assert seen.body == b'{"name":"x"}'
    assert response.status_code == 201 and response.reason_phrase == "Created"
    assert response.http_version == "HTTP/1.1"
    assert response.headers["X-Id"] == "1" and response.headers["Content-Encoding"] == "gzip"
    assert response.content == document


async def test_keeps_no_cookie_and_reuses_the_connection() -> None:
    def answer(seen: Seen) -> bytes:
        return reply(200, b"{}", headers=(("Set-Cookie", "sid=secret; Path=/"),))

    async with raw_server(answer) as server, transport() as t:
        for _ in range(3):
            response = await t.handle_async_request(request(f"{server.url}/x"))
            assert response.status_code == 200 and await response.aread() == b"{}"

    assert [s.connection for s in server.seen] == [1, 1, 1]
    assert all(k.lower() != "cookie" for s in server.seen for k, _ in s.headers)


async def test_connections_are_bounded_by_max_connections() -> None:
    gate = asyncio.Event()
    two_in = asyncio.Event()
    waiting = 0

    async def answer(seen: Seen) -> bytes:
        nonlocal waiting
        waiting += 1
        if waiting == 2:
            two_in.set()
        await gate.wait()
        return reply(200, b"ok")

    async with raw_server(answer) as server, transport(max_connections=2) as t:
        calls = [asyncio.ensure_future(t.handle_async_request(request(f"{server.url}/{i}"))) for i in range(6)]
        await two_in.wait()
        gate.set()
        responses = await asyncio.gather(*calls)

    assert [r.status_code for r in responses] == [200] * 6
    assert len(server.seen) == 6 and server.connections == 2


async def test_refused_connection_is_a_connect_error_and_a_create_is_retried() -> None:
    """Refused = never sent: even a non-idempotent create is repeated, and it lands exactly once."""

    def answer(seen: Seen) -> bytes:
        if seen.target.startswith(f"{API}/authenticate"):
            return envelope({"token": "tok", "expirationSeconds": 1800}, close=True)  # nothing pooled
        return envelope({"id": "new-id"})

    comeback: list[RawServer] = []

    async def sleep(seconds: float) -> None:
        await comeback[0].start()  # the controller listens again during the retry's backoff

    async with raw_server(answer) as first:
        port = int(first.url.rsplit(":", 1)[1])
        client = ziti(first.url, sleep=sleep)
        await client.authenticate()
    second = RawServer(answer, loopback_socket(port))  # bound, not listening: connects are refused
    comeback.append(second)
    try:
        async with transport() as t:
            with pytest.raises(httpx.ConnectError) as caught:
                await t.handle_async_request(request(f"http://127.0.0.1:{port}/x"))
        assert request_certainly_not_sent(caught.value)
        assert transport_error_is_retryable(caught.value, idempotent=False)

        assert await client.create_identity({"name": "u", "type": "User", "isAdmin": False}) == "new-id"
    finally:
        await client.close()
        await second.stop()
    assert client.stats.retries == 1 and client.stats.transport_errors == 1
    assert [(s.method, s.target) for s in second.seen] == [("POST", f"{API}/identities")]


@pytest.mark.parametrize("wire", ["aiohttp (default)", "httpx's own, injected"])
async def test_connection_closed_after_the_request_is_outcome_unknown_and_a_create_is_not_repeated(
    wire: str,
) -> None:
    """Same meaning on both wires: the httpx transport stays injectable and is judged by the same rules."""
    injected = {"transport": httpx.AsyncHTTPTransport(retries=0)} if wire.startswith("httpx") else {}
    async with raw_server(controller(lambda seen: CLOSE)) as server:
        async with transport() as t:
            with pytest.raises(httpx.RemoteProtocolError) as caught:
                await t.handle_async_request(request(f"{server.url}{API}/identities", "POST", content=b"{}"))
        assert not request_certainly_not_sent(caught.value)
        assert not transport_error_is_retryable(caught.value, idempotent=False)
        server.seen.clear()

        async with ziti(server.url, **injected) as client:
            with pytest.raises(ZitiOutcomeUnknown, match="RemoteProtocolError after the request was sent"):
                await client.create_identity({"name": "u", "type": "User", "isAdmin": False})
    assert [s.target for s in server.seen if s.method == "POST"] == [
        f"{API}/authenticate?method=password",
        f"{API}/identities",
    ]
    assert client.stats.retries == 0


async def test_a_dropped_read_is_retried_by_the_client_not_hidden_by_aiohttp() -> None:
    """aiohttp would silently resend an idempotent request on a reused connection; every attempt here is
    one the client sees (stats, on_request) and the server counts."""
    gets = 0

    def answer(seen: Seen) -> bytes:
        nonlocal gets
        gets += 1
        if gets == 2:
            return CLOSE  # the second GET, on the connection the first one used
        return reply(200, b"ok")

    async with raw_server(answer) as server, transport() as t:
        first = await t.handle_async_request(request(f"{server.url}/a"))
        assert await first.aread() == b"ok"
        with pytest.raises(httpx.RemoteProtocolError):
            await t.handle_async_request(request(f"{server.url}/b"))
        assert [s.connection for s in server.seen] == [1, 1]  # reused, and not repeated on a new one

    page = json.dumps({"data": [{"id": "i1"}], "meta": {"pagination": {"totalCount": 1}}}).encode()
    lists = 0

    def listing(seen: Seen) -> bytes:
        nonlocal lists
        lists += 1
        return CLOSE if lists == 1 else reply(200, page, headers=(("Content-Type", "application/json"),))

    async with raw_server(controller(listing)) as server:
        async with ziti(server.url) as client:
            assert [i["id"] for i in await client.list_identities()] == ["i1"]
    assert lists == 2 and client.stats.retries == 1 and client.stats.transport_errors == 1


async def test_a_stalled_answer_is_a_read_timeout_and_a_create_is_not_repeated() -> None:
    async with raw_server(controller(lambda seen: STALL)) as server:
        async with transport() as t:
            with pytest.raises(httpx.ReadTimeout) as caught:
                await t.handle_async_request(
                    request(f"{server.url}/x", extensions={"timeout": {"connect": 5.0, "read": 0.2}})
                )
        assert not request_certainly_not_sent(caught.value)
        server.seen.clear()

        async with ziti(server.url, timeout=httpx.Timeout(5.0, read=0.2)) as client:
            with pytest.raises(ZitiOutcomeUnknown, match="ReadTimeout"):
                await client.create_identity({"name": "u", "type": "User", "isAdmin": False})
    assert [s.target for s in server.seen if s.target.endswith("/identities")] == [f"{API}/identities"]


async def test_a_full_listen_queue_is_a_connect_timeout() -> None:
    sock = loopback_socket()
    sock.listen(0)  # never accepted: one connection fills the queue, the next SYN is dropped
    filler = socket.create_connection(sock.getsockname())
    try:
        async with transport() as t:
            with pytest.raises(httpx.ConnectTimeout) as caught:
                await t.handle_async_request(
                    request(
                        f"http://127.0.0.1:{sock.getsockname()[1]}/x",
                        extensions={"timeout": {"connect": 0.2, "read": 5.0}},
                    )
                )
    finally:
        filler.close()
        sock.close()
    assert request_certainly_not_sent(caught.value)
    assert isinstance(caught.value.__cause__, aiohttp.ConnectionTimeoutError)


async def test_waiting_for_a_connection_slot_is_a_pool_timeout() -> None:
    held = asyncio.Event()

    def answer(seen: Seen) -> bytes:
        held.set()
        return STALL

    async with raw_server(answer) as server, transport(max_connections=1) as t:
        busy = asyncio.ensure_future(t.handle_async_request(request(f"{server.url}/busy")))
        await held.wait()  # the only slot is taken
        with pytest.raises(httpx.PoolTimeout) as caught:
            await t.handle_async_request(request(f"{server.url}/waits", extensions={"timeout": {"pool": 0.1}}))
        busy.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await busy
    assert request_certainly_not_sent(caught.value)
    assert [s.target for s in server.seen] == ["/busy"] and server.connections == 1


async def test_a_truncated_body_is_a_read_error() -> None:
    def answer(seen: Seen) -> bytes:
        return b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nConnection: close\r\n\r\n0123456789"

    async with raw_server(answer) as server, transport() as t:
        with pytest.raises(httpx.ReadError) as caught:
            await t.handle_async_request(request(f"{server.url}/x"))
    assert not request_certainly_not_sent(caught.value)
    assert isinstance(caught.value.__cause__, aiohttp.ClientPayloadError)


async def test_a_malformed_answer_is_a_remote_protocol_error() -> None:
    async with raw_server(lambda seen: b"HTTP/1.1 abc nonsense\r\n\r\n") as server, transport() as t:
        with pytest.raises(httpx.RemoteProtocolError) as caught:
            await t.handle_async_request(request(f"{server.url}/x"))
    assert not request_certainly_not_sent(caught.value)


async def test_unknown_ca_is_a_tls_connect_error_never_retried(tls_files: TlsFiles) -> None:
    async def hello(request: Request) -> Response:
        return Response(b"hi")

    app = Starlette(routes=[Route("/x", hello)])
    with live_server(
        app, ssl_certfile=str(tls_files.server_cert), ssl_keyfile=str(tls_files.server_key)
    ) as url:
        async with transport(ssl_context=build_ssl_context(ca_bundle=tls_files.ca_cert)) as t:
            response = await t.handle_async_request(request(f"{url}/x"))
            assert await response.aread() == b"hi"
        async with transport(ssl_context=build_ssl_context(ca_bundle=tls_files.other_ca_cert)) as t:
            with pytest.raises(httpx.ConnectError) as caught:
                await t.handle_async_request(request(f"{url}/x"))
        async with ziti(url, ca_bundle=str(tls_files.other_ca_cert)) as client:
            with pytest.raises(ZitiTLSError, match="certificate verify failed"):
                await client.authenticate()
    assert is_tls_error(caught.value)
    assert not transport_error_is_retryable(caught.value, idempotent=True)
    assert client.stats.requests == 1 and client.stats.retries == 0


@pytest.mark.parametrize(
    ("raised", "expected"),
    [
        (aiohttp.ClientConnectionResetError("Cannot write to closing transport"), httpx.WriteError),
        (aiohttp.ClientOSError(104, "Connection reset by peer"), httpx.ReadError),
        (ConnectionResetError(104, "reset"), httpx.ReadError),
        (aiohttp.ServerDisconnectedError(), httpx.RemoteProtocolError),
        (aiohttp.SocketTimeoutError("Timeout on reading data from socket"), httpx.ReadTimeout),
        (aiohttp.InvalidURL("ftp://x"), httpx.UnsupportedProtocol),
        (aiohttp.ClientConnectionError("Connection closed"), httpx.RemoteProtocolError),
    ],
)
def test_failures_that_loopback_cannot_stage_map_by_meaning(
    raised: Exception, expected: type[httpx.TransportError]
) -> None:
    """What no server here can provoke on demand still maps to the httpx error of the same meaning."""
    req = request("http://127.0.0.1:9/x")
    with pytest.raises(httpx.TransportError) as caught, _mapped_errors(req):
        raise raised
    assert type(caught.value) is expected and caught.value.__cause__ is raised
    assert caught.value.request is req
    assert not request_certainly_not_sent(caught.value)


async def test_a_closed_transport_refuses_to_send() -> None:
    t = AiohttpTransport()
    await t.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        await t.handle_async_request(request("http://127.0.0.1:9/x"))
