"""Where the test data outside this repository lives, and what happens when it is missing.

The controller's ``management.yml`` (request bodies are validated against it) and the captured IdP
traces live in the project's ``shared/`` folder, a sibling of the repository (``<repo>/../shared``);
``$ZITI_SCIM_SHARED`` points elsewhere. A test that needs a file from it calls :func:`need`: with the
file missing it is skipped with the reason, except on CI (``CI=true``), where it fails, as the
PostgreSQL tests do, so that a checkout without ``shared/`` cannot pass by skipping.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_ENV = "ZITI_SCIM_SHARED"
SHARED = Path(os.environ.get(SHARED_ENV) or ROOT.parent / "shared").resolve()
SPEC = SHARED / "ziti-edge-api" / "management.yml"
TRACES = SHARED / "traces"
#: IdP traffic recorded for the webhook tests, kept in the repository.
WEBHOOK_TRACES = ROOT / "tests" / "webhooks" / "traces"


def shared_dir() -> Path | None:
    """The shared folder, or None when it is not there."""
    return SHARED if SHARED.is_dir() else None


def on_ci() -> bool:
    return os.environ.get("CI") == "true"


def need(path: Path) -> Path:
    """``path`` (inside the shared folder) when it exists; otherwise skip the test, or fail it on CI."""
    if path.exists():
        return path
    reason = (
        f"{path} is missing: these tests need the project's shared/ folder next to the repository "
        f"(or ${SHARED_ENV} pointing at it)"
    )
    if on_ci():
        pytest.fail(f"{reason}; required on CI", pytrace=False)
    pytest.skip(reason)
