"""authentik notification webhooks: traces 15/16 through the secret check and parser, plus rejections,
and the API fetcher against a real HTTP server impersonating authentik."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from scim2_models import User
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp
from webhook_support import load_trace, trace_names

from app.idp.authentik.api import AuthentikUserFetcher
from app.idp.authentik.webhook import AuthentikWebhook, authentik_user_to_scim, parse_authentik
from app.webhooks import (
    FetchUser,
    IdpFetchError,
    Ignored,
    InMemoryReplayGuard,
    UserDelete,
    UserGroups,
    UserUpsert,
    WebhookInvalid,
    WebhookRejected,
)
from app.webhooks.events import FetchGroup, GroupDelete
from tests.support.clock import FrozenClock

SECRET_HEADER = "Bearer whk_1b9d7f3a5c2e4a6b8d0f"
GROUP = "5d0a6c2e-91b4-4f37-8e2a-c6b19d3f7a05"
DEFAULT = "15-webhook-model-created-user-default.json"
CUSTOM = "16-webhook-model-created-user-custom-mapping.json"
CREATED = 1776762843.512345  # trace 16 "created": 2026-04-21T09:14:03.512345Z

JDOE = {
    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
    "externalId": "7",
    "userName": "jdoe",
    "name": {"formatted": "Jane Doe", "givenName": "Jane", "familyName": "Doe"},
    "displayName": "Jane Doe",
    "emails": [{"value": "jane.doe@example.com", "primary": True, "type": "work"}],
    "active": True,
}


def _delivery(name: str) -> tuple[dict[str, str], bytes, dict[str, Any]]:
    trace = load_trace("authentik", name)
    # authentik posts with requests' json=, i.e. json.dumps() with default separators.
    body = json.dumps(trace["body"]).encode()
    assert len(body) == int(trace["headers"]["Content-Length"])
    return dict(trace["headers"]), body, trace


def _hook(now: float = CREATED, values: list[str] | str = SECRET_HEADER, **kw: Any) -> AuthentikWebhook:
    clock = FrozenClock(now)
    return AuthentikWebhook("Authorization", values, InMemoryReplayGuard(clock=clock), clock=clock, **kw)


GROUP_DEFAULT = "17-webhook-model-updated-group-default.json"


def test_every_webhook_trace_is_covered() -> None:
    assert trace_names("authentik") == [DEFAULT, CUSTOM, GROUP_DEFAULT]


async def test_trace_17_group_side_membership_change_re_reads_the_group() -> None:
    headers, body, _ = _delivery(GROUP_DEFAULT)
    first = await _hook().handle({**headers, "Authorization": SECRET_HEADER}, body)
    # The event's pk is UUID.hex; the API's is dashed: both name the same group.
    assert first.events == (FetchGroup(GROUP),) and first.replay_key is None


async def test_trace_16_custom_mapping() -> None:
    headers, body, trace = _delivery(CUSTOM)
    assert headers["Authorization"] == SECRET_HEADER
    result = await _hook().handle(headers, body)
    assert result.source == "authentik"
    assert result.events == (UserUpsert("7", JDOE), UserGroups("7", ("ziti-admins",)))
    assert result.delivery_id == trace["body"]["event_uuid"]
    assert result.replay_key == "authentik:" + trace["body"]["event_uuid"]
    assert User.model_validate(JDOE).user_name == "jdoe"


async def test_trace_15_default_body_needs_the_header_mapping() -> None:
    headers, body, _ = _delivery(DEFAULT)
    # As recorded (no header mapping configured) the delivery carries no secret: rejected.
    with pytest.raises(WebhookRejected) as err:
        await _hook().handle(headers, body)
    assert err.value.reason == "missing shared secret"
    # With the header mapping added, the default body names the user by pk only.
    result = await _hook().handle({**headers, "authorization": SECRET_HEADER}, body)
    assert result.events == (FetchUser("7"),)
    assert result.delivery_id is None and result.replay_key is None  # nothing to replay-protect


# --- rejections ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value", ["Bearer whk_wrong", "whk_1b9d7f3a5c2e4a6b8d0f", "Bearer whk_1b9d7f3a5c2e4a6b8d0", ""]
)
async def test_wrong_secret_header_rejected(value: str) -> None:
    headers, body, _ = _delivery(CUSTOM)
    headers["Authorization"] = value
    with pytest.raises(WebhookRejected, match="webhook rejected") as err:
        await _hook().handle(headers, body)
    assert err.value.status == 401
    assert "whk_" not in repr(err.value)


async def test_secret_in_another_header_name_and_rotation() -> None:
    headers, body, _ = _delivery(CUSTOM)
    del headers["Authorization"]
    clock = FrozenClock(CREATED)
    hook = AuthentikWebhook("X-Ziti-Secret", ["old", "new"], InMemoryReplayGuard(clock=clock), clock=clock)
    with pytest.raises(WebhookRejected):
        await hook.handle({**headers, "X-Ziti-Secret": "other"}, body)
    assert (await hook.handle({**headers, "x-ziti-secret": "new"}, body)).events[0] == UserUpsert("7", JDOE)


async def test_a_redelivered_event_uuid_is_a_duplicate() -> None:
    headers, body, trace = _delivery(CUSTOM)
    hook = _hook()
    await hook.handle(headers, body)
    again = await hook.handle(headers, body)
    assert again.duplicate and again.events == ()
    other = json.dumps({**trace["body"], "action": "model_updated"}).encode()
    assert (await hook.handle(headers, other)).duplicate


async def test_identical_default_bodies_are_both_taken() -> None:
    # Issue 15 item 10: the default body has no event id nor time (authentik/events/models.py
    # send_webhook: {"body": notification.body, "severity", "user_email", ...}); two edits of one user
    # through the same screen send the same bytes. Each only triggers a re-read: both are taken.
    headers, body, _ = _delivery(DEFAULT)
    headers["Authorization"] = SECRET_HEADER
    hook = _hook()
    first, second = await hook.handle(headers, body), await hook.handle(headers, body)
    assert first.events == second.events == (FetchUser("7"),) and not second.duplicate


async def test_old_and_future_created_rejected() -> None:
    headers, body, _ = _delivery(CUSTOM)
    with pytest.raises(WebhookRejected) as old:
        await _hook(CREATED + 86401).handle(headers, body)
    assert old.value.reason == "delivery too old"
    with pytest.raises(WebhookRejected) as future:
        await _hook(CREATED - 301).handle(headers, body)
    assert future.value.reason == "delivery timestamp in the future"
    assert (await _hook(CREATED + 86399).handle(headers, body)).events


def test_configuration_errors() -> None:
    with pytest.raises(ValueError):
        AuthentikWebhook("Authorization", [], InMemoryReplayGuard())
    with pytest.raises(ValueError):
        AuthentikWebhook("", ["x"], InMemoryReplayGuard())


# --- parsing variants ----------------------------------------------------------------------------


def _summary(text: str) -> bytes:
    return json.dumps(
        {"body": text, "severity": "notice", "user_email": "a@b", "user_username": "ak"}
    ).encode()


def test_default_body_variants() -> None:
    _, body, trace = _delivery(DEFAULT)
    deleted = trace["body"]["body"].replace("model_created", "model_deleted", 1)
    assert parse_authentik(_summary(deleted)).events == (UserDelete("7"),)
    updated = trace["body"]["body"].replace("model_created", "model_updated", 1)
    assert parse_authentik(_summary(updated)).events == (FetchUser("7"),)
    # Issue 15 item 6: members added from the group's side, a rename, a deletion: model_* on the group.
    group = trace["body"]["body"].replace("'model_name': 'user', 'pk': 7", f"'model_name': 'group', 'pk': '{GROUP}'")
    assert parse_authentik(_summary(group)).events == (FetchGroup(GROUP),)
    deleted = group.replace("model_created", "model_deleted")
    assert parse_authentik(_summary(deleted)).events == (GroupDelete(GROUP),)
    with pytest.raises(WebhookInvalid):
        parse_authentik(_summary(group.replace(GROUP, "not-a-uuid")))
    app = trace["body"]["body"].replace("'model_name': 'user'", "'model_name': 'application'")
    assert isinstance(parse_authentik(_summary(app)).events[0], Ignored)
    # Non-literal values in the context repr: fall back to extracting the model reference.
    odd = (
        "model_updated: {'model': {'app': 'authentik_core', 'model_name': 'user', 'pk': 12, 'name': 'X'}, "
        "'when': datetime.datetime(2026, 1, 1)}"
    )
    assert parse_authentik(_summary(odd)).events == (FetchUser("12"),)
    for text in (
        "Hello from a custom message",
        "login: {'auth_method': 'password'}",
        "model_created: {'model': (1",
    ):
        assert isinstance(parse_authentik(_summary(text)).events[0], Ignored)


def test_custom_body_variants() -> None:
    _, _, trace = _delivery(CUSTOM)
    base = trace["body"]
    deleted = {**base, "action": "model_deleted", "user": None}
    assert parse_authentik(json.dumps(deleted).encode()).events == (UserDelete("7"),)
    gone = {**base, "user": None}
    assert parse_authentik(json.dumps(gone).encode()).events == (FetchUser("7"),)
    inactive = {**base, "user": {**base["user"], "is_active": False, "name": "Cher", "email": ""}}
    upsert, _groups = parse_authentik(json.dumps(inactive).encode()).events
    assert isinstance(upsert, UserUpsert)
    assert upsert.user["active"] is False
    assert upsert.user["name"] == {"formatted": "Cher", "givenName": "Cher"}
    assert "emails" not in upsert.user
    group = {**base, "model": {"app": "authentik_core", "model_name": "group", "pk": GROUP}, "user": None}
    assert parse_authentik(json.dumps(group).encode()).events == (FetchGroup(GROUP),)
    other = {**base, "model": {"app": "authentik_core", "model_name": "token", "pk": "u-1"}}
    assert isinstance(parse_authentik(json.dumps(other).encode()).events[0], Ignored)
    login = {**base, "action": "login"}
    assert isinstance(parse_authentik(json.dumps(login).encode()).events[0], Ignored)
    assert isinstance(parse_authentik(b'{"unexpected": true}').events[0], Ignored)


@pytest.mark.parametrize(
    "body",
    [
        b"nope",
        b"[]",
        json.dumps(
            {"action": "model_created", "model": {"app": "authentik_core", "model_name": "user"}}
        ).encode(),
        json.dumps(
            {
                "action": "model_created",
                "model": {"app": "authentik_core", "model_name": "user", "pk": 7},
                "user": {"pk": 7},
            }
        ).encode(),
    ],
)
def test_invalid_bodies(body: bytes) -> None:
    with pytest.raises(WebhookInvalid):
        parse_authentik(body)


async def test_naive_created_is_utc() -> None:
    headers, _, trace = _delivery(CUSTOM)
    body = json.dumps({**trace["body"], "created": "2026-04-21T09:14:03.512345"}).encode()
    with pytest.raises(WebhookRejected, match="webhook rejected"):
        await _hook(CREATED + 86401).handle(headers, body)
    assert (await _hook(CREATED + 86399).handle(headers, body)).events


async def test_invalid_created_timestamp() -> None:
    headers, _, trace = _delivery(CUSTOM)
    body = json.dumps({**trace["body"], "created": "yesterday"}).encode()
    with pytest.raises(WebhookInvalid):
        await _hook().handle(headers, body)


# --- API fetcher over real HTTP --------------------------------------------------------------------

API_TOKEN = "ak-api-token-5f1e9c"
API_USER = {
    "pk": 7,
    "username": "jdoe",
    "name": "Jane Doe",
    "is_active": True,
    "last_login": None,
    "is_superuser": False,
    "groups": ["0b1d8c1e-3c0e-4a55-9f0e-6d1b7c9a2f10"],
    "groups_obj": [
        {
            "pk": "0b1d8c1e-3c0e-4a55-9f0e-6d1b7c9a2f10",
            "num_pk": 3,
            "name": "ziti-admins",
            "is_superuser": False,
            "parent": None,
            "parent_name": None,
            "attributes": {},
        },
    ],
    "email": "jane.doe@example.com",
    "avatar": "",
    "attributes": {},
    "uid": "d1e178d29df82553538238a6042b7f596ef4d4e188a5d8eea9c54c0a22cc49ef",
    "path": "users",
    "type": "internal",
    "uuid": "3f6d1b2a-9c8e-4a7b-b5d4-2e1f0a9b8c7d",
}


def authentik_api(seen: list[str], *, superuser: bool = True) -> ASGIApp:
    async def me(request: Request) -> Response:
        seen.append(request.url.path)
        return JSONResponse({"user": {**API_USER, "is_superuser": superuser}, "original": None})

    async def user(request: Request) -> Response:
        seen.append(request.url.path)
        if request.headers.get("authorization") != f"Bearer {API_TOKEN}":
            return JSONResponse({"detail": "Token invalid/expired"}, status_code=403)
        pk = request.path_params["pk"]
        if pk == "7":
            return JSONResponse(API_USER)
        if pk == "500":
            return PlainTextResponse("boom", status_code=500)
        if pk == "66":
            return PlainTextResponse("<html>not json</html>")
        if pk == "67":
            return JSONResponse({**API_USER, "pk": 1})
        return JSONResponse({"detail": "Not found."}, status_code=404)

    return Starlette(routes=[Route("/api/v3/core/users/me/", me), Route("/api/v3/core/users/{pk}/", user)])


async def test_fetcher_reads_user_over_http(serve: Callable[[ASGIApp], str]) -> None:
    seen: list[str] = []
    base = serve(authentik_api(seen))
    async with httpx.AsyncClient() as client:
        fetcher = AuthentikUserFetcher(base + "/", API_TOKEN, client=client)
        assert await fetcher.resolve(FetchUser("7")) == (
            UserUpsert("7", JDOE),
            UserGroups("7", ("ziti-admins",), ("0b1d8c1e-3c0e-4a55-9f0e-6d1b7c9a2f10",)),
        )
        assert await fetcher.fetch("8") == (UserDelete("8"),)  # 404 with a superuser token
        await fetcher.aclose()  # shared client stays open
        assert not client.is_closed
    assert seen == ["/api/v3/core/users/7/", "/api/v3/core/users/8/", "/api/v3/core/users/me/"]


async def test_a_404_without_a_token_that_sees_everything_deletes_nothing(
    serve: Callable[[ASGIApp], str],
) -> None:
    # authentik answers 404 for a user the token's user has no (object) permission on (authentik/rbac):
    # only a superuser token proves the user is gone.
    base = serve(authentik_api([], superuser=False))
    fetcher = AuthentikUserFetcher(base, API_TOKEN)
    try:
        (ignored,) = await fetcher.fetch("8")
        assert isinstance(ignored, Ignored) and "nothing deleted" in ignored.reason
        assert not await fetcher.sees_everything()
    finally:
        await fetcher.aclose()


@pytest.mark.parametrize("pk", ["500", "66", "67", "../7", "7/../../x"])
async def test_fetcher_errors(serve: Callable[[ASGIApp], str], pk: str) -> None:
    base = serve(authentik_api([]))
    fetcher = AuthentikUserFetcher(base, API_TOKEN)
    try:
        with pytest.raises(IdpFetchError):
            await fetcher.fetch(pk)
    finally:
        await fetcher.aclose()


async def test_fetcher_bad_token_never_leaks_it(serve: Callable[[ASGIApp], str]) -> None:
    base = serve(authentik_api([]))
    fetcher = AuthentikUserFetcher(base, "wrong-token-xyz")
    try:
        with pytest.raises(IdpFetchError) as err:
            await fetcher.fetch("7")
    finally:
        await fetcher.aclose()
    assert "403" in str(err.value) and "wrong-token-xyz" not in str(err.value)


async def test_fetcher_unreachable() -> None:
    fetcher = AuthentikUserFetcher("http://127.0.0.1:9", API_TOKEN, timeout=2)
    try:
        with pytest.raises(IdpFetchError, match="unreachable"):
            await fetcher.fetch("7")
    finally:
        await fetcher.aclose()


def test_fetcher_configuration() -> None:
    with pytest.raises(ValueError):
        AuthentikUserFetcher("authentik.local", API_TOKEN)
    with pytest.raises(ValueError):
        AuthentikUserFetcher("http://x", "")


def test_user_mapping_without_name() -> None:
    user = authentik_user_to_scim({"pk": 9, "username": "svc", "name": "", "is_active": True})
    assert user == {
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "externalId": "9",
        "userName": "svc",
        "active": True,
    }
