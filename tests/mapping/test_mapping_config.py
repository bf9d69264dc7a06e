"""load_mapping: presets, overrides, type checks; preset files themselves."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import pytest

from app.mapping import (
    DEFAULT_PRESET,
    PRESET_DIR,
    MappingConfig,
    MappingConfigError,
    available_presets,
    load_mapping,
    load_preset,
)

EXPECTED_PRESETS = {
    # preset: (external_id path, transform, signer claimsProperty)
    "generic": ("emails[primary eq true].value", ("lower",), "email"),
    "authentik": ("externalId", (), "sub"),
    "zitadel": ("externalId", (), "sub"),
    "asgardeo": ("emails[primary eq true].value", (), "email"),
    "entra": ("userName", (), "preferred_username"),
    "entra-oid": ("externalId", (), "oid"),
    "okta": ("externalId", (), "uid"),
}


def test_all_presets_present() -> None:
    assert set(available_presets()) == set(EXPECTED_PRESETS)


@pytest.mark.parametrize("name", sorted(EXPECTED_PRESETS))
def test_preset_loads_with_documented_choice(name: str) -> None:
    config = load_mapping({"preset": name})
    path, transform, claim = EXPECTED_PRESETS[name]
    assert (config.external_id, config.external_id_transform, config.claims_property) == (
        path,
        transform,
        claim,
    )
    assert config.preset == name
    assert config.admin_group is None  # no preset grants admin
    assert config.auth_policy_id == "default"
    assert config.primary_fallback is True


@pytest.mark.parametrize("name", sorted(EXPECTED_PRESETS))
def test_preset_description_names_its_signer_claim(name: str) -> None:
    doc = json.loads((PRESET_DIR / f"{name}.json").read_text(encoding="utf-8"))
    claim = doc["signer"]["claimsProperty"]
    assert f"claimsProperty is '{claim}'" in doc["description"]
    assert doc["signer"]["useExternalId"] is True


def test_default_preset_is_generic() -> None:
    assert DEFAULT_PRESET == "generic"
    assert load_mapping({}) == load_mapping({"preset": "generic"})


def test_explicit_keys_override_preset() -> None:
    config = load_mapping(
        {
            "preset": "authentik",
            "external_id": "userName",
            "external_id_transform": "lower",
            "static_role_attributes": ["all"],
            "role_allow": ["ziti-*"],
            "claims_property": "preferred_username",
            "auth_policy_id": "ext-jwt-only",
            "admin_group": "ziti-admins",
        }
    )
    assert config.preset == "authentik"
    assert config.external_id == "userName"
    assert config.external_id_transform == ("lower",)
    assert config.static_role_attributes == ("all",)
    assert config.role_allow == ("ziti-*",)
    assert config.claims_property == "preferred_username"
    assert config.auth_policy_id == "ext-jwt-only"
    assert config.admin_group == "ziti-admins"


def test_from_toml_table() -> None:
    doc = tomllib.loads(
        """
        [sources.corp.mapping]
        preset = "entra"
        external_id_transform = ["strip", "lower"]
        name_template = "{name.givenName} {name.familyName}"
        name_conflict = "refuse"
        from_entitlements = false
        role_prefix = "entra-"
        role_case = "lower"
        role_slug = true
        role_deny = ["entra-guest*"]
        admin_group = ""
        """
    )
    config = load_mapping(doc["sources"]["corp"]["mapping"])
    assert config.external_id_transform == ("strip", "lower")
    assert config.name_conflict == "refuse"
    assert config.from_entitlements is False
    assert (config.role_prefix, config.role_case, config.role_slug) == ("entra-", "lower", True)
    assert config.role_deny == ("entra-guest*",)
    assert config.admin_group is None  # "" switches it off
    assert [p.text for p in config.template.paths] == ["name.givenName", "name.familyName"]


def test_none_transform_is_identity() -> None:
    assert load_mapping({"external_id_transform": "none"}).external_id_transform == ()
    assert load_mapping({"external_id_transform": ["none", "strip"]}).external_id_transform == ("strip",)


@pytest.mark.parametrize(
    ("table", "key", "fragment"),
    [
        ({"preset": "nope"}, "preset", "unknown preset 'nope' (available: asgardeo, authentik"),
        ({"preset": "../etc/passwd"}, "preset", "is not a preset name"),
        ({"preset": 3}, "preset", "must be a string"),
        ({"extrnal_id": "userName"}, "extrnal_id", "unknown key"),
        (
            {"external_id": "emails[type eq work].value"},
            "external_id",
            "mapping.external_id: unexpected 'work', expected a value (a quoted string, a number, true, false or "
            "null) at position 15 in 'emails[type eq work].value'",
        ),
        ({"external_id": 5}, "external_id", "must be a string"),
        ({"external_id_transform": "upper"}, "external_id_transform", "'upper' is not one of"),
        ({"external_id_transform": [1]}, "external_id_transform", "list of strings"),
        ({"name_template": "{userName"}, "name_template", "unclosed"),
        ({"name_conflict": "overwrite"}, "name_conflict", "is not one of suffix, refuse"),
        ({"from_groups": "yes"}, "from_groups", "true or false"),
        ({"role_slug": 1}, "role_slug", "true or false"),
        ({"role_allow": "x*"}, "role_allow", "list of strings"),
        ({"static_role_attributes": ["ok", 2]}, "static_role_attributes", "list of strings"),
        ({"auth_policy_id": " "}, "auth_policy_id", "must not be empty"),
        ({"auth_policy_id": None}, "auth_policy_id", "must be a string"),
    ],
)
def test_config_errors(table: dict[str, Any], key: str, fragment: str) -> None:
    with pytest.raises(MappingConfigError) as info:
        load_mapping(table)
    assert info.value.key == key
    assert fragment in str(info.value)


def test_from_dict_requires_external_id() -> None:
    with pytest.raises(MappingConfigError) as info:
        MappingConfig.from_dict({"name_template": "{userName}"})
    assert info.value.key == "external_id"


def test_not_a_table() -> None:
    with pytest.raises(MappingConfigError):
        load_mapping(["preset"])  # type: ignore[arg-type]


GOOD = {"description": "d", "signer": {"claimsProperty": "sub"}, "mapping": {"external_id": "externalId"}}


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("{not json", "cannot read preset"),
        (json.dumps([1]), "must be an object with keys"),
        (json.dumps({**GOOD, "extra": 1}), "must be an object with keys"),
        (json.dumps({**GOOD, "description": " "}), "description must be a non-empty string"),
        (json.dumps({**GOOD, "signer": {}}), "signer.claimsProperty must be a string"),
        (json.dumps({**GOOD, "mapping": {"preset": "x"}}), "without those two keys"),
        (json.dumps({**GOOD, "mapping": {"external_id": "userName", "bogus": 1}}), "unknown key"),
    ],
)
def test_broken_preset_files(tmp_path: Path, content: str, fragment: str) -> None:
    (tmp_path / "custom.json").write_text(content, encoding="utf-8")
    with pytest.raises(MappingConfigError) as info:
        load_mapping({"preset": "custom"}, preset_dir=tmp_path)
    assert fragment in str(info.value)


def test_custom_preset_dir(tmp_path: Path) -> None:
    (tmp_path / "mine.json").write_text(json.dumps(GOOD), encoding="utf-8")
    (tmp_path / "Not_A_Preset.json").write_text("{}", encoding="utf-8")
    assert available_presets(tmp_path) == ("mine",)
    config = load_mapping({"preset": "mine"}, preset_dir=tmp_path)
    assert (config.external_id, config.claims_property, config.preset) == ("externalId", "sub", "mine")
    assert load_preset("mine", tmp_path)["description"] == "d"
