"""The service description published at /ServiceProviderConfig, /ResourceTypes and /Schemas (RFC 7643 §5–7).

It is read from the JSON files in the top-level ``schemas/`` folder, so what is published is exactly
what the models accept and what the store keeps.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from scim2_models import ResourceType, Schema, ScimPolicy, ScimProvider, ServiceProviderConfig

from app.config import PolicyConfig
from app.resources import schemas_dir


@cache
def _discovery(folder: Path) -> tuple[list[Schema], list[ResourceType], ServiceProviderConfig]:
    def read(name: str) -> Any:
        return json.loads((folder / name).read_text())

    schemas = [Schema.model_validate(item) for item in read("Schemas.json")]
    resource_types = [ResourceType.model_validate(item) for item in read("ResourceTypes.json")]
    config = ServiceProviderConfig.model_validate(read("ServiceProviderConfig.json"))
    return schemas, resource_types, config


def scim_policy(policy: PolicyConfig) -> ScimPolicy:
    return ScimPolicy(
        unknown=ScimPolicy.Unknown(policy.unknown),
        remove_value_as_filter=ScimPolicy.RemoveValue(policy.remove_value_as_filter),
        unmatched_path_filter=ScimPolicy.UnmatchedPathFilter(policy.unmatched_path_filter),
    )


def load_provider(policy: PolicyConfig | None = None, folder: Path | None = None) -> ScimProvider:
    """The provider of one source: the published discovery documents plus that source's tolerance policy."""
    schemas, resource_types, config = _discovery(folder or schemas_dir())
    return ScimProvider.from_discovery(
        schemas, resource_types, config, policy=scim_policy(policy or PolicyConfig())
    )
