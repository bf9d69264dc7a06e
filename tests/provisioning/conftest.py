"""The stack fixtures live in :mod:`tests.support.stack` (a plugin every test folder can use)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import pytest

from app.server import create_app
from tests.paths import SPEC
from tests.support.emulator import ADMIN_PASSWORD
from tests.support.idp import TestIdp
from tests.support.live import live_server
from tests.support.stack import TOKEN, Stack, add_signer, make_stack_config
from ziti_emulator import EmulatorThread

__all__ = ["ADMIN_PASSWORD", "SPEC", "TOKEN", "Stack", "add_signer", "make_stack_config"]


@pytest.fixture
def option_stack(
    emulator: EmulatorThread, idp: TestIdp, database_url: str, source_name: str
) -> Callable[..., AbstractContextManager[Stack]]:
    """A stack whose source has these options (``on_delete``, ``adopt``) and mapping overrides.

    Its writes wait for convergence (``wait_for_sync``), so that each response shows the option's outcome.
    """

    @contextmanager
    def build(mapping: dict[str, Any] | None = None, **options: Any) -> Iterator[Stack]:
        config = make_stack_config(
            database_url,
            source_name,
            emulator.url,
            {"preset": "generic", **(mapping or {})},
            **{"wait_for_sync": 10.0, **options},
        )
        signer_id = add_signer(emulator, idp)
        app = create_app(config)
        with live_server(app) as url:
            yield Stack(scim_url=f"{url}/scim/v2", emulator=emulator, idp=idp, app=app, signer_id=signer_id)

    return build
