"""Role attributes: sources, transforms, allow/deny, '#'/'@' dropping, admin group."""

from __future__ import annotations

import json
from typing import Any

import pytest

from app.constants import ZITI_EXTENSION
from app.mapping import (
    DroppedRole,
    GroupRef,
    MappingConfig,
    MappingConfigError,
    map_user,
    slugify,
)

GROUPS = (
    GroupRef("g1", "Ziti Admins", "ext-admins"),
    GroupRef("g2", "vpn-users", "ext-vpn"),
)
USER: dict[str, Any] = {
    "userName": "alice",
    "roles": [{"value": "Role-A", "display": "Role A"}],
    "entitlements": [{"value": "ent-1"}],
    ZITI_EXTENSION: {"roleAttributes": ["ext-attr"]},
}


def cfg(**kw: Any) -> MappingConfig:
    return MappingConfig(external_id="userName", **kw)


def roles(user: dict[str, Any] = USER, groups: tuple[GroupRef, ...] = GROUPS, **kw: Any) -> tuple[str, ...]:
    return map_user(user, groups, cfg(**kw)).identity.role_attributes


@pytest.mark.parametrize(
    ("switches", "expected"),
    [
        ({}, ("Role-A", "Ziti Admins", "ent-1", "ext-attr", "vpn-users")),
        ({"from_groups": False}, ("Role-A", "ent-1", "ext-attr")),
        ({"from_roles": False}, ("Ziti Admins", "ent-1", "ext-attr", "vpn-users")),
        ({"from_entitlements": False}, ("Role-A", "Ziti Admins", "ext-attr", "vpn-users")),
        ({"from_extension": False}, ("Role-A", "Ziti Admins", "ent-1", "vpn-users")),
        (
            {"from_groups": False, "from_roles": False, "from_entitlements": False, "from_extension": False},
            (),
        ),
        (
            {"group_attribute": "externalId", "from_roles": False},
            ("ent-1", "ext-admins", "ext-attr", "ext-vpn"),
        ),
        (
            {"static_role_attributes": ("zz-static", "all-users")},
            ("Role-A", "Ziti Admins", "all-users", "ent-1", "ext-attr", "vpn-users", "zz-static"),
        ),
    ],
)
def test_sources(switches: dict[str, Any], expected: tuple[str, ...]) -> None:
    assert roles(**switches) == expected


def test_result_is_sorted_and_deduplicated() -> None:
    user = {
        "userName": "u",
        "roles": [{"value": "b"}, {"value": "a"}, {"value": "b"}],
        "entitlements": [{"value": "a"}],
    }
    assert roles(user, (GroupRef("g", "b"),)) == ("a", "b")


def test_entra_json_encoded_roles_are_decoded() -> None:
    encoded = json.dumps({"id": "06b0", "value": "ziti-admin", "displayName": "Ziti Admin"})
    user = {"userName": "u", "roles": [{"value": encoded}, {"value": "plain"}, encoded]}
    result = map_user(user, [], cfg())
    assert result.identity.role_attributes == ("plain", "ziti-admin")
    assert result.warnings == ()


@pytest.mark.parametrize("bad", ["{not json", '{"id": "x"}', '{"value": 5}'])
def test_undecodable_json_role_is_kept_with_a_warning(bad: str) -> None:
    result = map_user({"userName": "u", "roles": [{"value": bad}]}, [], cfg())
    assert result.identity.role_attributes == (bad,)
    assert len(result.warnings) == 1 and "looks like JSON" in result.warnings[0]


@pytest.mark.parametrize(
    ("kw", "raw", "expected"),
    [
        ({"role_prefix": "scim-"}, "Eng Team", "scim-Eng Team"),
        ({"role_case": "lower"}, "Eng Team", "eng team"),
        ({"role_case": "upper"}, "Eng Team", "ENG TEAM"),
        ({"role_case": "none"}, "Eng Team", "Eng Team"),
        ({"role_slug": True}, "Eng Team", "eng-team"),
        ({"role_prefix": "SCIM_", "role_slug": True}, "Eng  Team!", "scim_eng-team"),
        ({"role_prefix": "Pre ", "role_case": "upper"}, "x", "PRE X"),
        ({}, "  padded  ", "padded"),
        ({"role_slug": True}, "Équipe Réseau", "equipe-reseau"),
        ({"role_slug": True}, "a/b\\c:d", "a-b-c-d"),
        ({"role_slug": True}, "v1.2_beta-x", "v1.2_beta-x"),
        ({"role_slug": True}, "--x--", "x"),
    ],
)
def test_transforms(kw: dict[str, Any], raw: str, expected: str) -> None:
    assert roles({"userName": "u"}, (GroupRef("g", raw),), **kw) == (expected,)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("Ziti Admins", "ziti-admins"), ("#ops", "ops"), ("@id", "id"), ("---", ""), ("ÄÖÜ ß", "aou")],
)
def test_slugify(value: str, expected: str) -> None:
    assert slugify(value) == expected


@pytest.mark.parametrize(
    ("kw", "expected", "dropped"),
    [
        ({"role_allow": ("vpn-*",)}, ("vpn-users",), {("Ziti Admins", "not-allowed")}),
        ({"role_deny": ("Ziti*",)}, ("vpn-users",), {("Ziti Admins", "denied")}),
        ({"role_allow": ("*",), "role_deny": ("vpn-*",)}, ("Ziti Admins",), {("vpn-users", "denied")}),
        (
            {"role_allow": ("vpn-users",), "role_deny": ("vpn-users",)},
            (),
            {("vpn-users", "denied"), ("Ziti Admins", "not-allowed")},
        ),
        (
            {"role_allow": ("ziti*",)},
            (),
            {("Ziti Admins", "not-allowed"), ("vpn-users", "not-allowed")},
        ),  # case-sensitive
        (
            {"role_prefix": "scim-", "role_allow": ("scim-vpn*",)},
            ("scim-vpn-users",),
            {("scim-Ziti Admins", "not-allowed")},
        ),
        ({"role_slug": True, "role_allow": ("ziti-*",)}, ("ziti-admins",), {("vpn-users", "not-allowed")}),
        ({"role_allow": ("z?ti*", "[v]pn-*")}, ("vpn-users",), {("Ziti Admins", "not-allowed")}),
        (
            {"role_deny": ("*",), "static_role_attributes": ("static",)},
            ("static",),
            {("Ziti Admins", "denied"), ("vpn-users", "denied")},
        ),
    ],
)
def test_allow_deny(kw: dict[str, Any], expected: tuple[str, ...], dropped: set[tuple[str, str]]) -> None:
    result = map_user({"userName": "u"}, GROUPS, cfg(**kw))
    assert result.identity.role_attributes == expected
    assert {(d.value, d.reason) for d in result.dropped} == dropped
    assert all(d.source == "group" for d in result.dropped)


def test_reserved_prefixes_and_empty_values_are_dropped_and_reported() -> None:
    user = {
        "userName": "u",
        "roles": [{"value": "#all"}, {"value": "ok"}, {"value": "  "}, {"display": "no value"}, {"value": 7}],
        "entitlements": ["@abc123"],
        ZITI_EXTENSION: {"roleAttributes": ["#x", "fine", None, ""]},
    }
    result = map_user(user, [GroupRef("g", "@admins"), GroupRef("h", "")], cfg())
    assert result.identity.role_attributes == ("fine", "ok")
    assert set(result.dropped) == {
        DroppedRole("#all", "role", "reserved-prefix"),
        DroppedRole("", "role", "empty"),
        DroppedRole("7", "role", "not-a-string"),
        DroppedRole("@abc123", "entitlement", "reserved-prefix"),
        DroppedRole("#x", "extension", "reserved-prefix"),
        DroppedRole("", "extension", "empty"),
        DroppedRole("@admins", "group", "reserved-prefix"),
        DroppedRole("", "group", "empty"),
    }


def test_prefix_or_slug_can_rescue_a_reserved_value() -> None:
    group = (GroupRef("g", "#ops"),)
    assert roles({"userName": "u"}, group, role_prefix="scim-") == ("scim-#ops",)
    assert roles({"userName": "u"}, group, role_slug=True) == ("ops",)


def test_group_without_external_id_warns() -> None:
    result = map_user({"userName": "u"}, [GroupRef("g9", "Name only")], cfg(group_attribute="externalId"))
    assert result.identity.role_attributes == ()
    assert result.warnings == ("group g9 has no externalId",)
    assert result.dropped == (DroppedRole("", "group", "empty"),)


@pytest.mark.parametrize(
    "extension",
    [{"roleAttributes": "solo"}, {"ROLEATTRIBUTES": ["solo"]}, {"roleAttributes": [{"value": "solo"}]}],
)
def test_extension_shapes(extension: dict[str, Any]) -> None:
    assert roles({"userName": "u", ZITI_EXTENSION.upper(): extension}, ()) == ("solo",)


def test_extension_not_an_object_warns() -> None:
    result = map_user({"userName": "u", ZITI_EXTENSION: ["x"]}, [], cfg())
    assert result.identity.role_attributes == ()
    assert result.warnings == (f"{ZITI_EXTENSION} is not an object; ignored",)


@pytest.mark.parametrize(
    ("kw", "groups", "is_admin"),
    [
        ({}, GROUPS, False),  # never without admin_group
        ({"admin_group": "Ziti Admins"}, GROUPS, True),
        ({"admin_group": "Ziti Admins"}, GROUPS[1:], False),
        ({"admin_group": "ziti admins"}, GROUPS, False),  # exact, case-sensitive
        ({"admin_group": "ext-admins"}, GROUPS, False),  # displayName mode ignores externalId
        ({"admin_group": "ext-admins", "group_attribute": "externalId"}, GROUPS, True),
        ({"admin_group": "Ziti Admins", "group_attribute": "externalId"}, GROUPS, False),
        ({"admin_group": "Ziti Admins", "from_groups": False}, GROUPS, True),  # membership, not roles
        ({"admin_group": "Ziti Admins", "role_deny": ("*",)}, GROUPS, True),
    ],
)
def test_admin_group(kw: dict[str, Any], groups: tuple[GroupRef, ...], is_admin: bool) -> None:
    assert map_user({"userName": "u"}, groups, cfg(**kw)).identity.is_admin is is_admin


def test_admin_never_from_roles_or_extension() -> None:
    user = {
        "userName": "u",
        "roles": [{"value": "Ziti Admins"}],
        ZITI_EXTENSION: {"roleAttributes": ["Ziti Admins"]},
    }
    assert map_user(user, [], cfg(admin_group="Ziti Admins")).identity.is_admin is False


@pytest.mark.parametrize(
    ("kw", "key"),
    [
        ({"static_role_attributes": ("#all",)}, "static_role_attributes"),
        ({"static_role_attributes": ("@x",)}, "static_role_attributes"),
        ({"static_role_attributes": ("",)}, "static_role_attributes"),
        ({"static_role_attributes": (" pad",)}, "static_role_attributes"),
        ({"role_prefix": "#"}, "role_prefix"),
        ({"role_allow": ("",)}, "role_allow"),
        ({"role_deny": ("",)}, "role_deny"),
        ({"role_case": "title"}, "role_case"),
        ({"group_attribute": "id"}, "group_attribute"),
        ({"admin_group": ""}, "admin_group"),
    ],
)
def test_role_config_errors(kw: dict[str, Any], key: str) -> None:
    with pytest.raises(MappingConfigError) as info:
        cfg(**kw)
    assert info.value.key == key
