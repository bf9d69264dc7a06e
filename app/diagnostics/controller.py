"""What diagnostics read from the controller, and how a failure to reach it is explained.

The controller's version comes from ``GET /edge/management/v1/version`` (edge-api ``listVersion``,
unauthenticated). When that is not answered, the signers tell the major version apart: only 2.x returns
the ``enroll*`` fields (controller-api.md §4).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import httpx

from app.config import Config, ConfigError
from app.diagnostics.claims import ControllerMajor
from app.reconcile.provisioner import ziti_client
from app.ziti.client import JSONObject, ZitiClient, normalize_base_url
from app.ziti.errors import (
    ZitiAuthenticationFailed,
    ZitiError,
    ZitiTLSError,
    ZitiUnauthorized,
    ZitiUnavailable,
)
from app.ziti.retry import RetryPolicy
from app.ziti.tls import build_ssl_context

# Diagnostics should answer quickly: two attempts, ten seconds in all.
DIAGNOSTIC_RETRY = RetryPolicy(max_attempts=2, base_delay=0.2, max_delay=1.0, total_deadline=10.0)
_VERSION = re.compile(r"^v?(\d+)\.")


@dataclass
class ControllerFacts:
    """The controller's configuration objects that decide whether an ext-jwt login works."""

    base_url: str
    version: str | None = None
    major: ControllerMajor = None
    version_source: str = "unknown"
    signers: list[JSONObject] = field(default_factory=list)
    auth_policies: list[JSONObject] = field(default_factory=list)
    service_policies: list[JSONObject] = field(default_factory=list)
    edge_router_policies: list[JSONObject] = field(default_factory=list)

    def signer_by_id(self, signer_id: str) -> JSONObject | None:
        return next((s for s in self.signers if s.get("id") == signer_id), None)

    def auth_policy(self, policy_id: str) -> JSONObject | None:
        return next((p for p in self.auth_policies if p.get("id") == policy_id), None)


class Unreachable(Exception):
    """The controller could not be used; ``message`` says why and ``fix`` what to change."""

    def __init__(self, message: str, fix: tuple[str, ...] = (), code: str = "controller-unreachable") -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix
        self.code = code


def major_of(version: str | None) -> ControllerMajor:
    match = _VERSION.match(version or "")
    return int(match.group(1)) if match else None


async def probe_version(config: Config) -> str | None:
    """``data.version`` of ``GET <management base>/version``, or None if it is not answered."""
    ziti = config.ziti
    if not ziti.url:
        return None
    try:
        url = normalize_base_url(ziti.url) + "/version"
        verify = build_ssl_context(ca_bundle=ziti.ca_bundle, insecure=ziti.insecure)
        async with httpx.AsyncClient(verify=verify, timeout=5.0, trust_env=False) as http:
            response = await http.get(url, headers={"Accept": "application/json"})
        if response.status_code != 200:
            return None
        data = response.json().get("data")
        version = data.get("version") if isinstance(data, dict) else None
        return version if isinstance(version, str) and version else None
    except (httpx.HTTPError, ValueError, AttributeError):
        return None


def _major_from_signers(signers: list[JSONObject]) -> ControllerMajor:
    if not signers:
        return None
    return 2 if any("enrollNameClaimsSelector" in s for s in signers) else 1


def open_client(config: Config) -> ZitiClient:
    """The controller client for diagnostics (short retries); raises :class:`Unreachable` on bad config."""
    try:
        return ziti_client(config, retry=DIAGNOSTIC_RETRY)
    except ConfigError as error:
        raise Unreachable(
            f"cannot connect to the controller: {error}",
            (
                'in [ziti] set url = "https://<controller>:1280" and username = "admin"',
                "and give the password with password_env (default ZITI_SCIM_ZITI_PASSWORD) or password_file",
            ),
            "controller-config",
        ) from error
    except ValueError as error:
        raise Unreachable(f"cannot connect to the controller: {error}", (), "controller-config") from error


def explain_failure(config: Config, error: ZitiError) -> Unreachable:
    """Turn a client error into what the operator must change."""
    url = config.ziti.url or "<url>"
    if isinstance(error, ZitiTLSError):
        return Unreachable(
            f"TLS verification of {url} failed: {error.message}",
            (
                'in [ziti] set ca_bundle = "/path/to/controller-ca.pem" (the network\'s own CA)',
                "Helm: ConfigMap <release>-controller-ctrl-plane-cas, key ctrl-plane-cas.crt; Docker image: "
                "<volume>/pki/root/certs/root.cert; or GET /.well-known/est/cacerts",
            ),
            "controller-tls",
        )
    if isinstance(error, ZitiAuthenticationFailed):
        return Unreachable(
            f"the controller refused the credentials of {config.ziti.username!r}",
            (
                "check [ziti] username and the password in password_env / password_file "
                "(Helm: Secret <release>-controller-admin-secret, keys admin-user / admin-password)",
            ),
            "controller-credentials",
        )
    if isinstance(error, ZitiUnauthorized):
        return Unreachable(
            f"{config.ziti.username!r} may not read {error.path or 'the management API'}: {error.message}",
            ("use an identity with isAdmin=true in [ziti] username",),
            "controller-permission",
        )
    if isinstance(error, ZitiUnavailable) and error.status is None:
        return Unreachable(
            f"cannot reach the controller at {url}: {error.message}",
            (
                "check [ziti] url: https://<host>:1280 (Docker image) or "
                "https://<release>-controller-client.<namespace>.svc:443 (Helm chart)",
            ),
        )
    return Unreachable(f"the controller answered an error: {error}")


async def gather(config: Config, client: ZitiClient) -> ControllerFacts:
    """Authenticate, then read signers, auth policies and service/edge-router policies."""
    facts = ControllerFacts(base_url=client.base_url)
    facts.version = await probe_version(config)
    try:
        await client.authenticate()
        facts.signers = await client.list_external_jwt_signers()
        facts.auth_policies = await client.list_auth_policies()
        facts.service_policies = await client.list_service_policies()
        facts.edge_router_policies = await client.list_edge_router_policies()
    except ZitiError as error:
        raise explain_failure(config, error) from error
    facts.major = major_of(facts.version)
    if facts.major is not None:
        facts.version_source = "GET /version"
    else:
        facts.major = _major_from_signers(facts.signers)
        facts.version_source = "signer fields" if facts.major is not None else "unknown"
    return facts


def signer_label(signer: dict[str, Any]) -> str:
    return str(signer.get("name") or signer.get("id") or "?")


__all__ = [
    "ControllerFacts",
    "DIAGNOSTIC_RETRY",
    "Unreachable",
    "explain_failure",
    "gather",
    "major_of",
    "open_client",
    "probe_version",
    "signer_label",
]
