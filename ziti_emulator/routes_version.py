"""``GET /version`` (and ``/``, ``/edge/{management,client}/v1/version``): unauthenticated build information.

Mirrors ``controller/internal/routes/version_router.go VersionRouter.List/buildVersions``: the ``data``
envelope with ``version``, ``revision``, ``buildDate``, ``runtimeVersion``, ``apiVersions`` (binding ->
``v1`` -> ``{path, apiBaseUrls}``, ``edge`` duplicating ``edge-client``) and ``capabilities`` (``OIDC_AUTH``
when the oidc binding is served, ``HA_CONTROLLER`` when raft is enabled). The bare ``/version`` and ``/``
paths are rewritten to the client API's (``controller/webapis/client-api.go newHandler``).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .state import EmulatorState

_BINDINGS = {
    "edge-client": "/edge/client/v1",
    "edge-management": "/edge/management/v1",
    "edge-oidc": "/oidc",
}
_RUNTIME = {"1.6": "go1.24.4", "1.8": "go1.25.1", "2.0": "go1.25.5", "2.0.3": "go1.25.5"}


def version_data(state: EmulatorState, base_url: str) -> dict[str, Any]:
    profile = state.profile
    apis: dict[str, Any] = {
        binding: {"v1": {"path": path, "apiBaseUrls": [base_url + path]}}
        for binding, path in _BINDINGS.items()
    }
    apis["edge"] = apis["edge-client"]
    capabilities = ["OIDC_AUTH"]
    if profile.is_2x:
        capabilities.append("OIDC_AUTH_WITH_CSR")
    if state.ha:
        capabilities.append("HA_CONTROLLER")
    return {
        "version": profile.release,
        "revision": "emulator",
        "buildDate": "2026-01-01T00:00:00Z",
        "runtimeVersion": _RUNTIME[profile.version],
        "apiVersions": apis,
        "capabilities": capabilities,
    }


async def version(request: Request) -> Response:
    state: EmulatorState = request.app.state.emulator
    base = f"{request.url.scheme}://{request.url.netloc}"
    return JSONResponse({"data": version_data(state, base), "meta": {}})
