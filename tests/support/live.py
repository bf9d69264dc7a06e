"""Run an ASGI app under a real uvicorn server on 127.0.0.1 (ephemeral port) in a background thread."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def live_server(app: Any, *, port: int | None = None, **options: Any) -> Iterator[str]:
    """Serve ``app`` over loopback HTTP and yield its base URL; the lifespan runs as in production.

    ``options`` go to ``uvicorn.Config`` (e.g. ``app.serving.uvicorn_options``, ``log_config=None``).
    """
    port = port or free_port()
    options = {"log_level": "warning", **options}
    config = uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="on", **options)
    server = uvicorn.Server(config)
    loop = asyncio.new_event_loop()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(server.serve())

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        loop.close()
