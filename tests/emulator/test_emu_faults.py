"""Fault injection and the request log (controller-api.md §8: 429 / 503 answers, a controller that is down)."""

from __future__ import annotations

import time

import httpx
from emu_support import Emu, error_of


def test_next_requests_answer_429_then_recover(emu: Emu, admin: httpx.Client) -> None:
    emu.state.faults.inject(429, count=2, method="POST", path_contains="/identities", retry_after=1)
    body = {"name": "x", "type": "User", "isAdmin": False}
    for _ in range(2):
        limited = admin.post("/identities", json=body)
        assert limited.status_code == 429
        assert error_of(limited)["code"] == "SERVER_TOO_MANY_REQUESTS"
        assert limited.headers["retry-after"] == "1"
    assert admin.get("/identities").status_code == 200  # GET does not match the fault
    assert admin.post("/identities", json=body).status_code == 201
    assert len(emu.state.identities) == 2  # the faulted requests changed nothing


def test_apply_then_answer_makes_the_change_and_hides_it(emu: Emu, admin: httpx.Client) -> None:
    """An HA controller whose raft forward times out after the leader applied the command."""
    emu.state.faults.inject(429, method="POST", path_contains="/identities", apply=True)
    emu.state.faults.inject(503, method="PATCH", path_contains="/identities", apply=True)
    body = {"name": "applied", "type": "User", "isAdmin": False, "externalId": "applied@example.com"}
    limited = admin.post("/identities", json=body)
    assert limited.status_code == 429 and error_of(limited)["code"] == "SERVER_TOO_MANY_REQUESTS"
    created = emu.state.identity_by_name("applied")
    assert created is not None and created.external_id == "applied@example.com"
    no_leader = admin.patch(f"/identities/{created.id}", json={"roleAttributes": ["after"]})
    assert no_leader.status_code == 503 and error_of(no_leader)["code"] == "CLUSTER_NO_LEADER"
    assert emu.state.identities[created.id].role_attributes == ["after"]
    assert [r.status for r in emu.state.requests][-2:] == [429, 503]  # only the answers seen are logged
    again = admin.post("/identities", json=body)  # the fault is used up: a retry meets the first create
    assert again.status_code == 400 and error_of(again)["code"] == "COULD_NOT_VALIDATE"
    assert [i.name for i in emu.state.identities.values()].count("applied") == 1


def test_503_envelope_and_502_plain_text(emu: Emu, admin: httpx.Client) -> None:
    emu.state.faults.inject(503)
    no_leader = admin.get("/identities")
    assert no_leader.status_code == 503 and error_of(no_leader)["code"] == "CLUSTER_NO_LEADER"
    emu.state.faults.inject(502)
    gateway = admin.get("/identities")
    assert gateway.status_code == 502 and gateway.text == "Bad Gateway"
    assert admin.get("/identities").status_code == 200


def test_down_and_latency(emu: Emu, admin: httpx.Client) -> None:
    emu.state.faults.set_down()
    assert emu.state.faults.down
    for _ in range(3):
        assert admin.get("/identities").status_code == 503
    emu.state.faults.set_down(False)
    emu.state.faults.latency = 0.2
    started = time.monotonic()
    assert admin.get("/identities").status_code == 200
    assert time.monotonic() - started >= 0.2
    emu.state.faults.clear()
    assert emu.state.faults.latency == 0.0


def test_request_log_has_no_secrets(emu: Emu, admin: httpx.Client) -> None:
    admin.get("/identities", params={"limit": 5})
    record = emu.state.requests[-1]
    assert (record.method, record.path, record.query, record.status) == (
        "GET",
        "/edge/management/v1/identities",
        "limit=5",
        200,
    )
    login = next(r for r in emu.state.requests if r.path.endswith("/authenticate"))
    assert login.query == "method=password" and not hasattr(login, "body")
