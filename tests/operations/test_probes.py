"""Issue 12: /readyz does not load the controller, /metrics can require a token and hide source names,
and the admin API answers bad input with a 4xx (app/observability/probes.py, app/server.py)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from app.config import ConfigError, ProbesConfig, hash_token, load_config
from tests.operations.conftest import ADMIN_TOKEN
from tests.operations.test_audit_and_metrics import USER, samples

METRICS_TOKEN = "metrics-token-0123456789abcdef"
AUTH_POLICY = "/auth-policies/{id}"


def _policy_reads(url: str, headers: dict[str, str] | None = None) -> float:
    metrics = samples(httpx.get(f"{url}/metrics", headers=headers).text)
    return sum(
        value
        for (name, labels), value in metrics.items()
        if name == "ziti_scim_controller_request_seconds_count" and ("path", AUTH_POLICY) in labels
    )


async def _probe(url: str, count: int) -> list[int]:
    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=50)) as client:
        answers = await asyncio.gather(*(client.get(f"{url}/readyz") for _ in range(count)))
    return [answer.status_code for answer in answers]


def test_three_hundred_probes_make_one_controller_call(make_stack: Callable[..., Any]) -> None:
    with make_stack(probes=ProbesConfig(readyz_cache_seconds=60)) as stack:
        url = stack.extra["url"]
        before = _policy_reads(url)
        assert asyncio.run(_probe(url, 300)) == [200] * 300
        assert _policy_reads(url) - before == 1
        stack.state.faults.set_down(True)
        try:  # within the cache time, the last answer stands
            assert httpx.get(f"{url}/readyz", timeout=60).json()["checks"]["controller"] == "ok"
        finally:
            stack.state.faults.set_down(False)


def test_a_cached_check_expires(make_stack: Callable[..., Any]) -> None:
    with make_stack(probes=ProbesConfig(readyz_cache_seconds=0.5)) as stack:
        url = stack.extra["url"]
        assert httpx.get(f"{url}/readyz").status_code == 200
        stack.state.faults.set_down(True)
        try:
            deadline = time.monotonic() + 30
            status = 200
            while status == 200 and time.monotonic() < deadline:
                status = httpx.get(f"{url}/readyz", timeout=60).status_code
        finally:
            stack.state.faults.set_down(False)
        assert status == 503


def test_metrics_can_require_a_token_and_hide_source_names(make_stack: Callable[..., Any]) -> None:
    probes = ProbesConfig(metrics_token_hash=hash_token(METRICS_TOKEN), metrics_source_labels=False)
    with make_stack(probes=probes) as stack:
        url = stack.extra["url"]
        with stack.client() as client:
            assert client.post("/Users", json={"schemas": [USER], "userName": "m", "emails": [{"value": "m@example.com"}]}).status_code == 201
        refused = httpx.get(f"{url}/metrics")
        assert refused.status_code == 401 and "ziti_scim" not in refused.text
        assert httpx.get(f"{url}/metrics", headers={"Authorization": "Bearer wrong-token"}).status_code == 401
        shown = httpx.get(f"{url}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
        assert shown.status_code == 200
        source = next(iter(stack.extra["config"].sources))
        assert source not in shown.text
        metrics = samples(shown.text)
        created = [labels for (name, labels), _ in metrics.items() if name == "ziti_scim_scim_requests_total"]
        assert (("operation", "create"), ("source", "source-1"), ("status", "201")) in created


def test_metrics_are_open_and_named_by_default(make_stack: Callable[..., Any]) -> None:
    with make_stack() as stack:
        with stack.client() as client:
            assert client.post("/Users", json={"schemas": [USER], "userName": "n", "emails": [{"value": "n@example.com"}]}).status_code == 201
        shown = httpx.get(f"{stack.extra['url']}/metrics")
        assert shown.status_code == 200
        assert f'source="{next(iter(stack.extra["config"].sources))}"' in shown.text


@pytest.mark.parametrize(
    "query",
    [
        {"startIndex": "99999999999999999999"},
        {"startIndex": "-99999999999999999999"},
        {"startIndex": "2147483648"},
        {"since": "1e999"},
        {"since": "nan"},
        {"startIndex": "abc"},
    ],
)
def test_admin_audit_input_errors_are_400(make_stack: Callable[..., Any], query: dict[str, str]) -> None:
    with make_stack() as stack:
        admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        response = httpx.get(f"{stack.extra['url']}/admin/audit", params=query, headers=admin)
        assert response.status_code == 400, response.text
        assert response.json()["detail"].startswith(("startIndex", "since", "count"))
        huge_count = httpx.get(
            f"{stack.extra['url']}/admin/audit", params={"count": "9" * 20}, headers=admin
        )
        assert huge_count.status_code == 200 and huge_count.json()["startIndex"] == 1


def test_probe_settings_are_read_from_the_server_section() -> None:
    digest = hash_token(METRICS_TOKEN)
    config = load_config(
        {"server": {"readyz_cache_seconds": 2, "metrics_token_sha256": digest, "metrics_source_labels": False}},
        env={},
    )
    assert config.probes == ProbesConfig(2.0, digest, False)
    from_env = load_config({}, env={"ZITI_SCIM_METRICS_TOKEN": METRICS_TOKEN}).probes
    assert from_env.metrics_token_hash == digest
    assert load_config({}, env={}).probes == ProbesConfig()
    with pytest.raises(ConfigError, match="metrics_token_sha256"):
        load_config({"server": {"metrics_token_sha256": "not-hex"}}, env={})
