"""Per-source provisioning settings, read from ``[sources.<name>]`` options and its mapping."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from app.config import ConfigError, SourceConfig
from app.mapping import MappingConfig, MappingConfigError, load_mapping

TAG_MANAGED_BY = "managedBy"
TAG_SOURCE = "scimSource"
TAG_ID = "scimId"
TAG_DEPLOYMENT = "scimDeployment"
TAG_ADOPTED = "scimAdopted"
MANAGER = "ziti-scim"
"""Provenance tags written on every identity ziti-scim creates or adopts (flat map, controller-api.md §1)."""

OUR_TAGS = (TAG_MANAGED_BY, TAG_SOURCE, TAG_ID, TAG_DEPLOYMENT, TAG_ADOPTED)

DEFAULT_SETTLE = 1.0
"""``create_settle`` unless configured: longer than the gaps of an IdP's sequential sync."""

OnDelete = Literal["delete", "disable"]
OnDeleteAdopted = Literal["untag", "disable", "delete"]


@dataclass(frozen=True)
class SourceSettings:
    """``on_delete`` applies to identities ziti-scim created; ``on_delete_adopted`` to adopted ones
    (default ``disable``: an identity made by someone else is never deleted unless asked for).
    ``takeover_from`` names the sources whose identities this one may take over (default none)."""

    name: str
    mapping: MappingConfig
    on_delete: OnDelete = "delete"
    adopt: Literal["adopt", "refuse"] = "adopt"
    on_delete_adopted: OnDeleteAdopted = "disable"
    takeover_from: frozenset[str] = field(default_factory=frozenset)
    wait_for_sync: float = 0.0
    """Seconds a SCIM write may wait for its user to converge before answering (0: never waits)."""
    create_settle: float = 0.0
    """Seconds without a write from this source before a new user's identity is created (0: at once),
    so that the group memberships of an initial sync go into the create
    (:func:`app.store.queue.claim_due`). Default 1 s, or 0 when ``wait_for_sync`` is set (that write
    waits for its user)."""
    unmappable: Literal["store", "refuse"] = "store"
    """A user the mapping cannot turn into an identity (e.g. no email for an email-based externalId):
    ``store`` keeps it with ``provisioningState: skipped`` until the attribute arrives (RFC 7643 makes
    ``emails`` optional); ``refuse`` answers 400 ``invalidValue`` and stores nothing."""

    def tags(self, user_id: str, deployment: str) -> dict[str, str]:
        return {TAG_MANAGED_BY: MANAGER, TAG_SOURCE: self.name, TAG_ID: user_id, TAG_DEPLOYMENT: deployment}


def source_settings(source: SourceConfig) -> SourceSettings:
    try:
        mapping = load_mapping(source.mapping or {"preset": source.kind})
    except MappingConfigError as error:
        raise ConfigError(f"sources.{source.name}.mapping: {error}") from error
    on_delete = source.options.get("on_delete", "delete")
    adopt = source.options.get("adopt", "adopt")
    on_delete_adopted = source.options.get("on_delete_adopted", "disable")
    takeover_from = source.options.get("takeover_from", [])
    if on_delete not in ("delete", "disable"):
        raise ConfigError(f"sources.{source.name}.on_delete must be 'delete' or 'disable'")
    if adopt not in ("adopt", "refuse"):
        raise ConfigError(f"sources.{source.name}.adopt must be 'adopt' or 'refuse'")
    if on_delete_adopted not in ("untag", "disable", "delete"):
        raise ConfigError(f"sources.{source.name}.on_delete_adopted must be 'untag', 'disable' or 'delete'")
    if not isinstance(takeover_from, list) or not all(isinstance(s, str) and s for s in takeover_from):
        raise ConfigError(f"sources.{source.name}.takeover_from must be a list of source names")
    try:
        wait_for_sync = float(source.options.get("wait_for_sync", 0.0))
    except (TypeError, ValueError) as error:
        raise ConfigError(f"sources.{source.name}.wait_for_sync must be a number of seconds") from error
    if not 0.0 <= wait_for_sync <= 30.0:
        raise ConfigError(f"sources.{source.name}.wait_for_sync must be between 0 and 30 seconds")
    try:
        create_settle = float(source.options.get("create_settle", 0.0 if wait_for_sync else DEFAULT_SETTLE))
    except (TypeError, ValueError) as error:
        raise ConfigError(f"sources.{source.name}.create_settle must be a number of seconds") from error
    if not 0.0 <= create_settle <= 60.0:
        raise ConfigError(f"sources.{source.name}.create_settle must be between 0 and 60 seconds")
    unmappable = source.options.get("unmappable", "store")
    if unmappable not in ("store", "refuse"):
        raise ConfigError(f"sources.{source.name}.unmappable must be 'store' or 'refuse'")
    return SourceSettings(
        name=source.name,
        mapping=mapping,
        on_delete=on_delete,
        adopt=adopt,
        on_delete_adopted=on_delete_adopted,
        takeover_from=frozenset(takeover_from) - {source.name},
        unmappable=unmappable,
        wait_for_sync=wait_for_sync,
        create_settle=create_settle,
    )
