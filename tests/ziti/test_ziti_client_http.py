"""The client over real HTTP(S): a tiny Starlette controller stand-in served by uvicorn on 127.0.0.1.

Proves the plain-HTTP path and the zt-session header end to end, CA-bundle verification, refusal of an
unknown CA, ``insecure=True`` (with a single WARNING), and ``method=cert`` with a client certificate
demanded by the server's TLS layer.
"""

from __future__ import annotations

import logging
import ssl
import uuid
from dataclasses import dataclass, field
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from ziti_support import PASSWORD, USERNAME

from app.ziti.client import ZitiClient
from app.ziti.errors import ZitiTLSError, ZitiUnavailable
from app.ziti.retry import RetryPolicy
from app.ziti.session import CertCredentials, PasswordCredentials
from tests.support.live import live_server
from tests.support.tls import TlsFiles

API = "/edge/management/v1"
FAST = RetryPolicy(max_attempts=2, base_delay=0.01, max_delay=0.02, total_deadline=5.0)


@dataclass
class MiniController:
    """Just enough of the Edge Management API: authenticate, list/disable identities, logout."""

    tokens: set[str] = field(default_factory=set)
    auth_methods: list[str] = field(default_factory=list)
    seen_sessions: list[str | None] = field(default_factory=list)
    identities: list[dict[str, Any]] = field(
        default_factory=lambda: [{"id": f"id{i}", "name": f"user{i}"} for i in range(7)]
    )

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route(f"{API}/authenticate", self.authenticate, methods=["POST"]),
                Route(f"{API}/identities", self.list_identities, methods=["GET"]),
                Route(f"{API}/identities/{{id}}/disable", self.disable, methods=["POST"]),
                Route(f"{API}/current-api-session", self.logout, methods=["DELETE"]),
            ]
        )

    @staticmethod
    def _error(status: int, code: str) -> JSONResponse:
        return JSONResponse(
            {"error": {"code": code, "message": code.lower(), "requestId": "r"}, "meta": {}},
            status_code=status,
        )

    async def authenticate(self, request: Request) -> Response:
        method = request.query_params.get("method", "")
        self.auth_methods.append(method)
        body = await request.json()
        if method == "password" and body != {"username": USERNAME, "password": PASSWORD}:
            return self._error(401, "INVALID_AUTH")
        if method not in ("password", "cert"):
            return self._error(400, "COULD_NOT_VALIDATE")
        token = str(uuid.uuid4())
        self.tokens.add(token)
        return JSONResponse(
            {"data": {"token": token, "expirationSeconds": 1800}, "meta": {}}, headers={"zt-session": token}
        )

    def _authorized(self, request: Request) -> bool:
        token = request.headers.get("zt-session")
        self.seen_sessions.append(token)
        return token in self.tokens

    async def list_identities(self, request: Request) -> Response:
        if not self._authorized(request):
            return self._error(401, "UNAUTHORIZED")
        limit = min(int(request.query_params.get("limit", "10")), 3)  # small pages: paging must kick in
        offset = int(request.query_params.get("offset", "0"))
        return JSONResponse(
            {
                "data": self.identities[offset : offset + limit],
                "meta": {
                    "pagination": {"limit": limit, "offset": offset, "totalCount": len(self.identities)}
                },
            }
        )

    async def disable(self, request: Request) -> Response:
        if not self._authorized(request):
            return self._error(401, "UNAUTHORIZED")
        return Response(b"", status_code=200)  # the controller's empty-body quirk

    async def logout(self, request: Request) -> Response:
        self.tokens.discard(request.headers.get("zt-session", ""))
        return JSONResponse({"data": {}, "meta": {}})


async def test_plain_http_session_header_end_to_end() -> None:
    mini = MiniController()
    with live_server(mini.app()) as url:
        async with ZitiClient(url, PasswordCredentials(USERNAME, PASSWORD), retry=FAST) as client:
            assert client.base_url == f"{url}{API}"
            names = [i["name"] for i in await client.list_identities()]
            await client.disable_identity("id3")
            mini.tokens.clear()  # controller forgot the session: the client must renew it
            await client.disable_identity("id4")
        assert names == [f"user{i}" for i in range(7)]
        assert mini.auth_methods == ["password", "password"]
        first, second = mini.seen_sessions[:4], mini.seen_sessions[-1]
        assert len(set(first)) == 1 and first[0] is not None and second not in first
        assert mini.tokens == set()  # logged out on close


async def test_tls_verified_against_the_ca_bundle(tls_files: TlsFiles) -> None:
    mini = MiniController()
    with live_server(
        mini.app(), ssl_certfile=str(tls_files.server_cert), ssl_keyfile=str(tls_files.server_key)
    ) as url:
        async with ZitiClient(
            url, PasswordCredentials(USERNAME, PASSWORD), ca_bundle=str(tls_files.ca_cert), retry=FAST
        ) as client:
            assert len(await client.list_identities()) == 7


async def test_unknown_ca_is_refused_without_retries(tls_files: TlsFiles) -> None:
    mini = MiniController()
    with live_server(
        mini.app(), ssl_certfile=str(tls_files.server_cert), ssl_keyfile=str(tls_files.server_key)
    ) as url:
        async with ZitiClient(
            url, PasswordCredentials(USERNAME, PASSWORD), ca_bundle=str(tls_files.other_ca_cert), retry=FAST
        ) as client:
            with pytest.raises(ZitiTLSError, match="certificate verify failed"):
                await client.list_identities()
            assert client.stats.transport_errors == 1 and client.stats.retries == 0
        assert mini.auth_methods == []


async def test_insecure_skips_verification_and_warns_once(
    tls_files: TlsFiles, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="app.ziti.client")
    mini = MiniController()
    with live_server(
        mini.app(), ssl_certfile=str(tls_files.server_cert), ssl_keyfile=str(tls_files.server_key)
    ) as url:
        async with ZitiClient(
            url, PasswordCredentials(USERNAME, PASSWORD), insecure=True, retry=FAST
        ) as client:
            await client.list_identities()
            await client.list_identities()
    warnings = [r for r in caplog.records if "DISABLED" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING


async def test_certificate_authentication(tls_files: TlsFiles) -> None:
    mini = MiniController()
    with live_server(
        mini.app(),
        ssl_certfile=str(tls_files.server_cert),
        ssl_keyfile=str(tls_files.server_key),
        ssl_ca_certs=str(tls_files.ca_cert),
        ssl_cert_reqs=ssl.CERT_REQUIRED,
    ) as url:
        creds = CertCredentials(tls_files.client_cert, tls_files.client_key)
        async with ZitiClient(url, creds, ca_bundle=str(tls_files.ca_cert), retry=FAST) as client:
            assert len(await client.list_identities()) == 7
        assert mini.auth_methods == ["cert"]

        # Without a client certificate the server's TLS layer refuses the connection.
        async with ZitiClient(
            url, PasswordCredentials(USERNAME, PASSWORD), ca_bundle=str(tls_files.ca_cert), retry=FAST
        ) as client:
            with pytest.raises(ZitiUnavailable):
                await client.list_identities()
        assert mini.auth_methods == ["cert"]
