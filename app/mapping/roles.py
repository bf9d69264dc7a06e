"""OpenZiti role attributes for one user (entity ``roleAttributes``, controller-api.md §3.3 and §6).

Sources, each switchable in `MappingConfig`:
- groups: ``GroupRef.display_name`` or ``GroupRef.external_id`` (``group_attribute``);
- ``roles[].value`` and ``entitlements[].value`` (RFC 7643 §4.1.2). Entra's
  ``AppRoleAssignmentsComplex`` sends each value as a JSON-encoded object
  ``"{\\"id\\":…,\\"value\\":\\"ziti-admin\\",…}"``; such strings are decoded
  and their ``value`` is used;
- the ziti extension's ``roleAttributes`` (``urn:openziti:scim:schemas:extension:ziti:2.0:User``);
- ``static_role_attributes``, added verbatim.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase

from app.constants import ZITI_EXTENSION
from app.mapping.config import RESERVED_ROLE_PREFIXES, MappingConfig
from app.mapping.identity import DroppedRole, DropReason, GroupRef, RoleSource
from app.mapping.value_filter import ci_get

_NOT_SLUG = re.compile(r"[^a-z0-9._-]+")
_DASHES = re.compile(r"-{2,}")


@dataclass(frozen=True)
class RoleOutcome:
    attributes: tuple[str, ...]
    dropped: tuple[DroppedRole, ...]
    warnings: tuple[str, ...]


def slugify(value: str) -> str:
    """Lower-case; accents removed (NFKD); anything outside ``[a-z0-9._-]`` becomes ``-``; runs of ``-``
    collapsed and trimmed from both ends, so ``"#Ziti Admins!"`` gives ``"ziti-admins"``."""
    decomposed = unicodedata.normalize("NFKD", value)
    ascii_ish = "".join(c for c in decomposed if not unicodedata.combining(c)).lower()
    return _DASHES.sub("-", _NOT_SLUG.sub("-", ascii_ish)).strip("-")


def transform(value: str, config: MappingConfig) -> str:
    """strip → ``role_prefix`` → ``role_case`` → ``role_slug``."""
    out = config.role_prefix + value.strip()
    if config.role_case == "lower":
        out = out.lower()
    elif config.role_case == "upper":
        out = out.upper()
    if config.role_slug:
        out = slugify(out)
    return out


def _decode(value: str, warnings: list[str]) -> str:
    if not value.lstrip().startswith("{"):
        return value
    try:
        doc = json.loads(value)
    except ValueError:
        doc = None
    inner = doc.get("value") if isinstance(doc, dict) else None
    if isinstance(inner, str):
        return inner
    warnings.append(f"role value {value[:80]!r} looks like JSON but has no string 'value'; kept as is")
    return value


def _multi_values(container: Mapping[str, object], attribute: str) -> Iterator[object]:
    """The ``value`` of each element of a multi-valued attribute (a bare element is its own value)."""
    raw = ci_get(container, attribute)
    if raw is None:
        return
    for element in raw if isinstance(raw, list) else [raw]:
        yield ci_get(element, "value") if isinstance(element, Mapping) else element


def _candidates(
    user: Mapping[str, object], groups: Sequence[GroupRef], config: MappingConfig, warnings: list[str]
) -> Iterator[tuple[RoleSource, object]]:
    if config.from_groups:
        for group in groups:
            name = group.display_name if config.group_attribute == "displayName" else group.external_id
            if name is None:
                warnings.append(f"group {group.id} has no {config.group_attribute}")
            yield "group", name
    multi_sources: tuple[tuple[RoleSource, str, bool], ...] = (
        ("role", "roles", config.from_roles),
        ("entitlement", "entitlements", config.from_entitlements),
    )
    for source, attribute, enabled in multi_sources:
        if enabled:
            for value in _multi_values(user, attribute):
                yield source, (_decode(value, warnings) if isinstance(value, str) else value)
    if config.from_extension:
        extension = ci_get(user, ZITI_EXTENSION)
        if extension is not None and not isinstance(extension, Mapping):
            warnings.append(f"{ZITI_EXTENSION} is not an object; ignored")
        elif extension is not None:
            # Published as one comma-separated string (IdP custom attributes are single-valued);
            # a list is accepted too.
            for value in _multi_values(extension, "roleAttributes"):
                if isinstance(value, str):
                    for part in value.split(","):
                        yield "extension", part.strip()
                else:
                    yield "extension", value


def _drop_reason(value: str, config: MappingConfig) -> DropReason | None:
    if not value:
        return "empty"
    if value.startswith(RESERVED_ROLE_PREFIXES):
        return "reserved-prefix"
    if any(fnmatchcase(value, pattern) for pattern in config.role_deny):
        return "denied"
    if config.role_allow and not any(fnmatchcase(value, pattern) for pattern in config.role_allow):
        return "not-allowed"
    return None


def collect_role_attributes(
    user: Mapping[str, object], groups: Sequence[GroupRef], config: MappingConfig
) -> RoleOutcome:
    """Role attributes (sorted, unique), the candidates dropped with reasons, and warnings."""
    warnings: list[str] = []
    kept: set[str] = set(config.static_role_attributes)
    dropped: dict[DroppedRole, None] = {}  # insertion-ordered set
    for source, raw in _candidates(user, groups, config, warnings):
        if raw is None:
            dropped[DroppedRole("", source, "empty")] = None
            continue
        if not isinstance(raw, str):
            dropped[DroppedRole(repr(raw)[:80], source, "not-a-string")] = None
            continue
        value = transform(raw, config)
        reason = _drop_reason(value, config)
        if reason is None:
            kept.add(value)
        else:
            dropped[DroppedRole(value, source, reason)] = None
    return RoleOutcome(tuple(sorted(kept)), tuple(dropped), tuple(warnings))
