"""Fixtures for the controller emulator tests: real uvicorn servers on 127.0.0.1 and httpx clients."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from emu_support import ADMIN_PASSWORD, Emu, FakeClock, SigningKey

from tests.paths import SPEC, need
from ziti_emulator import EmulatorThread, create_emulator_app


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def spec_path() -> Path:
    return need(SPEC)


@pytest.fixture
def make_emu(clock: FakeClock) -> Iterator[Callable[..., Emu]]:
    """Start emulators with custom options; all are stopped at teardown."""
    started: list[EmulatorThread] = []

    def make(**options: Any) -> Emu:
        options.setdefault("admin_password", ADMIN_PASSWORD)
        options.setdefault("clock", clock)
        thread = EmulatorThread(create_emulator_app(**options)).start()
        started.append(thread)
        return Emu(thread, clock)

    yield make
    for thread in started:
        thread.stop()


@pytest.fixture
def emu(make_emu: Callable[..., Emu], spec_path: Path) -> Emu:
    """The default emulator: ziti 2.0 flavour, validating bodies against the real spec."""
    return make_emu(spec_path=spec_path)


@pytest.fixture
def admin(emu: Emu) -> Iterator[httpx.Client]:
    with emu.admin() as client:
        yield client


@pytest.fixture(scope="session")
def signing_key() -> SigningKey:
    return SigningKey("key-1")


@pytest.fixture(scope="session")
def other_key() -> SigningKey:
    return SigningKey("key-2")
