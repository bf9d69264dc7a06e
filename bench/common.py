"""Shared constants and request bodies (shaped like authentik's, see shared/traces/authentik)."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import socket
import subprocess
import sys
import uuid
from importlib import metadata
from typing import Any

TOKEN = "bench-token-0123456789abcdef"
SOURCE = "bench"
EMULATOR_PASSWORD = "bench-emulator-Pa55word"
USER = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
INSTALL_ID = "8b2f8d3e-6f1c-4c53-9a0e-2d1f7c4b9a61"
SCIM_HEADERS = {"Content-Type": "application/scim+json", "Accept": "application/scim+json"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def external_id(prefix: str, index: int) -> str:
    """authentik's user externalId: sha256("<pk>-<install_id>") in hex."""
    return hashlib.sha256(f"{prefix}{index}-{INSTALL_ID}".encode()).hexdigest()


def user_name(prefix: str, index: int) -> str:
    return f"{prefix}{index:07d}"


def email(prefix: str, index: int) -> str:
    return f"{user_name(prefix, index)}@example.com"


def user_body(prefix: str, index: int, display: str | None = None) -> dict[str, Any]:
    """A POST /Users body as authentik sends it (trace 02-create-user)."""
    name = user_name(prefix, index)
    return {
        "userName": name,
        "name": {"formatted": f"User {name}", "familyName": name, "givenName": "User"},
        "displayName": display or f"User {name}",
        "active": True,
        "emails": [{"value": email(prefix, index), "type": "other", "primary": True}],
        "schemas": [USER],
        "externalId": external_id(prefix, index),
    }


def group_body(name: str) -> dict[str, Any]:
    """A POST /Groups body as authentik sends it when PATCH is supported (trace 06, no members); its
    externalId is the group's UUID, hyphenated (here derived from the name)."""
    external = uuid.UUID(hashlib.md5(name.encode()).hexdigest())
    return {"displayName": name, "schemas": [GROUP], "externalId": str(external)}


def add_members_body(ids: list[str], one_op_per_member: bool = True) -> dict[str, Any]:
    """authentik's _patch_add_users: one add operation per member (trace 07)."""
    if one_op_per_member:
        operations = [{"op": "add", "path": "members", "value": [{"value": i}]} for i in ids]
    else:
        operations = [{"op": "add", "path": "members", "value": [{"value": i} for i in ids]}]
    return {"Operations": operations, "schemas": [PATCH_OP]}


def replace_display_body(value: str) -> dict[str, Any]:
    return {"schemas": [PATCH_OP], "Operations": [{"op": "replace", "path": "displayName", "value": value}]}


def dumps(body: Any) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def machine_info() -> dict[str, Any]:
    """What the numbers were measured on."""
    info: dict[str, Any] = {
        "cpu_count": os.cpu_count(),
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
    }
    try:
        with open("/proc/cpuinfo") as handle:
            names = [line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")]
        info["cpu_model"] = names[0] if names else None
    except OSError:
        info["cpu_model"] = None
    try:
        with open("/proc/meminfo") as handle:
            total = next(line for line in handle if line.startswith("MemTotal"))
        info["memory_total_mb"] = round(int(total.split()[1]) / 1024)
    except (OSError, StopIteration):
        info["memory_total_mb"] = None
    info["packages"] = {
        name: _version(name)
        for name in (
            "ziti-scim",
            "scim2-server",
            "scim2-models",
            "uvicorn",
            "starlette",
            "httpx",
            "sqlalchemy",
            "aiosqlite",
            "asyncpg",
            "uvloop",
            "httptools",
        )
    }
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5, cwd=root
        )
        info["git_commit"] = out.stdout.strip() or None
        # Uncommitted changes to the product: the numbers are for the working tree, not for git_commit.
        status = subprocess.run(
            ["git", "status", "--porcelain", "--", "app", "schemas"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=root,
        )
        info["git_dirty"] = bool(status.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        info["git_commit"] = None
    return info
