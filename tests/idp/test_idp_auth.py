"""SCIM authentication of the IdP: static tokens (with or without scheme) and OAuth 2.0 JWT access tokens."""

from __future__ import annotations

import time

import httpx
import pytest

from app.config import ConfigError, load_config
from app.scim.quirks import quirks_for
from tests.idp.conftest import Stack, StackFactory, source

STATIC = "static-token-of-zitadel-0123456789"
USER = "urn:ietf:params:scim:schemas:core:2.0:User"


@pytest.fixture
def stack(make_stack: StackFactory, idps: dict[str, object]) -> Stack:
    zitadel = idps["zitadel"]
    oauth = {
        "issuer": zitadel.issuer,  # type: ignore[attr-defined]
        "audience": ["ziti-scim", "339200000000000099"],
        "jwks_url": zitadel.jwks_url,  # type: ignore[attr-defined]
        "required_claims": {"urn:zitadel:iam:org:project:roles": "scim-writer"},
    }
    return make_stack(
        source("zitadel", "zitadel", STATIC, oauth=oauth),
        source("asgardeo", "asgardeo", "asgardeo-api-key-0123456789"),
        source("entra", "entra", "entra-secret-token-0123456789"),
    )


def get_users(stack: Stack, authorization: str | None) -> httpx.Response:
    headers = {"Authorization": authorization} if authorization is not None else {}
    return httpx.get(f"{stack.url}/scim/v2/Users", headers=headers, timeout=30)


def test_an_idp_access_token_authenticates_its_source(stack: Stack) -> None:
    zitadel = stack.idps["zitadel"]
    roles = {
        "urn:zitadel:iam:org:project:roles": {"scim-writer": {"339100000000000001": "acme.zitadel.cloud"}}
    }
    token = zitadel.token(sub="339100000000000042", aud=["ziti-scim", "339200000000000003"], **roles)
    created = httpx.post(
        f"{stack.url}/scim/v2/Users",
        headers={"Authorization": f"Bearer {token}"},
        json={"schemas": [USER], "userName": "svc-made", "externalId": "339100000000000050"},
        timeout=30,
    )
    assert created.status_code == 201
    # The user belongs to the token's source: the static token of that source sees it, another does not.
    assert get_users(stack, f"Bearer {STATIC}").json()["totalResults"] == 1
    assert get_users(stack, "Bearer entra-secret-token-0123456789").json()["totalResults"] == 0


def test_every_bad_access_token_is_the_same_401(stack: Stack) -> None:
    zitadel, authentik = stack.idps["zitadel"], stack.idps["authentik"]
    roles = {"urn:zitadel:iam:org:project:roles": {"scim-writer": {"1": "x"}}}
    now = int(time.time())
    bad = {
        "wrong audience": zitadel.token(aud="someone-else", **roles),
        "expired": zitadel.token(aud="ziti-scim", iat=now - 7200, exp=now - 3600, **roles),
        "missing role claim": zitadel.token(aud="ziti-scim"),
        "other role": zitadel.token(aud="ziti-scim", **{"urn:zitadel:iam:org:project:roles": {"viewer": {}}}),
        # Signed by another IdP's key but claiming ZITADEL's issuer.
        "foreign key": authentik.token(iss=zitadel.issuer, aud="ziti-scim", **roles),
        "unknown issuer": authentik.token(aud="ziti-scim", **roles),
        "alg none": "eyJhbGciOiJub25lIn0.eyJpc3MiOiJodHRwczovL2FjbWUueml0YWRlbC5jbG91ZCJ9.",
    }
    answers = set()
    for reason, token in bad.items():
        response = get_users(stack, f"Bearer {token}")
        assert response.status_code == 401, reason
        assert response.headers["WWW-Authenticate"] == 'Bearer realm="ziti-scim"'
        answers.add(response.json()["detail"])
    for header in (None, "", "Bearer", "Basic dXNlcjpwYXNz", f"Bearer {STATIC}x", f"Token {STATIC}"):
        assert get_users(stack, header).status_code == 401
    assert answers == {"A valid bearer token is required"}


def test_a_token_without_scheme_only_for_the_clients_that_send_one(stack: Stack) -> None:
    # Asgardeo's API-key mode sends "Authorization: <key>"; Entra always says Bearer.
    assert get_users(stack, "asgardeo-api-key-0123456789").status_code == 200
    assert get_users(stack, "entra-secret-token-0123456789").status_code == 401
    assert get_users(stack, STATIC).status_code == 401


def test_configuration_of_idp_options() -> None:
    env = {
        "ZITI_SCIM_SOURCE_ZITADEL_WEBHOOK_SECRET": "key-one, key-two",
        "ZITI_SCIM_SOURCE_AUTH_HOOKS_AUTHENTIK_TOKEN": "api-token-from-env",
    }
    config = load_config(
        {
            "sources": {
                "zitadel": {"kind": "zitadel", "webhook_secret": "from-the-file"},
                "auth-hooks": {"kind": "authentik", "authentik_url": "https://ak.example.com"},
                "asgardeo": {"kind": "asgardeo", "partial_put": False},
            }
        },
        env,
    )
    assert config.sources["zitadel"].options["webhook_secret"] == ["key-one", "key-two"]
    assert config.sources["auth-hooks"].options["authentik_token"] == "api-token-from-env"
    assert quirks_for(config.sources["asgardeo"]).partial_put is False
    assert quirks_for(config.sources["asgardeo"]).raw_token is True
    with pytest.raises(ConfigError, match="partial_put"):
        quirks_for(
            load_config({"sources": {"a": {"kind": "asgardeo", "partial_put": "yes"}}}, {}).sources["a"]
        )
    from app.scim.auth import oauth_config

    with pytest.raises(ConfigError, match="oauth"):
        oauth_config(load_config({"sources": {"a": {"oauth": {"issuer": "x"}}}}, {}).sources["a"])
