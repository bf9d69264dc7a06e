"""Issue 4 acceptance 4: every authentik compatibility mode (default, AWS, Slack, Salesforce: the bodies
and paths each sends) and both Entra PATCH styles (without and with the ``aadOptscim062020`` flag)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from app.constants import ENTERPRISE_EXTENSION as ENTERPRISE
from tests.idp.conftest import Stack, StackFactory, source

TOKEN = "mode-test-token-0123456789"
USER = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
HEADERS = {
    "Accept": "application/scim+json",
    "Content-Type": "application/scim+json",
    "User-Agent": "authentik@2026.5.0",
}


def authentik_user(name: str, uid: str) -> dict[str, Any]:
    """A user body exactly as authentik's default mapping builds it."""
    return {
        "userName": name,
        "name": {"formatted": f"{name.title()} ", "familyName": " ", "givenName": name.title()},
        "displayName": name.title(),
        "active": True,
        "emails": [{"value": f"{name}@example.com", "type": "other", "primary": True}],
        "schemas": [USER],
        "externalId": uid,
    }


def roles(stack: Stack, external_id: str) -> list[str]:
    return sorted(stack.identity(external_id).role_attributes or [])


def client(stack: Stack) -> httpx.Client:
    return httpx.Client(
        base_url=f"{stack.url}/scim/v2", headers={**HEADERS, "Authorization": f"Bearer {TOKEN}"}
    )


def two_users(scim: httpx.Client) -> tuple[str, str]:
    a = scim.post("/Users", json=authentik_user("ann", "a" * 64))
    b = scim.post("/Users", json=authentik_user("ben", "b" * 64))
    assert a.status_code == b.status_code == 201
    return a.json()["id"], b.json()["id"]


@pytest.mark.parametrize("mode", ["default", "aws", "slack", "sfdc", "webex", "vcenter"])
def test_authentik_compatibility_mode(make_stack: StackFactory, mode: str) -> None:
    stack = make_stack(source("authentik", "authentik", TOKEN))
    with client(stack) as scim:
        if mode == "sfdc":
            spc = scim.get("/ServiceProviderConfigs")
            assert spc.status_code == 200 and spc.json()["patch"]["supported"] is True
        elif mode != "vcenter":  # vcenter skips the ServiceProviderConfig endpoint
            assert scim.get("/ServiceProviderConfig").status_code == 200
        ann, ben = two_users(scim)
        group_body: dict[str, Any] = {"displayName": "ops", "schemas": [GROUP], "externalId": "5d0a6c2e-0000"}
        if mode in ("aws", "vcenter"):
            # Without PATCH (aws) or in vcenter mode, POST /Groups carries the members (alt-a1).
            group_body["members"] = [{"value": ann}]
        created = scim.post("/Groups", json=group_body)
        assert created.status_code == 201
        gid = created.json()["id"]
        if mode == "slack":
            # slack forces filter support: a duplicate POST gets 409, then the filter lookup links (alt-a6).
            assert scim.post("/Groups", json=group_body).status_code == 409
            found = scim.get("/Groups", params={"filter": 'displayName eq "ops"'}).json()
            assert found["Resources"][0]["id"] == gid
            assert scim.post("/Users", json=authentik_user("ann", "a" * 64)).status_code == 409
            users = scim.get("/Users?filter=userName+eq+%22ann%22").json()
            assert users["Resources"][0]["id"] == ann
        if mode == "aws":
            # aws: no PATCH; group changes are PUTs with the full member list (alt-a2) ...
            put = scim.put(
                f"/Groups/{gid}", json={**group_body, "id": gid, "members": [{"value": ann}, {"value": ben}]}
            )
            assert put.status_code == 200
            assert roles(stack, "a" * 64) == roles(stack, "b" * 64) == ["ops"]
            put = scim.put(f"/Groups/{gid}", json={**group_body, "id": gid, "members": [{"value": ann}]})
            assert put.status_code == 200 and roles(stack, "b" * 64) == []
            # ... and the fallback rename is per-attribute replaces, with schemas (alt-a3).
            rename = {
                "schemas": [PATCH],
                "Operations": [
                    {"op": "replace", "path": "displayName", "value": "platform"},
                    {"op": "replace", "path": "externalId", "value": "5d0a6c2e-0000"},
                ],
            }
            assert scim.patch(f"/Groups/{gid}", json=rename).status_code == 200
            assert roles(stack, "a" * 64) == ["platform"]
            return
        if mode != "vcenter":
            member: dict[str, Any] = {"value": ann}
            if mode == "webex":
                member["type"] = "user"  # webex: members carry a type (alt-a5)
            add = {"Operations": [{"op": "add", "path": "members", "value": [member]}], "schemas": [PATCH]}
            assert scim.patch(f"/Groups/{gid}", json=add).status_code == 200
        assert roles(stack, "a" * 64) == ["ops"]
        # patch_compare_users: all adds first, then all removes, in one request (alt-a7).
        diff = {
            "Operations": [
                {"op": "add", "path": "members", "value": [{"value": ben}]},
                {"op": "remove", "path": "members", "value": [{"value": ann}]},
            ],
            "schemas": [PATCH],
        }
        assert scim.patch(f"/Groups/{gid}", json=diff).status_code == 200
        assert roles(stack, "a" * 64) == [] and roles(stack, "b" * 64) == ["ops"]
        # Newer authentik removes with a filter path and no value (alt-a8).
        newer = {"Operations": [{"op": "remove", "path": f'members[value eq "{ben}"]'}], "schemas": [PATCH]}
        assert scim.patch(f"/Groups/{gid}", json=newer).status_code == 200
        assert scim.get(f"/Groups/{gid}").json()["members"] == []
        # The group rename: no top-level schemas, no path, id inside value (trace 11).
        rename = {
            "Operations": [
                {
                    "op": "replace",
                    "value": {
                        "id": gid,
                        "displayName": "platform",
                        "schemas": [GROUP],
                        "externalId": "5d0a6c2e-0000",
                    },
                }
            ]
        }
        renamed = scim.patch(f"/Groups/{gid}", json=rename)
        assert renamed.status_code == 200 and renamed.json()["displayName"] == "platform"


def test_entra_default_patch_style(make_stack: StackFactory) -> None:
    """No compliance flag: capitalised ops, "False" strings, filtered value paths, remove with a value,
    ``$ref: null``, roles as JSON-encoded strings."""
    stack = make_stack(source("entra", "entra", TOKEN))
    upn = "bob@contoso.com"
    with client(stack) as scim:
        uid = scim.post(
            "/Users",
            json={
                "schemas": [USER, ENTERPRISE],
                "userName": upn,
                "active": True,
                "emails": [{"primary": True, "type": "work", "value": upn}],
                "meta": {"resourceType": "User"},
                "roles": [],
            },
        ).json()["id"]
        gid = scim.post("/Groups", json={"schemas": [GROUP], "displayName": "ops"}).json()["id"]
        operations = [
            {"op": "Add", "path": 'emails[type eq "home"].value', "value": "bob@home.example"},
            {"op": "Replace", "path": f"{ENTERPRISE}:department", "value": "Platform"},
            {
                "op": "Add",
                "path": "roles",
                "value": [{"value": '{"id":"r1","value":"ziti-admin","displayName":"A"}'}],
            },
        ]
        patched = scim.patch(f"/Users/{uid}", json={"schemas": [PATCH], "Operations": operations}).json()
        assert {"type": "home", "value": "bob@home.example"} in [
            {k: e[k] for k in ("type", "value")} for e in patched["emails"]
        ]
        assert patched[ENTERPRISE]["department"] == "Platform"
        assert roles(stack, upn) == ["ziti-admin"]
        add = {"op": "Add", "path": "members", "value": [{"$ref": None, "value": uid}]}
        assert scim.patch(f"/Groups/{gid}", json={"schemas": [PATCH], "Operations": [add]}).status_code == 204
        assert roles(stack, upn) == ["ops", "ziti-admin"]
        disable = {"op": "Replace", "path": "active", "value": "False"}
        assert (
            scim.patch(f"/Users/{uid}", json={"schemas": [PATCH], "Operations": [disable]}).json()["active"]
            is False
        )
        assert stack.identity(upn).disabled_at is not None
        remove = {"op": "Remove", "path": "members", "value": [{"$ref": None, "value": uid}]}
        assert (
            scim.patch(f"/Groups/{gid}", json={"schemas": [PATCH], "Operations": [remove]}).status_code == 204
        )
        assert roles(stack, upn) == ["ziti-admin"]
        enable = {"op": "Replace", "path": "active", "value": "True"}
        assert (
            scim.patch(f"/Users/{uid}", json={"schemas": [PATCH], "Operations": [enable]}).json()["active"]
            is True
        )
        assert stack.identity(upn).disabled_at is None


def test_entra_aadoptscim062020_patch_style(make_stack: StackFactory) -> None:
    """With the flag: lowercase ops, JSON booleans, path-less replace with dotted and URN keys, member
    removal by filter path, and the flag itself as a query parameter on the Tenant URL."""
    stack = make_stack(source("entra", "entra", TOKEN))
    upn = "carol@contoso.com"
    with client(stack) as scim:
        uid = scim.post(
            "/Users?aadOptscim062020",
            json={
                "schemas": [USER],
                "userName": upn,
                "active": True,
                "name": {"givenName": "C", "familyName": "D"},
            },
        ).json()["id"]
        gid = scim.post("/Groups", json={"schemas": [GROUP], "displayName": "ops"}).json()["id"]
        value = {"displayName": "Carol D", "name.givenName": "Carol", f"{ENTERPRISE}:employeeNumber": "42"}
        patched = scim.patch(
            f"/Users/{uid}?aadOptscim062020",
            json={"schemas": [PATCH], "Operations": [{"op": "replace", "value": value}]},
        ).json()
        assert (
            patched["name"] == {"givenName": "Carol", "familyName": "D"}
            and patched["displayName"] == "Carol D"
        )
        assert patched[ENTERPRISE]["employeeNumber"] == "42" and "name.givenName" not in patched
        add = {"op": "add", "path": "members", "value": [{"value": uid}]}
        assert scim.patch(f"/Groups/{gid}", json={"schemas": [PATCH], "Operations": [add]}).status_code == 204
        assert roles(stack, upn) == ["ops"]
        disable = {"op": "replace", "path": "active", "value": False}
        assert (
            scim.patch(f"/Users/{uid}", json={"schemas": [PATCH], "Operations": [disable]}).json()["active"]
            is False
        )
        remove = {"op": "remove", "path": f'members[value eq "{uid}"]'}
        assert (
            scim.patch(f"/Groups/{gid}", json={"schemas": [PATCH], "Operations": [remove]}).status_code == 204
        )
        assert roles(stack, upn) == [] and stack.identity(upn).disabled_at is not None
