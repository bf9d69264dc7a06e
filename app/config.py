"""Configuration: a TOML file (``--config`` or ``ZITI_SCIM_CONFIG``), with environment overrides for secrets.

The file is parsed into typed models (:mod:`app.config_schema`) at start-up: an unknown key, a value of
the wrong type, two sources sharing a bearer token or a short admin token stop the service with one
line naming the key (``sources.a.on_delet: unknown key``), never at the first request.

Secrets never need to be written in the file:

- a source's bearer tokens: ``ZITI_SCIM_SOURCE_<NAME>_TOKENS`` (comma-separated, clear text; hashed on
  load), or ``token_sha256`` hashes in the file;
- the controller password: ``password_env`` (default ``ZITI_SCIM_ZITI_PASSWORD``) or ``password_file``;
- the admin token of ``/admin``: ``ZITI_SCIM_ADMIN_TOKEN`` (at least 16 characters);
- the database URL: ``ZITI_SCIM_DATABASE_URL``;
- the token of ``/metrics`` (when one is wanted): ``ZITI_SCIM_METRICS_TOKEN``;
- a source's webhook and IdP API secrets (:data:`SECRET_OPTIONS`): ``ZITI_SCIM_SOURCE_<NAME>_<OPTION>``, e.g.
  ``ZITI_SCIM_SOURCE_ZITADEL_WEBHOOK_SECRET`` (comma-separated for a key rotation),
  ``ZITI_SCIM_SOURCE_AUTHENTIK_AUTHENTIK_TOKEN``, ``ZITI_SCIM_SOURCE_ZITADEL_ZITADEL_TOKEN``.

Clear-text tokens are hashed (SHA-256) as soon as they are read and never kept in clear. Secrets that
must be kept (the controller password, webhook secrets, IdP API tokens) are :class:`Secret` strings,
whose ``repr`` is masked, so ``repr(config)`` never shows them.
"""

from __future__ import annotations

import hashlib
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from app.config_schema import SECRET_OPTIONS, SOURCE_KINDS, ConfigError, MaskedUrl, Secret, parse

__all__ = [
    "SECRET_OPTIONS",
    "SOURCE_KINDS",
    "Config",
    "ConfigError",
    "LimitsConfig",
    "MaskedUrl",
    "PolicyConfig",
    "ProbesConfig",
    "SafetyConfig",
    "Secret",
    "SourceConfig",
    "ZitiConfig",
    "hash_token",
    "load_config",
    "read_config",
]


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class _Options(dict[str, Any]):
    """A source's options (typed and checked by :mod:`app.config_schema`); secret values masked in repr."""

    def __repr__(self) -> str:
        return repr({key: "**********" if key in SECRET_OPTIONS else value for key, value in self.items()})


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

    def __post_init__(self) -> None:
        if not isinstance(self.options, _Options):
            object.__setattr__(self, "options", _Options(self.options))


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
    # API sessions: OIDC on 2.x/HA, zt-session on 1.x ("auto"), or forced (docs/controller-versions.md)
    session: Literal["auto", "oidc", "legacy"] = "auto"

    def __post_init__(self) -> None:
        if self.password is not None and not isinstance(self.password, Secret):
            object.__setattr__(self, "password", Secret(self.password))


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
    deployment_id: str | None = None
    """``[server] deployment_id``: see :mod:`app.reconcile.deployment` (generated and stored when unset)."""

    def __post_init__(self) -> None:
        if not isinstance(self.database_url, MaskedUrl):
            object.__setattr__(self, "database_url", MaskedUrl(self.database_url))


def _source(name: str, model: Any, token_hashes: tuple[str, ...]) -> SourceConfig:
    options = model.options()
    return SourceConfig(
        name=name,
        kind=model.kind,
        token_hashes=token_hashes,
        policy=PolicyConfig(**model.policy.model_dump()),
        mapping=dict(model.mapping if model.mapping is not None else {"preset": model.kind}),
        options=options,
    )


def load_config(data: dict[str, Any], env: dict[str, str] | None = None) -> Config:
    """Build a :class:`Config` from parsed TOML, applying the environment overrides.

    Raises :class:`ConfigError` with one line naming the offending key.
    """
    env = dict(os.environ if env is None else env)
    parsed = parse(data, env, hash_token)
    server, ziti, safety = parsed.file.server, parsed.file.ziti, parsed.file.safety
    sources = parsed.file.sources
    return Config(
        database_url=parsed.database_url,
        host=server.host,
        port=server.port,
        max_body_bytes=server.max_body_bytes,
        sources={name: _source(name, model, parsed.token_hashes[name]) for name, model in sources.items()},
        ziti=ZitiConfig(
            url=parsed.ziti_url,
            username=ziti.username,
            password=parsed.ziti_password,
            cert_file=ziti.cert_file,
            key_file=ziti.key_file,
            ca_bundle=ziti.ca_bundle,
            insecure=ziti.insecure,
            max_in_flight=ziti.max_in_flight,
            session=ziti.session,
        ),
        safety=SafetyConfig(**safety.model_dump()),
        admin_token_hash=hash_token(parsed.admin_token) if parsed.admin_token else None,
        json_logs=server.json_logs,
        deployment_id=server.deployment_id,
        limits=LimitsConfig(
            max_patch_operations=server.max_patch_operations,
            max_attribute_values=server.max_attribute_values,
            limit_concurrency=server.limit_concurrency,
            timeout_keep_alive=server.timeout_keep_alive,
            header_timeout=server.header_timeout,
            body_timeout=server.body_timeout,
        ),
        probes=_probes(server, env),
    )


def _probes(server: Any, env: dict[str, str]) -> ProbesConfig:
    token = env.get("ZITI_SCIM_METRICS_TOKEN")
    digest = hash_token(token) if token else server.metrics_token_sha256
    return ProbesConfig(
        readyz_cache_seconds=server.readyz_cache_seconds,
        metrics_token_hash=digest,
        metrics_source_labels=server.metrics_source_labels,
    )


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
