"""Running the emulator under uvicorn: the CLI server builder and TLS.

controller-api.md §1 "Base paths": the real controller is TLS-only on 1280.
"""

from __future__ import annotations

import ssl
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette

from tests.support.live import running
from tests.support.tls import make_tls_files
from ziti_emulator import EmulatorThread, build_emulator_server, create_emulator_app


def test_build_emulator_server_serves_the_configured_admin(spec_path: Path) -> None:
    server = build_emulator_server(
        "127.0.0.1",
        0,
        admin_password="cli-password",
        admin_username="root",
        spec_path=spec_path,
        log_level="warning",
    )
    with running(server) as port:
        base = f"http://127.0.0.1:{port}/edge/management/v1"
        ok = httpx.post(
            base + "/authenticate?method=password", json={"username": "root", "password": "cli-password"}
        )
        assert ok.status_code == 200
        app = server.config.app
        assert isinstance(app, Starlette) and app.state.emulator.spec is not None


def test_tls(tmp_path: Path) -> None:
    tls = make_tls_files(tmp_path)
    app = create_emulator_app(admin_password="tls-password")
    with EmulatorThread(app, ssl_certfile=tls.server_cert, ssl_keyfile=tls.server_key) as emu:
        assert emu.url.startswith("https://127.0.0.1:")
        context = ssl.create_default_context(cafile=str(tls.ca_cert))
        response = httpx.post(
            emu.management_url + "/authenticate?method=password",
            json={"username": "admin", "password": "tls-password"},
            verify=context,
        )
        assert response.status_code == 200
        with pytest.raises(httpx.ConnectError):
            httpx.get(emu.management_url + "/identities")  # system trust store: must be refused
