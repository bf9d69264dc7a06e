"""Fixtures for operating the service: a stack with configurable safety settings."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import pytest

from app.config import ProbesConfig, SafetyConfig, hash_token
from app.server import create_app
from tests.provisioning.conftest import Stack, add_signer, make_stack_config
from tests.support.idp import TestIdp
from tests.support.live import live_server
from ziti_emulator import EmulatorThread

ADMIN_TOKEN = "admin-token-for-tests-0123456789"
SECOND_TOKEN = "second-source-token-0123456789"
"""The bearer token of the second source, when a test asks for one (``second_source=``)."""


@pytest.fixture
def make_stack(
    emulator: EmulatorThread, idp: TestIdp, database_url: str, source_name: str
) -> Callable[..., Any]:
    @contextmanager
    def build(
        safety: SafetyConfig | None = None,
        probes: ProbesConfig | None = None,
        second_source: str | None = None,
        **options: Any,
    ) -> Iterator[Stack]:
        # Writes wait briefly for convergence (wait_for_sync) so that responses show the brake's outcome.
        config = make_stack_config(database_url, source_name, emulator.url, **{"wait_for_sync": 3.0, **options})
        if second_source is not None:
            first = config.sources[source_name]
            second = replace(first, name=second_source, token_hashes=(hash_token(SECOND_TOKEN),))
            config = replace(config, sources={**config.sources, second_source: second})
        config = replace(config, safety=safety or SafetyConfig(), admin_token_hash=hash_token(ADMIN_TOKEN))
        config = replace(config, probes=probes or ProbesConfig(readyz_cache_seconds=0))
        app = create_app(config)
        with live_server(app) as url:
            yield Stack(
                scim_url=f"{url}/scim/v2",
                emulator=emulator,
                idp=idp,
                app=app,
                signer_id=add_signer(emulator, idp),
                extra={"url": url, "config": config},
            )

    return build
