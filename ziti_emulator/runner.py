"""Running the emulator under uvicorn: the CLI entry point and a background-thread helper for tests.

The real controller listens on 1280 with TLS (``docs/controller-api.md`` §1 "Base paths"); the emulator serves
plain HTTP unless ``ssl_certfile``/``ssl_keyfile`` are given.
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import uvicorn
from starlette.applications import Starlette

from .app import CLIENT_BASE, MANAGEMENT_BASE, create_emulator_app
from .profile import Version
from .state import EmulatorState, Flavor


def make_server(
    app: Starlette,
    *,
    host: str = "127.0.0.1",
    port: int = 1280,
    ssl_certfile: str | Path | None = None,
    ssl_keyfile: str | Path | None = None,
    log_level: str = "info",
    configure_logging: bool = True,
) -> uvicorn.Server:
    """A configured (not started) ``uvicorn.Server`` for ``app``; ``port=0`` picks a free port."""
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        ssl_certfile=str(ssl_certfile) if ssl_certfile else None,
        ssl_keyfile=str(ssl_keyfile) if ssl_keyfile else None,
        log_level=log_level,
        log_config=uvicorn.config.LOGGING_CONFIG if configure_logging else None,
        access_log=configure_logging,
        lifespan="off",
    )
    return uvicorn.Server(config)


def build_emulator_server(
    host: str = "127.0.0.1",
    port: int = 1280,
    *,
    admin_password: str,
    admin_username: str = "admin",
    spec_path: str | Path | None = None,
    session_timeout: float = 1800.0,
    flavor: Flavor = "2.0",
    version: Version | None = None,
    ssl_certfile: str | Path | None = None,
    ssl_keyfile: str | Path | None = None,
    log_level: str = "info",
) -> uvicorn.Server:
    """A configured, not yet started server running a fresh emulator (its app is ``server.config.app``).

    ``version`` picks the controller release imitated (``1.6``, ``1.8``, ``2.0``, ``2.0.3``; default the
    newest), see ``profile.py``.
    """
    app = create_emulator_app(
        admin_username=admin_username,
        admin_password=admin_password,
        session_timeout=session_timeout,
        spec_path=spec_path,
        flavor=flavor,
        version=version,
    )
    return make_server(
        app, host=host, port=port, ssl_certfile=ssl_certfile, ssl_keyfile=ssl_keyfile, log_level=log_level
    )


async def serve_emulator(host: str = "127.0.0.1", port: int = 1280, **options: Any) -> None:
    """Serve the emulator until interrupted (what ``ziti-scim emulator --port P --admin-password X`` runs).

    ``options`` are those of :func:`build_emulator_server` (``admin_password`` is required).
    """
    await build_emulator_server(host, port, **options).serve()


class EmulatorThread:
    """Run an ASGI app (normally the emulator) under uvicorn in a daemon thread on 127.0.0.1.

    Usage::

        with EmulatorThread(create_emulator_app(admin_password="s3cret!")) as emu:
            httpx.get(emu.management_url + "/identities")
            emu.state.identities  # inspect / seed
    """

    def __init__(
        self,
        app: Starlette,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        ssl_certfile: str | Path | None = None,
        ssl_keyfile: str | Path | None = None,
        startup_timeout: float = 10.0,
    ) -> None:
        self.app = app
        self.server = make_server(
            app,
            host=host,
            port=port,
            ssl_certfile=ssl_certfile,
            ssl_keyfile=ssl_keyfile,
            log_level="warning",
            configure_logging=False,
        )
        self.scheme = "https" if ssl_certfile else "http"
        self._startup_timeout = startup_timeout
        self._thread = threading.Thread(target=self._run, name="ziti-emulator", daemon=True)
        self._error: BaseException | None = None
        self.host = host
        self.port = port

    def _run(self) -> None:
        try:
            asyncio.run(self.server.serve())
        except BaseException as exc:  # noqa: BLE001 - reported to the starting thread
            self._error = exc

    def start(self) -> EmulatorThread:
        self._thread.start()
        deadline = time.monotonic() + self._startup_timeout
        while not self.server.started:
            if self._error is not None or not self._thread.is_alive():
                raise RuntimeError(f"emulator failed to start: {self._error!r}")
            if time.monotonic() > deadline:
                raise TimeoutError("emulator did not start in time")
            time.sleep(0.01)
        sockets = self.server.servers[0].sockets
        self.port = int(sockets[0].getsockname()[1])
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(timeout=10)

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    @property
    def management_url(self) -> str:
        return self.url + MANAGEMENT_BASE

    @property
    def client_url(self) -> str:
        return self.url + CLIENT_BASE

    @property
    def state(self) -> EmulatorState:
        emulator: EmulatorState = self.app.state.emulator
        return emulator

    def __enter__(self) -> EmulatorThread:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def run_emulator(**kwargs: Any) -> None:
    """Blocking wrapper around :func:`serve_emulator` (same keyword arguments)."""
    asyncio.run(serve_emulator(**kwargs))
