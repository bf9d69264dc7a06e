"""The full stack per IdP: ziti-scim (SCIM + webhooks) ↔ controller emulator ↔ test IdPs shaped as the real.

Each IdP gets its own test issuer (a JWKS on loopback) named like the real one, and an ext-jwt signer on
the emulator configured as ``docs/idp/<idp>.md`` says (``claimsProperty`` from the source's preset,
``useExternalId: true``). Fake IdP APIs (authentik's users, ZITADEL's user service) run on loopback too.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from app.config import Config, PolicyConfig, SourceConfig, ZitiConfig, hash_token
from app.server import create_app
from app.webhooks.routes import WebhookReceiver, webhook_receiver
from tests.support.emulator import ADMIN_PASSWORD
from tests.support.idp import TestIdp, running_idp
from tests.support.live import live_server
from ziti_emulator import EmulatorState, EmulatorThread

# Issuers and audiences shaped like each IdP's (research notes; docs/idp/*.md).
ISSUERS = {
    "authentik": ("https://authentik.example.com/application/o/ziti/", "ziti-client-8f2c"),
    "zitadel": ("https://acme.zitadel.cloud", "339200000000000003"),
    "asgardeo": ("https://api.asgardeo.io/t/myorg/oauth2/token", "Xq3ZitiClientId"),
    "entra": ("https://login.microsoftonline.com/72f988bf-86f1-41af-91ab-2d7cd011db47/v2.0", "api://ziti"),
    "okta": ("https://example.okta.com/oauth2/default", "api://default"),
}
CLAIMS_PROPERTY = {
    "authentik": "sub",
    "zitadel": "sub",
    "asgardeo": "email",
    "entra": "preferred_username",
    "okta": "uid",
}


@pytest.fixture(scope="session")
def idps() -> Iterator[dict[str, TestIdp]]:
    with (
        running_idp(*ISSUERS["authentik"]) as authentik,
        running_idp(*ISSUERS["zitadel"]) as zitadel,
        running_idp(*ISSUERS["asgardeo"]) as asgardeo,
        running_idp(*ISSUERS["entra"]) as entra,
        running_idp(*ISSUERS["okta"]) as okta,
    ):
        yield {"authentik": authentik, "zitadel": zitadel, "asgardeo": asgardeo, "entra": entra, "okta": okta}


@dataclass
class FakeApi:
    """A loopback stand-in for an IdP's REST API: ``users`` by id, ``grants``; records the tokens it saw."""

    url: str = ""
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    grants: list[dict[str, Any]] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)
    #: authentik groups by pk (``GroupSerializer``: pk, name, users[<user pk>]).
    groups: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: authentik: whether the token's user is a superuser (``/core/users/me/``).
    superuser: bool = True
    #: authentik: user pks the token may not see (object-level permissions: 404).
    hidden: set[str] = field(default_factory=set)


def _fake_api_app(api: FakeApi, token: str) -> Starlette:
    def authorized(request: Request) -> bool:
        presented = request.headers.get("authorization", "")
        api.tokens.append(presented)
        return presented == f"Bearer {token}"

    async def authentik_user(request: Request) -> JSONResponse:
        if not authorized(request):
            return JSONResponse({"detail": "Token invalid/expired"}, status_code=403)
        pk = request.path_params["pk"]
        user = None if pk in api.hidden else api.users.get(pk)
        return JSONResponse(user) if user else JSONResponse({"detail": "Not found."}, status_code=404)

    async def authentik_me(request: Request) -> JSONResponse:
        if not authorized(request):
            return JSONResponse({"detail": "Token invalid/expired"}, status_code=403)
        return JSONResponse({"user": {"pk": 1, "username": "ziti-scim", "is_superuser": api.superuser}})

    def authentik_page(request: Request, items: list[dict[str, Any]]) -> JSONResponse:
        # authentik's pagination (authentik/api/pagination.py): page numbers, "next" 0 on the last page.
        page, size = int(request.query_params.get("page", 1)), int(request.query_params.get("page_size", 20))
        chunk = items[(page - 1) * size : page * size]
        following = page + 1 if page * size < len(items) else 0
        return JSONResponse({"pagination": {"next": following, "count": len(items)}, "results": chunk})

    async def authentik_users(request: Request) -> JSONResponse:
        if not authorized(request):
            return JSONResponse({"detail": "Token invalid/expired"}, status_code=403)
        return authentik_page(request, [u for pk, u in api.users.items() if pk not in api.hidden])

    async def authentik_groups(request: Request) -> JSONResponse:
        if not authorized(request):
            return JSONResponse({"detail": "Token invalid/expired"}, status_code=403)
        return authentik_page(request, list(api.groups.values()))

    async def authentik_group(request: Request) -> JSONResponse:
        if not authorized(request):
            return JSONResponse({"detail": "Token invalid/expired"}, status_code=403)
        group = api.groups.get(request.path_params["pk"])
        return JSONResponse(group) if group else JSONResponse({"detail": "Not found."}, status_code=404)

    async def zitadel_user(request: Request) -> JSONResponse:
        if not authorized(request):
            return JSONResponse({"code": 16, "message": "unauthenticated"}, status_code=401)
        user = api.users.get(request.path_params["user_id"])
        if user is None:
            return JSONResponse({"code": 5, "message": "User could not be found"}, status_code=404)
        return JSONResponse({"details": {}, "user": user})

    def page(items: list[dict[str, Any]], body: dict[str, Any]) -> list[dict[str, Any]]:
        query = body.get("query", {})
        offset, limit = int(query.get("offset", 0)), int(query.get("limit", 100))
        return items[offset : offset + limit]

    async def zitadel_users(request: Request) -> JSONResponse:
        if not authorized(request):
            return JSONResponse({"code": 16, "message": "unauthenticated"}, status_code=401)
        result = page(list(api.users.values()), json.loads(await request.body()))
        return JSONResponse({"details": {"totalResult": str(len(api.users))}, "result": result})

    async def zitadel_grants(request: Request) -> JSONResponse:
        if not authorized(request):
            return JSONResponse({"code": 16, "message": "unauthenticated"}, status_code=401)
        result = page(api.grants, json.loads(await request.body()))
        return JSONResponse({"details": {"totalResult": str(len(api.grants))}, "result": result})

    return Starlette(
        routes=[
            Route("/api/v3/core/users/me/", authentik_me),
            Route("/api/v3/core/users/", authentik_users),
            Route("/api/v3/core/users/{pk}/", authentik_user),
            Route("/api/v3/core/groups/", authentik_groups),
            Route("/api/v3/core/groups/{pk}/", authentik_group),
            Route("/v2/users/{user_id}", zitadel_user),
            Route("/v2/users", zitadel_users, methods=["POST"]),
            Route("/management/v1/users/grants/_search", zitadel_grants, methods=["POST"]),
        ]
    )


@pytest.fixture
def fake_api() -> Iterator[FakeApi]:
    api = FakeApi()
    with live_server(_fake_api_app(api, API_TOKEN)) as url:
        api.url = url
        yield api


API_TOKEN = "idp-api-token-0123456789abcdef"


@dataclass
class Stack:
    url: str
    app: Any
    emulator: EmulatorThread
    idps: dict[str, TestIdp]
    sources: dict[str, SourceConfig]
    signers: dict[str, str]

    @property
    def state(self) -> EmulatorState:
        return self.emulator.state

    @property
    def receiver(self) -> WebhookReceiver:
        receiver = webhook_receiver(self.app)
        assert receiver is not None
        return receiver

    def pin_clock(self, now: float) -> None:
        self.receiver.clock = lambda: now

    def identity(self, external_id: str) -> Any:
        """The controller's identity, once every write so far has converged (it runs after the answer)."""
        self.settle()
        return self.state.identity_by_external_id(external_id)

    def settle(self, timeout: float = 20.0) -> None:
        """Wait until no user is waiting to be converged (``ziti_scim_pending_users`` is 0)."""
        deadline = time.monotonic() + timeout
        while "ziti_scim_pending_users 0.0" not in httpx.get(f"{self.url}/metrics", timeout=10).text:
            assert time.monotonic() < deadline, f"users still pending after {timeout} s"
            time.sleep(0.02)

    def login(self, idp: str, **claims: Any) -> httpx.Response:
        token = self.idps[idp].token(**claims)
        return httpx.post(
            f"{self.emulator.client_url}/authenticate",
            params={"method": "ext-jwt"},
            headers={"Authorization": f"Bearer {token}"},
            json={},
            timeout=30,
        )

    def scim(self, token: str) -> httpx.Client:
        return httpx.Client(
            base_url=f"{self.url}/scim/v2",
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/scim+json"},
            timeout=30,
        )


def source(
    name: str, kind: str, *tokens: str, mapping: dict[str, Any] | None = None, **options: Any
) -> SourceConfig:
    return SourceConfig(
        name=name,
        kind=kind,
        token_hashes=tuple(hash_token(t) for t in tokens),
        policy=PolicyConfig(),
        mapping=mapping or {"preset": kind},
        options=options,
    )


StackFactory = Callable[..., Stack]


@pytest.fixture
def make_stack(emulator: EmulatorThread, idps: dict[str, TestIdp], tmp_path: Path) -> Iterator[StackFactory]:
    """``make_stack(*sources, database_url=None)``: a live ziti-scim with those sources, a signer per IdP.

    Each stack has a fresh SQLite database (migrated at start-up), so tests can reuse the IdPs' source names.
    """
    servers: list[Any] = []

    def factory(*sources: SourceConfig, database_url: str | None = None) -> Stack:
        signers = {}
        for idp_name, idp in idps.items():
            signer = emulator.state.create_signer(
                {
                    "name": f"{idp_name}-signer",
                    "issuer": idp.issuer,
                    "audience": idp.audience,
                    "jwksEndpoint": idp.jwks_url,
                    "claimsProperty": CLAIMS_PROPERTY[idp_name],
                    "useExternalId": True,
                    "enabled": True,
                }
            )
            signers[idp_name] = str(signer.id)
        config = Config(
            database_url=database_url or str(tmp_path / f"store-{len(servers)}.db"),
            sources={s.name: s for s in sources},
            ziti=ZitiConfig(
                url=emulator.url, username="admin", password=ADMIN_PASSWORD
            ),
        )
        app = create_app(config)
        server = live_server(app)
        url = server.__enter__()
        servers.append(server)
        return Stack(
            url=url, app=app, emulator=emulator, idps=idps, sources=dict(config.sources), signers=signers
        )

    yield factory
    for server in reversed(servers):
        server.__exit__(None, None, None)
