"""A small lab over real HTTP: the controller emulator, a test IdP, ziti-scim serving SCIM into a fresh
SQLite store, and the ``doctor`` / ``explain-token`` commands run in-process against all of them."""

from __future__ import annotations

import contextlib
import io
import json
import sqlite3
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route

from app.config import hash_token, read_config
from app.diagnostics.cli import main
from app.server import create_app
from app.store.tables import dirty
from tests.support.emulator import ADMIN_PASSWORD, emulator_app, running_emulator
from tests.support.idp import TestIdp, running_idp
from tests.support.live import live_server
from ziti_emulator import EmulatorState, EmulatorThread, Flavor

TOKEN = "diagnostics-test-token-0123456789"
USER = "urn:ietf:params:scim:schemas:core:2.0:User"
PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


def with_version(emulator: Starlette, version: str) -> Starlette:
    """The emulator behind ``GET /edge/management/v1/version`` (edge-api ``listVersion``), which it lacks."""

    async def version_route(request: Request) -> JSONResponse:
        return JSONResponse({"data": {"version": version, "revision": "test"}, "meta": {}})

    app = Starlette(routes=[Route("/edge/management/v1/version", version_route), Mount("/", app=emulator)])
    app.state.emulator = emulator.state.emulator
    return app


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


@dataclass
class Lab:
    tmp: Path
    emulator: EmulatorThread
    idp: TestIdp
    source: str = "corp"
    kind: str = "generic"
    mapping: dict[str, Any] = field(default_factory=lambda: {"preset": "generic"})
    options: dict[str, Any] = field(default_factory=dict)
    ziti_url: str | None = None
    password: str = ADMIN_PASSWORD
    ca_bundle: str | None = None
    signer_id: str = ""
    user_ids: list[str] = field(default_factory=list)

    @property
    def state(self) -> EmulatorState:
        return self.emulator.state

    @property
    def db_path(self) -> Path:
        return self.tmp / "store.db"

    def add_signer(
        self,
        claims_property: str = "email",
        *,
        use_external_id: bool = True,
        name: str = "test-idp",
        idp: TestIdp | None = None,
        jwks_url: str | None = None,
    ) -> str:
        idp = idp or self.idp
        signer = self.state.create_signer(
            {
                "name": name,
                "issuer": idp.issuer,
                "audience": idp.audience,
                "jwksEndpoint": jwks_url or idp.jwks_url,
                "claimsProperty": claims_property,
                "useExternalId": use_external_id,
                "enabled": True,
            }
        )
        if not self.signer_id:
            self.signer_id = signer.id
        return signer.id

    def add_policy(self, kind: str, name: str, identity_roles: list[str]) -> None:
        from ziti_emulator.policy_ops import create_policy

        body: dict[str, Any] = {"name": name, "semantic": "AnyOf", "identityRoles": identity_roles}
        if kind == "service":
            body.update(type="Dial", serviceRoles=["#all"])
        else:
            body["edgeRouterRoles"] = ["#all"]
        create_policy(self.state, kind, body)

    def config_path(self) -> Path:
        secret = self.tmp / "ziti-password"
        secret.write_text(self.password)
        lines = [
            "[database]",
            f"url = {json.dumps(str(self.db_path))}",
            "[ziti]",
            f"url = {json.dumps(self.emulator.url if self.ziti_url is None else self.ziti_url)}",
            'username = "admin"',
            f"password_file = {json.dumps(str(secret))}",
            *([f"ca_bundle = {json.dumps(self.ca_bundle)}"] if self.ca_bundle else []),
            f"[sources.{self.source}]",
            f"kind = {json.dumps(self.kind)}",
            f"token_sha256 = [{json.dumps(hash_token(TOKEN))}]",
        ]
        lines += [f"{key} = {json.dumps(value)}" for key, value in self.options.items()]
        lines.append(f"[sources.{self.source}.mapping]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in self.mapping.items()]
        path = self.tmp / "config.toml"
        path.write_text("\n".join(lines) + "\n")
        return path

    @contextlib.contextmanager
    def scim(self) -> Iterator[httpx.Client]:
        """ziti-scim serving SCIM (and provisioning to the emulator) while the block runs."""
        app = create_app(read_config(str(self.config_path()), env={}))
        with (
            live_server(app) as url,
            httpx.Client(
                base_url=f"{url}/scim/v2",
                headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/scim+json"},
                timeout=30,
            ) as client,
        ):
            yield client

    def provision(self, *users: dict[str, Any]) -> list[str]:
        ids = []
        with self.scim() as client:
            for user in users:
                response = client.post("/Users", json=user)
                assert response.status_code == 201, response.text
                ids.append(response.json()["id"])
            self.wait_converged()
        return ids

    def wait_converged(self, timeout: float = 60.0) -> None:
        """Wait (while :meth:`scim` serves) until the worker has settled every dirty mark: a SCIM write
        answers before the controller is changed, and the commands below read the controller."""
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.closing(sqlite3.connect(self.db_path)) as db:
                left = db.execute(f"SELECT count(*) FROM {dirty.name}").fetchone()[0]
            if left == 0:
                return
            assert time.monotonic() < deadline, f"{left} user(s) still converging after {timeout} s"
            time.sleep(0.02)

    def run(self, *argv: str, stdin: str | None = None) -> Result:
        out, err = io.StringIO(), io.StringIO()
        saved = sys.stdin
        if stdin is not None:
            sys.stdin = io.StringIO(stdin)
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                code = main([*argv, "--config", str(self.config_path())])
        finally:
            sys.stdin = saved
        return Result(code, out.getvalue(), err.getvalue())

    def doctor(self, *extra: str) -> Result:
        return self.run("doctor", *extra)

    def explain(self, token: str, *extra: str) -> Result:
        return self.run("explain-token", token, *extra)

    def login(self, token: str) -> httpx.Response:
        """The controller's own answer: an ext-jwt login as a tunneler does it."""
        return httpx.post(
            f"{self.emulator.client_url}/authenticate",
            params={"method": "ext-jwt"},
            headers={"Authorization": f"Bearer {token}"},
            json={},
            timeout=30,
        )


def user(name: str, email: str, **extra: Any) -> dict[str, Any]:
    return {"schemas": [USER], "userName": name, "emails": [{"value": email, "primary": True}], **extra}


@pytest.fixture(scope="session")
def idp() -> Iterator[TestIdp]:
    with running_idp() as test_idp:
        yield test_idp


@pytest.fixture(scope="session")
def other_idp() -> Iterator[TestIdp]:
    with running_idp(issuer="https://other-idp.test/") as test_idp:
        yield test_idp


@contextlib.contextmanager
def _emulator(flavor: Flavor, version: str | None) -> Iterator[EmulatorThread]:
    app = emulator_app(flavor=flavor)
    with running_emulator(with_version(app, version) if version else app) as emulator:
        yield emulator


@pytest.fixture(scope="module")
def module_emulator() -> Iterator[EmulatorThread]:
    """One emulator for a module's read-only tests (they must not change its state)."""
    with _emulator("2.0", None) as emulator:
        yield emulator


@pytest.fixture
def lab(tmp_path: Path, idp: TestIdp) -> Iterator[Lab]:
    with _emulator("2.0", None) as emulator:
        yield Lab(tmp_path, emulator, idp)


@pytest.fixture
def lab_1x(tmp_path: Path, idp: TestIdp) -> Iterator[Lab]:
    """A ziti 1.6 controller that answers GET /version."""
    with _emulator("1.6", "v1.6.20") as emulator:
        yield Lab(tmp_path, emulator, idp)
