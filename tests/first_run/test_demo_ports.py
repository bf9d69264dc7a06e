"""Issue 9 item 3: the demo never dies on a busy port.

A busy default port (8080 for SCIM, 1280 for the emulator, where a real controller usually listens) is
replaced by a free one, and the demo says which; a busy port given explicitly ends it with exit status 1
and one line on stderr, never a traceback.
"""

from __future__ import annotations

import asyncio
import functools
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from app.demo import bind
from tests.first_run.demo_process import running_demo
from tests.support.live import loopback_socket

COMMAND = [sys.executable, "-m", "app"]
demo_bind = functools.partial(bind, 0, explicit=True, what="SCIM")


def port_of(url: str) -> int:
    port = urlsplit(url).port
    assert port is not None
    return port


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def test_two_demos_at_once_on_default_ports_both_serve(tmp_path: Path) -> None:
    (first_dir := tmp_path / "first").mkdir()
    (second_dir := tmp_path / "second").mkdir()
    with running_demo(COMMAND, first_dir) as first, running_demo(COMMAND, second_dir) as second:
        ports = {(port_of(demo.scim), port_of(demo.management)) for demo in (first, second)}
        assert len({scim for scim, _ in ports}) == 2 and len({ziti for _, ziti in ports}) == 2
        # The first took the defaults unless something else on this machine holds them; the second never
        # can, and says where it went instead.
        assert port_of(second.scim) != 8080 and port_of(second.management) != 1280
        assert f"port 8080 is busy: SCIM on port {port_of(second.scim)} instead" in second.lines
        assert f"port 1280 is busy: emulator on port {port_of(second.management)} instead" in second.lines
        for demo in (first, second):
            answer = httpx.get(f"{demo.scim}/Users", headers={"Authorization": f"Bearer {demo.token}"}, timeout=30)
            assert answer.status_code == 200 and answer.json()["totalResults"] == 0
    for demo in (first, second):
        assert not any("Traceback" in line for line in demo.stderr), demo.stderr


@pytest.mark.parametrize(("option", "what"), [("--port", "SCIM"), ("--ziti-port", "emulator")])
def test_a_busy_port_given_explicitly_exits_1_with_one_line(
    option: str, what: str, busy_port: int, tmp_path: Path
) -> None:
    done = subprocess.run(
        [*COMMAND, "demo", option, str(busy_port)], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 1
    assert done.stderr == (
        f"ziti-scim: {what} port {busy_port} on 127.0.0.1 is not available (Address already in use)\n"
    )
    assert done.stdout == ""
    assert not (tmp_path / "ziti-scim-demo.db").exists(), "nothing starts when a port is refused"


@pytest.mark.parametrize("bind_socket", [demo_bind, loopback_socket], ids=["demo", "tests"])
async def test_connections_to_a_pre_bound_socket_get_tcp_nodelay(bind_socket: Callable[[], socket.socket]) -> None:
    """asyncio sets TCP_NODELAY only on sockets made with ``IPPROTO_TCP``; without it Nagle holds every
    response body for the client's delayed ACK (about 40 ms a request, seen in every demo answer)."""
    accepted: asyncio.Queue[int] = asyncio.Queue()

    async def record(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.put_nowait(writer.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        writer.close()

    server = await asyncio.start_server(record, sock=bind_socket())
    async with server:
        port = server.sockets[0].getsockname()[1]
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            nodelay = await asyncio.wait_for(accepted.get(), 5)
        finally:
            writer.close()
        assert nodelay != 0
