"""Real servers for tests: an ASGI app under uvicorn in a background thread, on 127.0.0.1.

The one helper every test uses to serve something in-process (ziti-scim, a test IdP, a JWKS, a controller
stand-in): :func:`live_server` for an app, :func:`running` for a ``uvicorn.Server`` built elsewhere (e.g.
by ``ziti_emulator.build_emulator_server``), :func:`serve_fixture` for tests that start several. The
socket is bound before uvicorn starts, so the port is never raced for. Subprocess servers pick a port
with :func:`free_port` and wait for it with :func:`wait_healthy`.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import uvicorn


def free_port() -> int:
    """A port free now, for a server in another process (which binds it itself).

    Drawn below the kernel's ephemeral range, from which every outgoing connection and every bind to port 0
    takes its port: between this check and the server's own bind, a client connection of a test running in
    another worker cannot take it (a replica once never came up in a three-worker run).
    """
    low = _ephemeral_low()
    draw = random.SystemRandom()
    for _ in range(200):
        port = draw.randrange(max(1024, low - 12_000), low)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise AssertionError(f"no free port in the 12,000 below {low}")


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768  # Linux's default; the range is this file's only source


def loopback_socket(port: int = 0) -> socket.socket:
    """A TCP socket bound to 127.0.0.1:``port`` (0: ephemeral), ready to hand to uvicorn.

    Made with ``IPPROTO_TCP`` so that asyncio sets TCP_NODELAY on the connections it accepts (as on a
    socket uvicorn binds itself); with ``proto`` 0, Nagle delays every response body by ~40 ms.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    return sock


@contextmanager
def running(
    server: uvicorn.Server, sock: socket.socket | None = None, *, timeout: float = 30.0
) -> Iterator[int]:
    """Run ``server`` in a thread (its own event loop) until the block ends; yields the port it listens on.

    With ``sock`` it serves on that socket, otherwise it binds what its config says.
    """
    loop = asyncio.new_event_loop()
    failure: list[BaseException] = []

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(server.serve(sockets=[sock] if sock is not None else None))
        except BaseException as error:  # noqa: BLE001 - reported to the starting thread
            failure.append(error)

    thread = threading.Thread(target=run, name="test-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            thread.join(timeout=timeout)
            raise RuntimeError(f"the server did not start: {failure or 'timeout'}")
        time.sleep(0.01)
    port = int(server.servers[0].sockets[0].getsockname()[1])
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(timeout=timeout)
        loop.close()
        if sock is not None:
            sock.close()


@contextmanager
def live_server(app: Any, *, port: int | None = None, **options: Any) -> Iterator[str]:
    """Serve ``app`` over loopback and yield its base URL (``https://`` when ``ssl_certfile`` is given).

    The lifespan runs as in production unless ``lifespan="off"``; ``options`` go to ``uvicorn.Config``
    (e.g. ``app.serving.uvicorn_options``, ``log_config=None``, ``ssl_certfile``). ``port`` pins the port
    (a restart on the same address); by default it is ephemeral.
    """
    sock = loopback_socket(port or 0)
    bound = int(sock.getsockname()[1])
    options = {"log_level": "warning", "lifespan": "on", **options}
    config = uvicorn.Config(app, host="127.0.0.1", port=bound, **options)
    scheme = "https" if options.get("ssl_certfile") else "http"
    with running(uvicorn.Server(config), sock):
        yield f"{scheme}://127.0.0.1:{bound}"


@contextmanager
def serve_fixture(**options: Any) -> Iterator[Callable[[Any], str]]:
    """``serve(app) -> base_url`` for a test that starts several servers; all stop when the block ends."""
    with contextlib.ExitStack() as stack:
        yield lambda app: stack.enter_context(live_server(app, **options))


def healthy(url: str) -> bool:
    """Whether ``url``/healthz answers 200 now."""
    try:
        return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def wait_healthy(
    url: str, process: subprocess.Popen[Any] | None = None, *, timeout: float = 60.0, what: str = ""
) -> None:
    """Wait until ``url``/healthz answers 200; fail at once if ``process`` (the server) has ended."""
    deadline = time.monotonic() + timeout
    while not healthy(url):
        if process is not None and process.poll() is not None:
            raise AssertionError(f"{what or url}: the server ended with status {process.returncode}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{what or url}: /healthz did not answer within {timeout:.0f} s")
        time.sleep(0.1)
