"""Write a TOML configuration for running ``ziti-scim`` as a subprocess, secrets passed by environment."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def write_config(
    path: Path, *, database_url: str, source: str, ziti_url: str, port: int = 0, extra: str = ""
) -> Path:
    path.write_text(
        f"""
[server]
host = "127.0.0.1"
port = {port}

[database]
url = "{database_url}"

[ziti]
url = "{ziti_url}"
username = "admin"
password_env = "TEST_ZITI_PASSWORD"

[sources.{source}]
kind = "generic"
{extra}
"""
    )
    return path


def environment(source: str, token: str, ziti_password: str) -> dict[str, str]:
    env = dict(os.environ)
    env[f"ZITI_SCIM_SOURCE_{source.upper().replace('-', '_')}_TOKENS"] = token
    env["TEST_ZITI_PASSWORD"] = ziti_password
    env["PYTHONUNBUFFERED"] = "1"
    return env


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "app", *args]
