"""Running the emulator under uvicorn: the CLI server builder and TLS.

ziti-api.md §1 "Base paths and ports": the real controller is TLS-only on 1280.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from starlette.applications import Starlette

from tests.support.live import running
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


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ziti-emulator")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "server.crt", tmp_path / "server.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_file, key_file


def test_tls(tmp_path: Path) -> None:
    cert_file, key_file = _self_signed(tmp_path)
    app = create_emulator_app(admin_password="tls-password")
    with EmulatorThread(app, ssl_certfile=cert_file, ssl_keyfile=key_file) as emu:
        assert emu.url.startswith("https://127.0.0.1:")
        context = ssl.create_default_context(cafile=str(cert_file))
        response = httpx.post(
            emu.management_url + "/authenticate?method=password",
            json={"username": "admin", "password": "tls-password"},
            verify=context,
        )
        assert response.status_code == 200
        with pytest.raises(httpx.ConnectError):
            httpx.get(emu.management_url + "/identities")  # system trust store: must be refused
