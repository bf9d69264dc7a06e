"""Typed methods: request shapes (checked against management.yml), paging, quirks, concurrency, hooks."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx
import jsonschema
import pytest
from ziti_support import BASE, PASSWORD, USERNAME, FakeController, envelope_error, list_envelope

from app.ziti.client import ZitiClient, normalize_base_url
from app.ziti.errors import ZitiDuplicate, ZitiNotFound, ZitiProtocolError
from app.ziti.session import CertCredentials, PasswordCredentials

Validate = Callable[[str, Any], None]
EMPTY_OK: dict[str, Any] = {"data": {}, "meta": {}}


def paged(items: list[dict[str, Any]]) -> Callable[[httpx.Request], httpx.Response]:
    """A list endpoint that honours limit/offset (clamping limit to 500 like the controller)."""

    def handler(request: httpx.Request) -> httpx.Response:
        limit = min(int(request.url.params.get("limit", "10")), 500)
        offset = int(request.url.params.get("offset", "0"))
        return list_envelope(items[offset : offset + limit], limit=limit, offset=offset, total=len(items))

    return handler


async def test_list_pages_with_limit_500_until_total_count(
    make_client: Callable[..., ZitiClient], controller: FakeController
) -> None:
    items = [{"id": f"id{i:05d}", "name": f"user{i}"} for i in range(1234)]
    controller.routes[("GET", "/identities")] = paged(items)
    result = await make_client().list_identities('name contains "user"')
    assert result == items
    calls = controller.calls("GET", "/identities")
    assert [(c.params["limit"], c.params["offset"]) for c in calls] == [
        ("500", "0"),
        ("500", "500"),
        ("500", "1000"),
    ]
    assert all(c.params["filter"] == 'name contains "user"' for c in calls)


async def test_iter_identities_streams_pages(
    make_client: Callable[..., ZitiClient], controller: FakeController
) -> None:
    items = [{"id": f"i{i}"} for i in range(600)]
    controller.routes[("GET", "/identities")] = paged(items)
    seen = [item["id"] async for item in make_client().iter_identities()]
    assert seen == [i["id"] for i in items]
    assert "filter" not in controller.calls("GET", "/identities")[0].params


async def test_empty_list_is_one_request(
    make_client: Callable[..., ZitiClient], controller: FakeController
) -> None:
    controller.route("GET", "/identities", list_envelope([]))
    assert await make_client().list_identities() == []
    assert len(controller.calls("GET", "/identities")) == 1


async def test_paging_that_does_not_advance_is_reported(
    make_client: Callable[..., ZitiClient], controller: FakeController
) -> None:
    # A filter with its own "limit 2" makes the controller ignore offset: same page forever.
    controller.route("GET", "/identities", list_envelope([{"id": "a"}, {"id": "b"}], total=10))
    with pytest.raises(ZitiProtocolError, match="does not advance"):
        await make_client().list_identities('name contains "x" limit 2')
    assert len(controller.calls("GET", "/identities")) == 2


@pytest.mark.parametrize(
    "payload",
    [
        {"data": {}, "meta": {}},
        {"data": [], "meta": {}},
        {"data": [], "meta": {"pagination": {"totalCount": "3"}}},
        {"data": ["x"], "meta": {"pagination": {"totalCount": 1}}},
    ],
)
async def test_malformed_list_is_a_protocol_error(
    make_client: Callable[..., ZitiClient], controller: FakeController, payload: dict[str, Any]
) -> None:
    controller.route("GET", "/auth-policies", httpx.Response(200, json=payload))
    with pytest.raises(ZitiProtocolError):
        await make_client().list_auth_policies()


async def test_find_by_external_id_quotes_the_value(
    make_client: Callable[..., ZitiClient], controller: FakeController
) -> None:
    found = {"id": "a", "externalId": '00u"1\\x', "name": "alice@example.com", "tags": {"scimId": "2819c223"}}
    other = {"id": "b", "externalId": "CORP\tom", "name": "CORP\tom", "tags": {}}
    controller.route("GET", "/identities", list_envelope([found, other]))
    client = make_client()
    assert await client.find_identities_by_external_id('00u"1\\x') == [found]
    assert await client.find_identities_by_name("alice@example.com") == [found]
    assert await client.find_identities_by_tag("scimId", "2819c223") == [found]
    # ParseZqlString would read "CORP\\\\tom" as CORP<TAB>om: search a clean fragment, check exactly
    assert await client.find_identities_by_external_id("CORP\\tom") == []
    assert await client.find_identities_by_name("\\\\") == []
    filters = [c.params["filter"] for c in controller.calls("GET", "/identities")]
    assert filters == [
        'externalId = "00u\\"1\\\\x"',
        'name = "alice@example.com"',
        'tags.scimId = "2819c223"',
        'externalId contains "CORP"',
        "name != null",
    ]
    with pytest.raises(ValueError):
        await client.find_identities_by_external_id("  ")


async def test_get_identity_and_not_found(
    make_client: Callable[..., ZitiClient], controller: FakeController
) -> None:
    controller.route(
        "GET",
        "/identities/Ux1",
        httpx.Response(200, json={"data": {"id": "Ux1", "externalId": None}, "meta": {}}),
    )
    client = make_client()
    assert await client.get_identity("Ux1") == {"id": "Ux1", "externalId": None}
    with pytest.raises(ZitiNotFound) as info:
        await client.get_identity("nope")
    assert info.value.path == "/identities/nope" and info.value.method == "GET"


async def test_create_identity_body_matches_the_spec(
    make_client: Callable[..., ZitiClient], controller: FakeController, spec_validator: Validate
) -> None:
    controller.route(
        "POST",
        "/identities",
        httpx.Response(
            201,
            json={
                "data": {"id": "Ux1-kP3qd", "_links": {"self": {"href": "./identities/Ux1-kP3qd"}}},
                "meta": {},
            },
        ),
    )
    body = {
        "name": "alice@example.com",
        "type": "User",
        "isAdmin": False,
        "externalId": "00u1abcdEFGH",
        "authPolicyId": "default",
        "roleAttributes": ["engineering", "vpn-users"],
        "tags": {"scimSource": "okta", "scimId": "2819c223-7f76-453a-919d-413861904646"},
    }
    assert await make_client().create_identity(body) == "Ux1-kP3qd"
    sent = controller.calls("POST", "/identities")[0]
    assert sent.json() == body and sent.headers["content-type"] == "application/json"
    spec_validator("identityCreate", sent.json())


async def test_create_identity_duplicate(
    make_client: Callable[..., ZitiClient], controller: FakeController
) -> None:
    controller.route(
        "POST",
        "/identities",
        envelope_error(
            400,
            "COULD_NOT_VALIDATE",
            "invalid",
            {
                "field": "externalId",
                "reason": "duplicate value 'e1' in unique index on identities store",
                "value": "e1",
            },
        ),
    )
    with pytest.raises(ZitiDuplicate) as info:
        await make_client().create_identity(
            {"name": "a", "type": "User", "isAdmin": False, "externalId": "e1"}
        )
    assert info.value.field == "externalId" and info.value.value == "e1"


async def test_create_identity_rejects_bad_input_before_sending(
    make_client: Callable[..., ZitiClient], controller: FakeController
) -> None:
    client = make_client()
    with pytest.raises(ValueError, match="type, isAdmin"):
        await client.create_identity({"name": "a"})
    with pytest.raises(ValueError):  # NaN is not JSON
        await client.create_identity(
            {"name": "a", "type": "User", "isAdmin": False, "appData": {"x": float("nan")}}
        )
    with pytest.raises(TypeError):
        await client.create_identity({"name": "a", "type": "User", "isAdmin": False, "tags": {"x": object()}})
    assert controller.requests == []


async def test_create_response_without_id_is_a_protocol_error(
    make_client: Callable[..., ZitiClient], controller: FakeController
) -> None:
    controller.route("POST", "/identities", httpx.Response(201, json={"data": {}, "meta": {}}))
    with pytest.raises(ZitiProtocolError, match="no id"):
        await make_client().create_identity({"name": "a", "type": "User", "isAdmin": False})


async def test_patch_identity(
    make_client: Callable[..., ZitiClient], controller: FakeController, spec_validator: Validate
) -> None:
    controller.route("PATCH", "/identities/Ux1", httpx.Response(200, json=EMPTY_OK))
    client = make_client()
    fields = {"externalId": None, "roleAttributes": ["eng"], "tags": {"scimActive": False}}
    await client.patch_identity("Ux1", fields)
    sent = controller.calls("PATCH", "/identities/Ux1")[0]
    # null means "unchanged" on the controller (json_fields.go GetJsonFields): clearing is sent as ""
    assert sent.json() == {**fields, "externalId": ""}
    spec_validator("identityPatch", sent.json())
    await client.patch_identity("Ux1", {})
    assert len(controller.calls("PATCH", "/identities/Ux1")) == 1


async def test_disable_accepts_the_empty_200_body(
    make_client: Callable[..., ZitiClient], controller: FakeController, spec_validator: Validate
) -> None:
    controller.route(
        "POST",
        "/identities/Ux1/disable",
        httpx.Response(200, content=b""),
        httpx.Response(200, json=EMPTY_OK),
    )
    client = make_client()
    await client.disable_identity("Ux1")  # 1.6/2.0 behaviour: empty body
    await client.disable_identity("Ux1", duration_minutes=15)  # spec behaviour: empty envelope
    bodies = [c.json() for c in controller.calls("POST", "/identities/Ux1/disable")]
    assert bodies == [{"durationMinutes": 0}, {"durationMinutes": 15}]
    for b in bodies:
        spec_validator("disableParams", b)
    for bad in (-1, True, 1.5):
        with pytest.raises(ValueError):
            await client.disable_identity("Ux1", bad)  # type: ignore[arg-type]


async def test_enable_and_delete(make_client: Callable[..., ZitiClient], controller: FakeController) -> None:
    controller.route("POST", "/identities/Ux1/enable", httpx.Response(200, json=EMPTY_OK))
    controller.route("DELETE", "/identities/Ux1", httpx.Response(200, json=EMPTY_OK))
    client = make_client()
    await client.enable_identity("Ux1")
    await client.delete_identity("Ux1")
    enable = controller.calls("POST", "/identities/Ux1/enable")[0]
    assert enable.body == b"" and "content-type" not in enable.headers
    with pytest.raises(ZitiNotFound):
        await client.delete_identity("gone")
    await client.delete_identity("gone", missing_ok=True)


async def test_ids_are_path_escaped_and_validated(
    make_client: Callable[..., ZitiClient], controller: FakeController
) -> None:
    client = make_client()
    with pytest.raises(ZitiNotFound):
        await client.get_identity("a/b?c")
    assert controller.requests[-1].raw_path == "/edge/management/v1/identities/a%2Fb%3Fc"
    for bad in ("", ".", ".."):
        with pytest.raises(ValueError):
            await client.get_identity(bad)


async def test_read_only_collections(
    make_client: Callable[..., ZitiClient], controller: FakeController
) -> None:
    policy = {
        "id": "default",
        "name": "Default",
        "primary": {"extJwt": {"allowed": True, "allowedSigners": []}},
    }
    controller.route("GET", "/auth-policies", list_envelope([policy]))
    controller.route("GET", "/auth-policies/default", httpx.Response(200, json={"data": policy, "meta": {}}))
    controller.route("GET", "/external-jwt-signers", list_envelope([{"id": "s1", "claimsProperty": "sub"}]))
    controller.route("GET", "/service-policies", list_envelope([{"id": "sp", "type": "Dial"}]))
    controller.route("GET", "/edge-router-policies", list_envelope([{"id": "erp"}]))
    client = make_client()
    assert await client.list_auth_policies() == [policy]
    assert await client.get_auth_policy("default") == policy
    assert [s["id"] for s in await client.list_external_jwt_signers()] == ["s1"]
    assert [s["id"] for s in await client.list_service_policies('anyOf(identityRoles) = "#eng"')] == ["sp"]
    assert [s["id"] for s in await client.list_edge_router_policies()] == ["erp"]
    assert controller.calls("GET", "/service-policies")[0].params["filter"] == 'anyOf(identityRoles) = "#eng"'


async def test_detail_that_is_not_json_is_a_protocol_error(
    make_client: Callable[..., ZitiClient], controller: FakeController
) -> None:
    controller.route("GET", "/identities/Ux1", httpx.Response(200, content=b"<html>proxy login</html>"))
    controller.route("GET", "/auth-policies/x", httpx.Response(200, json={"data": [1], "meta": {}}))
    controller.route("GET", "/identities/Ux2", httpx.Response(302, headers={"Location": "/login"}))
    client = make_client()
    with pytest.raises(ZitiProtocolError, match="not JSON"):
        await client.get_identity("Ux1")
    with pytest.raises(ZitiProtocolError, match="not an object"):
        await client.get_auth_policy("x")
    with pytest.raises(ZitiProtocolError, match="302"):
        await client.get_identity("Ux2")


async def test_concurrency_is_bounded(
    make_client: Callable[..., ZitiClient], controller: FakeController
) -> None:
    controller.route("GET", "/identities/Ux1", httpx.Response(200, json={"data": {"id": "Ux1"}, "meta": {}}))
    client = make_client(max_concurrency=3)
    await client.authenticate()
    controller.delay = 0.01
    await asyncio.gather(*(client.get_identity("Ux1") for _ in range(30)))
    assert controller.peak_in_flight == 3
    assert client.max_concurrency == 3


async def test_default_concurrency_is_eight(
    make_client: Callable[..., ZitiClient], controller: FakeController
) -> None:
    controller.route("GET", "/identities/Ux1", httpx.Response(200, json={"data": {"id": "Ux1"}, "meta": {}}))
    client = make_client()
    await client.authenticate()
    controller.delay = 0.01
    await asyncio.gather(*(client.get_identity("Ux1") for _ in range(40)))
    assert controller.peak_in_flight == 8


async def test_on_request_hook_and_stats(
    make_client: Callable[..., ZitiClient], controller: FakeController
) -> None:
    seen: list[tuple[str, str, int | None, float]] = []
    controller.route(
        "GET",
        "/identities/Ux1",
        httpx.ConnectError("refused"),
        httpx.Response(200, json={"data": {"id": "Ux1"}, "meta": {}}),
    )
    client = make_client(on_request=lambda m, p, s, t: seen.append((m, p, s, t)))
    await client.get_identity("Ux1")
    assert [(m, p, s) for m, p, s, _ in seen] == [
        ("POST", "/authenticate", 200),
        ("GET", "/identities/{id}", None),
        ("GET", "/identities/{id}", 200),
    ]
    assert all(t >= 0 for *_, t in seen)
    assert client.stats.requests == 3 and client.stats.transport_errors == 1 and client.stats.retries == 1


async def test_a_failing_hook_does_not_break_requests(
    make_client: Callable[..., ZitiClient], controller: FakeController, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(method: str, path: str, status: int | None, seconds: float) -> None:
        raise RuntimeError("metrics down")

    controller.route("GET", "/identities", list_envelope([]))
    assert await make_client(on_request=broken).list_identities() == []
    assert "on_request hook failed" in caplog.text


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("https://ctrl:1280", "https://ctrl:1280/edge/management/v1"),
        ("https://ctrl:1280/", "https://ctrl:1280/edge/management/v1"),
        ("https://ctrl/edge/management/v1/", "https://ctrl/edge/management/v1"),
        ("http://127.0.0.1:8080/custom", "http://127.0.0.1:8080/custom"),
    ],
)
def test_base_url_normalisation(given: str, expected: str) -> None:
    assert normalize_base_url(given) == expected


@pytest.mark.parametrize(
    "bad", ["ctrl:1280", "ftp://ctrl", "https://", "https://u:p@ctrl", "https://c/?x=1", "::"]
)
def test_bad_base_urls(bad: str) -> None:
    with pytest.raises(ValueError):
        normalize_base_url(bad)


def test_constructor_guards() -> None:
    creds = PasswordCredentials(USERNAME, PASSWORD)
    transport = httpx.MockTransport(lambda r: httpx.Response(200))
    with pytest.raises(ValueError, match="max_concurrency"):
        ZitiClient(BASE, creds, max_concurrency=0)
    with pytest.raises(ValueError, match="TLS on the injected"):
        ZitiClient(BASE, creds, transport=transport, insecure=True)
    with pytest.raises(ValueError, match="either transport or http_client"):
        ZitiClient(BASE, creds, transport=transport, http_client=httpx.AsyncClient())
    with pytest.raises(ValueError, match="https"):
        ZitiClient("http://127.0.0.1:1280", CertCredentials("c.pem", "k.pem"))
    with pytest.raises(ValueError, match="client certificate"):
        ZitiClient(BASE, CertCredentials("/nonexistent/c.pem", "/nonexistent/k.pem"))
    with pytest.raises(ValueError, match="CA bundle"):
        ZitiClient(BASE, creds, ca_bundle="/nonexistent/ca.pem")


async def test_injected_http_client_is_not_closed(controller: FakeController) -> None:
    controller.route("GET", "/identities", list_envelope([]))
    async with httpx.AsyncClient(transport=httpx.MockTransport(controller)) as http:
        async with ZitiClient(BASE, PasswordCredentials(USERNAME, PASSWORD), http_client=http) as client:
            assert await client.list_identities() == []
        assert not http.is_closed
        assert json.loads(controller.calls("DELETE", "/current-api-session")[0].body or b"null") is None


def test_the_spec_validator_does_reject_bad_bodies(spec_validator: Validate) -> None:
    # Guards the shape tests above against a validator that accepts anything.
    with pytest.raises(jsonschema.ValidationError):
        spec_validator("identityCreate", {"name": "a", "isAdmin": False})
    with pytest.raises(jsonschema.ValidationError):
        spec_validator("identityCreate", {"name": "a", "type": "Robot", "isAdmin": False})
    with pytest.raises(jsonschema.ValidationError):
        spec_validator("disableParams", {"durationMinutes": "15"})
