"""Mapping stage: SCIM User (+ groups) → desired OpenZiti identity.

Pure code; only the preset files are read from disk.

Entry points: `load_mapping` (config table → `MappingConfig`), `map_user` (→ `MappingResult`),
`explain_external_id` (diagnostics), `candidate_names` (name-clash suffixes).
"""

from __future__ import annotations

from app.mapping.config import (
    DEFAULT_PRESET,
    PRESET_DIR,
    MappingConfig,
    available_presets,
    load_mapping,
    load_preset,
)
from app.mapping.errors import MappingConfigError, MappingError, PathSyntaxError
from app.mapping.identity import (
    DesiredIdentity,
    DroppedRole,
    GroupRef,
    MappingResult,
    candidate_names,
)
from app.mapping.mapper import explain_external_id, map_user
from app.mapping.roles import slugify
from app.mapping.scim_path import Evaluation, ScimPath, evaluate, parse_path

__all__ = [
    "DEFAULT_PRESET",
    "PRESET_DIR",
    "DesiredIdentity",
    "DroppedRole",
    "Evaluation",
    "GroupRef",
    "MappingConfig",
    "MappingConfigError",
    "MappingError",
    "MappingResult",
    "PathSyntaxError",
    "ScimPath",
    "available_presets",
    "candidate_names",
    "evaluate",
    "explain_external_id",
    "load_mapping",
    "load_preset",
    "map_user",
    "parse_path",
    "slugify",
]
