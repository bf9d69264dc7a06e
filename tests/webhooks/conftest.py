"""Fixtures for the webhook protocol tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from starlette.types import ASGIApp
from webhook_support import running_server


@pytest.fixture
def serve() -> Iterator[Callable[[ASGIApp], str]]:
    """``serve(app) -> base_url``; every server started in the test is stopped afterwards."""
    stack: list[Any] = []

    def start(app: ASGIApp) -> str:
        cm = running_server(app)
        url = cm.__enter__()
        stack.append(cm)
        return url

    yield start
    for cm in reversed(stack):
        cm.__exit__(None, None, None)
