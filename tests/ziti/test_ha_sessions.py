"""HA: two controller nodes sharing state, legacy sessions node-local, OIDC sessions accepted everywhere.

``controller/model/api_session_manager.go`` keeps ``zt-session`` API sessions in the node's own store; OIDC
access tokens are JWTs of the cluster's key (``controller/env/appenv.go ProcessJwt``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from app.ziti.client import ZitiClient
from app.ziti.errors import ZitiAuthenticationFailed
from app.ziti.session import PasswordCredentials
from tests.support.rr_proxy import RoundRobinProxy
from ziti_emulator import EmulatorState, EmulatorThread, create_emulator_app

ADMIN_PASSWORD = "ha-admin-Pa55word"


@dataclass
class Cluster:
    a: EmulatorThread
    b: EmulatorThread
    proxy: RoundRobinProxy

    @property
    def state(self) -> EmulatorState:
        return self.a.state


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    app_a = create_emulator_app(admin_password=ADMIN_PASSWORD, version="2.0")
    app_b = create_emulator_app(admin_password=ADMIN_PASSWORD, state=app_a.state.emulator, node="b")
    with EmulatorThread(app_a) as a, EmulatorThread(app_b) as b:
        with RoundRobinProxy([("127.0.0.1", a.port), ("127.0.0.1", b.port)]) as proxy:
            yield Cluster(a, b, proxy)


def test_legacy_sessions_are_node_local_and_version_says_ha(cluster: Cluster) -> None:
    version = httpx.get(cluster.b.url + "/version").json()["data"]
    assert {"OIDC_AUTH", "HA_CONTROLLER"} <= set(version["capabilities"])
    login = httpx.post(
        cluster.a.management_url + "/authenticate",
        params={"method": "password"},
        json={"username": "admin", "password": ADMIN_PASSWORD},
    )
    token = login.json()["data"]["token"]
    headers = {"zt-session": token}
    assert httpx.get(cluster.a.management_url + "/identities", headers=headers).status_code == 200
    refused = httpx.get(cluster.b.management_url + "/identities", headers=headers)
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"].startswith('zt-session realm="zt-session" error="invalid"')


async def test_oidc_client_works_behind_a_round_robin_balancer(cluster: Cluster) -> None:
    cluster.state.faults.latency = 0.02  # overlap the requests so the pool opens several connections
    async with ZitiClient(cluster.proxy.url, PasswordCredentials("admin", ADMIN_PASSWORD)) as client:
        await client.authenticate()
        assert client.session_kind == "oidc"
        ids = await asyncio.gather(
            *(client.create_identity({"name": f"u{i}", "type": "User", "isAdmin": False}) for i in range(12))
        )
        details = await asyncio.gather(*(client.get_identity(i) for i in ids))
    assert sorted(d["name"] for d in details) == sorted(f"u{i}" for i in range(12))
    assert cluster.proxy.connections[0] > 0 and cluster.proxy.connections[1] > 0  # both nodes served
    assert client.stats.by_status[401] == 0


async def test_legacy_client_behind_the_balancer_is_refused_by_the_other_node(cluster: Cluster) -> None:
    """What the issue describes: zt-session from node A, next connection to node B, 401 after re-auth."""
    async with ZitiClient(
        cluster.proxy.url, PasswordCredentials("admin", ADMIN_PASSWORD), session_mode="legacy"
    ) as client:
        await client.authenticate()  # connection 1 -> node A
        # A fresh client connection lands on node B: the token of A is unknown there.
        async with httpx.AsyncClient(base_url=cluster.proxy.url) as other:
            token = next(iter(cluster.state.sessions))
            response = await other.get("/edge/management/v1/identities", headers={"zt-session": token})
        assert response.status_code == 401


@pytest.mark.parametrize(
    ("version", "ha", "kind"), [("1.6", False, "legacy"), ("1.6", True, "oidc"), ("2.0", False, "oidc")]
)
async def test_session_kind_follows_get_version(version: str, ha: bool, kind: str) -> None:
    app = create_emulator_app(admin_password=ADMIN_PASSWORD, version=version)  # type: ignore[arg-type]
    app.state.emulator.ha = ha
    with EmulatorThread(app) as emu:
        async with ZitiClient(emu.url, PasswordCredentials("admin", ADMIN_PASSWORD)) as client:
            assert len(await client.list_identities()) == 1
            assert client.session_kind == kind


def test_oidc_auth_requests_are_node_local_but_tokens_work_on_every_node(cluster: Cluster) -> None:
    """oidc_auth/storage.go keeps auth requests in memory: a login step on the other node fails."""
    params = {
        "client_id": "openziti",
        "response_type": "code",
        "redirect_uri": "http://127.0.0.1:9/auth/callback",
        "code_challenge": "x" * 43,
        "code_challenge_method": "S256",
    }
    started = httpx.get(cluster.a.url + "/oidc/authorize", params=params)
    assert started.status_code == 302
    request_id = started.headers["location"].split("authRequestID=")[1]
    body = {"id": request_id, "username": "admin", "password": ADMIN_PASSWORD}
    elsewhere = httpx.post(cluster.b.url + "/oidc/login/password", json=body)
    assert elsewhere.status_code == 401 and cluster.state.last_auth_failure == "unknown auth request"
    assert httpx.post(cluster.a.url + "/oidc/login/password", json=body).status_code == 302


async def test_oidc_login_that_needs_totp_fails_once_with_the_reason() -> None:
    app = create_emulator_app(admin_password=ADMIN_PASSWORD, version="2.0.3")
    state: EmulatorState = app.state.emulator
    state.auth_policies["default"].secondary = {"requireTotp": True, "requireExtJwtSigner": None}
    with EmulatorThread(app) as emu:
        async with ZitiClient(emu.url, PasswordCredentials("admin", ADMIN_PASSWORD)) as client:
            with pytest.raises(ZitiAuthenticationFailed, match="secondary authentication"):
                await client.authenticate()
    assert state.oidc.logins == 0
    logins = [r for r in state.requests if r.path == "/oidc/login/password"]
    assert len(logins) == 1  # not retried: starting again cannot help


@pytest.mark.parametrize("session", ["legacy", "oidc"])
async def test_config_session_forces_the_kind(session: str, tmp_path: Path) -> None:
    from app.config import read_config
    from app.reconcile.provisioner import ziti_client

    app = create_emulator_app(admin_password=ADMIN_PASSWORD, version="1.6")
    with EmulatorThread(app) as emu:
        path = tmp_path / "c.toml"
        path.write_text(
            f'[ziti]\nurl = "{emu.url}"\npassword_env = "PW"\nsession = "{session}"\n', encoding="utf-8"
        )
        client = ziti_client(read_config(str(path), env={"PW": ADMIN_PASSWORD}))
        async with client:
            assert len(await client.list_identities()) == 1
            assert client.session_kind == session
        assert (app.state.emulator.oidc.logins == 1) == (session == "oidc")
