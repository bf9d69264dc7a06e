"""Folding a ZITADEL aggregate's events: the same state whatever the order they were delivered in."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from app.idp.zitadel.fold import (
    GrantState,
    UserState,
    api_sequence,
    fold_grant,
    fold_user,
    grant_state_from_api,
    user_state_from_api,
)
from app.webhooks.common import SequencedEvent

ALICE = "339123456789012345"
GRANT = "339300000000000004"


def user_event(sequence: int, event_type: str, payload: dict[str, Any] | None = None) -> SequencedEvent:
    return SequencedEvent("user", ALICE, sequence, event_type, payload or {})


def grant_event(sequence: int, event_type: str, payload: dict[str, Any] | None = None) -> SequencedEvent:
    return SequencedEvent("grant", GRANT, sequence, event_type, payload or {})


ADDED = user_event(
    1,
    "user.human.added",
    {
        "userName": "alice@example.com",
        "email": "alice@example.com",
        "firstName": "Alice",
        "lastName": "Smith",
    },
)
HISTORY = [
    ADDED,
    user_event(2, "user.human.email.changed", {"email": "alice.smith@example.com"}),
    user_event(3, "user.human.profile.changed", {"firstName": "Alicia", "displayName": "Alicia Smith"}),
    user_event(4, "user.deactivated"),
    user_event(5, "user.locked"),
    user_event(6, "user.unlocked"),
    user_event(7, "user.username.changed", {"userName": "alicia"}),
]
EXPECTED_PROFILE = {
    "userName": "alicia",
    "name": {"givenName": "Alicia", "familyName": "Smith"},
    "displayName": "Alicia Smith",
    "emails": [{"value": "alice.smith@example.com", "primary": True, "type": "work"}],
}


def test_every_delivery_order_folds_to_the_same_user() -> None:
    states = {repr(fold_user(None, 0, order).to_json()) for order in itertools.permutations(HISTORY)}
    assert len(states) == 1
    state = fold_user(None, 0, HISTORY)
    assert state.profile == EXPECTED_PROFILE
    assert (state.complete, state.active, state.locked, state.removed) == (True, False, False, False)
    assert state.scim_active is False  # deactivated; the unlock does not re-enable it


def test_a_removal_wins_wherever_it_arrives_and_keeps_nothing_of_the_user() -> None:
    removed = user_event(8, "user.removed")
    for position in range(len(HISTORY) + 1):
        order = [*HISTORY[:position], removed, *HISTORY[position:]]
        assert fold_user(None, 0, order) == UserState(removed=True)
    # Even numbered below a base (which would hide any other event).
    base = fold_user(None, 0, HISTORY)
    assert fold_user(base, 9, [user_event(8, "user.removed")]).removed


def test_changes_before_the_user_is_added_wait_for_it() -> None:
    early = [user_event(4, "user.deactivated"), user_event(2, "user.human.email.changed", {"email": "a@b.c"})]
    waiting = fold_user(None, 0, early)
    assert not waiting.complete and waiting.active is False
    assert waiting.profile == {"emails": [{"value": "a@b.c", "primary": True, "type": "work"}]}
    added = fold_user(None, 0, [*early, ADDED])
    assert added.complete and added.active is False
    assert added.profile["emails"] == [{"value": "a@b.c", "primary": True, "type": "work"}]
    assert added.profile["userName"] == "alice@example.com"


def test_a_base_supersedes_the_events_up_to_its_sequence() -> None:
    base = UserState(profile={"userName": "from-api"}, complete=True, active=True, locked=False)
    state = fold_user(base, 3, HISTORY)
    # Events 1-3 are in the base already; 4-7 apply on top of it.
    assert state.profile == {"userName": "alicia"}
    assert (state.active, state.locked) == (False, False)
    assert base.profile == {"userName": "from-api"}  # the base itself is not modified


def test_an_event_without_payload_asks_for_a_read_unless_a_base_covers_it() -> None:
    empty = user_event(5, "user.human.profile.changed")
    assert fold_user(None, 0, [ADDED, empty]).needs_read
    base = UserState(profile={"userName": "x"}, complete=True, active=True, locked=False)
    assert not fold_user(base, 5, [ADDED, empty]).needs_read
    assert fold_user(base, 4, [ADDED, empty]).needs_read


def test_user_state_json_round_trip_and_junk() -> None:
    state = fold_user(None, 0, HISTORY)
    assert UserState.from_json(state.to_json()) == state
    assert UserState.from_json({"profile": [1], "active": "yes", "complete": 1}) == UserState()
    assert UserState.from_json(None) == UserState()


GRANT_HISTORY = [
    grant_event(1, "user.grant.added", {"userId": ALICE, "roleKeys": ["ops", "vpn"], "projectId": "p1"}),
    grant_event(2, "user.grant.changed", {"roleKeys": ["ops"]}),
    grant_event(3, "user.grant.deactivated"),
    grant_event(4, "user.grant.reactivated"),
    grant_event(5, "user.grant.cascade.changed", {"roleKeys": ["ops", "ziti-admin"]}),
]


def test_every_delivery_order_folds_to_the_same_grant() -> None:
    states = {repr(fold_grant(None, 0, order)) for order in itertools.permutations(GRANT_HISTORY)}
    assert states == {
        repr(GrantState(user_id=ALICE, role_keys=["ops", "ziti-admin"], project_id="p1", active=True))
    }
    # Without the added event the user is unknown (changed events do not name it).
    assert fold_grant(None, 0, GRANT_HISTORY[1:]).user_id is None


def test_a_grant_removal_wins_and_keeps_the_user() -> None:
    removed = grant_event(6, "user.grant.removed")
    state = fold_grant(None, 0, [removed, *GRANT_HISTORY])
    assert state.removed and state.user_id == ALICE
    assert GrantState.from_json(state.to_json()) == state
    assert fold_grant(None, 0, [grant_event(2, "user.grant.cascade.removed")]).removed


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        ({"details": {"sequence": "42"}}, 42),
        ({"details": {"sequence": 7}}, 7),
        ({"details": {"sequence": True}}, None),
        ({"details": {"sequence": -1}}, None),
        ({"details": {"sequence": "4x"}}, None),
        ({"details": {"sequence": "9" * 30}}, None),
        ({"details": "nope"}, None),
        ({}, None),
    ],
)
def test_api_sequence(item: dict[str, Any], expected: int | None) -> None:
    assert api_sequence(item) == expected


def test_states_from_the_api() -> None:
    user = {
        "userId": ALICE,
        "state": "USER_STATE_LOCKED",
        "username": "alice@example.com",
        "human": {"profile": {"givenName": "Alice"}, "email": {"email": "alice@example.com"}},
    }
    state = user_state_from_api(user)
    assert state is not None and state.complete and (state.active, state.locked) == (True, True)
    assert state.profile == {
        "userName": "alice@example.com",
        "name": {"givenName": "Alice"},
        "emails": [{"value": "alice@example.com", "primary": True, "type": "work"}],
    }
    inactive = user_state_from_api({**user, "state": "USER_STATE_INACTIVE"})
    assert inactive is not None and (inactive.active, inactive.locked) == (False, False)
    assert user_state_from_api({"userId": "9", "machine": {"name": "ci"}}) is None
    grant = {
        "id": GRANT,
        "userId": ALICE,
        "roleKeys": ["ops", "ops", 3],
        "state": "USER_GRANT_STATE_INACTIVE",
    }
    assert grant_state_from_api(grant) == (GRANT, GrantState(user_id=ALICE, role_keys=["ops"], active=False))
    assert grant_state_from_api({**grant, "state": "USER_GRANT_STATE_UNSPECIFIED"}) is None
    assert grant_state_from_api({**grant, "userId": None}) is None
