"""Identity endpoints (controller-api.md §3): envelopes, uniqueness, PUT vs PATCH, disable/enable, delete."""

from __future__ import annotations

from collections.abc import Callable

import httpx
from emu_support import Emu, error_of, new_identity


def test_create_returns_201_envelope_and_detail_shape(admin: httpx.Client) -> None:
    body = {
        "name": "alice@example.com",
        "type": "User",
        "isAdmin": False,
        "externalId": "00u1ab",
        "roleAttributes": ["engineering", "vpn-users"],
        "tags": {"scimSource": "okta", "n": 1, "b": True, "z": None},
        "appData": {"nested": {"ok": [1, 2]}},
    }
    response = admin.post("/identities", json=body)
    assert response.status_code == 201
    created = response.json()
    ident = created["data"]["id"]
    assert created == {
        "data": {"id": ident, "_links": {"self": {"href": f"./identities/{ident}"}}},
        "meta": {},
    }
    detail = admin.get(f"/identities/{ident}").json()["data"]
    assert detail["typeId"] == "Default" and detail["type"]["id"] == "Default"  # type is ignored on create
    assert detail["externalId"] == "00u1ab"
    assert detail["authPolicyId"] == "default" and detail["authPolicy"]["name"] == "Default"
    assert detail["roleAttributes"] == ["engineering", "vpn-users"]
    assert detail["tags"] == body["tags"] and detail["appData"] == body["appData"]
    assert detail["disabled"] is False and "disabledAt" not in detail
    assert detail["permissions"] is None and detail["isDefaultAdmin"] is False
    assert detail["_links"]["auth-policies"] == {"href": "./auth-policies/default"}
    assert detail["createdAt"].endswith("Z")


def test_unset_external_id_is_null_and_blank_is_stored_as_null(admin: httpx.Client) -> None:
    plain = new_identity(admin, "plain")
    blank = new_identity(admin, "blank", externalId="  ")
    assert admin.get(f"/identities/{plain}").json()["data"]["externalId"] is None
    assert admin.get(f"/identities/{blank}").json()["data"]["externalId"] is None


def test_duplicate_name_and_external_id_are_400_with_field_cause(admin: httpx.Client) -> None:
    new_identity(admin, "alice", externalId="ext-1")
    dup_name = admin.post("/identities", json={"name": "alice", "type": "User", "isAdmin": False})
    assert dup_name.status_code == 400
    err = error_of(dup_name)
    assert err["code"] == "COULD_NOT_VALIDATE"
    assert err["cause"] == {
        "field": "name",
        "reason": "duplicate value 'alice' in unique index on identities store",
        "value": "alice",
    }
    dup_ext = admin.post(
        "/identities", json={"name": "alice2", "type": "User", "isAdmin": False, "externalId": "ext-1"}
    )
    assert dup_ext.status_code == 400
    assert error_of(dup_ext)["cause"]["field"] == "externalId"


def test_role_attribute_prefixes_policy_fk_tags_and_empty_name(admin: httpx.Client) -> None:
    base = {"type": "User", "isAdmin": False}
    hashed = admin.post("/identities", json={**base, "name": "x", "roleAttributes": ["ok", "#eng"]})
    assert hashed.status_code == 400
    assert error_of(hashed)["cause"] == {
        "field": "roleAttributes",
        "reason": "role attributes may not be prefixed with #",
        "value": "#eng",
    }
    at = admin.post("/identities", json={**base, "name": "x", "roleAttributes": ["@id"]})
    assert error_of(at)["cause"]["reason"] == "role attributes may not be prefixed with @"
    missing_policy = admin.post("/identities", json={**base, "name": "x", "authPolicyId": "nope"})
    assert missing_policy.status_code == 404
    assert error_of(missing_policy)["code"] == "NOT_FOUND"
    nested = admin.post("/identities", json={**base, "name": "x", "tags": {"a": {"b": 1}}})
    assert nested.status_code == 500 and error_of(nested)["code"] == "UNHANDLED"
    empty = admin.post("/identities", json={**base, "name": ""})
    assert empty.status_code == 500 and error_of(empty)["code"] == "UNHANDLED"


def test_filters(emu: Emu, admin: httpx.Client) -> None:
    a = emu.state.create_identity(
        "alice", external_id="e-a", role_attributes=["eng"], tags={"scimSource": "okta"}
    )
    b = emu.state.create_identity("bob", external_id="e-b", role_attributes=["eng", "ops"])
    emu.state.create_identity("carol", tags={"scimSource": "entra"})

    def names(filter_text: str) -> list[str]:
        response = admin.get("/identities", params={"filter": filter_text, "limit": 100})
        assert response.status_code == 200, response.text
        return sorted(i["name"] for i in response.json()["data"])

    assert names('externalId = "e-a"') == ["alice"]
    assert names('name = "bob"') == ["bob"]
    assert names(f'id = "{b.id}"') == ["bob"]
    assert names('tags.scimSource = "okta"') == ["alice"]
    assert names("tags.scimSource != null") == ["alice", "carol"]
    assert names('anyOf(roleAttributes) = "ops"') == ["bob"]
    assert names('anyOf(roleAttributes) = "eng" and externalId = "e-a"') == ["alice"]
    assert names('name in ["alice", "carol"]') == ["alice", "carol"]
    assert names('name contains "o"') == ["bob", "carol"]
    assert names("externalId = null and isAdmin = false") == ["carol"]
    assert names('name = "Bob"') == []  # case-sensitive
    assert names(f'name = "alice" or id = "{a.id}"') == ["alice"]
    for bad in [
        'externalId = "x',
        'roleAttributes = "eng"',
        'nosuchfield = "x"',
        'name = "a" and',
        "tags.scim2 = 1",
    ]:
        response = admin.get("/identities", params={"filter": bad})
        assert response.status_code == 400, bad
        assert error_of(response)["code"] == "INVALID_FILTER"


def test_pagination_defaults_and_clamp(emu: Emu, admin: httpx.Client) -> None:
    for n in range(520):
        emu.state.create_identity(f"user-{n:04d}")
    default = admin.get("/identities").json()
    assert len(default["data"]) == 10
    assert default["meta"]["pagination"] == {"limit": 10, "offset": 0, "totalCount": 521}
    assert "externalId" in default["meta"]["filterableFields"]
    clamped = admin.get("/identities", params={"limit": 1000}).json()
    assert len(clamped["data"]) == 500 and clamped["meta"]["pagination"]["limit"] == 500
    tail = admin.get("/identities", params={"limit": 500, "offset": 500}).json()
    assert len(tail["data"]) == 21
    seen = {i["id"] for i in clamped["data"]} | {i["id"] for i in tail["data"]}
    assert len(seen) == 521  # stable order: pages do not overlap
    in_filter = admin.get("/identities", params={"filter": 'name contains "user" skip 2 limit 3'}).json()
    assert in_filter["meta"]["pagination"] == {"limit": 3, "offset": 2, "totalCount": 520}
    wrong_order = admin.get("/identities", params={"filter": 'name contains "user" limit 3 skip 2'})
    assert error_of(wrong_order)["code"] == "INVALID_FILTER"  # ZitiQL: sort, then skip, then limit
    bad = admin.get("/identities", params={"limit": "ten"})
    assert bad.status_code == 400 and error_of(bad)["code"] == "INVALID_PAGINATION"


def test_put_replaces_everything_and_re_enables(admin: httpx.Client) -> None:
    ident = new_identity(
        admin, "alice", externalId="e-1", roleAttributes=["eng"], tags={"k": "v"}, appData={"a": 1}
    )
    assert admin.post(f"/identities/{ident}/disable", json={"durationMinutes": 0}).status_code == 200
    put = admin.put(f"/identities/{ident}", json={"name": "alice", "type": "User", "isAdmin": False})
    assert put.status_code == 200 and put.json() == {"data": {}, "meta": {}}
    detail = admin.get(f"/identities/{ident}").json()["data"]
    assert detail["externalId"] is None and detail["roleAttributes"] == [] and detail["tags"] == {}
    assert detail["appData"] == {} and detail["authPolicyId"] == "default"
    assert detail["disabled"] is False and "disabledAt" not in detail


def test_patch_changes_only_given_fields(admin: httpx.Client) -> None:
    ident = new_identity(admin, "alice", externalId="e-1", roleAttributes=["eng"], tags={"k": "v"})
    assert admin.patch(f"/identities/{ident}", json={"roleAttributes": ["ops"]}).status_code == 200
    detail = admin.get(f"/identities/{ident}").json()["data"]
    assert (
        detail["roleAttributes"] == ["ops"] and detail["externalId"] == "e-1" and detail["tags"] == {"k": "v"}
    )
    assert admin.patch(f"/identities/{ident}", json={"tags": {"new": "x"}}).status_code == 200
    assert admin.get(f"/identities/{ident}").json()["data"]["tags"] == {"new": "x"}  # replaced, not merged
    # null means "leave unchanged" (api/json_fields.go GetJsonFields); "" clears externalId
    assert admin.patch(f"/identities/{ident}", json={"externalId": None, "name": None}).status_code == 200
    assert admin.get(f"/identities/{ident}").json()["data"]["externalId"] == "e-1"
    assert admin.patch(f"/identities/{ident}", json={"externalId": ""}).status_code == 200
    assert admin.get(f"/identities/{ident}").json()["data"]["externalId"] is None


def test_rename_collision_is_a_silent_no_op_and_external_id_collision_is_500(admin: httpx.Client) -> None:
    new_identity(admin, "taken", externalId="e-taken")
    ident = new_identity(admin, "alice", roleAttributes=["eng"])
    renamed = admin.patch(f"/identities/{ident}", json={"name": "taken", "roleAttributes": ["ops"]})
    assert renamed.status_code == 200
    detail = admin.get(f"/identities/{ident}").json()["data"]
    assert detail["name"] == "alice" and detail["roleAttributes"] == ["eng"]  # whole update dropped
    clash = admin.patch(f"/identities/{ident}", json={"externalId": "e-taken"})
    assert clash.status_code == 500
    assert "duplicate value 'e-taken'" in error_of(clash)["cause"]["message"]
    assert admin.patch(f"/identities/{ident}", json={"name": "alice-2"}).status_code == 200
    assert admin.get(f"/identities/{ident}").json()["data"]["name"] == "alice-2"


def test_disable_empty_body_kills_sessions_and_enable(emu: Emu, admin: httpx.Client) -> None:
    user = emu.state.create_identity("erin")
    emu.state.set_password(user.id, "erin-password")
    token = emu.login("erin", "erin-password")
    assert emu.state.has_session(user.id)
    response = admin.post(f"/identities/{user.id}/disable", json={"durationMinutes": 0})
    assert response.status_code == 200 and response.content == b""  # quirk: no envelope at all
    assert not emu.state.has_session(user.id)
    assert httpx.get(emu.client_api + "/current-identity", headers={"zt-session": token}).status_code == 401
    detail = admin.get(f"/identities/{user.id}").json()["data"]
    assert detail["disabled"] is True and detail["disabledUntil"] is None
    enabled = admin.post(f"/identities/{user.id}/enable")
    assert enabled.json() == {"data": {}, "meta": {}}
    assert admin.get(f"/identities/{user.id}").json()["data"]["disabled"] is False
    assert admin.post("/identities/nope/disable", json={"durationMinutes": 1}).status_code == 404


def test_timed_disable_expires(emu: Emu, admin: httpx.Client) -> None:
    ident = new_identity(admin, "frank")
    admin.post(f"/identities/{ident}/disable", json={"durationMinutes": 5})
    assert admin.get(f"/identities/{ident}").json()["data"]["disabled"] is True
    emu.clock.advance(301)
    detail = admin.get(f"/identities/{ident}").json()["data"]
    assert detail["disabled"] is False and detail["disabledUntil"] is not None


def test_delete(emu: Emu, admin: httpx.Client) -> None:
    ident = new_identity(admin, "gone")
    assert admin.delete(f"/identities/{ident}").json() == {"data": {}, "meta": {}}
    assert admin.get(f"/identities/{ident}").status_code == 404
    assert error_of(admin.delete(f"/identities/{ident}"))["code"] == "NOT_FOUND"
    default_admin = admin.delete(f"/identities/{emu.state.default_admin.id}")
    assert default_admin.status_code == 400
    assert error_of(default_admin)["code"] == "ENTITY_CAN_NOT_BE_DELETED"


def test_role_filter_and_related_lists(emu: Emu, admin: httpx.Client) -> None:
    emu.state.create_identity("a", role_attributes=["eng", "ops"])
    emu.state.create_identity("b", role_attributes=["eng"])
    any_of = admin.get(
        "/identities", params=[("roleFilter", "#ops"), ("roleFilter", "#eng"), ("roleSemantic", "AnyOf")]
    )
    assert sorted(i["name"] for i in any_of.json()["data"]) == ["a", "b"]
    all_of = admin.get("/identities", params=[("roleFilter", "#ops"), ("roleFilter", "#eng")])
    assert [i["name"] for i in all_of.json()["data"]] == ["a"]
    attrs = admin.get("/identity-role-attributes", params={"limit": 1}).json()
    assert attrs["data"] == ["eng", "ops"]  # limit query parameter ignored


def test_1_6_flavour_renders_empty_role_attributes_as_null(make_emu: Callable[..., Emu]) -> None:
    emu = make_emu(flavor="1.6")
    with emu.admin() as client:
        ident = new_identity(client, "h", permissions=["identity"])
        detail = client.get(f"/identities/{ident}").json()["data"]
    assert detail["roleAttributes"] is None and detail["permissions"] is None


def test_unique_index_follows_renames_clears_and_deletes(emu: Emu, admin: httpx.Client) -> None:
    """Names and externalIds are checked by an index, as the controller's unique bbolt indexes: a value
    freed by a rename, an externalId cleared with "" or a delete can be taken again; a taken one cannot."""
    ident = new_identity(admin, "old-name", externalId="old-ext")
    assert admin.patch(f"/identities/{ident}", json={"name": "new-name", "externalId": ""}).status_code == 200

    def create(name: str, external_id: str | None = None) -> int:
        body = {"name": name, "type": "User", "isAdmin": False, "externalId": external_id}
        return admin.post("/identities", json=body).status_code

    assert create("old-name", "old-ext") == 201  # both values were freed by the PATCH
    assert create("new-name") == 400
    assert create("other", "old-ext") == 400
    assert emu.state.identity_by_name("new-name") is not None
    assert emu.state.identity_by_external_id("old-ext") is not None
    admin.delete(f"/identities/{ident}")
    assert emu.state.identity_by_name("new-name") is None
    assert create("new-name") == 201
    # An identity removed behind the API (out of band) leaves no false duplicate behind.
    held = emu.state.identity_by_external_id("old-ext")
    assert held is not None
    with emu.state.lock:
        del emu.state.identities[held.id]
    assert create("old-name", "old-ext") == 201
