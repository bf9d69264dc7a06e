"""Typed models of the TOML configuration (pydantic, ``extra="forbid"``, strict types).

:func:`parse` validates a parsed TOML document plus the environment overrides and raises
:class:`ConfigError` with ONE line naming the first offending key, e.g.
``sources.a.on_delet: unknown key`` or ``server.port: must be an integer``. :mod:`app.config` turns
the result into the frozen dataclasses the rest of the service reads.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

SOURCE_KINDS = ("generic", "authentik", "zitadel", "asgardeo", "entra", "okta")
SECRET_OPTIONS = ("webhook_secret", "authentik_token", "zitadel_token")
"""Source options holding secrets; each may come from ``ZITI_SCIM_SOURCE_<NAME>_<OPTION>`` instead."""

MIN_TOKEN_LENGTH = 16
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


class ConfigError(ValueError):
    """A configuration that cannot be used; the message (one line) says which key and what to fix."""


class Secret(str):
    """A string whose ``repr`` never shows its value (passwords, webhook secrets, API tokens)."""

    def __repr__(self) -> str:
        return "'**********'"


class MaskedUrl(str):
    """A URL whose ``repr`` hides the password part (``postgresql://user:***@host/db``)."""

    def __repr__(self) -> str:
        return repr(re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", str(self)))


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


Positive = Annotated[float, Field(gt=0)]
NonNegative = Annotated[float, Field(ge=0)]


def _string_or_list(value: Any) -> Any:
    if isinstance(value, str) and value:
        return value
    if isinstance(value, list) and value and all(isinstance(item, str) and item for item in value):
        return value
    raise ValueError("must be a non-empty string or a list of them")


class ServerModel(_Model):
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 8080
    max_body_bytes: Annotated[int, Field(gt=0)] = 1024 * 1024
    json_logs: bool = True
    admin_token: str | None = None
    # Bounds on one request and one connection (app.scim.limits, app.serving; README "[server]").
    max_patch_operations: Annotated[int, Field(gt=0)] = 1000
    max_attribute_values: Annotated[int, Field(gt=0)] = 500
    limit_concurrency: Annotated[int, Field(gt=0)] = 500
    timeout_keep_alive: Annotated[int, Field(gt=0)] = 5
    header_timeout: Positive = 10.0
    body_timeout: Positive = 30.0
    # Probes (app.observability.probes).
    readyz_cache_seconds: NonNegative = 5.0
    metrics_token_sha256: str | None = None
    metrics_source_labels: bool = True
    # Ownership (app/reconcile/deployment.py): the tag scimDeployment; generated and stored when unset.
    deployment_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")] | None = None

    @field_validator("metrics_token_sha256")
    @classmethod
    def _hex_digest(cls, value: str | None) -> str | None:
        if value is not None and not _HEX64.match(value.lower()):
            raise ValueError("must be 64 hex digits (the SHA-256 of the token)")
        return value.lower() if value is not None else None


class DatabaseModel(_Model):
    url: str = "ziti-scim.db"


class ZitiModel(_Model):
    url: str | None = None
    username: str = "admin"
    password_env: str = "ZITI_SCIM_ZITI_PASSWORD"
    password_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    ca_bundle: str | None = None
    insecure: bool = False
    max_in_flight: Annotated[int, Field(gt=0)] = 8
    session: Literal["auto", "oidc", "legacy"] = "auto"


class SafetyModel(_Model):
    brake_max: Annotated[int, Field(ge=0)] = 100
    brake_share: Annotated[float, Field(ge=0, le=1)] = 0.25
    brake_min: Annotated[int, Field(ge=0)] = 10
    brake_window: Positive = 3600.0
    audit_retention_days: Positive = 90.0


class PolicyModel(_Model):
    unknown: Literal["ignore", "forbid", "keep"] = "ignore"
    remove_value_as_filter: Literal["apply", "forbid"] = "apply"
    unmatched_path_filter: Literal["create", "forbid"] = "create"


class OAuthModel(_Model):
    """``[sources.<name>.oauth]``: JWT access tokens (checked further by ``app.scim.auth.oauth_config``)."""

    issuer: str = ""
    audience: str | list[str] = ""
    jwks_url: str = ""
    required_scopes: list[str] = []
    required_claims: dict[str, str] = {}
    allowed_clients: list[str] = []
    accept_any_client: bool = False
    token_types: list[str] = ["at+jwt", "jwt"]
    leeway: NonNegative = 30.0

    _audience = field_validator("audience", mode="before")(
        lambda value: value if value == "" else _string_or_list(value)
    )


class SourceModel(_Model):
    """``[sources.<name>]``: every option any part of the service reads, typed; anything else is an error."""

    kind: Literal["generic", "authentik", "zitadel", "asgardeo", "entra", "okta"] = "generic"
    tokens: list[str] = []
    token_sha256: list[str] = []
    policy: PolicyModel = PolicyModel()
    mapping: dict[str, Any] | None = None
    oauth: OAuthModel | None = None
    # Provisioning (app/reconcile/settings.py).
    on_delete: Literal["delete", "disable"] = "delete"
    adopt: Literal["adopt", "refuse"] = "adopt"
    on_delete_adopted: Literal["untag", "disable", "delete"] = "disable"
    takeover_from: list[Annotated[str, Field(min_length=1)]] = []
    unmappable: Literal["store", "refuse"] = "store"
    wait_for_sync: Annotated[float, Field(ge=0, le=30)] = 0.0
    create_settle: Annotated[float, Field(ge=0, le=60)] | None = None
    # SCIM quirks overrides (app/scim/quirks.py) and rate limit (app/scim/router.py).
    partial_put: bool | None = None
    raw_token: bool | None = None
    group_patch_no_content: bool | None = None
    unique_group_names: bool | None = None
    rate_limit: NonNegative | None = None
    rate_burst: Positive | None = None
    # Webhooks (app/webhooks/routes.py).
    webhook_secret: str | list[str] | None = None
    webhook_secret_header: str | None = None
    webhook_topic_prefix: str | None = None
    webhook_tolerance: Positive | None = None
    webhook_max_age: Positive | None = None
    zitadel_url: str | None = None
    zitadel_token: str | None = None
    zitadel_pull_interval: Positive | None = None
    zitadel_event_retention: Positive | None = None
    authentik_url: str | None = None
    authentik_token: str | None = None
    # Webhooks as the IdPs send them (issue 15): retries of acknowledged Asgardeo deliveries
    # (app/webhooks/pending.py), the authentik pull (app/webhooks/authentik_pull.py) and the ZITADEL
    # organisations a source serves (app/webhooks/zitadel.py, zitadel_pull.py).
    webhook_retry_interval: Positive | None = None
    webhook_retry_retention: Positive | None = None
    authentik_pull_interval: Positive | None = None
    zitadel_organizations: list[str] | None = None
    # Diagnostics (app/diagnostics/source_checks.py): the ext-jwt signer this source's users log in with.
    signer: str | None = None

    _secret = field_validator("webhook_secret", mode="before")(
        lambda value: value if value is None else _string_or_list(value)
    )

    @field_validator("token_sha256")
    @classmethod
    def _hashes(cls, value: list[str]) -> list[str]:
        if not all(_HEX64.match(item.lower()) for item in value):
            raise ValueError("entries must be 64 hex digits")
        return [item.lower() for item in value]

    @field_validator("tokens")
    @classmethod
    def _tokens(cls, value: list[str]) -> list[str]:
        if any(len(token) < MIN_TOKEN_LENGTH for token in value):
            raise ValueError(f"a bearer token must have at least {MIN_TOKEN_LENGTH} characters")
        return value

    _OWN = frozenset({"kind", "tokens", "token_sha256", "policy", "mapping"})

    def options(self) -> dict[str, Any]:
        """The options set explicitly (file or environment), secrets wrapped in :class:`Secret`."""
        result: dict[str, Any] = {}
        for key in sorted(self.model_fields_set - self._OWN):
            value = getattr(self, key)
            if key == "oauth" and value is not None:
                value = value.model_dump(exclude_unset=True)
            elif key in SECRET_OPTIONS and value is not None:
                value = [Secret(item) for item in value] if isinstance(value, list) else Secret(value)
            if value is not None:
                result[key] = value
        return result


class FileModel(_Model):
    server: ServerModel = ServerModel()
    database: DatabaseModel = DatabaseModel()
    ziti: ZitiModel = ZitiModel()
    safety: SafetyModel = SafetyModel()
    sources: dict[str, SourceModel] = {}


@dataclass(frozen=True)
class Parsed:
    file: FileModel
    token_hashes: dict[str, tuple[str, ...]]
    database_url: str
    ziti_url: str | None
    ziti_password: Secret | None
    admin_token: str | None


REMOVED = {
    "ziti.reconcile_deadline": (
        "unknown key: removed, SCIM and webhook writes no longer wait for the controller; "
        "a source's wait_for_sync (seconds) keeps a short wait for a synced answer"
    ),
}
"""Keys older versions accepted, with what replaces them (said instead of a bare "unknown key")."""


def _message(error: dict[str, Any]) -> str:
    kind, ctx = error["type"], error.get("ctx") or {}
    if kind == "extra_forbidden":
        return REMOVED.get(_key(error["loc"]), "unknown key")
    if kind == "literal_error":
        return f"must be {ctx.get('expected')}"
    if kind == "bool_type":
        return "must be true or false"
    if kind in ("int_type", "int_from_float"):
        return "must be an integer"
    if kind == "float_type":
        return "must be a number"
    if kind == "string_type":
        return "must be a string"
    if kind in ("dict_type", "model_type"):
        return "must be a table"
    if kind == "list_type":
        return "must be a list"
    if kind == "value_error":
        return str(ctx.get("error", error["msg"]))
    return str(error["msg"]).replace("Input should be", "must be")


def _key(loc: tuple[Any, ...]) -> str:
    # Union members appear in pydantic's location as type tags (e.g. "str", "list[str]"): not keys.
    parts = [str(part) for part in loc if not (isinstance(part, str) and ("[" in part or part in _TAGS))]
    return ".".join(parts) or "(top level)"


_TAGS = frozenset({"str", "int", "float", "bool", "OAuthModel", "function-before", "none"})


def _validate(data: dict[str, Any]) -> FileModel:
    try:
        return FileModel.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        raise ConfigError(f"{_key(first['loc'])}: {_message(dict(first))}") from None


def _env_key(name: str, suffix: str) -> str:
    return f"ZITI_SCIM_SOURCE_{name.upper().replace('-', '_')}_{suffix.upper()}"


def _with_env(data: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    """The document with the secret options of ``ZITI_SCIM_SOURCE_<NAME>_<OPTION>`` merged in."""
    sources = data.get("sources")
    if not isinstance(sources, dict):
        if sources is not None:
            raise ConfigError("sources: must be a table of sources, e.g. [sources.authentik]")
        return data
    merged: dict[str, Any] = {}
    for name, raw in sources.items():
        if not _NAME.match(name):
            raise ConfigError(f"sources.{name}: a source name uses letters, digits, '-' and '_' (at most 64)")
        if not isinstance(raw, dict):
            raise ConfigError(f"sources.{name}: must be a table")
        raw = dict(raw)
        for option in SECRET_OPTIONS:
            value = env.get(_env_key(name, option), "").strip()
            if value:
                parts = [part.strip() for part in value.split(",") if part.strip()]
                raw[option] = parts[0] if len(parts) == 1 else parts
        merged[name] = raw
    return {**data, "sources": merged}


def _token_hashes(
    file: FileModel, env: dict[str, str], hash_token: Callable[[str], str]
) -> dict[str, tuple[str, ...]]:
    """Each source's token hashes; a token shared by two sources is refused (it could not tell them apart)."""
    result: dict[str, tuple[str, ...]] = {}
    owner: dict[str, str] = {}
    for name, source in file.sources.items():
        env_name = _env_key(name, "tokens")
        from_env = [token.strip() for token in env.get(env_name, "").split(",") if token.strip()]
        if any(len(token) < MIN_TOKEN_LENGTH for token in from_env):
            raise ConfigError(f"{env_name}: a bearer token must have at least {MIN_TOKEN_LENGTH} characters")
        hashes = list(source.token_sha256) + [hash_token(token) for token in [*source.tokens, *from_env]]
        for digest in hashes:
            if owner.setdefault(digest, name) != name:
                raise ConfigError(
                    f"sources.{name}.tokens: the same token as sources.{owner[digest]} "
                    "(each source needs its own)"
                )
        result[name] = tuple(dict.fromkeys(hashes))
    return result


def _read_secret_file(path: str) -> Secret:
    try:
        return Secret(Path(path).expanduser().read_text().strip())
    except OSError as error:
        raise ConfigError(f"ziti.password_file: cannot read {path}: {error.strerror}") from error


def parse(data: dict[str, Any], env: dict[str, str], hash_token: Callable[[str], str]) -> Parsed:
    """Validate the TOML document and the environment; :class:`ConfigError` names the first bad key."""
    ziti_raw = data.get("ziti")
    if isinstance(ziti_raw, dict) and "password" in ziti_raw:
        raise ConfigError("ziti.password: must not be written in the file: use password_env or password_file")
    file = _validate(_with_env(data, env))
    admin = env.get("ZITI_SCIM_ADMIN_TOKEN") or file.server.admin_token
    if admin is not None and len(admin) < MIN_TOKEN_LENGTH:
        key = "ZITI_SCIM_ADMIN_TOKEN" if env.get("ZITI_SCIM_ADMIN_TOKEN") else "server.admin_token"
        raise ConfigError(f"{key}: the admin token must have at least {MIN_TOKEN_LENGTH} characters")
    if file.ziti.password_file:
        password: Secret | None = _read_secret_file(file.ziti.password_file)
    else:
        password = Secret(env[file.ziti.password_env]) if env.get(file.ziti.password_env) else None
    return Parsed(
        file=file,
        token_hashes=_token_hashes(file, env, hash_token),
        database_url=env.get("ZITI_SCIM_DATABASE_URL", file.database.url),
        ziti_url=env.get("ZITI_SCIM_ZITI_URL", file.ziti.url),
        ziti_password=password,
        admin_token=admin or None,
    )
