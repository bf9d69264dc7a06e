"""Per-source mapping configuration: ``[sources.<name>.mapping]`` plus a preset from ``schemas/mappings``.

``load_mapping`` reads the table as parsed from TOML. ``preset`` (default ``"generic"``) names
``schemas/mappings/<preset>.json``, whose ``mapping`` object supplies defaults; every other key in the
table overrides the preset's key of the same name (lists are replaced, not merged). Unknown keys are an
error, so a typo fails at start-up instead of silently using a default.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, cast

from app.mapping.errors import MappingConfigError, PathSyntaxError
from app.mapping.scim_path import ScimPath, parse_path
from app.mapping.template import Template, parse_template
from app.resources import schemas_dir

PRESET_DIR = schemas_dir() / "mappings"
DEFAULT_PRESET = "generic"
RESERVED_ROLE_PREFIXES = ("#", "@")  # controller-api.md §3.3/§6: rejected by the controller

ExternalIdTransform = Literal["none", "lower", "strip"]
NameConflict = Literal["suffix", "refuse"]
GroupAttribute = Literal["displayName", "externalId"]
RoleCase = Literal["lower", "upper", "none"]

_EXTERNAL_ID_TRANSFORMS = ("none", "lower", "strip")
_NAME_CONFLICTS = ("suffix", "refuse")
_GROUP_ATTRIBUTES = ("displayName", "externalId")
_ROLE_CASES = ("lower", "upper", "none")
_PRESET_NAME = re.compile(r"^[a-z0-9][a-z0-9-]*$")
_PRESET_KEYS = frozenset({"description", "signer", "mapping"})


def _reserved(value: str) -> bool:
    return value.startswith(RESERVED_ROLE_PREFIXES)


@dataclass(frozen=True)
class MappingConfig:
    """How one source's SCIM users become OpenZiti identities. Every field is a config key.

    - ``external_id``: SCIM attribute path whose value becomes ``identity.externalId``, which an ext-jwt
      signer with ``useExternalId=true`` compares, case-sensitively, with its ``claimsProperty`` claim
      (controller-api.md §4). ``external_id_transform`` steps run in order (``none``, ``lower``, ``strip``).
    - ``primary_fallback``: ``[primary eq true]`` picks the first element when none is marked primary.
    - ``name_template`` / ``name_conflict``: identity name; ``suffix`` lets the reconciler try
      ``name-2``, ``name-3``… on a clash, ``refuse`` fails the request.
    - Role attributes: union of the enabled sources (``from_groups`` using ``group_attribute``,
      ``from_roles``, ``from_entitlements``, ``from_extension``), each value stripped then transformed by
      ``role_prefix`` → ``role_case`` → ``role_slug`` and scoped by ``role_allow``/``role_deny`` globs
      (fnmatch, case-sensitive, on the transformed value; deny wins; empty allow allows all). Values
      that end up empty or start with ``#``/``@`` are dropped. ``static_role_attributes`` are added
      verbatim: they are the operator's own, so no transform or scope applies to them.
    - ``admin_group``: ``isAdmin`` is true only when this is set and the user is in a group whose
      ``group_attribute`` value equals it exactly. Never from roles, entitlements or the extension.
    - ``auth_policy_id``: ``identity.authPolicyId``; it must allow ext-jwt primary auth (the auth policy's
      ``primary.extJwt``, ``controller/db/auth_policy_store.go``; controller-api.md §5).
    - ``claims_property``: the ext-jwt signer claim this mapping pairs with (from the preset; informative,
      for diagnostics). ``preset``: the preset the config was built from.
    """

    external_id: str
    external_id_transform: tuple[ExternalIdTransform, ...] = ()
    primary_fallback: bool = True
    name_template: str = "{userName}"
    name_conflict: NameConflict = "suffix"
    group_attribute: GroupAttribute = "displayName"
    from_groups: bool = True
    from_roles: bool = True
    from_entitlements: bool = True
    from_extension: bool = True
    static_role_attributes: tuple[str, ...] = ()
    role_prefix: str = ""
    role_case: RoleCase = "none"
    role_slug: bool = False
    role_allow: tuple[str, ...] = ()
    role_deny: tuple[str, ...] = ()
    admin_group: str | None = None
    auth_policy_id: str = "default"
    claims_property: str | None = None
    preset: str | None = None
    external_id_path: ScimPath = field(init=False, repr=False, compare=False)
    template: Template = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "external_id_path", parse_path(self.external_id))
        except PathSyntaxError as exc:
            raise MappingConfigError("external_id", str(exc)) from exc
        try:
            template = parse_template(self.name_template)
        except PathSyntaxError as exc:
            raise MappingConfigError("name_template", str(exc)) from exc
        if not template.paths:
            raise MappingConfigError("name_template", "needs at least one {attribute} placeholder")
        object.__setattr__(self, "template", template)
        _check_choice("name_conflict", self.name_conflict, _NAME_CONFLICTS)
        _check_choice("group_attribute", self.group_attribute, _GROUP_ATTRIBUTES)
        _check_choice("role_case", self.role_case, _ROLE_CASES)
        for step in self.external_id_transform:
            _check_choice("external_id_transform", step, _EXTERNAL_ID_TRANSFORMS)
        for value in self.static_role_attributes:
            if not value.strip() or _reserved(value) or value != value.strip():
                raise MappingConfigError(
                    "static_role_attributes",
                    f"{value!r} is not a valid role attribute (empty, padded, or starts with '#'/'@')",
                )
        if _reserved(self.role_prefix):
            raise MappingConfigError("role_prefix", "must not start with '#' or '@'")
        for key in ("role_allow", "role_deny"):
            if any(not pattern for pattern in getattr(self, key)):
                raise MappingConfigError(key, "patterns must be non-empty strings")
        if not self.auth_policy_id.strip():
            raise MappingConfigError("auth_policy_id", "must not be empty")
        if self.admin_group is not None and not self.admin_group:
            raise MappingConfigError("admin_group", "must not be empty (omit it to disable)")

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> MappingConfig:
        """Build from a plain dict (TOML types), checking every key's type."""
        known = {f.name: f for f in fields(cls) if f.init}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise MappingConfigError(unknown[0], f"unknown key (known keys: {', '.join(sorted(known))})")
        if "external_id" not in data:
            raise MappingConfigError("external_id", "is required")
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            kwargs[key] = _coerce(key, value)
        if kwargs.get("admin_group") == "":
            kwargs["admin_group"] = None  # TOML has no null: an empty string turns the admin group off
        return cls(**kwargs)


_BOOL_KEYS = frozenset(
    {"primary_fallback", "from_groups", "from_roles", "from_entitlements", "from_extension", "role_slug"}
)
_LIST_KEYS = frozenset({"static_role_attributes", "role_allow", "role_deny"})
_OPTIONAL_KEYS = frozenset({"admin_group", "claims_property", "preset"})


def _check_choice(key: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise MappingConfigError(key, f"{value!r} is not one of {', '.join(choices)}")


def _coerce(key: str, value: object) -> object:
    if key in _BOOL_KEYS:
        if not isinstance(value, bool):
            raise MappingConfigError(key, "must be true or false")
        return value
    if key in _LIST_KEYS or key == "external_id_transform":
        if key == "external_id_transform" and isinstance(value, str):
            value = [value]
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise MappingConfigError(key, "must be a list of strings")
        if key == "external_id_transform":
            return tuple(v for v in value if v != "none")  # "none" is the identity step
        return tuple(value)
    if value is None and key in _OPTIONAL_KEYS:
        return None
    if not isinstance(value, str):
        raise MappingConfigError(key, "must be a string")
    return value


def available_presets(preset_dir: Path | None = None) -> tuple[str, ...]:
    directory = preset_dir or PRESET_DIR
    return tuple(sorted(p.stem for p in directory.glob("*.json") if _PRESET_NAME.match(p.stem)))


def load_preset(name: str, preset_dir: Path | None = None) -> dict[str, Any]:
    """Read and check ``<preset_dir>/<name>.json``; returns ``{"description", "signer", "mapping"}``."""
    directory = preset_dir or PRESET_DIR
    if not isinstance(name, str) or not _PRESET_NAME.match(name):
        raise MappingConfigError("preset", f"{name!r} is not a preset name")
    path = directory / f"{name}.json"
    if not path.is_file():
        choices = ", ".join(available_presets(directory)) or "none found"
        raise MappingConfigError("preset", f"unknown preset {name!r} (available: {choices})")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MappingConfigError("preset", f"{path}: cannot read preset: {exc}") from exc
    if not isinstance(doc, dict) or set(doc) != _PRESET_KEYS:
        raise MappingConfigError("preset", f"{path}: must be an object with keys {sorted(_PRESET_KEYS)}")
    signer, mapping = doc["signer"], doc["mapping"]
    if not isinstance(doc["description"], str) or not doc["description"].strip():
        raise MappingConfigError("preset", f"{path}: description must be a non-empty string")
    if not isinstance(signer, dict) or not isinstance(signer.get("claimsProperty"), str):
        raise MappingConfigError("preset", f"{path}: signer.claimsProperty must be a string")
    if not isinstance(mapping, dict) or {"preset", "claims_property"} & set(mapping):
        raise MappingConfigError("preset", f"{path}: mapping must be an object without those two keys")
    return cast(dict[str, Any], doc)


def load_mapping(config: Mapping[str, object], preset_dir: Path | None = None) -> MappingConfig:
    """Build the `MappingConfig` for one ``[sources.<name>.mapping]`` table."""
    if not isinstance(config, Mapping):
        raise MappingConfigError("mapping", "must be a table")
    name = config.get("preset", DEFAULT_PRESET)
    if not isinstance(name, str):
        raise MappingConfigError("preset", "must be a string")
    preset = load_preset(name, preset_dir)
    merged: dict[str, object] = dict(preset["mapping"])
    merged["claims_property"] = preset["signer"]["claimsProperty"]
    merged.update(config)
    merged["preset"] = name
    return MappingConfig.from_dict(merged)
