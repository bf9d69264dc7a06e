"""The controller emulator as the tests run it: validating every request body against the controller's
``management.yml``, and failing the test if ziti-scim sent one the real controller would refuse.

:func:`emulator_app` builds the app (skipped without the shared spec, see ``tests/paths.py``),
:func:`running_emulator` serves it on 127.0.0.1 and checks ``spec_violations`` at the end; the
``emulator`` fixture (``tests/support/stack.py``) is one of these per test.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from starlette.applications import Starlette

from tests.paths import SPEC, need
from ziti_emulator import EmulatorThread, create_emulator_app

ADMIN_PASSWORD = "emulator-admin-Pa55word"


def emulator_app(**options: Any) -> Starlette:
    """``create_emulator_app`` with the test admin password and spec validation unless given otherwise."""
    options.setdefault("admin_password", ADMIN_PASSWORD)
    if "state" not in options:  # a second HA node shares the first one's state, spec included
        options.setdefault("spec_path", need(SPEC))
    return create_emulator_app(**options)


@contextmanager
def running_emulator(app: Any = None, **thread_options: Any) -> Iterator[EmulatorThread]:
    """Serve ``app`` (default :func:`emulator_app`) and assert at the end that no request body broke the spec.

    ``app`` may wrap the emulator's app (a recorder, a version override) as long as it forwards
    ``state``; ``thread_options`` go to :class:`EmulatorThread` (e.g. TLS files).
    """
    with EmulatorThread(app or emulator_app(), **thread_options) as emulator:
        yield emulator
        assert emulator.state.spec_violations == [], (
            f"request bodies the controller would refuse (management.yml): {emulator.state.spec_violations}"
        )
