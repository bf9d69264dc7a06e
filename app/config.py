"""Configuration: a TOML file (``--config`` or ``ZITI_SCIM_CONFIG``), with environment overrides for secrets.

Secrets never need to be written in the file:

- a source's bearer tokens: ``ZITI_SCIM_SOURCE_<NAME>_TOKENS`` (comma-separated, clear text; hashed on
  load), or ``token_sha256`` hashes in the file;
- the controller password: ``password_env`` (default ``ZITI_SCIM_ZITI_PASSWORD``) or ``password_file``;
- the admin token of ``/admin``: ``ZITI_SCIM_ADMIN_TOKEN``;
- the database URL: ``ZITI_SCIM_DATABASE_URL``;
- a source's webhook and IdP API secrets (:data:`SECRET_OPTIONS`): ``ZITI_SCIM_SOURCE_<NAME>_<OPTION>``, e.g.
  ``ZITI_SCIM_SOURCE_ZITADEL_WEBHOOK_SECRET`` (comma-separated for a key rotation),
  ``ZITI_SCIM_SOURCE_AUTHENTIK_AUTHENTIK_TOKEN``, ``ZITI_SCIM_SOURCE_ZITADEL_ZITADEL_TOKEN``.

Clear-text tokens are hashed (SHA-256) as soon as they are read and never kept in clear.
"""

from __future__ import annotations

import hashlib
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SOURCE_KINDS = ("generic", "authentik", "zitadel", "asgardeo", "entra", "okta")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_DEPLOYMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class ConfigError(ValueError):
    """A configuration that cannot be used; the message says what to fix."""


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class PolicyConfig:
    """scim2-models ``ScimPolicy`` settings, tolerant of real IdPs by default."""

    unknown: str = "ignore"
    remove_value_as_filter: str = "apply"
    unmatched_path_filter: str = "create"


@dataclass(frozen=True)
class SourceConfig:
    name: str
    kind: str = "generic"
    token_hashes: tuple[str, ...] = ()
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    mapping: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ZitiConfig:
    url: str | None = None
    username: str = "admin"
    password: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    ca_bundle: str | None = None
    insecure: bool = False
    max_in_flight: int = 8
    reconcile_deadline: float = 5.0


@dataclass(frozen=True)
class SafetyConfig:
    """The mass-deprovision brake (see :mod:`app.reconcile.safety`) and audit retention."""

    brake_max: int = 100
    brake_share: float = 0.25
    brake_min: int = 10
    brake_window: float = 3600.0
    audit_retention_days: float = 90.0


@dataclass(frozen=True)
class Config:
    database_url: str = "ziti-scim.db"
    host: str = "127.0.0.1"
    port: int = 8080
    max_body_bytes: int = 1024 * 1024
    sources: dict[str, SourceConfig] = field(default_factory=dict)
    ziti: ZitiConfig = field(default_factory=ZitiConfig)
    safety: SafetyConfig = field(default_factory=SafetyConfig)
    admin_token_hash: str | None = None
    json_logs: bool = True
    deployment_id: str | None = None
    """``[server] deployment_id``: see :mod:`app.reconcile.deployment` (generated and stored when unset)."""


SECRET_OPTIONS = ("webhook_secret", "authentik_token", "zitadel_token")
"""Source options holding secrets; each may come from ``ZITI_SCIM_SOURCE_<NAME>_<OPTION>`` instead."""


def _env_key(name: str, suffix: str) -> str:
    return f"ZITI_SCIM_SOURCE_{name.upper().replace('-', '_')}_{suffix.upper()}"


def _tokens_from_env(name: str, env: dict[str, str]) -> list[str]:
    return [token.strip() for token in env.get(_env_key(name, "tokens"), "").split(",") if token.strip()]


def _secret_options(name: str, options: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    """Apply the environment overrides of :data:`SECRET_OPTIONS` (a comma-separated value gives a list)."""
    result = dict(options)
    for option in SECRET_OPTIONS:
        value = env.get(_env_key(name, option), "").strip()
        if value:
            parts = [part.strip() for part in value.split(",") if part.strip()]
            result[option] = parts[0] if len(parts) == 1 else parts
    return result


def _source(name: str, raw: dict[str, Any], env: dict[str, str]) -> SourceConfig:
    if not _NAME.match(name):
        raise ConfigError(f"source name {name!r}: use letters, digits, '-' and '_' (at most 64)")
    kind = raw.get("kind", "generic")
    if kind not in SOURCE_KINDS:
        raise ConfigError(f"sources.{name}.kind must be one of {', '.join(SOURCE_KINDS)}, not {kind!r}")
    hashes = [str(h).lower() for h in raw.get("token_sha256", [])]
    for h in hashes:
        if not re.fullmatch(r"[0-9a-f]{64}", h):
            raise ConfigError(f"sources.{name}.token_sha256 entries must be 64 hex digits")
    clear = [str(t) for t in raw.get("tokens", [])] + _tokens_from_env(name, env)
    for token in clear:
        if len(token) < 16:
            raise ConfigError(f"sources.{name}: a bearer token must have at least 16 characters")
    hashes += [hash_token(token) for token in clear]
    policy_raw = raw.get("policy", {})
    policy = PolicyConfig(
        **{k: str(v) for k, v in policy_raw.items() if k in PolicyConfig.__dataclass_fields__}
    )
    unknown_keys = set(policy_raw) - set(PolicyConfig.__dataclass_fields__)
    if unknown_keys:
        raise ConfigError(f"sources.{name}.policy: unknown keys {sorted(unknown_keys)}")
    known = {"kind", "token_sha256", "tokens", "policy", "mapping"}
    options = _secret_options(name, {k: v for k, v in raw.items() if k not in known}, env)
    return SourceConfig(
        name=name,
        kind=kind,
        token_hashes=tuple(dict.fromkeys(hashes)),
        policy=policy,
        mapping=dict(raw.get("mapping", {"preset": kind})),
        options=options,
    )


def _read_secret_file(path: str) -> str:
    try:
        return Path(path).expanduser().read_text().strip()
    except OSError as error:
        raise ConfigError(f"cannot read secret file {path}: {error.strerror}") from error


def _ziti(raw: dict[str, Any], env: dict[str, str]) -> ZitiConfig:
    if "password" in raw:
        raise ConfigError("ziti.password must not be written in the file: use password_env or password_file")
    password = None
    if raw.get("password_file"):
        password = _read_secret_file(str(raw["password_file"]))
    else:
        password = env.get(str(raw.get("password_env", "ZITI_SCIM_ZITI_PASSWORD"))) or None
    return ZitiConfig(
        url=env.get("ZITI_SCIM_ZITI_URL", raw.get("url")),
        username=str(raw.get("username", "admin")),
        password=password,
        cert_file=raw.get("cert_file"),
        key_file=raw.get("key_file"),
        ca_bundle=raw.get("ca_bundle"),
        insecure=bool(raw.get("insecure", False)),
        max_in_flight=int(raw.get("max_in_flight", 8)),
        reconcile_deadline=float(raw.get("reconcile_deadline", 5.0)),
    )


def load_config(data: dict[str, Any], env: dict[str, str] | None = None) -> Config:
    """Build a :class:`Config` from parsed TOML, applying the environment overrides."""
    env = dict(os.environ if env is None else env)
    server = data.get("server", {})
    database = data.get("database", {})
    sources_raw = data.get("sources", {})
    if not isinstance(sources_raw, dict):
        raise ConfigError("[sources] must be a table of sources, e.g. [sources.authentik]")
    sources = {name: _source(name, raw, env) for name, raw in sources_raw.items()}
    admin = env.get("ZITI_SCIM_ADMIN_TOKEN") or server.get("admin_token")
    return Config(
        database_url=env.get("ZITI_SCIM_DATABASE_URL", database.get("url", "ziti-scim.db")),
        host=str(server.get("host", "127.0.0.1")),
        port=int(server.get("port", 8080)),
        max_body_bytes=int(server.get("max_body_bytes", 1024 * 1024)),
        sources=sources,
        ziti=_ziti(data.get("ziti", {}), env),
        safety=_safety(data.get("safety", {})),
        admin_token_hash=hash_token(admin) if admin else None,
        json_logs=bool(server.get("json_logs", True)),
        deployment_id=_deployment_id(server.get("deployment_id")),
    )


def _deployment_id(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not _DEPLOYMENT.match(value):
        raise ConfigError("[server] deployment_id: use 1-64 letters, digits, '.', '-' and '_'")
    return value


def _safety(raw: dict[str, Any]) -> SafetyConfig:
    unknown = set(raw) - set(SafetyConfig.__dataclass_fields__)
    if unknown:
        raise ConfigError(f"[safety]: unknown keys {sorted(unknown)}")
    try:
        return SafetyConfig(**{key: type(getattr(SafetyConfig(), key))(value) for key, value in raw.items()})
    except (TypeError, ValueError) as error:
        raise ConfigError(f"[safety]: {error}") from error


def read_config(path: str | None, env: dict[str, str] | None = None) -> Config:
    """Read the TOML file at ``path`` (or ``$ZITI_SCIM_CONFIG``)."""
    env_map = dict(os.environ if env is None else env)
    path = path or env_map.get("ZITI_SCIM_CONFIG")
    if not path:
        raise ConfigError("no configuration: pass --config FILE or set ZITI_SCIM_CONFIG")
    try:
        data = tomllib.loads(Path(path).read_text())
    except OSError as error:
        raise ConfigError(f"cannot read {path}: {error.strerror}") from error
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path} is not valid TOML: {error}") from error
    return load_config(data, env_map)
