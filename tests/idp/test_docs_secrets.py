"""Issue 15 item 11: every ``ZITI_SCIM_SOURCE_<NAME>_<OPTION>`` the README and the IdP guides name is one
the configuration reads (:data:`app.config.SECRET_OPTIONS`, and ``TOKENS``)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from app.config import SECRET_OPTIONS, load_config
from tests.paths import ROOT

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs" / "idp").glob("*.md"))]
NAMED = re.compile(r"ZITI_SCIM_SOURCE_([A-Z0-9_]+)")


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_secret_variable_named_in_the_docs_is_read(doc: Path) -> None:
    for rest in NAMED.findall(doc.read_text(encoding="utf-8")):
        if rest.startswith("<NAME>") or rest.endswith("_TOKENS"):
            continue
        options = [o for o in SECRET_OPTIONS if rest.endswith("_" + o.upper()) and len(rest) > len(o) + 1]
        assert options, f"{doc.name}: ZITI_SCIM_SOURCE_{rest} is not read by the configuration"
        option = options[0]
        name = rest[: -len(option) - 1].lower().replace("_", "-")
        config = load_config(
            {"sources": {name: {"kind": "generic", "tokens": ["t" * 16]}}},
            env={f"ZITI_SCIM_SOURCE_{rest}": "k1"},
        )
        assert config.sources[name].options[option] in ("k1", ["k1"]), rest


def test_the_webhook_options_of_the_guides_are_accepted() -> None:
    config = load_config(
        {
            "sources": {
                "zitadel": {"kind": "zitadel", "zitadel_organizations": ["339100000000000001"]},
                "asgardeo": {"kind": "asgardeo", "webhook_retry_interval": 60, "webhook_retry_retention": 604800},
                "authentik-hooks": {"kind": "authentik", "authentik_pull_interval": 900},
            }
        },
        env={},
    )
    assert config.sources["zitadel"].options["zitadel_organizations"] == ["339100000000000001"]
    assert config.sources["asgardeo"].options["webhook_retry_interval"] == 60
    assert config.sources["authentik-hooks"].options["authentik_pull_interval"] == 900
