"""Password authentication and API sessions (controller-api.md §2.1, §2.5, §2.6)."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import httpx
from emu_support import ADMIN_PASSWORD, Emu, error_of


def test_password_login_returns_session_in_header_and_body(emu: Emu) -> None:
    response = httpx.post(
        emu.mgmt + "/authenticate?method=password", json={"username": "admin", "password": ADMIN_PASSWORD}
    )
    assert response.status_code == 200
    data = response.json()["data"]
    assert response.json()["meta"] == {}
    assert response.headers["zt-session"] == data["token"]
    uuid.UUID(data["token"])  # tokens are UUIDs
    assert data["identity"]["name"] == "Default Admin"
    assert data["identityId"] == emu.state.default_admin.id
    assert data["expirationSeconds"] == 1800
    assert data["_links"]["self"]["href"] == "./current-api-session"
    assert data["createdAt"].endswith("Z") and len(data["createdAt"]) == len("2026-01-02T03:04:05.678Z")
    assert data["authQueries"] == [] and data["isMfaRequired"] is False


def test_bad_password_is_invalid_auth_and_reason_recorded(emu: Emu) -> None:
    response = httpx.post(
        emu.mgmt + "/authenticate?method=password", json={"username": "admin", "password": "wrong-password"}
    )
    assert response.status_code == 401
    assert error_of(response)["code"] == "INVALID_AUTH"
    assert "zt-session" not in response.headers
    assert emu.state.last_auth_failure == "invalid username or password"


def test_missing_credentials_or_method(emu: Emu) -> None:
    no_password = httpx.post(emu.mgmt + "/authenticate?method=password", json={"username": "admin"})
    assert no_password.status_code == 400
    assert error_of(no_password)["code"] == "COULD_NOT_VALIDATE"
    no_method = httpx.post(emu.mgmt + "/authenticate", json={})
    assert no_method.status_code == 400
    assert error_of(no_method)["cause"]["field"] == "method"
    bad_method = httpx.post(emu.mgmt + "/authenticate?method=foo", json={})
    assert (
        error_of(bad_method)["cause"]["reason"] == "method in query should be one of [password cert ext-jwt]"
    )


def test_protected_endpoint_needs_a_session(emu: Emu) -> None:
    missing = httpx.get(emu.mgmt + "/identities")
    assert missing.status_code == 401
    assert error_of(missing)["code"] == "UNAUTHORIZED"
    assert "zt-session" in missing.headers["www-authenticate"]  # 2.0 challenge
    unknown = httpx.get(emu.mgmt + "/identities", headers={"zt-session": str(uuid.uuid4())})
    assert unknown.status_code == 401
    assert 'error="invalid"' in unknown.headers["www-authenticate"]


def test_1_6_has_no_challenge_and_ignores_non_uuid_tokens(make_emu: Callable[..., Emu]) -> None:
    emu = make_emu(flavor="1.6")
    response = httpx.get(emu.mgmt + "/identities", headers={"zt-session": "not-a-uuid"})
    assert response.status_code == 401
    assert error_of(response)["code"] == "UNAUTHORIZED"
    assert "www-authenticate" not in response.headers


def test_sliding_expiry(make_emu: Callable[..., Emu]) -> None:
    emu = make_emu(session_timeout=60)
    with emu.admin() as client:
        emu.clock.advance(50)
        assert client.get("/identities").status_code == 200  # refreshes lastActivityAt
        emu.clock.advance(50)
        session = client.get("/current-api-session")
        assert session.status_code == 200
        assert session.json()["data"]["expirationSeconds"] == 60
        emu.clock.advance(61)
        expired = client.get("/identities")
        assert expired.status_code == 401
        assert error_of(expired)["code"] == "UNAUTHORIZED"
        assert emu.state.sessions == {}


def test_logout_and_current_identity(emu: Emu) -> None:
    with emu.admin() as client:
        me = client.get("/current-identity").json()["data"]
        assert me["isDefaultAdmin"] is True and me["authenticators"]["updb"]["username"] == "admin"
        assert client.delete("/current-api-session").json() == {"data": {}, "meta": {}}
        assert client.get("/current-identity").status_code == 401


def test_client_api_login_and_non_admin_is_unauthorized_on_management(emu: Emu) -> None:
    user = emu.state.create_identity("bob")
    emu.state.set_password(user.id, "bob-password", username="bobby")
    response = httpx.post(
        emu.client_api + "/authenticate?method=password",
        json={"username": "bobby", "password": "bob-password"},
    )
    assert response.status_code == 200
    token = response.headers["zt-session"]
    me = httpx.get(emu.client_api + "/current-identity", headers={"zt-session": token})
    assert me.json()["data"]["name"] == "bob"
    denied = httpx.get(emu.mgmt + "/identities", headers={"zt-session": token})
    assert denied.status_code == 401  # the controller never answers 403
    assert error_of(denied)["code"] == "UNAUTHORIZED"


def test_2_0_permissions_grant_identity_access_but_not_put(emu: Emu) -> None:
    svc = emu.state.create_identity("scim-svc", permissions=["identity", "auth-policy.read"])
    emu.state.set_password(svc.id, "svc-password")
    with httpx.Client(base_url=emu.mgmt, headers={"zt-session": emu.login("scim-svc", "svc-password")}) as c:
        created = c.post("/identities", json={"name": "carol", "type": "User", "isAdmin": False})
        assert created.status_code == 201
        ident = created.json()["data"]["id"]
        assert c.get("/auth-policies/default").status_code == 200
        assert c.post("/auth-policies", json={}).status_code == 401
        put = c.put(f"/identities/{ident}", json={"name": "renamed", "type": "User", "isAdmin": False})
        assert put.status_code == 401 and "PATCH" in error_of(put)["cause"]["message"]
        assert c.patch(f"/identities/{ident}", json={"isAdmin": True}).status_code == 401
        assert emu.state.identities[ident].name == "carol"  # the refused PUT changed nothing
        assert emu.state.identities[ident].is_admin is False  # nor the refused PATCH
        assert c.patch(f"/identities/{ident}", json={"roleAttributes": ["a"]}).status_code == 200
        assert emu.state.identities[ident].role_attributes == ["a"]


def test_disabled_identity_cannot_log_in(emu: Emu) -> None:
    user = emu.state.create_identity("dave")
    emu.state.set_password(user.id, "dave-password")
    with emu.admin() as client:
        assert client.post(f"/identities/{user.id}/disable", json={"durationMinutes": 0}).status_code == 200
    response = httpx.post(
        emu.mgmt + "/authenticate?method=password", json={"username": "dave", "password": "dave-password"}
    )
    assert response.status_code == 401
    assert emu.state.last_auth_failure == "identity is disabled"
