"""Backoff, Retry-After, retry budgets and the idempotency rules (retry.py, ZitiClient._request)."""

from __future__ import annotations

import random
import ssl
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest
from ziti_support import FakeClock, FakeController, SleepRecorder, envelope_error

from app.ziti.client import ZitiClient
from app.ziti.errors import (
    ZitiOutcomeUnknown,
    ZitiRateLimited,
    ZitiServerError,
    ZitiTLSError,
    ZitiUnavailable,
)
from app.ziti.retry import RetryPolicy, backoff_delay, parse_retry_after

IDENTITY = {"id": "Ux1", "name": "alice"}
CREATE_BODY = {"name": "alice", "type": "User", "isAdmin": False, "externalId": "ext-1"}


def detail() -> httpx.Response:
    return httpx.Response(200, json={"data": IDENTITY, "meta": {}})


def created() -> httpx.Response:
    return httpx.Response(201, json={"data": {"id": "Ux1", "_links": {}}, "meta": {}})


def busy(status: int = 503, retry_after: str | None = None) -> httpx.Response:
    response = envelope_error(
        status, "CLUSTER_NO_LEADER" if status == 503 else "SERVER_TOO_MANY_REQUESTS", "busy"
    )
    if retry_after is not None:
        response.headers["Retry-After"] = retry_after
    return response


# ------------------------------------------------------------------------------------ pure functions


def test_full_jitter_stays_within_the_exponential_cap() -> None:
    policy = RetryPolicy(base_delay=0.5, max_delay=4.0)
    rng = random.Random(7)
    for retry, cap in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (5, 4.0), (40, 4.0)]:
        samples = [backoff_delay(policy, retry, rng) for _ in range(300)]
        assert all(0.0 <= s <= cap for s in samples)
        assert max(samples) > cap * 0.8  # jitter spreads over the whole [0, cap] range
        assert min(samples) < cap * 0.2


def test_parse_retry_after() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after("-4") == 0.0
    assert parse_retry_after(format_datetime(now + timedelta(seconds=30), usegmt=True), now=now) == 30.0
    assert parse_retry_after(format_datetime(now - timedelta(seconds=30), usegmt=True), now=now) == 0.0
    for bad in (None, "", "soon", "nan", "inf"):
        assert parse_retry_after(bad) is None


@pytest.mark.parametrize(
    "kwargs", [{"max_attempts": 0}, {"base_delay": -1.0}, {"total_deadline": float("nan")}]
)
def test_policy_validation(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------ client behaviour


async def test_get_is_retried_on_503_then_succeeds(
    make_client: Callable[..., ZitiClient], controller: FakeController, sleeper: SleepRecorder
) -> None:
    controller.route("GET", "/identities/Ux1", busy(), busy(502), busy(504), detail())
    client = make_client()
    assert (await client.get_identity("Ux1"))["name"] == "alice"
    assert len(controller.calls("GET", "/identities/Ux1")) == 4
    assert len(sleeper.delays) == 3 and all(0 <= d <= 0.05 for d in sleeper.delays)
    assert client.stats.retries == 3
    assert client.stats.by_status[503] == 1 and client.stats.by_status[200] == 2  # auth + final


async def test_retry_after_seconds_is_honoured(
    make_client: Callable[..., ZitiClient], controller: FakeController, sleeper: SleepRecorder
) -> None:
    controller.route("GET", "/identities/Ux1", busy(429, retry_after="2"), detail())
    await make_client().get_identity("Ux1")
    assert sleeper.delays == [2.0]


async def test_retry_after_beyond_the_cap_gives_up_at_once(
    make_client: Callable[..., ZitiClient], controller: FakeController, sleeper: SleepRecorder
) -> None:
    controller.route("GET", "/identities/Ux1", busy(429, retry_after="120"), detail())
    client = make_client(retry=RetryPolicy(max_attempts=5, max_retry_after=60.0))
    with pytest.raises(ZitiRateLimited) as info:
        await client.get_identity("Ux1")
    assert info.value.retry_after == 120.0 and info.value.status == 429
    assert sleeper.delays == [] and len(controller.calls("GET", "/identities/Ux1")) == 1


async def test_attempts_are_bounded(
    make_client: Callable[..., ZitiClient], controller: FakeController, sleeper: SleepRecorder
) -> None:
    controller.route("GET", "/identities/Ux1", busy(503))
    with pytest.raises(ZitiUnavailable) as info:
        await make_client().get_identity("Ux1")
    assert info.value.status == 503 and info.value.code == "CLUSTER_NO_LEADER"
    assert len(controller.calls("GET", "/identities/Ux1")) == 4  # max_attempts in the fixture policy
    assert len(sleeper.delays) == 3


async def test_total_deadline_stops_retrying(
    make_client: Callable[..., ZitiClient], controller: FakeController, sleeper: SleepRecorder
) -> None:
    controller.route("GET", "/identities/Ux1", busy(503, retry_after="4"))
    client = make_client(retry=RetryPolicy(max_attempts=100, total_deadline=10.0))
    with pytest.raises(ZitiUnavailable):
        await client.get_identity("Ux1")
    # 4 s + 4 s fit into 10 s, a third 4 s sleep would not.
    assert sleeper.delays == [4.0, 4.0]
    assert len(controller.calls("GET", "/identities/Ux1")) == 3


async def test_connect_errors_are_retried_even_for_create(
    make_client: Callable[..., ZitiClient], controller: FakeController
) -> None:
    controller.route(
        "POST", "/identities", httpx.ConnectError("refused"), httpx.ConnectTimeout("t/o"), created()
    )
    assert await make_client().create_identity(CREATE_BODY) == "Ux1"
    assert len(controller.calls("POST", "/identities")) == 3


async def test_create_is_retried_on_429_and_503(
    make_client: Callable[..., ZitiClient], controller: FakeController
) -> None:
    controller.route("POST", "/identities", busy(429), busy(503), created())
    assert await make_client().create_identity(CREATE_BODY) == "Ux1"
    assert len(controller.calls("POST", "/identities")) == 3


@pytest.mark.parametrize(
    "failure",
    [
        httpx.ReadTimeout("read timed out"),
        httpx.RemoteProtocolError("Server disconnected without sending a response."),
        httpx.ReadError("connection reset"),
    ],
)
async def test_create_is_not_blindly_retried_after_sending(
    make_client: Callable[..., ZitiClient], controller: FakeController, failure: Exception
) -> None:
    controller.route("POST", "/identities", failure, created())
    with pytest.raises(ZitiOutcomeUnknown) as info:
        await make_client().create_identity(CREATE_BODY)
    assert isinstance(info.value, ZitiUnavailable)
    assert len(controller.calls("POST", "/identities")) == 1


@pytest.mark.parametrize("status", [502, 504])
async def test_create_is_not_retried_on_gateway_errors(
    make_client: Callable[..., ZitiClient], controller: FakeController, status: int
) -> None:
    controller.route("POST", "/identities", busy(status), created())
    with pytest.raises(ZitiOutcomeUnknown) as info:
        await make_client().create_identity(CREATE_BODY)
    assert info.value.status == status
    assert len(controller.calls("POST", "/identities")) == 1


async def test_idempotent_requests_are_retried_after_read_timeouts(
    make_client: Callable[..., ZitiClient], controller: FakeController
) -> None:
    controller.route("GET", "/identities/Ux1", httpx.ReadTimeout("slow"), detail())
    controller.route("POST", "/identities/Ux1/disable", httpx.ReadTimeout("slow"), httpx.Response(200))
    client = make_client()
    assert (await client.get_identity("Ux1"))["id"] == "Ux1"
    await client.disable_identity("Ux1")
    assert len(controller.calls("POST", "/identities/Ux1/disable")) == 2


async def test_delete_retried_after_an_uncertain_attempt_accepts_404(
    make_client: Callable[..., ZitiClient], controller: FakeController
) -> None:
    # The first DELETE reached the controller but its answer was lost; the retry then finds nothing.
    controller.route(
        "DELETE",
        "/identities/Ux1",
        httpx.ReadTimeout("lost answer"),
        envelope_error(404, "NOT_FOUND", "not found"),
    )
    await make_client().delete_identity("Ux1")
    assert len(controller.calls("DELETE", "/identities/Ux1")) == 2


async def test_server_error_is_not_retried(
    make_client: Callable[..., ZitiClient], controller: FakeController, sleeper: SleepRecorder
) -> None:
    controller.route("GET", "/identities/Ux1", envelope_error(500, "UNHANDLED", "boom"), detail())
    with pytest.raises(ZitiServerError):
        await make_client().get_identity("Ux1")
    assert sleeper.delays == []


async def test_tls_failures_are_not_retried(
    make_client: Callable[..., ZitiClient], controller: FakeController, sleeper: SleepRecorder
) -> None:
    def fail(request: httpx.Request) -> httpx.Response:
        try:
            raise ssl.SSLCertVerificationError("certificate verify failed: unable to get local issuer")
        except ssl.SSLError as exc:
            raise httpx.ConnectError("TLS failed") from exc

    controller.routes[("GET", "/identities/Ux1")] = fail
    with pytest.raises(ZitiTLSError):
        await make_client().get_identity("Ux1")
    assert sleeper.delays == [] and len(controller.calls("GET", "/identities/Ux1")) == 1


async def test_unreachable_controller_is_unavailable(clock: FakeClock, sleeper: SleepRecorder) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused")

    from ziti_support import BASE, PASSWORD, USERNAME

    from app.ziti.session import PasswordCredentials

    client = ZitiClient(
        BASE,
        PasswordCredentials(USERNAME, PASSWORD),
        transport=httpx.MockTransport(refuse),
        retry=RetryPolicy(max_attempts=3, base_delay=0.01),
        sleep=sleeper,
        clock=clock,
    )
    async with client:
        with pytest.raises(ZitiUnavailable, match="unreachable") as info:
            await client.list_identities()
    assert type(info.value) is ZitiUnavailable  # authentication itself could not connect
    assert client.stats.transport_errors == 3 and len(sleeper.delays) == 2
