"""External JWT signers, auth policies and service / edge-router policies (controller-api.md §4, §5, §6)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
from emu_support import AUDIENCE, ISSUER, Emu, SigningKey, error_of, new_identity


def signer_body(**fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "okta",
        "enabled": True,
        "issuer": ISSUER,
        "audience": AUDIENCE,
        "jwksEndpoint": "http://127.0.0.1:9/keys",
    }
    body.update(fields)
    return body


def test_signer_crud(admin: httpx.Client) -> None:
    created = admin.post(
        "/external-jwt-signers", json=signer_body(claimsProperty="email", useExternalId=True)
    )
    assert created.status_code == 201
    signer_id = created.json()["data"]["id"]
    detail = admin.get(f"/external-jwt-signers/{signer_id}").json()["data"]
    assert detail["issuer"] == ISSUER and detail["audience"] == AUDIENCE
    assert detail["claimsProperty"] == "email" and detail["useExternalId"] is True
    assert detail["targetToken"] == "ACCESS" and detail["certPem"] is None
    assert detail["enrollNameClaimsSelector"] == "/sub"  # 2.0-only field present in the 2.0 flavour
    listed = admin.get("/external-jwt-signers", params={"filter": f'issuer = "{ISSUER}"'}).json()
    assert [s["id"] for s in listed["data"]] == [signer_id]
    assert admin.patch(f"/external-jwt-signers/{signer_id}", json={"enabled": False}).status_code == 200
    patched = admin.get(f"/external-jwt-signers/{signer_id}").json()["data"]
    assert patched["enabled"] is False and patched["claimsProperty"] == "email"
    put = admin.put(f"/external-jwt-signers/{signer_id}", json=signer_body(name="okta-2"))
    assert put.status_code == 200
    replaced = admin.get(f"/external-jwt-signers/{signer_id}").json()["data"]
    assert replaced["name"] == "okta-2" and replaced["claimsProperty"] == "/sub"  # PUT reset to the default
    assert replaced["useExternalId"] is False
    assert admin.delete(f"/external-jwt-signers/{signer_id}").json() == {"data": {}, "meta": {}}
    assert admin.get(f"/external-jwt-signers/{signer_id}").status_code == 404


def test_signer_defaults_by_flavour(make_emu: Callable[..., Emu]) -> None:
    emu = make_emu(flavor="1.6")
    with emu.admin() as client:
        signer_id = client.post("/external-jwt-signers", json=signer_body()).json()["data"]["id"]
        detail = client.get(f"/external-jwt-signers/{signer_id}").json()["data"]
    assert detail["claimsProperty"] == "sub"
    assert "enrollToTokenEnabled" not in detail  # 1.6 never returns the 2.0 enrollment fields


def test_signer_key_source_rules(admin: httpx.Client, signing_key: SigningKey) -> None:
    neither = signer_body()
    del neither["jwksEndpoint"]
    response = admin.post("/external-jwt-signers", json=neither)
    assert response.status_code == 400
    assert error_of(response)["code"] == "REFERENCED_ENTITY_NOT_FOUND"
    assert "jwksEndpoint or certPem is required" in error_of(response)["cause"]["message"]
    both = admin.post("/external-jwt-signers", json=signer_body(certPem=signing_key.cert_pem()))
    assert both.status_code == 400
    bad_pem = admin.post("/external-jwt-signers", json=signer_body(jwksEndpoint=None, certPem="not a pem"))
    assert error_of(bad_pem)["code"] == "INVALID_CERT_PEM"
    cert = admin.post(
        "/external-jwt-signers", json=signer_body(jwksEndpoint=None, certPem=signing_key.cert_pem())
    )
    assert cert.status_code == 201
    detail = admin.get(f"/external-jwt-signers/{cert.json()['data']['id']}").json()["data"]
    assert detail["commonName"] == "test-idp"
    assert detail["kid"] == detail["fingerprint"] and len(detail["fingerprint"]) == 40


def test_signer_uniqueness(admin: httpx.Client) -> None:
    assert admin.post("/external-jwt-signers", json=signer_body()).status_code == 201
    same_issuer = admin.post("/external-jwt-signers", json=signer_body(name="other"))
    assert same_issuer.status_code == 400
    assert error_of(same_issuer)["cause"]["field"] == "issuer"
    same_name = admin.post("/external-jwt-signers", json=signer_body(issuer="https://other.example"))
    assert error_of(same_name)["cause"]["field"] == "name"


def test_default_auth_policy(admin: httpx.Client) -> None:
    policy = admin.get("/auth-policies/default").json()["data"]
    assert policy["name"] == "Default"
    assert policy["primary"]["extJwt"] == {"allowed": True, "allowedSigners": []}
    assert policy["primary"]["updb"]["minPasswordLength"] == 5
    assert policy["secondary"] == {"requireTotp": False, "requireExtJwtSigner": None}
    delete = admin.delete("/auth-policies/default")
    assert delete.status_code == 400 and error_of(delete)["code"] == "ENTITY_CAN_NOT_BE_DELETED"
    assert admin.get("/auth-policies").json()["meta"]["pagination"]["totalCount"] == 1


def auth_policy_body(signers: list[str], *, name: str = "jwt-only") -> dict[str, Any]:
    return {
        "name": name,
        "primary": {
            "cert": {"allowed": False, "allowExpiredCerts": False},
            "updb": {
                "allowed": False,
                "minPasswordLength": 5,
                "requireSpecialChar": False,
                "requireNumberChar": False,
                "requireMixedCase": False,
                "maxAttempts": 0,
                "lockoutDurationMinutes": 0,
            },
            "extJwt": {"allowed": True, "allowedSigners": signers},
        },
        "secondary": {"requireTotp": False, "requireExtJwtSigner": None},
    }


def test_auth_policy_crud_and_referenced_signer_cannot_be_deleted(admin: httpx.Client) -> None:
    signer_id = admin.post("/external-jwt-signers", json=signer_body()).json()["data"]["id"]
    missing = admin.post("/auth-policies", json=auth_policy_body(["nope"]))
    assert missing.status_code == 404
    created = admin.post("/auth-policies", json=auth_policy_body([signer_id]))
    assert created.status_code == 201
    policy_id = created.json()["data"]["id"]
    assert admin.get(f"/auth-policies/{policy_id}").json()["data"]["primary"]["extJwt"]["allowedSigners"] == [
        signer_id
    ]
    referenced = admin.delete(f"/external-jwt-signers/{signer_id}")
    assert referenced.status_code == 409
    err = error_of(referenced)
    assert err["code"] == "CAN_NOT_DELETE_REFERENCED_ENTITY" and policy_id in err["cause"]["value"]
    patched = admin.patch(f"/auth-policies/{policy_id}", json={"primary": {"extJwt": {"allowedSigners": []}}})
    assert patched.status_code == 200
    detail = admin.get(f"/auth-policies/{policy_id}").json()["data"]
    assert detail["primary"]["extJwt"] == {"allowed": True, "allowedSigners": []}
    assert detail["primary"]["updb"]["allowed"] is False  # untouched by the patch
    ident = new_identity(admin, "uses-policy", authPolicyId=policy_id)
    in_use = admin.delete(f"/auth-policies/{policy_id}")
    assert in_use.status_code == 409
    assert admin.delete(f"/identities/{ident}").status_code == 200
    assert admin.delete(f"/auth-policies/{policy_id}").status_code == 200
    assert admin.delete(f"/external-jwt-signers/{signer_id}").status_code == 200


def test_client_api_lists_signers_without_a_session(emu: Emu, admin: httpx.Client) -> None:
    admin.post("/external-jwt-signers", json=signer_body(clientId="ziti-app", externalAuthUrl=ISSUER))
    response = httpx.get(emu.client_api + "/external-jwt-signers")
    assert response.status_code == 200
    (signer,) = response.json()["data"]
    assert signer["clientId"] == "ziti-app" and "jwksEndpoint" not in signer and "issuer" not in signer


def test_service_and_edge_router_policies(emu: Emu, admin: httpx.Client) -> None:
    alice = new_identity(admin, "alice", roleAttributes=["eng", "vpn"])
    bob = new_identity(admin, "bob", roleAttributes=["eng"])
    dial = admin.post(
        "/service-policies",
        json={"name": "eng-dial", "type": "Dial", "semantic": "AllOf", "identityRoles": ["#eng", "#vpn"]},
    )
    assert dial.status_code == 201
    erp = admin.post(
        "/edge-router-policies", json={"name": "all-routers", "semantic": "AnyOf", "identityRoles": ["#all"]}
    )
    assert erp.status_code == 201
    by_id = admin.post(
        "/service-policies",
        json={"name": "bob-only", "type": "Bind", "semantic": "AnyOf", "identityRoles": [f"@{bob}"]},
    )
    assert by_id.status_code == 201
    detail = admin.get(f"/service-policies/{by_id.json()['data']['id']}").json()["data"]
    assert detail["identityRolesDisplay"] == [{"role": f"@{bob}", "name": "@bob"}]
    using_eng = admin.get("/service-policies", params={"filter": 'anyOf(identityRoles) = "#eng"'}).json()
    assert [p["name"] for p in using_eng["data"]] == ["eng-dial"]
    dial_only = admin.get("/service-policies", params={"filter": 'type = "Dial"'}).json()
    assert [p["name"] for p in dial_only["data"]] == ["eng-dial"]
    alice_sp = admin.get(f"/identities/{alice}/service-policies").json()
    assert [p["name"] for p in alice_sp["data"]] == ["eng-dial"]
    assert admin.get(f"/identities/{bob}/service-policies").json()["meta"]["pagination"]["totalCount"] == 1
    assert admin.get(f"/identities/{bob}/edge-router-policies").json()["data"][0]["name"] == "all-routers"
    members = admin.get(f"/service-policies/{dial.json()['data']['id']}/identities").json()
    assert [i["name"] for i in members["data"]] == ["alice"]
    # deleting an identity removes its @id references
    admin.delete(f"/identities/{bob}")
    assert admin.get(f"/service-policies/{by_id.json()['data']['id']}").json()["data"]["identityRoles"] == []


def test_policy_role_validation(admin: httpx.Client) -> None:
    base = {"name": "p", "type": "Dial", "semantic": "AllOf"}
    bare = admin.post("/service-policies", json={**base, "identityRoles": ["eng"]})
    assert bare.status_code == 400 and error_of(bare)["cause"]["field"] == "identityRoles"
    mixed_all = admin.post("/service-policies", json={**base, "identityRoles": ["#all", "#eng"]})
    assert "#all" in error_of(mixed_all)["cause"]["reason"]
    unknown = admin.post("/service-policies", json={**base, "identityRoles": ["@nobody"]})
    assert error_of(unknown)["cause"]["reason"] == "no identities found with the given ids"


def test_1_6_service_policy_type_filter_is_an_int(make_emu: Callable[..., Emu]) -> None:
    emu = make_emu(flavor="1.6")
    with emu.admin() as client:
        client.post("/service-policies", json={"name": "d", "type": "Dial", "semantic": "AllOf"})
        assert client.get("/service-policies", params={"filter": "type = 1"}).json()["data"][0]["name"] == "d"
        assert client.get("/service-policies", params={"filter": 'type = "Dial"'}).json()["data"] == []
