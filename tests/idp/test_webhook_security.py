"""Issue 4 acceptance 3: webhooks with a bad or missing signature, an old timestamp, or a replayed delivery
are refused with 401 and change nothing."""

from __future__ import annotations

import datetime as dt
import json
import time
from typing import Any

import httpx
import pytest

from app.idp.asgardeo.webhook import sign_asgardeo
from app.idp.zitadel.webhook import sign_zitadel
from tests.idp.conftest import Stack, StackFactory, source
from tests.idp.replay import Replayer, load

ZITADEL_KEY = "Ns4jKxq2Wv8pZt7rLm3hYc9dFg6bTe1A"
ASGARDEO_SECRET = "asgardeo-webhook-test-secret-7f3c"
AUTHENTIK_SECRET = "whk_1b9d7f3a5c2e4a6b8d0f"
INSPECT = "inspection-token-0123456789"


def post(stack: Stack, name: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(f"{stack.url}/webhooks/{name}", content=body, headers=headers, timeout=30)


def users(stack: Stack) -> list[dict[str, Any]]:
    with stack.scim(INSPECT) as scim:
        return list(scim.get("/Users").json()["Resources"])


@pytest.fixture
def zitadel(make_stack: StackFactory) -> Stack:
    return make_stack(
        source("zitadel", "zitadel", INSPECT, webhook_secret=[ZITADEL_KEY, "next-key-in-rotation-0001"])
    )


def test_zitadel_refuses_bad_missing_old_and_replayed_signatures(zitadel: Stack) -> None:
    added = dict(load("zitadel", "01"))["01-user-human-added.json"]
    body, t = added["raw_body"].encode(), added["signing"]["t"]
    zitadel.pin_clock(t + 10)
    good = {"Content-Type": "application/json", "ZITADEL-Signature": sign_zitadel(body, ZITADEL_KEY, t)}
    forged = {**good, "ZITADEL-Signature": sign_zitadel(body, "not-the-signing-key-000000", t)}
    tampered = body.replace(b"alice@example.com", b"mallory@example.com")
    for headers, content in (
        ({"Content-Type": "application/json"}, body),
        (forged, body),
        (good, tampered),
        ({**good, "ZITADEL-Signature": f"t={t},v1=zz"}, body),
    ):
        response = post(zitadel, "zitadel", content, headers)
        assert response.status_code == 401 and response.json() == {"error": "webhook rejected"}
    assert users(zitadel) == [] and zitadel.state.identity_by_external_id("339123456789012345") is None

    zitadel.pin_clock(t + 301)  # ZITADEL's own tolerance: 300 s
    assert post(zitadel, "zitadel", body, good).status_code == 401
    assert users(zitadel) == []

    zitadel.pin_clock(t + 10)
    # Any v1 of the header may match (key rotation): the second key alone signs this one.
    rotated = {
        **good,
        "ZITADEL-Signature": sign_zitadel(body, ["old-key-000000000000", "next-key-in-rotation-0001"], t),
    }
    assert post(zitadel, "zitadel", body, rotated).status_code == 200
    assert len(users(zitadel)) == 1

    (user,) = users(zitadel)
    with zitadel.scim(INSPECT) as scim:
        assert scim.delete(f"/Users/{user['id']}").status_code == 204
    # The same delivery again, still inside its window: a replay, refused; the user does not come back.
    zitadel.pin_clock(t + 20)
    assert post(zitadel, "zitadel", body, rotated).status_code == 401
    assert users(zitadel) == [] and zitadel.state.identity_by_external_id("339123456789012345") is None


def test_asgardeo_refuses_bad_missing_old_and_replayed_deliveries(make_stack: StackFactory) -> None:
    stack = make_stack(
        source("asgardeo", "asgardeo", INSPECT, webhook_secret=ASGARDEO_SECRET, webhook_max_age=600)
    )
    created = dict(load("asgardeo", "webhook-02"))["webhook-02-user-created.json"]
    body = json.dumps(created["body"]).encode()
    iat = created["body"]["iat"] / 1000
    stack.pin_clock(iat + 5)
    good = {"Content-Type": "application/json", "X-Hub-Signature": sign_asgardeo(body, ASGARDEO_SECRET)}
    for headers in (
        {"Content-Type": "application/json"},
        {**good, "X-Hub-Signature": sign_asgardeo(body, "another-secret-0000")},
        {**good, "X-Hub-Signature": "md5=" + "0" * 32},
    ):
        assert post(stack, "asgardeo", body, headers).status_code == 401
    assert users(stack) == []
    # Well signed but too old: acknowledged (the WSO2 hub drops a subscription after any 4xx) and unused.
    stack.pin_clock(iat + 601)
    assert post(stack, "asgardeo", body, good).json() == {"status": "ignored", "reason": "delivery too old"}
    assert users(stack) == []
    stack.pin_clock(iat + 5)
    assert post(stack, "asgardeo", body, good).status_code == 200
    (user,) = users(stack)
    with stack.scim(INSPECT) as scim:
        scim.delete(f"/Users/{user['id']}")
    assert post(stack, "asgardeo", body, good).json() == {"status": "duplicate"}  # same jti: no change
    assert users(stack) == []


def test_authentik_refuses_a_missing_or_wrong_secret_and_replays(make_stack: StackFactory) -> None:
    stack = make_stack(source("authentik", "authentik", INSPECT, webhook_secret=AUTHENTIK_SECRET))
    custom = dict(load("authentik", "16"))["16-webhook-model-created-user-custom-mapping.json"]
    body = json.dumps(custom["body"]).encode()
    created = custom["body"]["created"]
    stack.pin_clock(dt.datetime.fromisoformat(created.replace("Z", "+00:00")).timestamp() + 5)
    good = {"Content-Type": "application/json", "Authorization": f"Bearer {AUTHENTIK_SECRET}"}
    for headers in (
        {"Content-Type": "application/json"},
        {**good, "Authorization": "Bearer whk_wrong"},
        {**good, "Authorization": AUTHENTIK_SECRET},
    ):
        assert post(stack, "authentik", body, headers).status_code == 401
    assert users(stack) == []
    stack.pin_clock(time.time())  # created months ago: older than the default 24 h
    assert post(stack, "authentik", body, good).status_code == 401
    assert users(stack) == []
    Replayer(stack, "authentik").replay("16", {**custom, "expected_response": {"status": 200}})
    (user,) = users(stack)
    with stack.scim(INSPECT) as scim:
        scim.delete(f"/Users/{user['id']}")
    assert Replayer(stack, "authentik").send(custom).json() == {"status": "duplicate"}  # same event_uuid
    assert users(stack) == []


def test_unknown_source_and_bad_bodies(zitadel: Stack) -> None:
    assert httpx.post(f"{zitadel.url}/webhooks/nope", content=b"{}").status_code == 404
    assert httpx.get(f"{zitadel.url}/webhooks/zitadel").status_code == 405
    t = 1772446531
    zitadel.pin_clock(t)
    identities = {k: repr(v) for k, v in zitadel.state.identities.items()}
    for body in (b"not json", b"[]", b'{"event_type": "user.human.added"}'):
        headers = {"ZITADEL-Signature": sign_zitadel(body, ZITADEL_KEY, t)}
        response = post(zitadel, "zitadel", body, headers)
        assert response.status_code == 400 and "error" in response.json()
    too_big = b"{" + b" " * (1024 * 1024 + 1) + b"}"
    assert post(zitadel, "zitadel", too_big, {}).status_code == 413
    # Refused deliveries change nothing: no user stored, no identity touched.
    assert users(zitadel) == []
    assert {k: repr(v) for k, v in zitadel.state.identities.items()} == identities
