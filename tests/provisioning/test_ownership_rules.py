"""The ownership rules of :mod:`app.reconcile.ownership`, one decision at a time (pure functions)."""

from __future__ import annotations

from typing import Any

import pytest

from app.config import ConfigError, SourceConfig, load_config
from app.reconcile import ownership
from app.reconcile.ownership import Owner
from app.reconcile.settings import source_settings

OWNER = Owner(deployment="dep-a", source="idp", adopt=True, takeover_from=frozenset({"friend"}))
EXTERNAL_ID = "alice@example.com"


def identity(**fields: Any) -> dict[str, Any]:
    """A controller identity detail as token enrollment leaves it, with ``fields`` on top."""
    base: dict[str, Any] = {
        "id": "id-1",
        "name": "alice",
        "typeId": "Default",
        "type": {"id": "Default", "name": "Default"},
        "isAdmin": False,
        "isDefaultAdmin": False,
        "externalId": EXTERNAL_ID,
        "tags": {},
        "appData": {},
        "permissions": [],
    }
    return {**base, **fields}


def ours(**tags: Any) -> dict[str, Any]:
    base = {"managedBy": "ziti-scim", "scimSource": "idp", "scimId": "u1", "scimDeployment": "dep-a"}
    return {**base, **tags}


def verdict(found: dict[str, Any], **options: Any) -> str:
    return ownership.classify(found, OWNER, "u1", EXTERNAL_ID, **options).verdict


def test_a_token_enrolled_identity_is_adopted_only_where_the_source_allows() -> None:
    assert verdict(identity()) == "adopt"
    refusing = Owner(deployment="dep-a", source="idp", adopt=False)
    decision = ownership.classify(identity(), refusing, "u1", EXTERNAL_ID)
    assert decision.verdict == "conflict" and "adopt = refuse" in decision.reason


@pytest.mark.parametrize(
    "changed",
    [
        {"isAdmin": True},
        {"isDefaultAdmin": True},
        {"tags": {"owner": "secops"}},
        {"typeId": "Router", "type": {"id": "Router", "name": "Router"}},
        {"externalId": "ALICE@example.com"},
        {"permissions": ["identity"]},
        {"appData": {"k": "v"}},
    ],
)
def test_anything_unlike_token_enrollment_is_a_conflict(changed: dict[str, Any]) -> None:
    assert verdict(identity(**changed)) == "conflict"


def test_an_admin_is_never_adopted_taken_over_or_changed() -> None:
    admin = identity(isAdmin=True, tags={"owner": "secops"}, externalId=EXTERNAL_ID)
    assert verdict(admin) == "conflict"
    assert verdict(admin, admin_granted=True) == "conflict"  # our mapping's isAdmin does not adopt one
    assert verdict(identity(isAdmin=True, tags=ours(scimSource="friend"))) == "conflict"
    ours_made_admin = identity(isAdmin=True, tags=ours())
    assert ownership.check_owned(ours_made_admin, OWNER, "u1").verdict == "conflict"
    assert ownership.check_owned(ours_made_admin, OWNER, "u1", admin_granted=True).verdict == "ours"


def test_another_sources_identity_needs_takeover_from_disabled_or_not() -> None:
    stranger = identity(tags=ours(scimSource="other", scimId="x"), disabled=True)
    decision = ownership.classify(stranger, OWNER, "u1", EXTERNAL_ID)
    assert decision.verdict == "conflict" and "'other'" in decision.reason
    assert verdict(identity(tags=ours(scimSource="friend", scimId="x"))) == "take-over"


def test_another_deployments_identity_is_never_touched() -> None:
    foreign = identity(tags=ours(scimDeployment="dep-b"))
    assert verdict(foreign) == "conflict"
    assert ownership.check_owned(foreign, OWNER, "u1").verdict == "conflict"
    assert verdict(identity(tags=ours(scimSource="friend", scimDeployment="dep-b"))) == "conflict"
    legacy = identity(tags={k: v for k, v in ours().items() if k != "scimDeployment"})
    assert verdict(legacy) == "conflict"  # no deployment tag and not recorded by our database
    assert ownership.check_owned(legacy, OWNER, "u1", recorded=True).verdict == "ours"
    assert ownership.lost_create([legacy], OWNER, "u1") is None


def test_a_previous_user_of_the_same_source_is_taken_over_only_once_gone() -> None:
    previous = identity(tags=ours(scimId="u0"))
    assert verdict(previous) == "conflict"
    assert verdict(previous, previous_user_gone=True) == "take-over"


def test_our_own_identity_is_ours() -> None:
    assert verdict(identity(tags=ours())) == "ours"
    assert ownership.lost_create([identity(tags=ours(scimId="u2")), identity(tags=ours())], OWNER, "u1")


def test_claimed_and_released_tags_keep_the_owners_own_tags() -> None:
    adopted = ownership.claimed_tags(identity(), OWNER, "u1", "adopt")
    assert adopted == {**ours(), "scimAdopted": True}
    friends = identity(tags=ours(scimSource="friend", note="x"))
    taken = ownership.claimed_tags(friends, OWNER, "u1", "take-over")
    assert taken == {**ours(), "note": "x"}
    assert ownership.released_tags(identity(tags={**adopted, "note": "x"})) == {"note": "x"}


def test_removal_of_adopted_identities_follows_its_own_option() -> None:
    assert ownership.removal(False, "delete", "disable") == "delete"
    assert ownership.removal(True, "delete", "disable") == "disable"
    assert ownership.removal(True, "delete", "untag") == "untag"


def test_orphans_are_this_deployments_and_never_deleted_without_known_users() -> None:
    sources = ["idp"]
    assert ownership.orphan_source(identity(tags=ours()), "dep-a", sources) == "idp"
    assert ownership.orphan_source(identity(tags=ours()), "dep-b", sources) is None
    assert ownership.orphan_source(identity(tags=ours(scimSource="x")), "dep-a", sources) is None
    assert ownership.orphan_source(identity(tags=ours(), isAdmin=True), "dep-a", sources) is None
    assert not ownership.may_delete_orphans(0) and ownership.may_delete_orphans(1)


def test_the_public_conflict_message_names_nothing() -> None:
    assert "alice" not in ownership.PUBLIC_CONFLICT and "admin" not in ownership.PUBLIC_CONFLICT


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"on_delete_adopted": "erase"}, "on_delete_adopted"),
        ({"takeover_from": "other"}, "takeover_from"),
        ({"takeover_from": [""]}, "takeover_from"),
    ],
)
def test_bad_ownership_options_are_refused_naming_them(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        source_settings(SourceConfig(name="idp", options=options))


def test_ownership_options_are_read() -> None:
    settings = source_settings(
        SourceConfig(name="idp", options={"on_delete_adopted": "untag", "takeover_from": ["old", "idp"]})
    )
    assert settings.on_delete_adopted == "untag" and settings.takeover_from == frozenset({"old"})
    assert source_settings(SourceConfig(name="idp")).on_delete_adopted == "disable"


@pytest.mark.parametrize("value", ["", "has space", "x" * 65, 42])
def test_a_bad_deployment_id_is_refused(value: Any) -> None:
    with pytest.raises(ConfigError, match="deployment_id"):
        load_config({"server": {"deployment_id": value}}, env={})
    assert load_config({"server": {"deployment_id": "prod-1"}}, env={}).deployment_id == "prod-1"
