"""zt-session handling: reuse, 401 re-authentication under a lock, idle renewal, secrets hygiene."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import httpx
import pytest
from ziti_support import PASSWORD, USERNAME, FakeClock, FakeController, envelope_error, list_envelope

from app.ziti.client import ZitiClient
from app.ziti.errors import ZitiAuthenticationFailed, ZitiProtocolError, ZitiUnauthorized
from app.ziti.session import AuthResult, CertCredentials, PasswordCredentials, ZitiSession

ITEMS = [{"id": "a", "name": "alice"}]


async def _result(token: str) -> AuthResult:
    return AuthResult(token)


async def test_one_authentication_serves_many_requests(
    make_client: Callable[..., ZitiClient], controller: FakeController
) -> None:
    controller.route("GET", "/identities", list_envelope(ITEMS))
    client = make_client()
    for _ in range(5):
        assert await client.list_identities() == ITEMS
    assert controller.auth_calls == 1 and client.stats.authentications == 1
    auth = controller.calls("POST", "/authenticate")[0]
    assert auth.params == {"method": "password"}
    assert auth.json() == {"username": USERNAME, "password": PASSWORD}
    assert auth.headers["content-type"] == "application/json"
    assert "zt-session" not in auth.headers
    token = controller.issued[0]
    for call in controller.calls("GET", "/identities"):
        assert call.headers["zt-session"] == token
        assert call.headers["accept"] == "application/json"


async def test_concurrent_first_use_authenticates_once(
    make_client: Callable[..., ZitiClient], controller: FakeController
) -> None:
    controller.route("GET", "/identities", list_envelope(ITEMS))
    controller.delay = 0.01
    client = make_client(max_concurrency=20)
    await asyncio.gather(*(client.list_identities() for _ in range(20)))
    assert controller.auth_calls == 1


async def test_expired_session_is_renewed_once_and_the_request_retried(
    make_client: Callable[..., ZitiClient], controller: FakeController
) -> None:
    controller.route("GET", "/identities", list_envelope(ITEMS))
    client = make_client()
    await client.list_identities()
    controller.expire_sessions()
    assert await client.list_identities() == ITEMS
    assert controller.auth_calls == 2
    gets = controller.calls("GET", "/identities")
    assert [g.headers["zt-session"] for g in gets] == [
        controller.issued[0],
        controller.issued[0],
        controller.issued[1],
    ]


async def test_concurrent_401s_trigger_a_single_reauthentication(
    make_client: Callable[..., ZitiClient], controller: FakeController
) -> None:
    controller.route("GET", "/identities", list_envelope(ITEMS))
    client = make_client(max_concurrency=25)
    await client.authenticate()
    controller.expire_sessions()
    controller.delay = 0.01  # all 25 requests are in flight with the stale token together
    results = await asyncio.gather(*(client.list_identities() for _ in range(25)))
    assert all(r == ITEMS for r in results)
    assert controller.auth_calls == 2
    stale = [
        g for g in controller.calls("GET", "/identities") if g.headers["zt-session"] == controller.issued[0]
    ]
    assert len(stale) == 25


async def test_persistent_401_is_raised_after_one_reauthentication(
    make_client: Callable[..., ZitiClient], controller: FakeController
) -> None:
    # 2.0 uses 401 for "no permission": re-authenticating cannot help, and must not loop.
    controller.route("GET", "/identities", envelope_error(401, "UNAUTHORIZED", "not permitted"))
    client = make_client()
    with pytest.raises(ZitiUnauthorized) as info:
        await client.list_identities()
    assert not isinstance(info.value, ZitiAuthenticationFailed)
    assert controller.auth_calls == 2 and len(controller.calls("GET", "/identities")) == 2


async def test_idle_session_is_renewed_before_use(
    make_client: Callable[..., ZitiClient], controller: FakeController, clock: FakeClock
) -> None:
    controller.route("GET", "/identities", list_envelope(ITEMS))
    client = make_client()
    await client.list_identities()
    clock.now += 28 * 60  # still inside the 29 min window: reused
    await client.list_identities()
    clock.now += 28 * 60  # the previous request slid the window, so still fine
    await client.list_identities()
    assert controller.auth_calls == 1
    clock.now += 29 * 60 + 1
    await client.list_identities()
    assert controller.auth_calls == 2
    # Proactive: the controller never had to answer 401.
    assert client.stats.by_status[401] == 0
    assert controller.calls("GET", "/identities")[-1].headers["zt-session"] == controller.issued[1]


async def test_shorter_controller_session_timeout_is_honoured(
    make_client: Callable[..., ZitiClient], controller: FakeController, clock: FakeClock
) -> None:
    def auth(token: str) -> httpx.Response:
        return httpx.Response(200, json={"data": {"token": token, "expirationSeconds": 300}, "meta": {}})

    controller.auth_response = auth
    controller.route("GET", "/identities", list_envelope(ITEMS))
    client = make_client()
    await client.list_identities()
    clock.now += 230
    await client.list_identities()
    assert controller.auth_calls == 1
    clock.now += 241  # more than 300 - 60 seconds idle
    await client.list_identities()
    assert controller.auth_calls == 2


async def test_bad_password_raises_authentication_failed_without_retry(
    make_client: Callable[..., ZitiClient], controller: FakeController
) -> None:
    controller.password = "something-else"
    controller.route("GET", "/identities", list_envelope(ITEMS))
    client = make_client()
    with pytest.raises(ZitiAuthenticationFailed) as info:
        await client.list_identities()
    assert info.value.code == "INVALID_AUTH" and info.value.status == 401
    assert controller.auth_calls == 1 and controller.calls("GET", "/identities") == []


async def test_token_from_header_when_body_has_none(
    make_client: Callable[..., ZitiClient], controller: FakeController
) -> None:
    controller.auth_response = lambda token: httpx.Response(
        200, headers={"zt-session": token}, json={"data": {}, "meta": {}}
    )
    controller.route("GET", "/identities", list_envelope(ITEMS))
    assert await make_client().list_identities() == ITEMS


async def test_authentication_without_token_is_a_protocol_error(
    make_client: Callable[..., ZitiClient], controller: FakeController
) -> None:
    controller.auth_response = lambda token: httpx.Response(200, json={"data": {}, "meta": {}})
    with pytest.raises(ZitiProtocolError, match="no session token"):
        await make_client().authenticate()


async def test_close_logs_out_and_closed_client_refuses_work(
    make_client: Callable[..., ZitiClient], controller: FakeController
) -> None:
    controller.route("DELETE", "/current-api-session", httpx.Response(200, json={"data": {}, "meta": {}}))
    client = make_client(logout_on_close=True)
    await client.authenticate()
    await client.close()
    logout = controller.calls("DELETE", "/current-api-session")
    assert len(logout) == 1 and logout[0].headers["zt-session"] == controller.issued[0]
    with pytest.raises(RuntimeError, match="closed"):
        await client.list_identities()
    await client.close()  # idempotent
    assert len(controller.calls("DELETE", "/current-api-session")) == 1


async def test_secrets_never_reach_the_logs_or_reprs(
    make_client: Callable[..., ZitiClient], controller: FakeController, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    controller.route(
        "GET", "/identities", envelope_error(503, "CLUSTER_NO_LEADER", "x"), list_envelope(ITEMS)
    )
    client = make_client(logout_on_close=True)
    await client.list_identities()
    controller.expire_sessions()
    await client.list_identities()
    await client.close()
    assert len(controller.issued) == 2
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "authenticated to Ziti controller" in logged  # the logging did happen
    for secret in [PASSWORD, *controller.issued]:
        assert secret not in logged
    creds = PasswordCredentials(USERNAME, PASSWORD)
    assert PASSWORD not in repr(creds)
    assert "pw" not in repr(CertCredentials("c.pem", "k.pem", key_password="pw"))
    session = ZitiSession(clock=lambda: 0.0)
    await session.obtain(lambda: _result("tok-0123456789"))
    assert session.has_token and "tok-0123456789" not in repr(session)
    assert "tok-0123456789" not in repr(AuthResult("tok-0123456789"))


@pytest.mark.parametrize(("username", "password"), [("", "x" * 8), ("admin", "")])
def test_empty_credentials_are_refused(username: str, password: str) -> None:
    with pytest.raises(ValueError, match="must not be empty"):
        PasswordCredentials(username, password)
