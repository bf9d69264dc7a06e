"""The per-IdP normalisers of :mod:`app.scim.quirks`, one by one."""

from __future__ import annotations

import pytest

from app.config import SourceConfig
from app.constants import ENTERPRISE_EXTENSION
from app.idp.registry import quirks_for
from app.scim.quirks import Quirks

CORE = "urn:ietf:params:scim:schemas:core:2.0:User"
KNOWN = {CORE, ENTERPRISE_EXTENSION}


def kind(name: str, **options: object) -> Quirks:
    return quirks_for(SourceConfig(name="s", kind=name, options=dict(options)))


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("userName Eq alice@example.com", 'userName Eq "alice@example.com"'),
        ("displayName Eq ziti admins", 'displayName Eq "ziti admins"'),
        ("userName eq DEFAULT/alice@example.com", 'userName eq "alice@example.com"'),
        ("externalId eq jyoung and active eq true", 'externalId eq "jyoung" and active eq true'),
        ('userName eq "already quoted"', 'userName eq "already quoted"'),
        ("userName pr", "userName pr"),
        ('emails[type eq "work"].value eq x', 'emails[type eq "work"].value eq x'),
        # The attribute is whatever scim2-models' Path reads before an operator; anything else is left alone.
        ("emails[primary eq true].value eq a@x", 'emails[primary eq true].value eq "a@x"'),
        (f"{ENTERPRISE_EXTENSION}:employeeNumber EQ 0042", f'{ENTERPRISE_EXTENSION}:employeeNumber EQ "0042"'),
        ("9lives eq x", "9lives eq x"),
        ("userName eq a and 9lives eq x", "userName eq a and 9lives eq x"),
        ("name.givenName.x eq y", "name.givenName.x eq y"),
    ],
)
def test_asgardeo_filters_are_quoted(given: str, expected: str) -> None:
    assert kind("asgardeo").filter(given) == expected


def test_other_kinds_leave_filters_alone() -> None:
    assert kind("generic").filter("userName Eq alice") == "userName Eq alice"
    assert kind("okta").filter("userName Eq alice") == "userName Eq alice"


def test_asgardeo_bodies() -> None:
    quirks = kind("asgardeo")
    body = {
        "schemas": [],
        "userName": "PRIMARY/alice@example.com",
        "emails": ["alice@example.com", "a@x.org"],
    }
    created = quirks.resource(body, CORE, KNOWN, creating=True)
    assert created == {
        "schemas": [CORE],
        "userName": "alice@example.com",
        "emails": [{"value": "alice@example.com", "primary": True}, {"value": "a@x.org"}],
        "active": True,
    }
    assert quirks.resource(created, CORE, KNOWN, creating=True) == created  # idempotent
    assert "active" not in quirks.resource({"userName": "a"}, CORE, KNOWN)  # a PUT keeps the stored flag
    patch = {"Operations": [{"op": "replace", "path": "emails", "value": ["b@x.org"]}]}
    assert quirks.patch(patch)["Operations"][0]["value"] == [{"value": "b@x.org", "primary": True}]


def test_entra_drops_unknown_schema_urns_only() -> None:
    group_core = "urn:ietf:params:scim:schemas:core:2.0:Group"
    body = {
        "schemas": [group_core, "http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group"]
    }
    assert kind("entra").resource(body, group_core, KNOWN | {group_core})["schemas"] == [group_core]
    assert kind("generic").resource(body, group_core, KNOWN) == body


def test_options_override_the_kind() -> None:
    assert kind("asgardeo").partial_put is True and kind("asgardeo", partial_put=False).partial_put is False
    assert kind("generic", raw_token=True).raw_token is True
    assert kind("okta").group_patch_no_content is True and kind("authentik").group_patch_no_content is False
