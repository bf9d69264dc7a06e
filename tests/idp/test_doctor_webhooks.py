"""Issue 15 items 1 and 8: ``ziti-scim doctor`` lists webhook deliveries kept to be retried, and says
whether an authentik API token can prove a deletion."""

from __future__ import annotations

import json

import httpx

from app.diagnostics.doctor import run_doctor
from app.webhooks import sign_asgardeo
from tests.idp.conftest import API_TOKEN, FakeApi, StackFactory, source
from tests.paths import WEBHOOK_TRACES

SECRET = "asgardeo-webhook-test-secret-7f3c"
INSPECT = "inspection-token-0123456789"
TRACE = WEBHOOK_TRACES / "asgardeo" / "webhook-02-user-created.json"


async def test_doctor_lists_deferred_deliveries_and_authentik_token_scope(
    make_stack: StackFactory, fake_api: FakeApi
) -> None:
    fake_api.superuser = False
    stack = make_stack(
        source("asgardeo", "asgardeo", INSPECT, webhook_secret=SECRET, webhook_retry_interval=3600),
        source(
            "authentik", "authentik", "t" * 20, webhook_secret="s" * 20,
            authentik_url=fake_api.url, authentik_token=API_TOKEN,
        ),
    )
    created = json.loads(TRACE.read_text())["body"]
    stack.pin_clock(created["iat"] / 1000 + 1)
    clash = {
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": "alice@example.com",
        "emails": [{"value": "other@example.com", "primary": True}],
        "externalId": "someone-else",
    }
    async with httpx.AsyncClient(base_url=stack.url, timeout=30) as client:
        headers = {"Authorization": f"Bearer {INSPECT}", "Content-Type": "application/scim+json"}
        assert (await client.post("/scim/v2/Users", json=clash, headers=headers)).status_code == 201
        raw = json.dumps(created).encode()
        signed = {"Content-Type": "application/json", "X-Hub-Signature": sign_asgardeo(raw, SECRET)}
        assert (await client.post("/webhooks/asgardeo", content=raw, headers=signed)).status_code == 202

    report = await run_doctor(stack.app.state.services.config)
    by_code = {item.code: item for item in report.findings.items if item.code}
    pending = by_code["webhook-pending"]
    assert pending.scope == "source asgardeo" and created["jti"] in pending.message
    assert "userName" in pending.message
    scope = by_code["authentik-token-scope"]
    assert scope.severity == "warn" and "not a superuser" in scope.message

    fake_api.superuser = True
    report = await run_doctor(stack.app.state.services.config)
    assert {i.code: i for i in report.findings.items}["authentik-token-scope"].severity == "ok"
