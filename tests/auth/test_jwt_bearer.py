"""JWT bearer validation against a JWKS served over real HTTP by uvicorn on 127.0.0.1."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
from collections.abc import Callable
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from app.auth.jwt_bearer import JwtBearerConfig, JwtBearerValidator, TokenRejected
from tests.support.clock import FrozenClock

NOW = 1_772_446_531.0
ISSUER = "https://idp.example.com"
AUDIENCE = "ziti-scim"

RSA1 = rsa.generate_private_key(public_exponent=65537, key_size=2048)
RSA2 = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC1 = ec.generate_private_key(ec.SECP256R1())


def public_jwk(key: Any, kid: str | None, **extra: str) -> dict[str, Any]:
    algo = jwt.algorithms.RSAAlgorithm if isinstance(key, rsa.RSAPrivateKey) else jwt.algorithms.ECAlgorithm
    data: dict[str, Any] = json.loads(algo.to_jwk(key.public_key()))
    if kid is not None:
        data["kid"] = kid
    data.update(extra)
    return data


class JwksServer:
    """Mutable JWKS document with a request counter."""

    def __init__(self) -> None:
        self.keys: list[dict[str, Any]] = [public_jwk(RSA1, "k1", use="sig", alg="RS256")]
        self.requests = 0
        self.status = 200

    def app(self) -> ASGIApp:
        async def jwks(_: Request) -> Response:
            self.requests += 1
            return JSONResponse({"keys": self.keys}, status_code=self.status)

        return Starlette(routes=[Route("/oauth/v2/keys", jwks)])


def claims(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "iss": ISSUER,
        "aud": [AUDIENCE, "other-app"],
        "sub": "339123456789012345",
        "iat": int(NOW) - 10,
        "exp": int(NOW) + 300,
        "scope": "openid ziti.provision",
    }
    base.update(over)
    return {k: v for k, v in base.items() if v is not None}


def sign(payload: dict[str, Any], key: Any = RSA1, kid: str | None = "k1", alg: str = "RS256") -> str:
    headers = {"kid": kid} if kid is not None else {}
    return jwt.encode(payload, key, algorithm=alg, headers=headers)


@pytest.fixture
def jwks_server(serve: Callable[[ASGIApp], str]) -> tuple[JwksServer, str]:
    server = JwksServer()
    return server, serve(server.app()) + "/oauth/v2/keys"


def make_validator(url: str, clock: FrozenClock, client: httpx.AsyncClient, **kw: Any) -> JwtBearerValidator:
    config = JwtBearerConfig(
        jwks_url=url, issuer=ISSUER, audience=AUDIENCE, required_scopes=("ziti.provision",), **kw
    )
    return JwtBearerValidator(config, client=client, clock=clock)


async def reject(validator: JwtBearerValidator, token: str) -> str:
    with pytest.raises(TokenRejected) as err:
        await validator.validate(token)
    assert str(err.value) == "invalid token"
    assert token not in repr(err.value) and token not in err.value.reason
    return err.value.reason


async def test_valid_token(jwks_server: tuple[JwksServer, str]) -> None:
    server, url = jwks_server
    async with httpx.AsyncClient() as client:
        v = make_validator(url, FrozenClock(NOW), client)
        got = await v.validate(sign(claims()))
        assert got["sub"] == "339123456789012345"
        got = await v.authenticate("Bearer " + sign(claims(scope=None, scp=["ziti.provision"])))
        assert got["scp"] == ["ziti.provision"]
    assert server.requests == 1  # keys cached


async def test_expiry_with_leeway(jwks_server: tuple[JwksServer, str]) -> None:
    _, url = jwks_server
    clock = FrozenClock(NOW)
    async with httpx.AsyncClient() as client:
        v = make_validator(url, clock, client, leeway=30)
        token = sign(claims(exp=int(NOW) - 10))
        assert (await v.validate(token))["exp"] == int(NOW) - 10  # within leeway
        clock.advance(25)
        assert await reject(v, token) == "token expired"
        assert await reject(v, sign(claims(exp=None))) == "missing claim exp"
        assert await reject(v, sign(claims(nbf=int(clock.now) + 60))) == "token not yet valid"
        assert await reject(v, sign(claims(iat=int(clock.now) + 60))) == "token issued in the future"
        assert await reject(v, sign(claims(exp="soon"))) == "exp is not a number"
        assert await reject(v, sign(claims(exp=float("nan")))) == "exp is not a number"


async def test_wrong_issuer_and_audience(jwks_server: tuple[JwksServer, str]) -> None:
    _, url = jwks_server
    async with httpx.AsyncClient() as client:
        v = make_validator(url, FrozenClock(NOW), client)
        assert await reject(v, sign(claims(iss="https://evil.example.com"))) == "issuer mismatch"
        assert await reject(v, sign(claims(aud="someone-else"))) == "audience mismatch"
        assert await reject(v, sign(claims(aud=None))) == "missing claim aud"


async def test_missing_scope_and_required_claims(jwks_server: tuple[JwksServer, str]) -> None:
    _, url = jwks_server
    async with httpx.AsyncClient() as client:
        v = make_validator(url, FrozenClock(NOW), client)
        assert (await reject(v, sign(claims(scope="openid")))).startswith("missing scope")
        assert (await reject(v, sign(claims(scope=None)))).startswith("missing scope")
        roles = "urn:zitadel:iam:org:project:roles"
        v2 = make_validator(
            url, FrozenClock(NOW), client, required_claims={roles: "ziti-admin", "azp": "cli"}
        )
        ok = claims(azp="cli", **{roles: {"ziti-admin": {"339100000000000001": "acme.zitadel.cloud"}}})
        assert (await v2.validate(sign(ok)))["azp"] == "cli"
        assert (await reject(v2, sign(claims(azp="cli", **{roles: {"ops": {}}})))).startswith("claim urn:")
        assert (await reject(v2, sign(claims(azp=["other"], **{roles: {"ziti-admin": {}}})))).startswith(
            "claim azp"
        )


async def test_unknown_kid_then_rotation_with_rate_limited_refresh(
    jwks_server: tuple[JwksServer, str],
) -> None:
    server, url = jwks_server
    clock = FrozenClock(NOW)
    async with httpx.AsyncClient() as client:
        v = make_validator(url, clock, client, min_refresh_interval=30)
        await v.validate(sign(claims()))
        assert server.requests == 1
        new_token = sign(claims(exp=int(NOW) + 3600), key=RSA2, kid="k2")
        # k2 unknown and the last fetch is < 30 s old: no refresh, rejected.
        clock.advance(10)
        assert await reject(v, new_token) == "no matching key in JWKS"
        assert server.requests == 1
        # The IdP rotates: k2 appears. After the rate-limit window an unknown kid triggers one refresh.
        server.keys = [public_jwk(RSA1, "k1"), public_jwk(RSA2, "k2")]
        clock.advance(21)
        assert (await v.validate(new_token))["sub"]
        assert server.requests == 2
        # A flood of forged kids inside the window causes no further fetches.
        for i in range(20):
            await reject(v, sign(claims(), kid=f"forged-{i}"))
        assert server.requests == 2
        clock.advance(31)
        results = await asyncio.gather(
            *(v.validate(sign(claims(exp=int(NOW) + 3600), kid=f"x{i}")) for i in range(5)),
            return_exceptions=True,
        )
        assert all(isinstance(r, TokenRejected) for r in results)
        assert server.requests == 3  # concurrent unknown kids share one refresh
        # Old key removed by the IdP: it keeps working only until the cache expires.
        server.keys = [public_jwk(RSA2, "k2")]
        clock.advance(3601)
        assert await reject(v, sign(claims(exp=int(clock.now) + 60))) == "no matching key in JWKS"


async def test_tampered_signature_and_alg_attacks(jwks_server: tuple[JwksServer, str]) -> None:
    _, url = jwks_server
    async with httpx.AsyncClient() as client:
        v = make_validator(url, FrozenClock(NOW), client)
        token = sign(claims())
        head, payload, sig = token.split(".")
        forged_payload = (
            base64.urlsafe_b64encode(json.dumps(claims(sub="admin")).encode()).rstrip(b"=").decode()
        )
        assert await reject(v, f"{head}.{forged_payload}.{sig}") == "bad signature"
        flipped = sig[:-4] + ("AAAA" if sig[-4:] != "AAAA" else "BBBB")
        assert await reject(v, f"{head}.{payload}.{flipped}") == "bad signature"
        # alg=none
        none_head = base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT","kid":"k1"}').rstrip(b"=").decode()
        assert await reject(v, f"{none_head}.{payload}.") == "algorithm not allowed"
        assert await reject(v, jwt.encode(claims(), "", algorithm="none")) == "algorithm not allowed"
        # HS256 keyed with the public key PEM (key confusion): must never be tried.
        pem = RSA1.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
        hs_head = base64.urlsafe_b64encode(b'{"alg":"HS256","typ":"JWT","kid":"k1"}').rstrip(b"=").decode()
        mac = hmac.new(pem, f"{hs_head}.{payload}".encode(), hashlib.sha256).digest()
        hs_sig = base64.urlsafe_b64encode(mac).rstrip(b"=").decode()
        assert await reject(v, f"{hs_head}.{payload}.{hs_sig}") == "algorithm not allowed"
        # Token claims RS384 but the JWK pins RS256.
        assert await reject(v, sign(claims(), alg="RS384")) == "key algorithm mismatch"
        for garbage in ("", "abc", "a.b.c", "x" * 20000):
            with pytest.raises(TokenRejected):
                await v.validate(garbage)


async def test_no_kid_and_ec_keys(jwks_server: tuple[JwksServer, str]) -> None:
    server, url = jwks_server
    async with httpx.AsyncClient() as client:
        v = make_validator(url, FrozenClock(NOW), client)
        # Single RSA key: a token without kid may use it.
        assert (await v.validate(sign(claims(), kid=None)))["iss"] == ISSUER
        server.keys = [public_jwk(RSA1, "k1"), public_jwk(RSA2, "k2"), public_jwk(EC1, "e1")]
        v2 = make_validator(url, FrozenClock(NOW), client)
        # Two RSA keys: without kid the choice is ambiguous.
        assert await reject(v2, sign(claims(), kid=None)) == "no matching key in JWKS"
        assert (await v2.validate(sign(claims(), key=EC1, kid="e1", alg="ES256")))["sub"]
        # An RSA token pointing at the EC key cannot verify.
        assert await reject(v2, sign(claims(), key=RSA1, kid="e1")) == "key unusable for algorithm"
        server.keys = [public_jwk(RSA1, "k1", use="enc")]
        v3 = make_validator(url, FrozenClock(NOW), client)
        assert await reject(v3, sign(claims())) == "no matching key in JWKS"


async def test_stale_keys_are_kept_when_the_jwks_refresh_fails(jwks_server: tuple[JwksServer, str]) -> None:
    server, url = jwks_server
    clock = FrozenClock(NOW)
    async with httpx.AsyncClient() as client:
        v = make_validator(url, clock, client)
        await v.validate(sign(claims(exp=int(NOW) + 7200)))
        server.status = 503
        clock.advance(3601)
        assert (await v.validate(sign(claims(exp=int(NOW) + 7200))))["sub"]
        assert server.requests == 2


async def test_jwks_unavailable(jwks_server: tuple[JwksServer, str]) -> None:
    server, url = jwks_server
    server.status = 503
    async with httpx.AsyncClient() as client:
        v = make_validator(url, FrozenClock(NOW), client)
        assert await reject(v, sign(claims())) == "no matching key in JWKS"
    v2 = JwtBearerValidator(
        JwtBearerConfig(
            jwks_url="http://127.0.0.1:9/keys", issuer=ISSUER, audience=AUDIENCE, http_timeout=2, accept_any_client=True
        ),
        clock=FrozenClock(NOW),
    )
    try:
        assert await reject(v2, sign(claims())) == "no matching key in JWKS"
    finally:
        await v2.aclose()


async def test_authorization_header_parsing(jwks_server: tuple[JwksServer, str]) -> None:
    _, url = jwks_server
    async with httpx.AsyncClient() as client:
        v = make_validator(url, FrozenClock(NOW), client)
        for header in (None, "", "Basic dXNlcjpwYXNz", "Bearer", "Bearer   "):
            with pytest.raises(TokenRejected, match="^invalid token$"):
                await v.authenticate(header)
        assert (await v.authenticate("bearer " + sign(claims())))["sub"]


def test_config_validation() -> None:
    with pytest.raises(ValueError):
        JwtBearerConfig(jwks_url="file:///etc/keys", issuer=ISSUER, audience=AUDIENCE)
    with pytest.raises(ValueError):
        JwtBearerConfig(jwks_url="https://x/keys", issuer=ISSUER, audience=AUDIENCE, algorithms=("HS256",))
    with pytest.raises(ValueError):
        JwtBearerConfig(jwks_url="https://x/keys", issuer="", audience=AUDIENCE)
    with pytest.raises(ValueError):
        JwtBearerConfig(jwks_url="https://x/keys", issuer=ISSUER, audience=())
