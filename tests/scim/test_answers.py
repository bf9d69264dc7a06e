"""A User answered from its stored document gives exactly what the model's round trip gives.

:meth:`app.scim.service.ZitiScimService.answer` skips validating the stored document into a model,
publishing it and dumping it again; these tests put both paths side by side on many user shapes (every
attribute of the published schemas, references to groups and to a manager, the status extension, each
source policy), for the create, read, replace and PATCH responses, searches, and conditional reads, and
over HTTP against a live server (where a no-op ``excludedAttributes`` takes the model's path).
"""

from __future__ import annotations

import json
from http import HTTPStatus
from pathlib import Path
from typing import Any

import pytest
from scim2_models import Context
from scim2_server.conditions import Conditions
from scim2_server.storage import SearchPage

from app.config import PolicyConfig
from app.constants import STATUS_EXTENSION, ZITI_EXTENSION
from app.scim.provider import load_provider
from app.scim.service import ZitiScimService
from app.store.db import Database
from app.store.storage import SqlStorage, Stored
from tests.scim.conftest import Live

USER = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
BASE = "https://scim.example.com/scim/v2/"

BODIES: list[dict[str, Any]] = [
    {"schemas": [USER], "userName": "minimal"},
    {
        "schemas": [USER],
        "userName": "ak0000001",
        "name": {"formatted": "User ak0000001", "familyName": "ak0000001", "givenName": "User"},
        "displayName": "User ak0000001",
        "active": True,
        "emails": [{"value": "ak0000001@example.com", "type": "other", "primary": True}],
        "externalId": "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0",
    },
    {
        "schemas": [USER, ENTERPRISE, ZITI_EXTENSION],
        "userName": "Zoë.Ünïcode@example.com",
        "name": {
            "formatted": "Ms. Zoë Ünïcode III",
            "familyName": "Ünïcode",
            "givenName": "Zoë",
            "middleName": "Q",
            "honorificPrefix": "Ms.",
            "honorificSuffix": "III",
        },
        "displayName": "Zoë",
        "nickName": "zo",
        "profileUrl": "https://login.example.com/zoe",
        "title": "Engineer",
        "userType": "Employee",
        "preferredLanguage": "de-CH",
        "locale": "de-CH",
        "timezone": "Europe/Zurich",
        "active": False,
        "emails": [
            {"value": "zoe@example.com", "type": "work", "primary": True, "display": "Zoë"},
            {"value": "zoe@home.example.org", "type": "home"},
        ],
        "phoneNumbers": [{"value": "tel:+41-44-000-00-00", "type": "work"}],
        "ims": [{"value": "zoe", "type": "xmpp"}],
        "photos": [{"value": "https://photos.example.com/zoe.jpg", "type": "photo"}],
        "addresses": [
            {
                "type": "work",
                "streetAddress": "Bahnhofstrasse 1",
                "locality": "Zürich",
                "postalCode": "8001",
                "country": "CH",
                "primary": True,
            }
        ],
        "entitlements": [{"value": "vpn"}],
        "roles": [{"value": "admin", "primary": False}],
        "x509Certificates": [{"value": "MIIDQzCCAqygAwIBAgICEAAwDQYJKoZIhvcNAQEFBQAwTjELMAkGA1UEBhMCVVMx"}],
        "externalId": "zoe-1",
        ENTERPRISE: {
            "employeeNumber": "701984",
            "costCenter": "4130",
            "organization": "Example",
            "division": "Theme Park",
            "department": "Tour Operations",
            "manager": {"value": "26118915-6090-4610-87e4-49d8ca9f808d", "$ref": "Users/26118915-6090-4610-87e4-49d8ca9f808d", "displayName": "John Smith"},
        },
        ZITI_EXTENSION: {"roleAttributes": "ops,vpn-users"},
    },
    {
        "schemas": [USER, ENTERPRISE],
        "userName": "managed-elsewhere",
        ENTERPRISE: {"manager": {"value": "m-1", "$ref": "../Users/m-1"}},
    },
    {
        "schemas": [USER, ENTERPRISE],
        "userName": "absolute-manager",
        ENTERPRISE: {"manager": {"value": "m-2", "$ref": "https://other.example.com/scim/v2/Users/m-2"}},
    },
]
GROUPS: list[list[dict[str, Any]]] = [
    [],
    [{"value": "g-1", "$ref": "Groups/g-1", "type": "direct", "display": "Ops"}],
    [
        {"value": "g-1", "$ref": "Groups/g-1", "type": "direct", "display": "Ops"},
        {"value": "g-2", "$ref": "Groups/g-2", "type": "direct"},
    ],
]
VIEWS: list[dict[str, Any] | None] = [
    None,
    {"provisioningState": "pending"},
    {"identityId": "zId-1", "provisioningState": "synced"},
    {"provisioningState": "skipped", "lastError": "no primary email: the identity needs an externalId"},
]
TIMES = [("2026-12-04T23:29:20.123456Z", "2026-12-05T01:02:03.000000Z"), ("2026-01-01T00:00:00.000001Z",) * 2]
KNOWN = (
    "schemas", "userName", "name", "displayName", "nickName", "userType", "preferredLanguage", "locale",
    "timezone", "active", "emails", "entitlements", "roles", "externalId", ENTERPRISE, ZITI_EXTENSION,
)
"""The attributes of the published User schema (``schemas/Schemas.json``): a ``forbid`` source refuses
the others, which the bodies above also carry (unknown to the schema, as IdPs send them)."""
POLICIES = [PolicyConfig(), PolicyConfig(unknown="keep"), PolicyConfig(unknown="forbid")]


def service_of(policy: PolicyConfig) -> ZitiScimService:
    return ZitiScimService(load_provider(policy))


async def documents(service: ZitiScimService, tmp_path: Path) -> list[dict[str, Any]]:
    """Every combination of body, groups, view and timestamps, as ``SqlStorage`` reads them back."""
    storage = SqlStorage(Database(f"sqlite+aiosqlite:///{tmp_path / 'unused.db'}"), service.provider, "s")
    resource_type = service.get_resource_type("User")
    found = []
    pk = 0
    known = {name.lower() for name in KNOWN}
    for given in BODIES:
        strict = service.provider.policy is not None and service.provider.policy.unknown.value == "forbid"
        body = {k: v for k, v in given.items() if k.lower() in known} if strict else given
        with service.provider:
            resource = service.read_body(
                service.get_model(resource_type),
                json.dumps(body).encode(),
                "application/scim+json",
                Context.RESOURCE_CREATION_REQUEST,
            )
        stored = SqlStorage._document(resource)
        for groups in GROUPS:
            for view in VIEWS:
                for created, modified in TIMES:
                    pk += 1
                    user_id = f"u-{pk}"
                    row = Stored(pk, "User", user_id, stored, created, modified, pk % 7 + 1)
                    (document,) = await storage._documents(
                        None,  # type: ignore[arg-type]  # every part is known: nothing is read
                        [row],
                        known_groups={pk: groups},
                        known_views={user_id: view} if view is not None else None,
                    )
                    found.append(document)
    return found


def by_model(service: ZitiScimService, document: dict[str, Any], context: Context) -> Any:
    with service.provider:
        return service.resource_response(service.publish(BASE, service.model_of(document)), context)


@pytest.mark.parametrize("policy", POLICIES, ids=lambda p: p.unknown)
async def test_answers_equal_the_models_round_trip(policy: PolicyConfig, tmp_path: Path) -> None:
    service = service_of(policy)
    stored = await documents(service, tmp_path)
    assert len(stored) == len(BODIES) * len(GROUPS) * len(VIEWS) * len(TIMES)
    shown = 0
    for document in stored:
        snapshot = json.dumps(document, sort_keys=True)
        for context, status in [
            (Context.RESOURCE_CREATION_RESPONSE, HTTPStatus.CREATED),
            (Context.RESOURCE_QUERY_RESPONSE, HTTPStatus.OK),
            (Context.RESOURCE_REPLACEMENT_RESPONSE, HTTPStatus.OK),
        ]:
            with service.provider:
                fast = service.answer(BASE, document, context, None, status)
            slow = by_model(service, document, context)
            assert fast.body == slow.body, document["userName"]
            assert fast.headers == slow.headers
            assert fast.status == status
        with service.provider:
            patched = service.patch_response(BASE, document, service.read_response_parameters(
                service.get_resource_type("User"), {}
            ))
        assert patched.body == by_model(service, document, Context.RESOURCE_REPLACEMENT_RESPONSE).body
        assert json.dumps(document, sort_keys=True) == snapshot, "the stored document was changed"
        shown += STATUS_EXTENSION in (patched.body or {})
        # The references are URLs (RFC 7643 §2.3.7), as the model's publication makes them.
        for group in (patched.body or {}).get("groups", []):
            assert group["$ref"] == f"{BASE.rstrip('/')}/Groups/{group['value']}"
    assert shown == len(stored) * 3 // len(VIEWS)


async def test_a_projection_and_a_group_take_the_models_path(tmp_path: Path) -> None:
    service = service_of(PolicyConfig())
    (document,) = (await documents(service, tmp_path))[-1:]
    with service.provider:
        resource_type = service.get_resource_type("User")
        narrowed = service.read_response_parameters(resource_type, {"attributes": "userName"})
        answered = service.answer(BASE, document, Context.RESOURCE_QUERY_RESPONSE, narrowed)
    assert set(answered.body or {}) == {"schemas", "id", "userName"}
    group = {
        "schemas": [GROUP],
        "displayName": "Ops",
        "id": "g-1",
        "meta": {"resourceType": "Group", "created": TIMES[0][0], "lastModified": TIMES[0][1], "version": 'W/"3"'},
        "members": [{"value": "u-1", "$ref": "Users/u-1", "type": "User"}],
    }
    assert not service.answers_as_stored(group)
    with service.provider:
        answered = service.answer(BASE, group, Context.RESOURCE_QUERY_RESPONSE)
    assert answered.body == by_model(service, group, Context.RESOURCE_QUERY_RESPONSE).body
    assert (answered.body or {})["members"][0]["$ref"] == f"{BASE.rstrip('/')}/Users/u-1"


@pytest.mark.parametrize(
    "query",
    [{}, {"startIndex": "2", "count": "3"}, {"filter": 'userName eq "minimal"'}, {"count": "0"}],
    ids=["all", "page", "filter", "count-0"],
)
async def test_searches_list_what_the_models_list(query: dict[str, str], tmp_path: Path) -> None:
    service = service_of(PolicyConfig())
    stored = (await documents(service, tmp_path))[::5]
    with service.provider:
        resource_types = [service.get_resource_type("User")]
        search, _ = service.read_search_query(resource_types, query)
        shown = stored[:0] if search.count == 0 else stored
        fast = service.search_response(BASE, resource_types, SearchPage(len(stored), shown), search)  # type: ignore[arg-type]
        models = [service.model_of(document) for document in shown]
        slow = service.search_response(BASE, resource_types, SearchPage(len(stored), models), search)
    assert fast.body == slow.body
    assert fast.headers == slow.headers


async def test_a_conditional_read_answers_304_with_the_etag(tmp_path: Path) -> None:
    service = service_of(PolicyConfig())
    document = (await documents(service, tmp_path))[0]
    version = document["meta"]["version"]
    with service.provider:
        parameters = service.read_response_parameters(service.get_resource_type("User"), {})
        unchanged = service.query_answer(BASE, document, parameters, Conditions(if_none_match=version))
        changed = service.query_answer(BASE, document, parameters, Conditions(if_none_match='W/"999"'))
        model = service.model_of(document)
        unchanged_by_model = service.query_response(BASE, model, parameters, Conditions(if_none_match=version))
    assert unchanged.status == unchanged_by_model.status == HTTPStatus.NOT_MODIFIED
    assert unchanged.body is None and unchanged.headers == unchanged_by_model.headers
    assert unchanged.headers["ETag"] == version
    assert changed.status == HTTPStatus.OK and (changed.body or {})["id"] == document["id"]


def test_live_answers_equal_the_models_path(live: Live) -> None:
    """Over HTTP, with what the storage really stored: a no-op ``excludedAttributes`` takes the model's
    path, and the answers are the same (users with groups, a manager, the ziti extension)."""
    with live.client() as client:
        manager = client.post("/Users", json={"schemas": [USER], "userName": "boss"}).json()
        body = {k: v for k, v in BODIES[2].items() if k != "roles"}
        body[ENTERPRISE] = {**BODIES[2][ENTERPRISE], "manager": {"value": manager["id"]}}
        created = client.post("/Users", json=body)
        assert created.status_code == 201
        user = created.json()
        group = client.post(
            "/Groups", json={"schemas": [GROUP], "displayName": "Ops", "members": [{"value": user["id"]}]}
        ).json()
        read = client.get(f"/Users/{user['id']}")
        through_model = client.get(f"/Users/{user['id']}", params={"excludedAttributes": "roles"})
        assert through_model.json() == {k: v for k, v in read.json().items() if k != "roles"}
        assert read.json()["groups"] == [
            {"value": group["id"], "$ref": f"{live.scim}/Groups/{group['id']}", "type": "direct", "display": "Ops"}
        ]
        assert read.headers["ETag"] == read.json()["meta"]["version"]
        assert read.headers["Content-Location"] == f"{live.scim}/Users/{user['id']}"
        assert created.json() == {k: v for k, v in read.json().items() if k != "groups"}
        assert created.headers["Location"] == read.json()["meta"]["location"]
        found = client.get("/Users", params={"filter": 'userName eq "Zoë.Ünïcode@example.com"'}).json()
        found_by_model = client.get(
            "/Users",
            params={"filter": 'userName eq "Zoë.Ünïcode@example.com"', "excludedAttributes": "roles"},
        ).json()
        assert found["Resources"] == [read.json()]
        assert found_by_model["Resources"] == [through_model.json()]
        replaced = client.put(f"/Users/{user['id']}", json={**body, "nickName": "Lead"})
        patched = client.patch(
            f"/Users/{user['id']}",
            json={
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [{"op": "replace", "path": "nickName", "value": "Principal"}],
            },
        )
        final = client.get(f"/Users/{user['id']}", params={"excludedAttributes": "roles"}).json()
        assert replaced.json()["nickName"] == "Lead"
        assert {k: v for k, v in patched.json().items() if k != "roles"} == final
        assert patched.json()["meta"]["version"] == patched.headers["ETag"] != read.headers["ETag"]
