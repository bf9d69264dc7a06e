"""Fixtures for the Ziti client tests (helpers live in ziti_support.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from ziti_support import (
    BASE,
    PASSWORD,
    USERNAME,
    FakeClock,
    FakeController,
    SleepRecorder,
    make_spec_validator,
)

from app.ziti.client import ZitiClient
from app.ziti.retry import RetryPolicy
from app.ziti.session import PasswordCredentials
from tests.paths import SPEC, need
from tests.support.tls import TlsFiles, make_tls_files


@pytest.fixture
def controller() -> FakeController:
    return FakeController()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sleeper(clock: FakeClock) -> SleepRecorder:
    return SleepRecorder(clock)


@pytest.fixture
async def make_client(
    controller: FakeController, clock: FakeClock, sleeper: SleepRecorder
) -> AsyncIterator[Callable[..., ZitiClient]]:
    """Factory for a ZitiClient on MockTransport(controller) with the fake clock and recording sleep."""
    created: list[ZitiClient] = []

    def factory(**overrides: Any) -> ZitiClient:
        kwargs: dict[str, Any] = {
            "transport": httpx.MockTransport(controller),
            "retry": RetryPolicy(max_attempts=4, base_delay=0.01, max_delay=0.05, total_deadline=30.0),
            "sleep": sleeper,
            "clock": clock,
            "logout_on_close": False,
            "session_mode": "legacy",  # the fake speaks zt-session only; OIDC is tested against the emulator
        }
        kwargs.update(overrides)
        client = ZitiClient(BASE, PasswordCredentials(USERNAME, PASSWORD), **kwargs)
        created.append(client)
        return client

    yield factory
    for client in created:
        await client.close()


@pytest.fixture(scope="session")
def spec_validator() -> Callable[[str, Any], None]:
    """``validate(definition, instance)`` against management.yml ``#/definitions/<definition>``."""
    need(SPEC)
    return make_spec_validator()


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    path: Path = tmp_path_factory.mktemp("tls")
    return make_tls_files(path)
