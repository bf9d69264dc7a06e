"""The IdP registry (app/idp/registry.py): every kind the configuration accepts has one home, and only one."""

from __future__ import annotations

from typing import get_args

import pytest

from app.config import SourceConfig, load_config
from app.config_schema import SourceModel
from app.idp.registry import PROVIDERS, provider, quirks_for, webhook_factory
from app.resources import schemas_dir

WEBHOOK_KINDS = {"zitadel", "asgardeo", "authentik"}


def test_every_configurable_kind_has_a_provider_folder_and_a_preset() -> None:
    kinds = set(get_args(SourceModel.model_fields["kind"].annotation))
    assert set(PROVIDERS) == kinds
    for kind, idp in PROVIDERS.items():
        assert idp.kind == kind == idp.quirks.kind
        assert (schemas_dir() / "mappings" / f"{kind}.json").is_file()


@pytest.mark.parametrize("kind", sorted(PROVIDERS))
def test_a_source_gets_its_kinds_hooks(kind: str) -> None:
    source = load_config({"sources": {"s": {"kind": kind}}}, {}).sources["s"]
    assert provider(source) is PROVIDERS[kind]
    assert quirks_for(source) == PROVIDERS[kind].quirks
    assert (webhook_factory(source) is not None) == (kind in WEBHOOK_KINDS)


def test_source_options_override_the_kinds_quirks() -> None:
    source = SourceConfig(name="s", kind="okta", options={"raw_token": False, "partial_put": True})
    quirks = quirks_for(source)
    assert (quirks.raw_token, quirks.partial_put, quirks.group_patch_no_content) == (False, True, True)
    assert PROVIDERS["okta"].quirks.raw_token is True
