"""Configuration: a TOML file (``--config`` or ``ZITI_SCIM_CONFIG``), with environment overrides for secrets.

Secrets never need to be written in the file:

- a source's bearer tokens: ``ZITI_SCIM_SOURCE_<NAME>_TOKENS`` (comma-separated, clear text; hashed on
  load), or ``token_sha256`` hashes in the file;
- the controller password: ``password_env`` (default ``ZITI_SCIM_ZITI_PASSWORD``) or ``password_file``;
- the admin token of ``/admin``: ``ZITI_SCIM_ADMIN_TOKEN``;
- the database URL: ``ZITI_SCIM_DATABASE_URL``;
- the token of ``/metrics`` (when one is wanted): ``ZITI_SCIM_METRICS_TOKEN``;
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
class LimitsConfig:
    """Bounds on one request and one connection (``[server]`` keys), so no client can stall the service.

    ``max_patch_operations`` and ``max_attribute_values``: see :mod:`app.scim.limits`. The others are
    handed to uvicorn (``limit_concurrency``, ``timeout_keep_alive``) or enforced by
    :mod:`app.serving` (``header_timeout``: a request's headers must arrive within it;
    ``body_timeout``: its body within it once the headers are in).
    """

    max_patch_operations: int = 1000
    max_attribute_values: int = 500
    limit_concurrency: int = 500
    timeout_keep_alive: int = 5
    header_timeout: float = 10.0
    body_timeout: float = 30.0


@dataclass(frozen=True)
class ProbesConfig:
    """``/readyz`` and ``/metrics`` (``[server]`` keys).

    ``readyz_cache_seconds``: how long a controller check is reused (probes must not load the controller);
    ``metrics_token_hash``: SHA-256 of the bearer token ``/metrics`` requires (``metrics_token_sha256``
    or ``ZITI_SCIM_METRICS_TOKEN``), none = open; ``metrics_source_labels = false`` replaces source names
    in metric labels by ``source-N`` (N in configuration order).
    """

    readyz_cache_seconds: float = 5.0
    metrics_token_hash: str | None = None
    metrics_source_labels: bool = True


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
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    probes: ProbesConfig = field(default_factory=ProbesConfig)


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
        limits=_limits(server),
        probes=_probes(server, env),
    )


def _positive(server: dict[str, Any], key: str, default: float) -> float:
    try:
        value = float(server.get(key, default))
    except (TypeError, ValueError) as error:
        raise ConfigError(f"server.{key} must be a number") from error
    if not value > 0:
        raise ConfigError(f"server.{key} must be greater than 0")
    return value


def _limits(server: dict[str, Any]) -> LimitsConfig:
    default = LimitsConfig()
    return LimitsConfig(
        max_patch_operations=int(_positive(server, "max_patch_operations", default.max_patch_operations)),
        max_attribute_values=int(_positive(server, "max_attribute_values", default.max_attribute_values)),
        limit_concurrency=int(_positive(server, "limit_concurrency", default.limit_concurrency)),
        timeout_keep_alive=int(_positive(server, "timeout_keep_alive", default.timeout_keep_alive)),
        header_timeout=_positive(server, "header_timeout", default.header_timeout),
        body_timeout=_positive(server, "body_timeout", default.body_timeout),
    )


def _probes(server: dict[str, Any], env: dict[str, str]) -> ProbesConfig:
    token = env.get("ZITI_SCIM_METRICS_TOKEN")
    digest = hash_token(token) if token else server.get("metrics_token_sha256")
    if digest is not None and not re.fullmatch(r"[0-9a-f]{64}", str(digest).lower()):
        raise ConfigError("server.metrics_token_sha256 must be 64 hex digits")
    cache = server.get("readyz_cache_seconds", ProbesConfig.readyz_cache_seconds)
    if not isinstance(cache, int | float) or cache < 0:
        raise ConfigError("server.readyz_cache_seconds must be a number >= 0")
    return ProbesConfig(
        readyz_cache_seconds=float(cache),
        metrics_token_hash=str(digest).lower() if digest is not None else None,
        metrics_source_labels=bool(server.get("metrics_source_labels", True)),
    )


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
