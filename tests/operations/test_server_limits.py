"""Issue 12: connection limits and read deadlines (app/serving.py) and quiet client disconnects.

The server runs exactly as ``serve`` runs it (``uvicorn_options`` of the configuration, the service's own
logging), on loopback. Slow clients are raw sockets: partial headers, or full headers and a trickle of body.
"""

from __future__ import annotations

import logging
import selectors
import socket
import time
from collections.abc import Iterator
from dataclasses import replace

import httpx
import pytest

from app.config import ConfigError, LimitsConfig, SourceConfig, load_config
from app.server import create_app
from app.serving import uvicorn_options
from tests.support.live import live_server
from tests.support.stack import TOKEN, make_stack_config

SLOW_HEADERS = 250
SLOW_BODIES = 50
WEBHOOK_SECRET = "authentik-webhook-secret-0123456789"


@pytest.fixture
def served(sqlite_url: str, source_name: str) -> Iterator[str]:
    config = make_stack_config(sqlite_url, source_name, "http://127.0.0.1:9")
    webhook = SourceConfig(
        name="ak", kind="authentik", options={"webhook_secret": WEBHOOK_SECRET}, mapping={"preset": "authentik"}
    )
    config = replace(
        config,
        ziti=replace(config.ziti, url=None),
        sources={**config.sources, "ak": webhook},
        limits=LimitsConfig(header_timeout=1.5, body_timeout=1.5, timeout_keep_alive=1),
    )
    with live_server(create_app(config), log_config=None, **uvicorn_options(config.limits)) as url:
        yield url


def _connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=5)
    sock.setblocking(False)
    return sock


def _closed_within(sockets: list[socket.socket], seconds: float) -> tuple[int, list[bytes]]:
    """Wait (bounded) until the server closes each socket; how many it closed, and what it answered."""
    selector = selectors.DefaultSelector()
    for sock in sockets:
        selector.register(sock, selectors.EVENT_READ, bytearray())
    closed, answers = 0, []
    deadline = time.monotonic() + seconds
    while selector.get_map() and time.monotonic() < deadline:
        for key, _ in selector.select(timeout=max(deadline - time.monotonic(), 0)):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            try:
                chunk = sock.recv(4096)
            except ConnectionResetError:
                chunk = b""
            if chunk:
                key.data.extend(chunk)
                continue
            selector.unregister(sock)
            closed += 1
            answers.append(bytes(key.data))
    selector.close()
    return closed, answers


def _still_open(sock: socket.socket) -> bool:
    """Nothing received and not closed by the server (a peek that would block)."""
    try:
        sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except BlockingIOError:
        return True
    except ConnectionResetError:
        return False
    return False


def test_slow_connections_are_closed_by_the_deadlines_while_scim_still_answers(served: str) -> None:
    slow: list[socket.socket] = []
    try:
        for i in range(SLOW_HEADERS):
            sock = _connect(served)
            sock.send(f"GET /scim/v2/Users HTTP/1.1\r\nHost: x\r\nX-Slow-{i}: ".encode())
            slow.append(sock)
        for _ in range(SLOW_BODIES):
            sock = _connect(served)
            sock.send(
                b"POST /webhooks/ak HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: 1000\r\n\r\n{\"model\": "
            )
            slow.append(sock)
        opened = time.monotonic()
        response = httpx.get(
            f"{served}/scim/v2/Users", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5
        )
        assert response.status_code == 200, response.text
        # Answered while every slow connection is still held open (none has reached its deadline yet):
        # the held connections do not block SCIM. An event, not a wall-clock bound, so load cannot flip it.
        assert [sock for sock in slow if not _still_open(sock)] == []
        for sock in slow[::10]:  # trickling a byte does not extend a deadline
            sock.send(b"x")
        closed, answers = _closed_within(slow, 15)
        assert closed == len(slow)
        assert time.monotonic() - opened > 1.0  # closed by the deadline, not at once
        timed_out = [answer for answer in answers if answer.startswith(b"HTTP/1.1 408")]
        assert len(timed_out) == len(slow)
    finally:
        for sock in slow:
            sock.close()


def test_a_kept_alive_connection_must_send_its_next_headers_in_time(served: str) -> None:
    sock = socket.create_connection(tuple(served.removeprefix("http://").split(":")), timeout=5)  # type: ignore[arg-type]
    try:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        first = b""
        while not first.endswith(b'{"status":"ok"}'):
            first += sock.recv(4096)
        assert first.startswith(b"HTTP/1.1 200")
        sock.sendall(b"GET /healthz HTTP/1.1\r\n")  # the next request starts, never ends
        sock.setblocking(False)
        closed, answers = _closed_within([sock], 10)
        assert closed == 1 and answers[0].startswith(b"HTTP/1.1 408")
    finally:
        sock.close()


def test_a_client_that_disconnects_mid_body_is_one_info_line(
    served: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO):
        for path in ("/webhooks/ak", "/scim/v2/Users"):
            sock = _connect(served)
            sock.setblocking(True)
            sock.sendall(
                f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
                f"Content-Type: application/json\r\nContent-Length: 500\r\n\r\n{{\"a\": ".encode()
            )
            sock.close()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and caplog.text.count("client disconnected") < 2:
            time.sleep(0.05)
        assert httpx.get(f"{served}/healthz").status_code == 200
    disconnects = [r for r in caplog.records if "client disconnected" in r.getMessage()]
    assert [r.levelno for r in disconnects] == [logging.INFO, logging.INFO]
    assert all(r.exc_info is None for r in disconnects)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert "Traceback" not in caplog.text


def test_past_the_concurrency_limit_requests_get_503(sqlite_url: str, source_name: str) -> None:
    config = make_stack_config(sqlite_url, source_name, "http://127.0.0.1:9")
    config = replace(config, ziti=replace(config.ziti, url=None), limits=LimitsConfig(limit_concurrency=4))
    with live_server(create_app(config), log_config=None, **uvicorn_options(config.limits)) as url:
        idle = [_connect(url) for _ in range(4)]
        try:
            for sock in idle:
                sock.send(b"GET /healthz HTTP/1.1\r\n")
            assert httpx.get(f"{url}/healthz").status_code == 503
        finally:
            for sock in idle:
                sock.close()
        deadline = time.monotonic() + 10
        status = 503
        while status == 503 and time.monotonic() < deadline:
            status = httpx.get(f"{url}/healthz").status_code
        assert status == 200


def test_limits_are_read_from_the_server_section() -> None:
    config = load_config(
        {
            "server": {
                "max_patch_operations": 50,
                "max_attribute_values": 20,
                "limit_concurrency": 64,
                "timeout_keep_alive": 3,
                "header_timeout": 2.5,
                "body_timeout": 7,
            }
        },
        env={},
    )
    assert config.limits == LimitsConfig(50, 20, 64, 3, 2.5, 7.0)
    assert load_config({}, env={}).limits == LimitsConfig()
    options = uvicorn_options(config.limits)
    assert options["limit_concurrency"] == 64 and options["timeout_keep_alive"] == 3
    for bad in ({"header_timeout": 0}, {"limit_concurrency": "many"}, {"body_timeout": -1}):
        with pytest.raises(ConfigError, match="server"):
            load_config({"server": bad}, env={})
