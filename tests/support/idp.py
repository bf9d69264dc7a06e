"""A test identity provider: an RSA key, its JWKS served over loopback, and tokens signed with it."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.support.live import live_server


class TestIdp:
    __test__ = False

    def __init__(self, issuer: str, audience: str = "openziti") -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = uuid.uuid4().hex[:8]
        self.issuer = issuer
        self.audience = audience
        self.jwks_url = ""

    def jwks(self) -> dict[str, Any]:
        public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        public.update(kid=self.kid, use="sig", alg="RS256")
        return {"keys": [public]}

    def token(self, **claims: Any) -> str:
        now = int(time.time())
        body = {
            "iss": self.issuer,
            "aud": self.audience,
            "iat": now,
            "exp": now + 300,
            "sub": uuid.uuid4().hex,
        }
        body.update(claims)
        return jwt.encode(body, self.key, algorithm="RS256", headers={"kid": self.kid})


@contextmanager
def running_idp(issuer: str = "https://idp.test/", audience: str = "openziti") -> Iterator[TestIdp]:
    idp = TestIdp(issuer, audience)

    async def jwks(request: Request) -> JSONResponse:
        return JSONResponse(idp.jwks())

    with live_server(Starlette(routes=[Route("/jwks", jwks)])) as url:
        idp.jwks_url = f"{url}/jwks"
        yield idp
