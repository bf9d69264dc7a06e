"""Issue 12: an IdP JWT is accepted only for what it is for: ``typ`` (when set) an access-token type, and a
configuration that names an audience and at least one of scope, claim or client (a start-up error
otherwise)."""

from __future__ import annotations

from typing import Any

import httpx
import jwt
import pytest
from test_jwt_bearer import ISSUER, NOW, RSA1, JwksServer, claims, jwks_server, reject

from app.auth.bearer import oauth_config
from app.auth.jwt_bearer import JwtBearerConfig, JwtBearerValidator
from app.config import ConfigError, load_config
from app.server import create_app
from tests.support.clock import FrozenClock

__all__ = ["jwks_server"]  # the fixture, imported for the tests below


def signed(payload: dict[str, Any], typ: str | None) -> str:
    # PyJWT writes typ=JWT unless the header sets it; None leaves it out.
    return jwt.encode(payload, RSA1, algorithm="RS256", headers={"kid": "k1", "typ": typ})


def validator(url: str, client: httpx.AsyncClient, **kw: Any) -> JwtBearerValidator:
    options: dict[str, Any] = {"required_scopes": ("ziti.provision",), **kw}
    config = JwtBearerConfig(jwks_url=url, issuer=ISSUER, audience="ziti-scim", **options)
    return JwtBearerValidator(config, client=client, clock=FrozenClock(NOW))


@pytest.mark.parametrize("typ", ["at+jwt", "JWT", "application/at+JWT", None])
async def test_access_token_types_are_accepted(jwks_server: tuple[JwksServer, str], typ: str | None) -> None:
    _, url = jwks_server
    async with httpx.AsyncClient() as client:
        token = signed(claims(), typ)
        assert ("typ" in jwt.get_unverified_header(token)) is (typ is not None)
        assert (await validator(url, client).validate(token))["iss"] == ISSUER


@pytest.mark.parametrize("typ", ["logout+jwt", "dpop+jwt", "secevent+jwt", "JOSE"])
async def test_other_token_types_are_refused(jwks_server: tuple[JwksServer, str], typ: str) -> None:
    _, url = jwks_server
    async with httpx.AsyncClient() as client:
        assert await reject(validator(url, client), signed(claims(), typ)) == "token type not accepted"


async def test_token_types_can_be_pinned(jwks_server: tuple[JwksServer, str]) -> None:
    _, url = jwks_server
    async with httpx.AsyncClient() as client:
        strict = validator(url, client, token_types=("at+jwt",))
        assert await reject(strict, signed(claims(), "JWT")) == "token type not accepted"
        assert (await strict.validate(signed(claims(), "at+jwt")))["sub"]


@pytest.mark.parametrize("claim", ["azp", "client_id", "appid"])
async def test_the_client_must_be_allowed(jwks_server: tuple[JwksServer, str], claim: str) -> None:
    _, url = jwks_server
    async with httpx.AsyncClient() as client:
        pinned = validator(url, client, required_scopes=(), allowed_clients=("scim-client",))
        assert (await pinned.validate(signed(claims(**{claim: "scim-client"}), "JWT")))["sub"]
        other = signed(claims(**{claim: "some-other-app"}), "JWT")
        assert await reject(pinned, other) == "client not allowed"
        assert await reject(pinned, signed(claims(), "JWT")) == "client not allowed"


def test_a_config_without_scope_claim_or_client_is_refused() -> None:
    with pytest.raises(ValueError, match="required_scopes, required_claims or allowed_clients"):
        JwtBearerConfig(jwks_url="https://x/keys", issuer=ISSUER, audience="ziti-scim")
    assert JwtBearerConfig(
        jwks_url="https://x/keys", issuer=ISSUER, audience="ziti-scim", accept_any_client=True
    ).accept_any_client


def _oauth(**extra: Any) -> dict[str, Any]:
    base = {"issuer": ISSUER, "audience": "ziti-scim", "jwks_url": "https://idp.example.com/keys"}
    return {"sources": {"a": {"token_sha256": ["0" * 64], "oauth": {**base, **extra}}}}


def test_the_service_does_not_start_with_an_open_oauth_table() -> None:
    config = load_config(_oauth(), {})
    with pytest.raises(ConfigError, match="sources.a.oauth: name at least one of"):
        create_app(config)
    with pytest.raises(ConfigError, match="audience"):
        oauth_config(load_config(_oauth(audience=""), {}).sources["a"])
    pinned = oauth_config(load_config(_oauth(allowed_clients=["c1"], token_types=["at+jwt"]), {}).sources["a"])
    assert pinned is not None and pinned.allowed_clients == ("c1",) and pinned.token_types == ("at+jwt",)
    for bad in ({"allowed_clients": "c1"}, {"token_types": []}, {"accept_any_client": "yes"}):
        with pytest.raises(ConfigError, match="sources.a.oauth"):
            oauth_config(load_config(_oauth(required_scopes=["s"], **bad), {}).sources["a"])
    app = create_app(load_config(_oauth(required_scopes=["scim"]), {}))
    assert "a" in app.state.services.scim.authenticator.validators
