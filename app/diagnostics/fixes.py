"""The exact fixes diagnostics print: ``ziti`` CLI commands (flags as in openziti/ziti ``ziti/cmd/edge``:
``create``/``update ext-jwt-signer``, ``update auth-policy``, ``create service-policy`` and
``create edge-router-policy``) and ziti-scim configuration snippets. Arguments are shell-quoted so
a command can be pasted as is.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Sequence


def update_signer(name: str, *, claims_property: str | None = None, use_external_id: bool = False) -> str:
    """``ziti edge update ext-jwt-signer`` (the update command spells the flag ``--use-external-id``)."""
    args = ["ziti", "edge", "update", "ext-jwt-signer", name]
    if claims_property is not None:
        args += ["--claims-property", claims_property]
    if use_external_id:
        args.append("--use-external-id")
    return shlex.join(args)


def update_signer_issuer(name: str, issuer: str) -> str:
    return shlex.join(["ziti", "edge", "update", "ext-jwt-signer", name, "--issuer", issuer])


def update_signer_audience(name: str, audience: str) -> str:
    return shlex.join(["ziti", "edge", "update", "ext-jwt-signer", name, "--audience", audience])


def enable_signer(name: str) -> str:
    return shlex.join(["ziti", "edge", "update", "ext-jwt-signer", name, "--enabled"])


def create_signer(
    name: str,
    claims_property: str,
    issuer: str = "<issuer>",
    jwks: str = "<jwks-url>",
    audience: str = "<audience>",
) -> str:
    """``ziti edge create ext-jwt-signer`` (the create command spells the flag ``--external-id``)."""
    return shlex.join(
        [
            "ziti",
            "edge",
            "create",
            "ext-jwt-signer",
            name,
            issuer,
            "--jwks-endpoint",
            jwks,
            "--audience",
            audience,
            "--claims-property",
            claims_property,
            "--external-id",
        ]
    )


def allow_ext_jwt(policy: str, signer_ids: Sequence[str] = ()) -> str:
    """``ziti edge update auth-policy``; the signer list replaces the current one, so pass all of them."""
    args = ["ziti", "edge", "update", "auth-policy", policy, "--primary-ext-jwt-allowed"]
    for signer_id in signer_ids:
        args += ["--primary-ext-jwt-allowed-signers", signer_id]
    return shlex.join(args)


def create_auth_policy(name: str, signer_ids: Sequence[str] = ()) -> str:
    args = ["ziti", "edge", "create", "auth-policy", name, "--primary-ext-jwt-allowed"]
    for signer_id in signer_ids:
        args += ["--primary-ext-jwt-allowed-signers", signer_id]
    return shlex.join(args)


def create_service_policy(name: str, attribute: str, service_roles: str = "#<services>") -> str:
    return shlex.join(
        [
            "ziti",
            "edge",
            "create",
            "service-policy",
            name,
            "Dial",
            "--identity-roles",
            f"#{attribute}",
            "--service-roles",
            service_roles,
        ]
    )


def create_edge_router_policy(name: str, attributes: Sequence[str]) -> str:
    roles = ",".join(f"#{attribute}" for attribute in attributes) or "#all"
    return shlex.join(
        [
            "ziti",
            "edge",
            "create",
            "edge-router-policy",
            name,
            "--identity-roles",
            roles,
            "--edge-router-roles",
            "#all",
            "--semantic",
            "AnyOf",
        ]
    )


def toml_value(value: object) -> str:
    """A TOML literal for a string, bool or list of strings (JSON string escapes are valid TOML)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    return json.dumps(str(value))


def config_set(table: str, **values: object) -> str:
    """``in [table] set key = value, ...`` as a one-line config instruction."""
    assignments = ", ".join(f"{key} = {toml_value(value)}" for key, value in values.items())
    return f"in [{table}] set {assignments}"
