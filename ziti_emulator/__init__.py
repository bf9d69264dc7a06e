"""An in-process emulator of the OpenZiti controller's Edge Management and Client APIs (ziti 1.6.x / 2.0.x).

It imitates what ziti-scim's controller client relies on, quirks included (the behaviours and their sources
in the controller's Go code are listed in ``docs/controller-api.md``), so that the client can be tested
against real HTTP without a controller. It is a package of its own: it imports nothing from ``app`` (an
import-linter contract in ``pyproject.toml``); ``app`` uses it only in ``ziti-scim demo`` / ``emulator``.
Its runtime needs are starlette, uvicorn, httpx, PyJWT and cryptography; request validation against the
controller's OpenAPI spec additionally needs the ``emulator`` extra (jsonschema, PyYAML).

Public API:

* :func:`create_emulator_app` - the Starlette app; its state is ``app.state.emulator``;
* :class:`EmulatorState` - entities, sessions, fault injection, ``spec_violations``, ``auth_failures``;
* :func:`serve_emulator` / :func:`build_emulator_server` / :func:`make_server` / :class:`EmulatorThread` -
  running it under uvicorn;
* :func:`load_spec` / :func:`validate_request_body` - request validation against the real OpenAPI spec.
"""

from __future__ import annotations

from .app import CLIENT_BASE, MANAGEMENT_BASE, create_emulator_app
from .entities import ApiSession, AuthFailure, AuthPolicy, ExtJwtSigner, Identity, Policy, RequestRecord
from .errors import ApiError
from .faults import Fault, FaultInjector
from .profile import PROFILES, VERSIONS, ControllerProfile, Version, get_profile
from .runner import EmulatorThread, build_emulator_server, make_server, run_emulator, serve_emulator
from .spec import (
    LoadedSpec,
    SpecValidationUnavailable,
    check_request_body,
    load_spec,
    validate_request_body,
    validation_available,
)
from .state import EmulatorState, Flavor

__all__ = [
    "PROFILES",
    "VERSIONS",
    "ControllerProfile",
    "Version",
    "get_profile",
    "CLIENT_BASE",
    "MANAGEMENT_BASE",
    "ApiError",
    "ApiSession",
    "AuthFailure",
    "AuthPolicy",
    "EmulatorState",
    "EmulatorThread",
    "ExtJwtSigner",
    "Fault",
    "FaultInjector",
    "Flavor",
    "Identity",
    "LoadedSpec",
    "Policy",
    "RequestRecord",
    "build_emulator_server",
    "check_request_body",
    "create_emulator_app",
    "load_spec",
    "make_server",
    "run_emulator",
    "serve_emulator",
    "SpecValidationUnavailable",
    "validate_request_body",
    "validation_available",
]
