"""How an ext-jwt signer's ``claimsProperty`` selects a claim, and which claim a source's mapping needs.

Controller semantics (controller-api.md §4, step 3):

- ziti **1.x** reads a top-level claim named exactly ``claimsProperty`` (``/email`` would look for a claim
  literally called ``/email``);
- ziti **2.x** reads a JSON Pointer (RFC 6901) with a leading ``/`` added when missing, so ``email`` and
  ``/email`` are the same claim and ``/ext/uid`` reaches a nested one.

A source's mapping pairs with a claim (``claims_property``): written in the mapping table, taken from the
preset's signer (``schemas/mappings/<preset>.json``) while the preset's ``external_id`` is kept, or
inferred from the ``external_id`` path otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from app.constants import ENTERPRISE_EXTENSION
from app.mapping import MappingConfig, MappingConfigError, load_preset

ControllerMajor = int | None
"""1 or 2 for ziti 1.x / 2.x; None when the version could not be established."""

# Claims a preset also accepts besides its signer's claimsProperty (from the preset descriptions).
_PRESET_ALTERNATES: dict[str, tuple[str, ...]] = {"entra": ("upn",)}

# external_id attribute (lower case) -> the claims that usually carry the same value, best first.
_INFERRED: dict[str, tuple[str, ...]] = {
    "emails": ("email",),
    "username": ("preferred_username", "upn", "email", "username", "unique_name"),
    "externalid": ("sub", "oid", "uid"),
    "id": ("sub",),
}

# claim -> the external_id that pairs with it (for "or change the mapping" fixes).
MAPPING_FOR_CLAIM: dict[str, str] = {
    "email": "emails[primary eq true].value",
    "preferred_username": "userName",
    "upn": "userName",
    "username": "userName",
    "unique_name": "userName",
    "sub": "externalId",
    "oid": "externalId",
    "uid": "externalId",
}


def pointer_segments(prop: str) -> tuple[str, ...]:
    """RFC 6901 reference tokens of ``prop`` read as a 2.x pointer (``~1`` → ``/``, ``~0`` → ``~``)."""
    pointer = prop if prop.startswith("/") else "/" + prop
    return tuple(part.replace("~1", "/").replace("~0", "~") for part in pointer.split("/")[1:])


def claim_path(prop: str, major: ControllerMajor) -> tuple[str, ...]:
    """The claim ``prop`` selects: one top-level name on 1.x, pointer segments on 2.x (or unknown)."""
    return (prop,) if major == 1 else pointer_segments(prop)


def claim_label(path: tuple[str, ...]) -> str:
    """``email`` for a top-level claim, ``/ext/uid`` for a nested one."""
    if len(path) == 1 and "/" not in path[0]:
        return path[0]
    return "/" + "/".join(part.replace("~", "~0").replace("/", "~1") for part in path)


def resolve_claim(claims: Mapping[str, Any], prop: str, major: ControllerMajor) -> Any:
    """The value the controller reads from ``claims`` (None when absent)."""
    node: Any = claims
    for part in claim_path(prop, major):
        if isinstance(node, Mapping):
            if part not in node:
                return None
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return node


def same_claim(signer_prop: str, claim: str, major: ControllerMajor) -> bool:
    """Whether the signer's ``claimsProperty`` selects ``claim`` (a name or a pointer) on this controller."""
    return claim_path(signer_prop, major) == pointer_segments(claim)


@dataclass(frozen=True)
class ClaimExpectation:
    """The claims whose value equals the ``externalId`` a source writes; ``claims[0]`` is recommended."""

    claims: tuple[str, ...]
    origin: str

    @property
    def known(self) -> bool:
        return bool(self.claims)


def _root_attribute(mapping: MappingConfig) -> str | None:
    path = mapping.external_id_path
    if path.schema is not None and path.schema.lower() == ENTERPRISE_EXTENSION.lower():
        return None
    return path.attribute.lower()


def expected_claims(raw_mapping: Mapping[str, object], mapping: MappingConfig) -> ClaimExpectation:
    """Which token claim must carry this source's externalId (see the module docstring for the order)."""
    explicit = raw_mapping.get("claims_property")
    if isinstance(explicit, str) and explicit:
        return ClaimExpectation((explicit,), "claims_property in the mapping")
    preset_name = mapping.preset
    if preset_name:
        try:
            preset = load_preset(preset_name)
        except MappingConfigError:
            preset = None
        if preset is not None and preset["mapping"].get("external_id") == mapping.external_id:
            signer = preset["signer"]
            claims = [str(signer["claimsProperty"])]
            claims += [
                str(v) for k, v in signer.items() if k.startswith("claimsProperty") and k != "claimsProperty"
            ]
            claims += list(_PRESET_ALTERNATES.get(preset_name, ()))
            return ClaimExpectation(tuple(dict.fromkeys(claims)), f"preset {preset_name!r}")
    root = _root_attribute(mapping)
    inferred = _INFERRED.get(root or "", ())
    origin = f"inferred from external_id = {mapping.external_id!r}"
    return ClaimExpectation(inferred, origin)
