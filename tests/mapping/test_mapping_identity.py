"""map_user's externalId handling, DesiredIdentity.fingerprint, candidate_names, explain_external_id."""

from __future__ import annotations

import dataclasses
import hashlib
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.constants import ENTERPRISE_EXTENSION as ENT
from app.constants import ZITI_EXTENSION
from app.mapping import (
    DesiredIdentity,
    GroupRef,
    MappingConfig,
    MappingError,
    candidate_names,
    explain_external_id,
    load_mapping,
    map_user,
)

USER: dict[str, Any] = {
    "userName": "  Alice.Smith  ",
    "externalId": "00uABC",
    "name": {"givenName": "Alice", "familyName": "Smith"},
    "emails": [{"value": "Alice@Example.COM", "type": "work", "primary": True}, {"value": "a@home.example"}],
    ENT: {"employeeNumber": "E-7", "badge": 12},
    ZITI_EXTENSION: {"roleAttributes": ["vpn"], "subject": "ziti-sub-1"},
}


@pytest.mark.parametrize(
    ("path", "transform", "expected"),
    [
        ("emails[primary eq true].value", (), "Alice@Example.COM"),
        ("emails[primary eq true].value", ("lower",), "alice@example.com"),
        ('emails[type eq "work"].value', ("lower",), "alice@example.com"),
        ("userName", ("strip",), "Alice.Smith"),
        ("userName", ("strip", "lower"), "alice.smith"),
        ("userName", ("lower", "strip"), "alice.smith"),
        ("externalId", (), "00uABC"),  # case is preserved: ziti matches case-sensitively
        ("name.givenName", (), "Alice"),
        (f"{ENT}:employeeNumber", ("lower",), "e-7"),
        (f"{ENT}:badge", (), "12"),
        (f"{ZITI_EXTENSION}:subject", (), "ziti-sub-1"),
        ("emails", (), "Alice@Example.COM"),  # a complex value stands for its "value"
        ("emails.value", (), "Alice@Example.COM"),  # several values → the first
    ],
)
def test_external_id_paths_and_transforms(path: str, transform: tuple[Any, ...], expected: str) -> None:
    config = MappingConfig(external_id=path, external_id_transform=transform)
    assert map_user(USER, [], config).identity.external_id == expected


def test_padding_without_strip_is_kept_and_warned() -> None:
    result = map_user(USER, [], MappingConfig(external_id="userName"))
    assert result.identity.external_id == "  Alice.Smith  "
    assert any("surrounding whitespace" in w for w in result.warnings)


def test_several_values_are_warned() -> None:
    result = map_user(USER, [], MappingConfig(external_id="emails.value"))
    assert "2 values found; used the first" in result.warnings


@pytest.mark.parametrize(
    ("user", "path", "fragment"),
    [
        ({"userName": "u"}, "externalId", "absent, empty or not text"),
        ({"userName": "u", "externalId": ""}, "externalId", "absent, empty or not text"),
        ({"userName": "u", "externalId": "   "}, "externalId", "absent, empty or not text"),
        ({"userName": "u", "externalId": None}, "externalId", "absent"),
        ({"userName": "u", "externalId": {"x": 1}}, "externalId", "not text"),
        ({"userName": "u", "emails": []}, "emails[primary eq true].value", "absent"),
        ({"userName": "u", "emails": [{"type": "work"}]}, "emails[primary eq true].value", "marked primary"),
        ({"userName": "u"}, f"{ENT}:employeeNumber", f"extension {ENT} is absent"),
        ({"userName": "u", ENT: {}}, f"{ENT}:employeeNumber", "absent"),
    ],
)
def test_missing_external_id_is_a_mapping_error(user: dict[str, Any], path: str, fragment: str) -> None:
    config = MappingConfig(external_id=path)
    with pytest.raises(MappingError) as info:
        map_user(user, [], config)
    assert info.value.attribute == path
    assert fragment in info.value.detail
    assert "no value for the OpenZiti externalId" in str(info.value)


def test_list_external_id_gives_first_element() -> None:
    # a multi-valued attribute flattens; an odd IdP sending a list still yields a usable first value
    assert (
        map_user(
            {"userName": "u", "externalId": ["a", "b"]}, [], MappingConfig(external_id="externalId")
        ).identity.external_id
        == "a"
    )


def test_non_object_user_is_a_mapping_error() -> None:
    with pytest.raises(MappingError) as info:
        map_user(["not", "a", "user"], [], MappingConfig(external_id="userName"))  # type: ignore[arg-type]
    assert "JSON object" in info.value.detail


def test_name_error_propagates_from_map_user() -> None:
    config = MappingConfig(external_id="externalId", name_template="{displayName}")
    with pytest.raises(MappingError) as info:
        map_user({"externalId": "x"}, [], config)
    assert info.value.attribute == "displayName"


def test_auth_policy_and_type() -> None:
    identity = map_user(
        USER, [], MappingConfig(external_id="externalId", auth_policy_id="p-ext-jwt")
    ).identity
    assert (identity.auth_policy_id, identity.type) == ("p-ext-jwt", "User")


# ---------------------------------------------------------------- fingerprint

BASE = DesiredIdentity("ext", "name", ("a", "b"), "default", False)


def test_fingerprint_is_stable_and_hex() -> None:
    assert BASE.fingerprint() == DesiredIdentity("ext", "name", ("a", "b"), "default", False).fingerprint()
    assert re.fullmatch(r"[0-9a-f]{64}", BASE.fingerprint())
    # pinned: a change here would make every reconciler think every identity changed
    canonical = (
        '{"authPolicyId":"default","externalId":"ext","isAdmin":false,"name":"name",'
        '"roleAttributes":["a","b"],"type":"User"}'
    )
    assert BASE.fingerprint() == hashlib.sha256(canonical.encode()).hexdigest()


@pytest.mark.parametrize(
    "change",
    [
        {"external_id": "ext2"},
        {"name": "name2"},
        {"role_attributes": ("a",)},
        {"role_attributes": ("a", "b", "c")},
        {"role_attributes": ("a,b",)},  # no ambiguity from joining
        {"auth_policy_id": "other"},
        {"is_admin": True},
    ],
)
def test_fingerprint_changes_with_every_field(change: dict[str, Any]) -> None:
    assert dataclasses.replace(BASE, **change).fingerprint() != BASE.fingerprint()


def test_identity_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        BASE.name = "x"  # type: ignore[misc]


def test_mapping_is_deterministic_regardless_of_group_order() -> None:
    config = MappingConfig(external_id="externalId")
    g1, g2 = GroupRef("1", "b-group"), GroupRef("2", "a-group")
    assert map_user(USER, [g1, g2], config).identity == map_user(USER, [g2, g1], config).identity


# ---------------------------------------------------------------- candidate names


@pytest.mark.parametrize(
    ("n", "expected"),
    [
        (1, ["alice"]),
        (3, ["alice", "alice-2", "alice-3"]),
        (5, ["alice", "alice-2", "alice-3", "alice-4", "alice-5"]),
    ],
)
def test_candidate_names(n: int, expected: list[str]) -> None:
    assert list(candidate_names("alice", n)) == expected


def test_candidate_names_rejects_zero() -> None:
    with pytest.raises(ValueError):
        list(candidate_names("alice", 0))


# ---------------------------------------------------------------- explain


def test_explain_success_with_transform_and_fallback() -> None:
    text = explain_external_id({"emails": ["Bob@X.org"]}, load_mapping({}))
    assert text == (
        "externalId 'bob@x.org' from emails[primary eq true].value; sent as 'Bob@X.org', then lower; "
        "no element of emails is marked primary; used the first one "
        "(preset 'generic', pair with an ext-jwt signer using claimsProperty 'email' and useExternalId=true)"
    )


def test_explain_failure_does_not_raise() -> None:
    text = explain_external_id({"userName": "x"}, load_mapping({"preset": "okta"}))
    assert text.startswith("no externalId from externalId: no value for the OpenZiti externalId")
    assert "claimsProperty 'uid'" in text
    assert explain_external_id("junk", load_mapping({})).startswith("no externalId from the user:")  # type: ignore[arg-type]


def test_explain_without_preset_or_claim() -> None:
    text = explain_external_id({"userName": "u"}, MappingConfig(external_id="userName"))
    assert text == (
        "externalId 'u' from userName "
        "(pair with an ext-jwt signer whose claimsProperty carries this value, useExternalId=true)"
    )


# ---------------------------------------------------------------- robustness

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
texts = st.text(max_size=8)
addresses = st.from_regex(r"[A-Za-z]{1,5}@[a-z]{1,5}\.org", fullmatch=True)
email_lists = st.lists(
    st.fixed_dictionaries(
        {"value": addresses | json_values},
        optional={"primary": st.booleans() | st.sampled_from(["True", "false"]), "type": texts},
    ),
    min_size=1,
    max_size=3,
)
role_lists = st.lists(
    st.fixed_dictionaries({"value": json_values | texts | addresses}) | json_values, max_size=3
)
users = st.fixed_dictionaries(
    {"emails": email_lists | json_values},
    optional={
        "userName": texts | json_values,
        "roles": role_lists,
        "entitlements": role_lists | json_values,
        "name": st.fixed_dictionaries({}, optional={"givenName": texts | json_values}) | json_values,
        ENT: st.dictionaries(texts, json_values, max_size=3) | json_values,
        ZITI_EXTENSION: st.fixed_dictionaries({"roleAttributes": role_lists | json_values}) | json_values,
    },
)
ROBUST_CONFIG = MappingConfig(
    external_id="emails[primary eq true].value",
    name_template='{name.givenName} {userName} {emails[type eq "work"].value} {emails.value}',
    role_slug=True,
    admin_group="x",
)


@settings(max_examples=300, deadline=None, database=None)
@given(user=users, group_names=st.lists(st.text(max_size=6), max_size=3))
def test_arbitrary_json_user_maps_or_raises_mapping_error(
    user: dict[str, Any], group_names: list[str]
) -> None:
    groups = [GroupRef(str(i), name, name or None) for i, name in enumerate(group_names)]
    try:
        result = map_user(user, groups, ROBUST_CONFIG)
    except MappingError:
        return
    identity = result.identity
    assert identity.external_id.strip() and identity.name == identity.name.strip() and identity.name
    assert list(identity.role_attributes) == sorted(set(identity.role_attributes))
    assert not any(r.startswith(("#", "@")) or not r for r in identity.role_attributes)
    assert explain_external_id(user, ROBUST_CONFIG).startswith("externalId ")
