"""Issue 5 acceptance 3: the audit log and /metrics reflect a scripted sequence exactly."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from app.constants import STATUS_EXTENSION as STATUS
from tests.operations.conftest import ADMIN_TOKEN
from tests.operations.test_safety import wait_for

USER = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_audit_log_and_metrics_follow_a_scripted_sequence(make_stack: Callable[..., Any]) -> None:
    with make_stack() as stack:
        source = next(iter(stack.extra["config"].sources))
        with stack.client() as scim:
            a = scim.post(
                "/Users",
                json={"schemas": [USER], "userName": "ann", "emails": [{"value": "ann@example.com"}]},
            )
            b = scim.post(
                "/Users",
                json={"schemas": [USER], "userName": "bob", "emails": [{"value": "bob@example.com"}]},
            )
            # Convergence runs after each answer: settle between steps, so that the trail is in order.
            settled = {u["userName"]: u[STATUS] for u in stack.settle()}
            ann_identity, bob_identity = settled["ann"]["identityId"], settled["bob"]["identityId"]
            off = scim.patch(
                f"/Users/{a.json()['id']}",
                json={
                    "schemas": [PATCH],
                    "Operations": [{"op": "replace", "path": "active", "value": False}],
                },
            )
            stack.settle()
            same = scim.put(
                f"/Users/{b.json()['id']}",
                json={"schemas": [USER], "userName": "bob", "emails": [{"value": "bob@example.com"}]},
            )
            stack.settle()
            group = scim.post(
                "/Groups",
                json={"schemas": [GROUP], "displayName": "ops", "members": [{"value": b.json()["id"]}]},
            )
            stack.settle()
            gone = scim.delete(f"/Users/{a.json()['id']}")
            wait_for(lambda: 'outcome="deprovisioned"' in httpx.get(f"{stack.extra['url']}/metrics").text)
            assert ann_identity not in stack.state.identities
            refused = scim.get("/Users/does-not-exist")
        assert [r.status_code for r in (a, b, off, same, group, gone, refused)] == [
            201,
            201,
            200,
            200,
            201,
            204,
            404,
        ]

        admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        assert httpx.get(f"{stack.extra['url']}/admin/audit").status_code == 401
        entries = httpx.get(f"{stack.extra['url']}/admin/audit", headers=admin).json()["entries"]
        trail = [
            (e["action"], e["outcome"], e["user_name"], e["identity_id"], e["request_id"], e["operation"])
            for e in reversed(entries)
        ]
        assert trail == [
            ("create", "done", "ann", ann_identity, a.headers["X-Request-Id"], "POST create"),
            ("create", "done", "bob", bob_identity, b.headers["X-Request-Id"], "POST create"),
            ("disable", "done", "ann", ann_identity, off.headers["X-Request-Id"], "PATCH patch"),
            ("patch", "done", "bob", bob_identity, group.headers["X-Request-Id"], "POST create"),
            ("delete", "done", "ann", ann_identity, gone.headers["X-Request-Id"], "DELETE delete"),
        ]
        page = httpx.get(
            f"{stack.extra['url']}/admin/audit", headers=admin, params={"count": 2, "startIndex": 2}
        )
        assert [e["action"] for e in page.json()["entries"]] == ["patch", "disable"]
        assert all(e["source"] == source for e in entries)

        metrics = samples(httpx.get(f"{stack.extra['url']}/metrics").text)

        def value(name: str, **labels: str) -> float:
            return metrics.get((name, tuple(sorted(labels.items()))), 0.0)

        scim_total = "ziti_scim_scim_requests_total"
        assert value(scim_total, source=source, operation="create", status="201") == 3
        assert value(scim_total, source=source, operation="patch", status="200") == 1
        assert value(scim_total, source=source, operation="replace", status="200") == 1
        assert value(scim_total, source=source, operation="delete", status="204") == 1
        assert value(scim_total, source=source, operation="query", status="404") == 1
        actions = "ziti_scim_controller_actions_total"
        assert {k: value(actions, action=k) for k in ("create", "patch", "disable", "enable", "delete")} == {
            "create": 2,
            "patch": 1,
            "disable": 1,
            "enable": 0,
            "delete": 1,
        }
        outcomes = "ziti_scim_reconcile_outcomes_total"
        # ann, bob, ann disabled, bob's new role; bob's unchanged PUT left his identity as applied: not
        # converged (app.reconcile.admission).
        assert value(outcomes, source=source, outcome="synced") == 4
        assert value(outcomes, source=source, outcome="deprovisioned") == 1
        assert value("ziti_scim_pending_users") == 0
        assert value("ziti_scim_seconds_since_last_full_sync") == -1
        latency = [k for k in metrics if k[0] == "ziti_scim_controller_request_seconds_count"]
        assert sum(metrics[k] for k in latency) >= 5


def test_readyz_reports_the_controller(make_stack: Callable[..., Any]) -> None:
    with make_stack() as stack:
        url = stack.extra["url"]
        assert httpx.get(f"{url}/healthz").json() == {"status": "ok"}
        assert httpx.get(f"{url}/readyz").status_code == 200
        stack.state.faults.set_down(True)
        try:
            down = httpx.get(f"{url}/readyz", timeout=60)
        finally:
            stack.state.faults.set_down(False)
        assert down.status_code == 503 and down.json()["checks"]["database"] == "ok"
