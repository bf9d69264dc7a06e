"""Issue 5: one structured JSON line per request and per controller action; secrets never appear."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import pytest

from app.observability.logs import JsonFormatter, scrub
from tests.provisioning.conftest import ADMIN_PASSWORD, TOKEN

USER = "urn:ietf:params:scim:schemas:core:2.0:User"


def test_json_lines_for_requests_and_controller_actions_without_secrets(
    make_stack: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    user_password = "Okta-Sends-This-Pa55!"
    caplog.set_level(logging.DEBUG)
    with make_stack() as stack, stack.client() as scim:
        created = scim.post("/Users", json={"schemas": [USER], "userName": "logged", "password": user_password,
                                            "emails": [{"value": "logged@example.com"}]})
        assert created.status_code == 201
        scim.get("/Users", headers={"Authorization": "Bearer not-a-valid-token-at-all"})
        stack.settle()  # the controller action runs after the answer
    formatter = JsonFormatter()
    lines = [formatter.format(record) for record in caplog.records]
    entries = [json.loads(line) for line in lines]
    requests = [e for e in entries if e["message"] == "scim request"]
    actions = [e for e in entries if e["message"] == "controller action"]
    assert any(e["method"] == "POST" and e["status"] == 201 and e["request_id"] for e in requests)
    assert any(e["status"] == 401 for e in requests)
    assert [(e["action"], e["outcome"]) for e in actions] == [("create", "done")]
    assert actions[0]["request_id"] == created.headers["X-Request-Id"]
    everything = "\n".join(lines)
    for secret in (TOKEN, ADMIN_PASSWORD, user_password, "not-a-valid-token-at-all"):
        assert secret not in everything


def test_scrub_masks_secret_shapes() -> None:
    text = 'Authorization: Bearer abc.def.ghi zt-session: 1234-5678 {"password": "hunter2"}'
    scrubbed = scrub(text)
    assert "abc.def.ghi" not in scrubbed and "1234-5678" not in scrubbed and "hunter2" not in scrubbed
