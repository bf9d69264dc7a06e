"""``/authenticate?method=ext-jwt`` end to end.

controller-api.md §2.3 and §4.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from emu_support import AUDIENCE, ISSUER, Emu, SigningKey, error_of, new_identity
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

EMAIL = "alice@example.com"


class JwksServer:
    """A tiny IdP JWKS endpoint on loopback whose key set tests can rotate."""

    def __init__(self, serve: Callable[[Any], str], *keys: SigningKey) -> None:
        self.keys = list(keys)
        self.hits = 0

        async def serve_keys(request: Request) -> JSONResponse:
            self.hits += 1
            return JSONResponse({"keys": [k.jwk() for k in self.keys]})

        self.url = serve(Starlette(routes=[Route("/keys", serve_keys)])) + "/keys"


@pytest.fixture
def jwks(serve: Callable[[Any], str], signing_key: SigningKey) -> JwksServer:
    return JwksServer(serve, signing_key)


def login(emu: Emu, token: str | None, api: str = "client") -> httpx.Response:
    base = emu.client_api if api == "client" else emu.mgmt
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return httpx.post(base + "/authenticate", params={"method": "ext-jwt"}, json={}, headers=headers)


def make_signer(client: httpx.Client, **fields: Any) -> str:
    body: dict[str, Any] = {
        "name": "idp",
        "enabled": True,
        "issuer": ISSUER,
        "audience": AUDIENCE,
        "claimsProperty": "email",
        "useExternalId": True,
    }
    body.update(fields)
    response = client.post("/external-jwt-signers", json=body)
    assert response.status_code == 201, response.text
    return str(response.json()["data"]["id"])


def assert_refused(emu: Emu, response: httpx.Response, reason: str) -> None:
    """1.x: 401 INVALID_AUTH, no challenge; 2.0: 401 UNAUTHORIZED + a primary ext-jwt challenge."""
    assert response.status_code == 401
    assert "zt-session" not in response.headers
    assert emu.state.last_auth_failure == reason
    if not emu.state.profile.www_authenticate:
        assert error_of(response)["code"] == "INVALID_AUTH"
        assert "www-authenticate" not in response.headers
        return
    assert error_of(response)["code"] == "UNAUTHORIZED"
    kind = {"jwt expired": "expired", "no Bearer token in the Authorization header": "missing"}.get(
        reason, "invalid"
    )
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith(f'Bearer realm="openziti-primary-ext-jwt" error="{kind}" ')


def test_seed_scenario_fails_before_provisioning_and_succeeds_after(
    emu: Emu, admin: httpx.Client, jwks: JwksServer, signing_key: SigningKey
) -> None:
    make_signer(admin, jwksEndpoint=jwks.url)
    token = signing_key.token(emu.clock.now, sub="00u1ab", email=EMAIL)
    assert_refused(emu, login(emu, token), "identity not found by externalId")
    assert emu.state.auth_failures[-1].details["externalId"] == EMAIL
    new_identity(admin, "alice", externalId=EMAIL)
    response = login(emu, token)
    assert response.status_code == 200, response.text
    session = response.json()["data"]
    assert response.headers["zt-session"] == session["token"]
    assert session["identity"]["name"] == "alice"
    me = httpx.get(emu.client_api + "/current-identity", headers={"zt-session": session["token"]})
    assert me.json()["data"]["externalId"] == EMAIL
    assert login(emu, token, api="management").status_code == 200  # same auth module on both APIs
    assert emu.state.spec_violations == []


def test_refusals(
    emu: Emu, admin: httpx.Client, jwks: JwksServer, signing_key: SigningKey, other_key: SigningKey
) -> None:
    signer_id = make_signer(admin, jwksEndpoint=jwks.url)
    ident = new_identity(admin, "alice", externalId=EMAIL)
    now = emu.clock.now
    assert_refused(emu, login(emu, None), "no Bearer token in the Authorization header")
    assert_refused(emu, login(emu, "not-a-jwt"), "jwt could not be parsed")
    wrong_issuer = signing_key.token(now, email=EMAIL, iss="https://evil.example")
    # 2.0.0-2.0.3 pick the signer by kid first (security_tokens.go processHeaders), then check the issuer
    assert_refused(emu, login(emu, wrong_issuer), "jwt issuer does not match the signer chosen by kid")
    wrong_audience = signing_key.token(now, email=EMAIL, aud="someone-else")
    assert_refused(emu, login(emu, wrong_audience), "jwt audience does not match the signer")
    forged = other_key.token(now, kid=signing_key.kid, email=EMAIL)
    assert_refused(emu, login(emu, forged), "jwt signature did not verify")
    assert_refused(emu, login(emu, other_key.token(now, email=EMAIL)), "unknown kid for signer")
    assert_refused(
        emu,
        login(emu, signing_key.token(now, sub="x")),
        "claims property not found or not a non-empty string",
    )
    expiring = signing_key.token(now, email=EMAIL)
    emu.clock.advance(301)
    assert_refused(emu, login(emu, expiring), "jwt expired")
    now = emu.clock.now
    assert_refused(
        emu, login(emu, signing_key.token(now, email=EMAIL, nbf=int(now) + 60)), "jwt not yet valid"
    )
    admin.post(f"/identities/{ident}/disable", json={"durationMinutes": 0})
    assert_refused(emu, login(emu, signing_key.token(now, email=EMAIL)), "identity is disabled")
    admin.post(f"/identities/{ident}/enable")
    assert login(emu, signing_key.token(now, email=EMAIL)).status_code == 200
    admin.patch(f"/external-jwt-signers/{signer_id}", json={"enabled": False})
    assert_refused(emu, login(emu, signing_key.token(now, email=EMAIL)), "external jwt signer is disabled")


def test_aud_may_be_a_list(emu: Emu, admin: httpx.Client, jwks: JwksServer, signing_key: SigningKey) -> None:
    make_signer(admin, jwksEndpoint=jwks.url)
    new_identity(admin, "alice", externalId=EMAIL)
    token = signing_key.token(emu.clock.now, email=EMAIL, aud=["other", AUDIENCE])
    assert login(emu, token).status_code == 200


def test_auth_policy_must_allow_the_signer(
    emu: Emu,
    admin: httpx.Client,
    jwks: JwksServer,
    signing_key: SigningKey,
    other_key: SigningKey,
    serve: Callable[[Any], str],
) -> None:
    signer_id = make_signer(admin, jwksEndpoint=jwks.url)
    other_jwks = JwksServer(serve, other_key)  # its own key: signers sharing a kid are picked at random on 2.0
    other_signer = make_signer(admin, name="other", issuer="https://other.example", jwksEndpoint=other_jwks.url)
    policy = emu.state.create_auth_policy(
        {
            "name": "other-only",
            "primary": {"extJwt": {"allowed": True, "allowedSigners": [other_signer]}},
            "secondary": {},
        }
    )
    new_identity(admin, "alice", externalId=EMAIL, authPolicyId=policy.id)
    token = signing_key.token(emu.clock.now, email=EMAIL)
    assert_refused(emu, login(emu, token), "auth policy does not allow this signer")
    admin.patch(f"/auth-policies/{policy.id}", json={"primary": {"extJwt": {"allowedSigners": [signer_id]}}})
    assert login(emu, token).status_code == 200
    admin.patch(f"/auth-policies/{policy.id}", json={"primary": {"extJwt": {"allowed": False}}})
    assert_refused(emu, login(emu, token), "auth policy does not allow ext-jwt authentication")


def test_cert_pem_signer(emu: Emu, admin: httpx.Client, signing_key: SigningKey) -> None:
    signer_id = make_signer(admin, certPem=signing_key.cert_pem(), claimsProperty="sub", useExternalId=False)
    kid = admin.get(f"/external-jwt-signers/{signer_id}").json()["data"]["kid"]
    ident = new_identity(admin, "by-id")
    # useExternalId=false: the claim is matched against the identity id
    ok = login(emu, signing_key.token(emu.clock.now, kid=kid, sub=ident))
    assert ok.status_code == 200 and ok.json()["data"]["identityId"] == ident
    assert_refused(
        emu, login(emu, signing_key.token(emu.clock.now, kid=kid, sub="nope")), "identity not found by id"
    )
    assert_refused(emu, login(emu, signing_key.token(emu.clock.now, sub=ident)), "unknown kid for signer")


def test_claims_property_json_pointer_in_2_0(
    emu: Emu, admin: httpx.Client, jwks: JwksServer, signing_key: SigningKey
) -> None:
    make_signer(admin, jwksEndpoint=jwks.url, claimsProperty="/ext/uids/1")
    new_identity(admin, "nested", externalId="u-2")
    token = signing_key.token(emu.clock.now, ext={"uids": ["u-1", "u-2"]})
    assert login(emu, token).status_code == 200


def test_claims_property_is_a_plain_key_in_1_6(
    make_emu: Callable[..., Emu], jwks: JwksServer, signing_key: SigningKey
) -> None:
    emu = make_emu(flavor="1.6")
    with emu.admin() as admin:
        signer_id = make_signer(admin, jwksEndpoint=jwks.url, claimsProperty="/email")
        new_identity(admin, "alice", externalId=EMAIL)
        token = signing_key.token(emu.clock.now, email=EMAIL)
        assert_refused(emu, login(emu, token), "claims property not found or not a non-empty string")
        admin.patch(f"/external-jwt-signers/{signer_id}", json={"claimsProperty": "email"})
        assert login(emu, token).status_code == 200


def test_jwks_is_cached_and_refetched_on_unknown_kid(
    emu: Emu, admin: httpx.Client, jwks: JwksServer, signing_key: SigningKey, other_key: SigningKey
) -> None:
    make_signer(admin, jwksEndpoint=jwks.url)
    new_identity(admin, "alice", externalId=EMAIL)
    assert login(emu, signing_key.token(emu.clock.now, email=EMAIL)).status_code == 200
    assert login(emu, signing_key.token(emu.clock.now, email=EMAIL)).status_code == 200
    assert jwks.hits == 1
    jwks.keys = [other_key]  # the IdP rotates its key
    assert login(emu, other_key.token(emu.clock.now, email=EMAIL)).status_code == 200
    assert jwks.hits == 2


def test_unreachable_jwks_endpoint_is_an_auth_failure(
    emu: Emu, admin: httpx.Client, signing_key: SigningKey
) -> None:
    make_signer(admin, jwksEndpoint="http://169.254.169.254/keys")
    response = login(emu, signing_key.token(emu.clock.now, email=EMAIL))
    assert response.status_code == 401
    assert (emu.state.last_auth_failure or "").startswith("jwks endpoint address is blocked")
