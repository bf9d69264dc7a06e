"""Helpers for the controller emulator tests (fixtures live in conftest.py)."""

from __future__ import annotations

import datetime as dt
import json
import time
from typing import Any

import httpx
import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from ziti_emulator import EmulatorState, EmulatorThread

ADMIN_PASSWORD = "s3cret-admin"
ISSUER = "https://idp.example.test/oauth2/default"
AUDIENCE = "openziti"


class FakeClock:
    """A controllable clock injected into the emulator (seconds since the epoch)."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Emu:
    """A running emulator plus helpers to talk to it."""

    def __init__(self, thread: EmulatorThread, clock: FakeClock) -> None:
        self.thread = thread
        self.clock = clock
        self.url = thread.url
        self.mgmt = thread.management_url
        self.client_api = thread.client_url

    @property
    def state(self) -> EmulatorState:
        return self.thread.state

    def login(self, username: str = "admin", password: str = ADMIN_PASSWORD) -> str:
        response = httpx.post(
            self.mgmt + "/authenticate",
            params={"method": "password"},
            json={"username": username, "password": password},
        )
        assert response.status_code == 200, response.text
        return str(response.json()["data"]["token"])

    def admin(self) -> httpx.Client:
        """A management-API client holding a fresh admin session."""
        return httpx.Client(base_url=self.mgmt, headers={"zt-session": self.login()})


def new_identity(client: httpx.Client, name: str, **fields: Any) -> str:
    body = {"name": name, "type": "User", "isAdmin": False, **fields}
    response = client.post("/identities", json=body)
    assert response.status_code == 201, response.text
    return str(response.json()["data"]["id"])


def error_of(response: httpx.Response) -> dict[str, Any]:
    """The ``error`` object of a controller error envelope (asserting the envelope's shape)."""
    body = response.json()
    assert body["meta"] == {"apiEnrollmentVersion": "0.0.1", "apiVersion": "0.0.1"}
    assert isinstance(body["error"]["requestId"], str)
    error: dict[str, Any] = body["error"]
    return error


class SigningKey:
    """An RSA key that signs test JWTs and publishes itself as a JWK / self-signed certificate."""

    def __init__(self, kid: str) -> None:
        self.kid = kid
        self.private = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def jwk(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.private.public_key()))
        data.update({"kid": self.kid, "use": "sig", "alg": "RS256"})
        return data

    def cert_pem(self, common_name: str = "test-idp") -> str:
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.private.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=30))
            .sign(self.private, hashes.SHA256())
        )
        return cert.public_bytes(serialization.Encoding.PEM).decode()

    def token(self, now: float, *, kid: str | None = None, **claims: Any) -> str:
        payload: dict[str, Any] = {"iss": ISSUER, "aud": AUDIENCE, "iat": int(now), "exp": int(now) + 300}
        payload.update(claims)
        return jwt.encode(payload, self.private, algorithm="RS256", headers={"kid": kid or self.kid})
