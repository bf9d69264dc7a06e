"""ZITADEL Actions v2: every recorded trace through the verifier and parser, plus rejections."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from scim2_models import User
from webhook_support import load_trace, trace_names

from app.idp.zitadel.webhook import ZitadelWebhook, parse_zitadel, sign_zitadel
from app.webhooks import (
    FetchUser,
    GrantActive,
    GrantDelete,
    GrantUpsert,
    Ignored,
    InMemoryReplayGuard,
    UserActive,
    UserDelete,
    UserLocked,
    UserPatch,
    UserUpsert,
    WebhookInvalid,
    WebhookRejected,
)
from tests.support.clock import FrozenClock

KEY = "Ns4jKxq2Wv8pZt7rLm3hYc9dFg6bTe1A"
ALICE = "339123456789012345"
GRANT = "339300000000000004"

EXPECTED: dict[str, Any] = {
    "01-user-human-added.json": UserUpsert(
        ALICE,
        {
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "externalId": ALICE,
            "userName": "alice@example.com",
            "name": {"givenName": "Alice", "familyName": "Smith"},
            "displayName": "Alice Smith",
            "preferredLanguage": "en",
            "active": True,
            "emails": [{"value": "alice@example.com", "primary": True, "type": "work"}],
        },
    ),
    "02-user-grant-added.json": GrantUpsert(GRANT, ALICE, ("ziti-admin", "ops"), "339200000000000003"),
    "03-user-human-email-changed.json": UserPatch(
        ALICE, {"emails": [{"value": "alice.smith@example.com", "primary": True, "type": "work"}]}
    ),
    "04-user-grant-changed.json": GrantUpsert(GRANT, None, ("ops",), None),
    "05-user-deactivated.json": UserActive(ALICE, False),
    "06-user-grant-removed.json": GrantDelete(GRANT),
    "08-user-grant-cascade-changed-empty.json": GrantUpsert(GRANT, None, (), None),
    "07-user-removed.json": UserDelete(ALICE),
}


def _delivery(name: str) -> tuple[dict[str, str], bytes, int, dict[str, Any]]:
    trace = load_trace("zitadel", name)
    return dict(trace["headers"]), trace["raw_body"].encode(), trace["signing"]["t"], trace


def _hook(now: float, keys: list[str] | str = KEY, **kw: Any) -> ZitadelWebhook:
    clock = FrozenClock(now)
    return ZitadelWebhook(keys, InMemoryReplayGuard(clock=clock), clock=clock, **kw)


def test_every_trace_is_covered() -> None:
    assert trace_names("zitadel") == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
async def test_trace_replay(name: str) -> None:
    headers, body, t, trace = _delivery(name)
    assert trace["signing"]["test_signing_key"] == KEY
    assert sign_zitadel(body, KEY, t) == f"t={t},v1={trace['signing']['expected_v1']}"
    result = await _hook(t).handle(headers, body)
    assert result.source == "zitadel"
    assert result.events == (EXPECTED[name],)
    body_json = trace["body"]
    assert (
        result.delivery_id == f"{body_json['instanceID']}:{body_json['aggregateID']}:{body_json['sequence']}"
    )
    assert result.replay_key is not None and result.replay_key.startswith("zitadel:")


def test_user_upsert_is_a_valid_scim_user() -> None:
    _, body, _, _ = _delivery("01-user-human-added.json")
    (event,) = parse_zitadel(body).events
    assert isinstance(event, UserUpsert)
    user: User[Any] = User.model_validate(event.user)
    assert user.user_name == "alice@example.com"
    assert user.external_id == ALICE
    assert user.emails is not None and user.emails[0].value == "alice@example.com"


# --- rejections ----------------------------------------------------------------------------------


async def test_missing_signature_rejected() -> None:
    headers, body, t, _ = _delivery("01-user-human-added.json")
    del headers["Zitadel-Signature"]
    with pytest.raises(WebhookRejected) as err:
        await _hook(t).handle(headers, body)
    assert err.value.status == 401
    assert err.value.reason == "missing signature header"
    assert str(err.value) == "webhook rejected"


async def test_bad_signature_rejected() -> None:
    headers, body, t, trace = _delivery("01-user-human-added.json")
    good = trace["signing"]["expected_v1"]
    bad = ("0" if good[0] != "0" else "1") + good[1:]
    headers["Zitadel-Signature"] = f"t={t},v1={bad}"
    with pytest.raises(WebhookRejected, match="webhook rejected") as err:
        await _hook(t).handle(headers, body)
    assert err.value.reason == "signature mismatch"
    assert KEY not in repr(err.value) and good not in repr(err.value)


async def test_wrong_key_rejected() -> None:
    headers, body, t, _ = _delivery("02-user-grant-added.json")
    with pytest.raises(WebhookRejected):
        await _hook(t, "another-signing-key").handle(headers, body)


async def test_body_tampered_after_signing_rejected() -> None:
    headers, body, t, _ = _delivery("02-user-grant-added.json")
    tampered = body.replace(b'"ops"', b'"root"')
    assert tampered != body
    with pytest.raises(WebhookRejected, match="webhook rejected"):
        await _hook(t).handle(headers, tampered)


async def test_timestamp_tampered_rejected() -> None:
    headers, body, t, trace = _delivery("05-user-deactivated.json")
    headers["Zitadel-Signature"] = f"t={t + 10},v1={trace['signing']['expected_v1']}"
    with pytest.raises(WebhookRejected):
        await _hook(t).handle(headers, body)


async def test_timestamp_window() -> None:
    headers, body, t, _ = _delivery("05-user-deactivated.json")
    assert (await _hook(t + 300).handle(headers, body)).events == (UserActive(ALICE, False),)
    with pytest.raises(WebhookRejected) as old:
        await _hook(t + 301).handle(headers, body)
    assert old.value.reason == "signature timestamp too old"
    with pytest.raises(WebhookRejected) as future:
        await _hook(t - 301).handle(headers, body)
    assert future.value.reason == "signature timestamp in the future"


async def test_replayed_delivery_rejected_and_forget_lets_retry_through() -> None:
    headers, body, t, _ = _delivery("07-user-removed.json")
    clock = FrozenClock(t)
    guard = InMemoryReplayGuard(clock=clock)
    hook = ZitadelWebhook(KEY, guard, clock=clock)
    first = await hook.handle(headers, body)
    clock.advance(5)
    with pytest.raises(WebhookRejected) as err:
        await hook.handle(headers, body)
    assert err.value.reason == "replayed delivery"
    assert first.replay_key is not None
    await guard.forget(first.replay_key)
    assert (await hook.handle(headers, body)).events == (UserDelete(ALICE),)


async def test_replay_key_outlives_timestamp_window() -> None:
    headers, body, t, _ = _delivery("07-user-removed.json")
    clock = FrozenClock(t + 299)
    guard = InMemoryReplayGuard(clock=clock)
    hook = ZitadelWebhook(KEY, guard, clock=clock)
    signed = hook.verify_signature(headers, body)
    assert signed.replay_expires_at > t + 300
    await hook.handle(headers, body)
    clock.advance(1)  # t + 300: still inside the window, so the key must still be remembered
    with pytest.raises(WebhookRejected, match="webhook rejected"):
        await hook.handle(headers, body)


async def test_key_rotation_any_key_any_v1() -> None:
    _, body, t, _ = _delivery("03-user-human-email-changed.json")
    both = sign_zitadel(body, ["old-key-1234", "new-key-5678"], t)
    assert both.count("v1=") == 2
    # Receiver already switched to the new key; sender still signs with both.
    assert (await _hook(t, "new-key-5678").handle({"zitadel-signature": both}, body)).events
    # Receiver accepts old and new; sender signs with the old one only.
    only_old = sign_zitadel(body, "old-key-1234", t)
    assert (
        await _hook(t, ["new-key-5678", "old-key-1234"]).handle({"ZITADEL-SIGNATURE": only_old}, body)
    ).events
    with pytest.raises(WebhookRejected):
        await _hook(t, "third-key").handle({"Zitadel-Signature": both}, body)


@pytest.mark.parametrize(
    "header",
    [
        "v1=" + "a" * 64,
        "t=abc,v1=" + "a" * 64,
        "t=1772446531",
        "t=1772446531,v1=zz",
        "garbage",
        "t=\u00b2,v1=" + "a" * 64,  # a Unicode digit must not reach int()
        "t=1,v1=" + "g" * 64,
    ],
)
async def test_malformed_signature_header_rejected(header: str) -> None:
    _, body, t, _ = _delivery("01-user-human-added.json")
    with pytest.raises(WebhookRejected):
        await _hook(t).handle({"Zitadel-Signature": header}, body)


def test_configuration_requires_a_key() -> None:
    with pytest.raises(ValueError):
        ZitadelWebhook([], InMemoryReplayGuard())
    with pytest.raises(ValueError):
        ZitadelWebhook([""], InMemoryReplayGuard())


# --- parsing variants ----------------------------------------------------------------------------


def _event(event_type: str, payload: Any = ..., aggregate: str = ALICE) -> bytes:
    data: dict[str, Any] = {
        "aggregateID": aggregate,
        "aggregateType": "usergrant" if event_type.startswith("user.grant.") else "user",
        "resourceOwner": "339100000000000001",
        "instanceID": "339000000000000001",
        "version": "v2",
        "sequence": 9,
        "event_type": event_type,
        "created_at": "2026-03-02T10:15:30.123456Z",
        "userID": "339100000000000009",
    }
    if payload is not ...:
        data["event_payload"] = payload
    return json.dumps(data, separators=(",", ":")).encode()


@pytest.mark.parametrize("payload", [..., None, {}])
def test_payload_absent_null_or_empty(payload: Any) -> None:
    assert parse_zitadel(_event("user.deactivated", payload)).events == (UserActive(ALICE, False),)
    # An empty payload on an event that should carry data means "read it from the API" (v4.1.x bug).
    assert parse_zitadel(_event("user.human.added", payload)).events == (FetchUser(ALICE),)
    assert parse_zitadel(_event("user.human.email.changed", payload)).events == (FetchUser(ALICE),)
    (grant,) = parse_zitadel(_event("user.grant.added", payload, GRANT)).events
    assert isinstance(grant, Ignored)


def test_payload_as_base64_string() -> None:
    encoded = base64.b64encode(json.dumps({"email": "a@example.com"}).encode()).decode()
    assert parse_zitadel(_event("user.human.email.changed", encoded)).events == (
        UserPatch(ALICE, {"emails": [{"value": "a@example.com", "primary": True, "type": "work"}]}),
    )


def test_profile_username_lock_and_reactivation() -> None:
    profile = {"firstName": "Alicia", "displayName": "Alicia Smith", "gender": 2}
    assert parse_zitadel(_event("user.human.profile.changed", profile)).events == (
        UserPatch(ALICE, {"name": {"givenName": "Alicia"}, "displayName": "Alicia Smith"}),
    )
    assert parse_zitadel(_event("user.username.changed", {"userName": "alicia"})).events == (
        UserPatch(ALICE, {"userName": "alicia"}),
    )
    assert parse_zitadel(_event("user.reactivated")).events == (UserActive(ALICE, True),)
    assert parse_zitadel(_event("user.locked")).events == (UserLocked(ALICE, True),)
    assert parse_zitadel(_event("user.unlocked")).events == (UserLocked(ALICE, False),)


def test_selfregistered_and_password_hash_never_copied() -> None:
    payload = {"userName": "bob", "firstName": "Bob", "email": "bob@example.com", "encodedHash": "$2a$14$x"}
    (event,) = parse_zitadel(_event("user.human.selfregistered", payload, "42")).events
    assert isinstance(event, UserUpsert)
    assert event.user["userName"] == "bob" and event.user["externalId"] == "42"
    assert "$2a$14$x" not in json.dumps(event.user)


def test_grant_cascade_and_activation() -> None:
    assert parse_zitadel(_event("user.grant.cascade.changed", {"roleKeys": []}, GRANT)).events == (
        GrantUpsert(GRANT, None, ()),
    )
    assert parse_zitadel(_event("user.grant.cascade.removed", None, GRANT)).events == (GrantDelete(GRANT),)
    assert parse_zitadel(_event("user.grant.deactivated", None, GRANT)).events == (GrantActive(GRANT, False),)
    assert parse_zitadel(_event("user.grant.reactivated", None, GRANT)).events == (GrantActive(GRANT, True),)


@pytest.mark.parametrize("event_type", ["user.human.email.verified", "user.machine.added", "org.added"])
def test_unknown_events_are_ignored(event_type: str) -> None:
    (event,) = parse_zitadel(_event(event_type, {"x": 1})).events
    assert isinstance(event, Ignored) and event_type in event.reason


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[1,2]",
        b'{"aggregateID":"1"}',
        b'{"event_type":"user.removed"}',
        _event("user.human.email.changed", 5),
        _event("user.human.email.changed", "%%%not-base64"),
        _event("user.human.email.changed", {"email": 7}),
        _event("user.grant.added", {"userId": "1", "roleKeys": "ops"}, GRANT),
    ],
)
async def test_invalid_bodies(body: bytes) -> None:
    with pytest.raises(WebhookInvalid) as err:
        parse_zitadel(body)
    assert err.value.status == 400
    # Authentic but unparseable: 400, and the replay key is not consumed.
    t = 1772446531
    clock = FrozenClock(t)
    guard = InMemoryReplayGuard(clock=clock)
    hook = ZitadelWebhook(KEY, guard, clock=clock)
    with pytest.raises(WebhookInvalid):
        await hook.handle({"Zitadel-Signature": sign_zitadel(body, KEY, t)}, body)
    assert len(guard) == 0


# --- the event as it is kept (sequence order) -----------------------------------------------------


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_trace_is_kept_with_its_aggregate_and_sequence(name: str) -> None:
    _, body, _, trace = _delivery(name)
    result = parse_zitadel(body)
    kept = result.sequenced
    assert kept is not None
    assert kept.aggregate_id == trace["body"]["aggregateID"]
    assert kept.aggregate_type == ("grant" if kept.event_type.startswith("user.grant.") else "user")
    assert kept.sequence == trace["body"]["sequence"] and kept.event_type == trace["body"]["event_type"]
    # The fields read, and the organisation (issue 15 item 4: the pull deletes only what it listed).
    owner = {"resourceOwner": trace["body"]["resourceOwner"]}
    assert kept.payload == {**(trace["body"].get("event_payload") or {}), **owner}
    # Parsing the kept payload again gives the same neutral event.
    assert (
        parse_zitadel(_event_with(kept.event_type, kept.payload, kept.aggregate_id)).events == result.events
    )


def _event_with(event_type: str, payload: Any, aggregate: str, /, **fields: Any) -> bytes:
    data = json.loads(_event(event_type, payload, aggregate))
    data.update(fields)
    return json.dumps(data).encode()


def test_only_the_fields_read_are_kept() -> None:
    payload = {
        "userName": "bob",
        "email": "bob@example.com",
        "encodedHash": "$2a$14$x",
        "phone": "+41",
        "gender": 2,
    }
    kept = parse_zitadel(_event("user.human.added", payload, "42")).sequenced
    assert kept is not None
    assert {k: v for k, v in kept.payload.items() if k != "resourceOwner"} == {
        "userName": "bob",
        "email": "bob@example.com",
    }
    # A payload holding nothing the parser reads is an empty payload: read the user from the API.
    assert parse_zitadel(_event("user.human.added", {"gender": 2}, "42")).events == (FetchUser("42"),)


@pytest.mark.parametrize("sequence", [None, 0, -3, True, "5", 2.5, 2**63])
def test_an_event_that_matters_needs_a_valid_sequence(sequence: Any) -> None:
    body = _event_with("user.deactivated", None, ALICE, sequence=sequence)
    with pytest.raises(WebhookInvalid) as err:
        parse_zitadel(body)
    assert (err.value.status, err.value.reason) == (400, "sequence missing or not a positive integer")


def test_an_ignored_event_needs_no_sequence_and_is_not_kept() -> None:
    result = parse_zitadel(_event_with("user.human.email.verified", None, ALICE, sequence=None))
    assert result.sequenced is None and isinstance(result.events[0], Ignored)


@pytest.mark.parametrize(
    "fields", [{"aggregateID": "1" * 201}, {"event_type": "user." + "x" * 100}, {"aggregateID": 5}]
)
def test_oversized_or_odd_identifiers_are_refused(fields: dict[str, Any]) -> None:
    with pytest.raises(WebhookInvalid):
        parse_zitadel(_event_with("user.deactivated", None, ALICE, **fields))
