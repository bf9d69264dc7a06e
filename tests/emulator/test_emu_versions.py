"""Version profiles (1.6, 1.8, 2.0, 2.0.3) and the controller quirks they switch (docs/controller-versions.md)."""

from __future__ import annotations

import random
from collections.abc import Callable

import httpx
import pytest
from emu_support import AUDIENCE, ISSUER, Emu, SigningKey, error_of, new_identity

from ziti_emulator import VERSIONS, get_profile

VERSION_PATHS = ("/version", "/", "/edge/management/v1/version", "/edge/client/v1/version")


@pytest.mark.parametrize("version", VERSIONS)
def test_get_version_like_the_version_router(make_emu: Callable[..., Emu], version: str) -> None:
    emu = make_emu(version=version)
    for path in VERSION_PATHS:
        response = httpx.get(emu.url + path)  # unauthenticated, no WWW-Authenticate
        assert response.status_code == 200 and "www-authenticate" not in response.headers
        body = response.json()
        assert body["meta"] == {}
        data = body["data"]
        assert data["version"] == get_profile(version).release
        assert data["apiVersions"]["edge-management"]["v1"]["path"] == "/edge/management/v1"
        assert data["apiVersions"]["edge"] == data["apiVersions"]["edge-client"]
        assert "OIDC_AUTH" in data["capabilities"] and "HA_CONTROLLER" not in data["capabilities"]


def test_default_profile_is_the_newest_and_unknown_versions_are_refused(make_emu: Callable[..., Emu]) -> None:
    assert make_emu().state.profile.version == "2.0.3"
    assert make_emu(flavor="1.6").state.profile.version == "1.6"
    with pytest.raises(ValueError, match="unknown controller version"):
        get_profile("3.0")


def test_filter_strings_are_decoded_like_parse_zql_string(emu: Emu, admin: httpx.Client) -> None:
    """A correct escape of CORP\\tom is compared as CORP<TAB>om (zitiql/util.go ParseZqlString)."""
    slash = new_identity(admin, "corp-slash", externalId="CORP\\tom")
    tab = new_identity(admin, "corp-tab", externalId="CORP\tom")

    def ids(flt: str) -> list[str]:
        return [i["id"] for i in admin.get("/identities", params={"filter": flt}).json()["data"]]

    assert ids('externalId = "CORP\\\\tom"') == [tab]  # the correct escape finds the WRONG identity
    assert ids('externalId = "CORP\\tom"') == [tab]
    assert set(ids('externalId contains "CORP"')) == {slash, tab}
    assert ids('externalId = "a\\"b"') == []  # \" still decodes to a quote


@pytest.mark.parametrize(("version", "clears"), [("1.6", False), ("1.8", True), ("2.0", True)])
def test_patch_null_leaves_fields_and_empty_tags_by_version(
    make_emu: Callable[..., Emu], version: str, clears: bool
) -> None:
    """api/json_fields.go GetJsonFields: null = unchanged; {} counts as a change only since 1.8."""
    emu = make_emu(version=version)
    with emu.admin() as admin:
        ident = new_identity(admin, "nully", externalId="x-1", tags={"k": "v"}, roleAttributes=["a"])
        patched = admin.patch(
            f"/identities/{ident}", json={"name": None, "externalId": None, "roleAttributes": ["b"]}
        )
        assert patched.status_code == 200
        detail = admin.get(f"/identities/{ident}").json()["data"]
        # name: null no longer drops the whole PATCH, externalId: null keeps it
        assert detail["name"] == "nully" and detail["externalId"] == "x-1" and detail["roleAttributes"] == ["b"]
        assert admin.patch(f"/identities/{ident}", json={"tags": {"k": None}}).status_code == 200
        assert admin.get(f"/identities/{ident}").json()["data"]["tags"] == {"k": "v"}
        assert admin.patch(f"/identities/{ident}", json={"tags": {}}).status_code == 200
        tags = admin.get(f"/identities/{ident}").json()["data"]["tags"]
        assert tags == ({} if clears else {"k": "v"})
        assert admin.patch(f"/identities/{ident}", json={"externalId": ""}).status_code == 200
        assert admin.get(f"/identities/{ident}").json()["data"]["externalId"] is None


def test_fault_can_apply_the_change_then_fail(emu: Emu, admin: httpx.Client) -> None:
    emu.state.faults.inject(503, 1, method="POST", path_contains="/identities", apply=True)
    lost = admin.post("/identities", json={"name": "applied", "type": "User", "isAdmin": False})
    assert lost.status_code == 503 and error_of(lost)["code"] == "CLUSTER_NO_LEADER"
    assert "retry-after" not in lost.headers  # the controller never sends Retry-After
    assert emu.state.identity_by_name("applied") is not None  # ... but the identity was created
    emu.state.faults.inject(504, 1, method="PATCH", apply=True)
    ident = emu.state.identity_by_name("applied")
    assert ident is not None
    assert admin.patch(f"/identities/{ident.id}", json={"roleAttributes": ["z"]}).status_code == 504
    assert ident.role_attributes == ["z"]


@pytest.mark.parametrize("version", ["1.8", "2.0"])
def test_non_admin_may_not_send_admin_fields_nor_delete_admins(
    make_emu: Callable[..., Emu], version: str
) -> None:
    """identity_router.go Create/Patch/Delete: 401 UNAUTHORIZED for non-admins acting on admin fields."""
    emu = make_emu(version=version)
    operator = emu.state.create_identity("operator", permissions=["identity"])
    emu.state.set_password(operator.id, "operator-pw")
    other_admin = emu.state.create_identity("other-admin", is_admin=True)
    with httpx.Client(base_url=emu.mgmt, headers={"zt-session": emu.login("operator", "operator-pw")}) as op:
        ident = new_identity(op, "plain")  # isAdmin: false is allowed on create
        for body in ({"isAdmin": False}, {"permissions": []}, {"isDefaultAdmin": False}):
            refused = op.patch(f"/identities/{ident}", json=body)
            assert refused.status_code == 401 and error_of(refused)["code"] == "UNAUTHORIZED", body
        assert op.patch(f"/identities/{ident}", json={"isAdmin": None, "name": "plain-2"}).status_code == 200
        assert emu.state.identities[ident].name == "plain-2"
        refused = op.post("/identities", json={"name": "x", "type": "User", "isAdmin": True})
        assert refused.status_code == 401
        deleted = op.delete(f"/identities/{other_admin.id}")
        assert deleted.status_code == 401 and other_admin.id in emu.state.identities
        assert op.delete(f"/identities/{ident}").status_code == 200


@pytest.mark.parametrize("version", ["1.6", "2.0"])
def test_ext_jwt_failure_answer_by_version(
    make_emu: Callable[..., Emu], version: str, signing_key: SigningKey
) -> None:
    """1.x: 401 INVALID_AUTH; 2.0: 401 UNAUTHORIZED + Bearer realm="openziti-primary-ext-jwt" challenge."""
    emu = make_emu(version=version)
    signer = emu.state.create_signer(
        {"name": "idp", "issuer": ISSUER, "audience": AUDIENCE, "certPem": signing_key.cert_pem(),
         "kid": signing_key.kid, "claimsProperty": "email", "useExternalId": True, "enabled": True}
    )
    url = emu.client_api + "/authenticate"
    expired = signing_key.token(emu.clock.now - 7200, email="a@x.test")
    cases = {"missing": {}, "invalid": {"Authorization": "Bearer not-a-jwt"},
             "expired": {"Authorization": f"Bearer {expired}"}}
    for kind, headers in cases.items():
        response = httpx.post(url, params={"method": "ext-jwt"}, json={}, headers=headers)
        assert response.status_code == 401
        if version == "1.6":
            assert error_of(response)["code"] == "INVALID_AUTH" and "www-authenticate" not in response.headers
        else:
            assert error_of(response)["code"] == "UNAUTHORIZED"
            challenge = response.headers["www-authenticate"]
            assert challenge.startswith(f'Bearer realm="openziti-primary-ext-jwt" error="{kind}" ')
            assert f'id="{signer.id}"' in challenge and f'issuer="{ISSUER}"' in challenge


@pytest.mark.parametrize(("version", "random_signer"), [("1.8", False), ("2.0", True), ("2.0.3", True)])
def test_kid_first_signer_choice_on_2_0(
    make_emu: Callable[..., Emu], version: str, random_signer: bool, signing_key: SigningKey
) -> None:
    """security_tokens.go processHeaders (2.0.0-2.0.3): two signers sharing a key are chosen at random."""
    emu = make_emu(version=version)
    emu.state.rng = random.Random(7)
    base = {"audience": AUDIENCE, "certPem": signing_key.cert_pem(), "kid": signing_key.kid,
            "claimsProperty": "email", "useExternalId": True, "enabled": True}
    emu.state.create_signer({**base, "name": "right", "issuer": ISSUER})
    emu.state.create_signer({**base, "name": "wrong", "issuer": "https://same-key.example"})
    emu.state.create_identity("alice", external_id="alice@x.test")
    token = signing_key.token(emu.clock.now, email="alice@x.test")
    codes = [
        httpx.post(emu.client_api + "/authenticate", params={"method": "ext-jwt"}, json={},
                   headers={"Authorization": f"Bearer {token}"}).status_code
        for _ in range(12)
    ]
    assert set(codes) == ({200, 401} if random_signer else {200})


def test_signer_without_audience_refuses_every_token(emu: Emu, signing_key: SigningKey) -> None:
    """authenticator_mod_ext_jwt.go verifyAudience: "audience on ext-jwt signer is nil, audience is required"."""
    signer = emu.state.create_signer(
        {"name": "no-aud", "issuer": ISSUER, "audience": AUDIENCE, "certPem": signing_key.cert_pem(),
         "kid": signing_key.kid, "claimsProperty": "email", "useExternalId": True, "enabled": True}
    )
    signer.audience = None  # created before audience was required (the API refuses it now)
    emu.state.create_identity("bob", external_id="bob@x.test")
    token = signing_key.token(emu.clock.now, email="bob@x.test")
    response = httpx.post(emu.client_api + "/authenticate", params={"method": "ext-jwt"}, json={},
                          headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401
    assert emu.state.last_auth_failure == "audience on ext-jwt signer is nil, audience is required"


@pytest.mark.parametrize(("version", "accepted"), [("1.6", False), ("2.0", True)])
def test_ext_jwt_reads_two_bearer_headers_on_1x_and_three_on_2x(
    make_emu: Callable[..., Emu], version: str, accepted: bool, signing_key: SigningKey
) -> None:
    emu = make_emu(version=version)
    emu.state.create_signer(
        {"name": "idp", "issuer": ISSUER, "audience": AUDIENCE, "certPem": signing_key.cert_pem(),
         "kid": signing_key.kid, "claimsProperty": "email", "useExternalId": True, "enabled": True}
    )
    emu.state.create_identity("carol", external_id="carol@x.test")
    good = signing_key.token(emu.clock.now, email="carol@x.test")
    headers = [("Authorization", "Bearer junk-1"), ("Authorization", "Bearer junk-2"),
               ("Authorization", f"Bearer {good}")]
    response = httpx.post(emu.client_api + "/authenticate", params={"method": "ext-jwt"}, json={}, headers=headers)
    assert (response.status_code == 200) == accepted


@pytest.mark.parametrize(("version", "still_valid"), [("1.6", True), ("2.0", True), ("2.0.3", False)])
def test_oidc_token_of_a_disabled_identity(make_emu: Callable[..., Emu], version: str, still_valid: bool) -> None:
    """env/appenv.go ProcessJwt never checks Disabled before 2.0.3: the token outlives the disable."""
    emu = make_emu(version=version)
    user = emu.state.create_identity("dora")
    emu.state.set_password(user.id, "dora-pw")
    tokens = emu.state.oidc.issue(user, emu.clock.now, client_id="openziti", session_id="s-1")
    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert httpx.get(emu.mgmt + "/current-identity", headers=bearer).status_code == 200
    with emu.admin() as admin:
        assert admin.post(f"/identities/{user.id}/disable", json={"durationMinutes": 0}).status_code == 200
    after = httpx.get(emu.mgmt + "/current-identity", headers=bearer)
    assert (after.status_code == 200) == still_valid
    if not still_valid:
        assert after.headers["www-authenticate"].startswith('Bearer realm="openziti-oidc" error="invalid"')
