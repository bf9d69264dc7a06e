"""Helpers for the webhook protocol tests: recorded IdP traces, a frozen clock, a real uvicorn server."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import uvicorn
from starlette.types import ASGIApp

TRACES = Path(__file__).parent / "traces"


def load_trace(idp: str, name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((TRACES / idp / name).read_text(encoding="utf-8"))
    return data


def trace_names(idp: str, pattern: str = "*.json") -> list[str]:
    return sorted(p.name for p in (TRACES / idp).glob(pattern))


class FrozenClock:
    """Injectable clock: returns ``now`` until moved."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@contextmanager
def running_server(app: ASGIApp) -> Iterator[str]:
    """Serve ``app`` with uvicorn on an ephemeral 127.0.0.1 port in a thread; yield its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, lifespan="off", log_level="warning", ws="none", access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
