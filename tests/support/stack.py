"""The whole stack over real HTTP: ziti-scim ↔ the controller emulator (spec-validated) ↔ a test IdP."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from app.config import Config, PolicyConfig, SourceConfig, ZitiConfig, hash_token
from app.constants import STATUS_EXTENSION
from app.server import create_app
from tests.support.emulator import ADMIN_PASSWORD, running_emulator
from tests.support.idp import TestIdp, running_idp
from tests.support.live import live_server
from ziti_emulator import EmulatorState, EmulatorThread

TOKEN = "provisioning-test-token-0123456789"


@pytest.fixture(scope="session")
def idp() -> Iterator[TestIdp]:
    with running_idp() as test_idp:
        yield test_idp


@pytest.fixture
def emulator() -> Iterator[EmulatorThread]:
    with running_emulator() as emu:
        yield emu


@dataclass
class Stack:
    scim_url: str
    emulator: EmulatorThread
    idp: TestIdp
    app: Any
    signer_id: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def state(self) -> EmulatorState:
        return self.emulator.state

    def client(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.scim_url,
            headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/scim+json"},
            timeout=30,
        )

    def login(self, **claims: Any) -> httpx.Response:
        """An ext-jwt login as a tunneler does it, with a token of the test IdP."""
        token = self.idp.token(**claims)
        return httpx.post(
            f"{self.emulator.client_url}/authenticate",
            params={"method": "ext-jwt"},
            headers={"Authorization": f"Bearer {token}"},
            json={},
            timeout=30,
        )

    def identity(self, external_id: str) -> Any:
        """The controller's identity once convergence settled (it runs after each SCIM answer); after
        the service stopped, as it was left."""
        try:
            settle(self.client, quiet=True)
        except httpx.TransportError:
            pass  # the service is stopped: nothing converges any more
        return self.state.identity_by_external_id(external_id)

    def settle(self, timeout: float = 20.0) -> list[dict[str, Any]]:
        """Wait until no user is pending (convergence runs after the SCIM answer); returns the users."""
        return settle(self.client, timeout)




IN_FLIGHT = "a change was sent to the controller"


def settle(
    client: Callable[[], httpx.Client], timeout: float = 20.0, *, quiet: bool = False
) -> list[dict[str, Any]]:
    """Poll the SCIM API until no user shows ``provisioningState`` ``pending``, with a deadline.

    The observable end of the background convergence: a user is ``pending`` while a dirty mark is left.
    ``quiet``: also accept users waiting out a retry or held by the brake (pending with a ``lastError``
    other than a change in flight), whose state will not move before their backoff.
    """
    deadline = time.monotonic() + timeout
    with client() as scim:
        while True:
            users = scim.get("/Users", params={"count": 1000}).json().get("Resources", [])
            pending = [
                u
                for u in users
                if (view := u.get(STATUS_EXTENSION, {})).get("provisioningState") == "pending"
                and not (quiet and view.get("lastError") and IN_FLIGHT not in view["lastError"])
            ]
            if not pending:
                return list(users)
            if time.monotonic() > deadline:
                raise AssertionError(f"still pending after {timeout} s: {[u['userName'] for u in pending]}")
            time.sleep(0.02)


def make_stack_config(
    database_url: str, source: str, ziti_url: str, mapping: dict[str, Any] | None = None, **options: Any
) -> Config:
    return Config(
        database_url=database_url,
        sources={
            source: SourceConfig(
                name=source,
                kind="generic",
                token_hashes=(hash_token(TOKEN),),
                policy=PolicyConfig(),
                mapping=mapping or {"preset": "generic"},
                options=options,
            )
        },
        ziti=ZitiConfig(url=ziti_url, username="admin", password=ADMIN_PASSWORD),
    )


def add_signer(emulator: EmulatorThread, idp: TestIdp, claims_property: str = "email") -> str:
    signer = emulator.state.create_signer(
        {
            "name": "test-idp",
            "issuer": idp.issuer,
            "audience": idp.audience,
            "jwksEndpoint": idp.jwks_url,
            "claimsProperty": claims_property,
            "useExternalId": True,
            "enabled": True,
        }
    )
    return str(signer.id)


@pytest.fixture
def stack(emulator: EmulatorThread, idp: TestIdp, database_url: str, source_name: str) -> Iterator[Stack]:
    signer_id = add_signer(emulator, idp)
    app = create_app(make_stack_config(database_url, source_name, emulator.url))
    with live_server(app) as url:
        yield Stack(scim_url=f"{url}/scim/v2", emulator=emulator, idp=idp, app=app, signer_id=signer_id)
