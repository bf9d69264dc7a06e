"""Asgardeo WebSub webhooks: every recorded trace through the verifier and parser, plus rejections."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from scim2_models import User
from webhook_support import load_trace, trace_names

from app.idp.asgardeo.webhook import AsgardeoWebhook, parse_asgardeo, sign_asgardeo, verify_subscription
from app.webhooks import (
    Challenge,
    Ignored,
    InMemoryReplayGuard,
    RoleMembers,
    UserActive,
    UserDelete,
    UserLocked,
    UserPatch,
    UserUpsert,
    WebhookInvalid,
    WebhookRejected,
)
from app.webhooks.events import GroupMembers, RoleGroups
from tests.support.clock import FrozenClock

SECRET = "asgardeo-webhook-test-secret-7f3c"
ALICE = "3987d74e-8432-4f4d-b1a8-cad463af843d"
TOPIC_PREFIX = "myorg.10084a8d-113f-4211-a0d5-efe36b082211."

EXPECTED: dict[str, Any] = {
    "webhook-02-user-created.json": UserUpsert(
        ALICE,
        {
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "externalId": ALICE,
            "userName": "alice@example.com",
            "emails": [{"value": "alice@example.com", "primary": True, "type": "work"}],
            "name": {"familyName": "Smith", "givenName": "Alice"},
            "active": True,
        },
    ),
    "webhook-03-user-profile-updated-email.json": UserPatch(
        ALICE, {"emails": [{"value": "alice.smith@example.com", "primary": True, "type": "work"}]}
    ),
    "webhook-04-role-users-updated-added.json": RoleMembers(
        role_name="ziti-admin",
        added_user_ids=(ALICE,),
        removed_user_ids=(),
        role_id="1fad5996-3418-4883-925d-a319e3bb8e72",
        audience="ZitiAccess",
    ),
    "webhook-05-user-disabled.json": UserActive(ALICE, False),
    "webhook-07-user-deleted.json": UserDelete(ALICE),
    "webhook-08-group-updated.json": GroupMembers(
        "f1c2a7e0-3b4d-4e5f-8a9b-0c1d2e3f4a5b", "ziti-operators", (ALICE,), ()
    ),
    "webhook-09-role-groups-updated.json": RoleGroups(
        "ziti-admin", (("f1c2a7e0-3b4d-4e5f-8a9b-0c1d2e3f4a5b", "ziti-operators"),), ()
    ),
}


def _delivery(name: str) -> tuple[dict[str, str], bytes, float, dict[str, Any]]:
    trace = load_trace("asgardeo", name)
    return dict(trace["headers"]), trace["raw_body"].encode(), trace["body"]["iat"] / 1000, trace


def _hook(now: float, secrets: list[str] | str = SECRET, **kw: Any) -> AsgardeoWebhook:
    clock = FrozenClock(now)
    return AsgardeoWebhook(secrets, InMemoryReplayGuard(clock=clock), clock=clock, **kw)


def _query(trace: dict[str, Any]) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(trace["path"]).query))


def test_every_trace_is_covered() -> None:
    assert trace_names("asgardeo") == sorted([*EXPECTED, "webhook-01-subscription-verification.json"])


def test_subscription_verification_trace() -> None:
    trace = load_trace("asgardeo", "webhook-01-subscription-verification.json")
    expected = trace["expected_response"]
    for hook_answer in (
        verify_subscription(_query(trace)),
        _hook(0, topic_prefix=TOPIC_PREFIX).verify_subscription(_query(trace)),
    ):
        assert hook_answer == Challenge(expected["body"], expected["headers"]["Content-Type"])


def test_subscription_unsubscribe_denied_and_bad_queries() -> None:
    trace = load_trace("asgardeo", "webhook-01-subscription-verification.json")
    query = _query(trace)
    assert isinstance(verify_subscription({**query, "hub.mode": "unsubscribe"}), Challenge)
    assert isinstance(verify_subscription({"hub.mode": "denied", "hub.topic": "x"}), Ignored)
    for broken in (
        {k: v for k, v in query.items() if k != "hub.challenge"},
        {k: v for k, v in query.items() if k != "hub.topic"},
        {**query, "hub.mode": "publish"},
        {**query, "hub.challenge": "a\nb"},
        {**query, "hub.challenge": "x" * 600},
    ):
        with pytest.raises(WebhookInvalid) as err:
            verify_subscription(broken)
        assert err.value.status == 400
    with pytest.raises(WebhookRejected) as rejected:
        verify_subscription({**query, "hub.topic": "evil.topic"}, topic_prefix=TOPIC_PREFIX)
    assert rejected.value.status == 404


@pytest.mark.parametrize("name", sorted(EXPECTED))
async def test_trace_replay(name: str) -> None:
    headers, body, iat, trace = _delivery(name)
    assert trace["signing"]["test_secret"] == SECRET
    assert sign_asgardeo(body, SECRET) == trace["signing"]["expected_header"] == headers["X-Hub-Signature"]
    result = await _hook(iat).handle(headers, body)
    assert result.source == "asgardeo"
    assert result.events == (EXPECTED[name],)
    assert result.delivery_id == trace["body"]["jti"]
    assert result.replay_key == "asgardeo:" + trace["body"]["jti"]
    assert parse_asgardeo(body).events == (EXPECTED[name],)


def test_user_upsert_is_a_valid_scim_user() -> None:
    _, body, _, _ = _delivery("webhook-02-user-created.json")
    (event,) = parse_asgardeo(body).events
    assert isinstance(event, UserUpsert)
    assert User.model_validate(event.user).user_name == "alice@example.com"


# --- rejections ----------------------------------------------------------------------------------


async def test_missing_signature_rejected() -> None:
    headers, body, iat, _ = _delivery("webhook-02-user-created.json")
    del headers["X-Hub-Signature"]
    with pytest.raises(WebhookRejected) as err:
        await _hook(iat).handle(headers, body)
    assert (err.value.status, err.value.reason) == (401, "missing signature header")


@pytest.mark.parametrize(
    "signature",
    [
        "sha256=" + "0" * 64,
        "sha256=",
        "sha1=" + "0" * 40,
        "bed193e921e280d96f590df5c11164a805f6a5e4",
        "md5=x",
    ],
)
async def test_bad_signature_rejected(signature: str) -> None:
    headers, body, iat, _ = _delivery("webhook-02-user-created.json")
    headers["X-Hub-Signature"] = signature
    with pytest.raises(WebhookRejected, match="webhook rejected"):
        await _hook(iat).handle(headers, body)


async def test_wrong_secret_rejected() -> None:
    headers, body, iat, _ = _delivery("webhook-05-user-disabled.json")
    with pytest.raises(WebhookRejected) as err:
        await _hook(iat, "not-the-secret").handle(headers, body)
    assert err.value.reason == "signature mismatch"
    assert SECRET not in repr(err.value)


async def test_body_tampered_after_signing_rejected() -> None:
    headers, body, iat, _ = _delivery("webhook-04-role-users-updated-added.json")
    tampered = body.replace(b"ziti-admin", b"ziti-admim")
    with pytest.raises(WebhookRejected):
        await _hook(iat).handle(headers, tampered)


async def test_signature_header_name_and_hex_case_insensitive_and_rotation() -> None:
    headers, body, iat, _ = _delivery("webhook-07-user-deleted.json")
    sig = headers.pop("X-Hub-Signature")
    headers["x-hub-signature"] = "SHA256=" + sig.split("=", 1)[1].upper()
    result = await _hook(iat, ["new-secret", SECRET]).handle(headers, body)
    assert result.events == (UserDelete(ALICE),)


async def test_a_redelivery_is_acknowledged_as_a_duplicate() -> None:
    # The hub redelivers (at-least-once, 60 s client timeout): a duplicate is acknowledged, not refused
    # (any 4xx marks the subscription stale: product-integrator-websubhub delivery.bal).
    headers, body, iat, _ = _delivery("webhook-05-user-disabled.json")
    clock = FrozenClock(iat)
    guard = InMemoryReplayGuard(clock=clock)
    hook = AsgardeoWebhook(SECRET, guard, clock=clock)
    result = await hook.handle(headers, body)
    clock.advance(3600)
    again = await hook.handle(headers, body)
    assert again.duplicate and again.events == () and again.replay_key is None
    assert result.replay_key is not None
    await guard.forget(result.replay_key)
    assert (await hook.handle(headers, body)).events == (UserActive(ALICE, False),)


async def test_old_and_future_iat_are_acknowledged_unused() -> None:
    headers, body, iat, _ = _delivery("webhook-05-user-disabled.json")
    old = await _hook(iat + 301, max_age=300).handle(headers, body)
    assert old.problem == "delivery too old" and old.events == ()
    assert (await _hook(iat + 299, max_age=300).handle(headers, body)).events
    future = await _hook(iat - 301).handle(headers, body)
    assert future.problem == "delivery timestamp in the future" and future.events == ()
    # Age check disabled: an old delivery is still accepted once.
    assert (await _hook(iat + 10 * 86400, max_age=None).handle(headers, body)).events


async def test_missing_iat_and_unreadable_bodies_are_acknowledged_unused() -> None:
    body = json.dumps({"jti": "j1", "events": {"urn:x": {}}}).encode()
    headers = {"X-Hub-Signature": sign_asgardeo(body, SECRET)}
    assert (await _hook(1772446530).handle(headers, body)).problem == "delivery without iat"
    result = await _hook(1772446530, max_age=None).handle(headers, body)
    assert isinstance(result.events[0], Ignored)
    nan_body = b'{"jti": "j2", "iat": NaN, "events": {"urn:x": {}}}'
    nan = await _hook(1772446530).handle({"X-Hub-Signature": sign_asgardeo(nan_body, SECRET)}, nan_body)
    assert nan.problem == "delivery without iat"
    for broken in (b"{", b"[]", b'{"events": {"urn:x": 3}}'):
        unusable = await _hook(1772446530).handle({"X-Hub-Signature": sign_asgardeo(broken, SECRET)}, broken)
        assert unusable.problem and unusable.events == ()
    with pytest.raises(WebhookRejected):  # without a good signature, nothing is read
        await _hook(1772446530).handle({"X-Hub-Signature": sign_asgardeo(b"{", "other-secret")}, b"{")


# --- parsing variants ----------------------------------------------------------------------------


def _body(event: str, payload: dict[str, Any], jti: str = "j-1") -> bytes:
    uri = "https://schemas.identity.wso2.org/events/" + event
    return json.dumps({"iss": "x", "jti": jti, "iat": 1772446530154, "events": {uri: payload}}).encode()


def _user(**extra: Any) -> dict[str, Any]:
    return {"user": {"id": ALICE, **extra}}


def test_profile_update_added_updated_removed() -> None:
    payload = _user(
        addedClaims=[{"uri": "http://wso2.org/claims/givenname", "value": "Alicia"}],
        updatedClaims=[
            {"uri": "http://wso2.org/claims/username", "value": "alicia@example.com"},
            {"uri": "http://wso2.org/claims/emailaddress", "value": ["alicia@example.com", "a2@example.com"]},
            {"uri": "http://wso2.org/claims/country", "value": "CH"},
        ],
        removedClaims=[{"uri": "http://wso2.org/claims/lastname", "value": "Smith"}],
    )
    (event,) = parse_asgardeo(_body("user/event-type/userProfileUpdated", payload)).events
    assert event == UserPatch(
        ALICE,
        {
            "name": {"givenName": "Alicia"},
            "userName": "alicia@example.com",
            "emails": [{"value": "alicia@example.com", "primary": True, "type": "work"}],
        },
        ("name.familyName",),
    )
    only_unmapped = _user(updatedClaims=[{"uri": "http://wso2.org/claims/country", "value": "CH"}])
    (ignored,) = parse_asgardeo(_body("user/event-type/userProfileUpdated", only_unmapped)).events
    assert isinstance(ignored, Ignored)


def test_enable_lock_unlock_registration_and_removed_role_members() -> None:
    assert parse_asgardeo(_body("user/event-type/userEnabled", _user())).events == (UserActive(ALICE, True),)
    assert parse_asgardeo(_body("user/event-type/userAccountLocked", _user())).events == (
        UserLocked(ALICE, True),
    )
    assert parse_asgardeo(_body("user/event-type/userAccountUnlocked", _user())).events == (
        UserLocked(ALICE, False),
    )
    claims = [{"uri": "http://wso2.org/claims/emailaddress", "value": "bob@example.com"}]
    (reg,) = parse_asgardeo(_body("registration/event-type/registrationSuccess", _user(claims=claims))).events
    assert isinstance(reg, UserUpsert) and reg.user["userName"] == "bob@example.com"
    role = {
        "role": {"name": "ops", "removedUsers": [{"id": "u1"}, {"id": "u2"}], "addedUsersTruncated": True}
    }
    assert parse_asgardeo(_body("role/event-type/roleUsersUpdated", role)).events == (
        RoleMembers("ops", (), ("u1", "u2"), truncated=True),
    )


@pytest.mark.parametrize("event", ["session/event-type/sessionCreated", "user/event-type/sessionRevoked"])
def test_unknown_events_are_ignored(event: str) -> None:
    (ignored,) = parse_asgardeo(_body(event, {"role": {}})).events
    assert isinstance(ignored, Ignored) and event in ignored.reason


@pytest.mark.parametrize(
    "body",
    [
        b"{",
        b'"x"',
        b'{"jti":"x"}',
        b'{"events":{}}',
        _body("user/event-type/userDeleted", {"user": {}}),
        _body("user/event-type/userCreated", _user(claims="nope")),
        _body("role/event-type/roleUsersUpdated", {"role": {"name": "r", "addedUsers": [{"x": 1}]}}),
        json.dumps(
            {"events": {"https://schemas.identity.wso2.org/events/user/event-type/userDeleted": 3}}
        ).encode(),
    ],
)
def test_invalid_bodies(body: bytes) -> None:
    with pytest.raises(WebhookInvalid):
        parse_asgardeo(body)
