"""The relational schema of the store (SQLAlchemy Core).

One ``resources`` table holds Users and Groups of every source, so that a search at the SCIM root
(RFC 7644 §3.4.2.1) is a single query. The attributes clients filter on have their own indexed columns;
the rest of the resource lives in the ``data`` JSON document. Group membership is a relation table so
that adding one member to a large group writes one row.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)
from sqlalchemy.dialects.postgresql import JSONB

metadata = MetaData()

JsonDocument = JSON().with_variant(JSONB(), "postgresql")

resources = Table(
    "resources",
    metadata,
    Column("pk", Integer, primary_key=True, autoincrement=True),
    Column("source", String(100), nullable=False),
    Column("resource_type", String(32), nullable=False),
    Column("id", String(64), nullable=False, unique=True),
    # userName folded as RFC 7643 §4.1.1 compares it (caseExact false), unique per source.
    Column("user_name_ci", Text),
    Column("display_name_ci", Text),
    Column("external_id", Text),
    Column("data", JsonDocument, nullable=False),
    Column("created", String(40), nullable=False),
    Column("last_modified", String(40), nullable=False),
    Column("version", Integer, nullable=False),
    Index("ix_resources_user_name", "source", "resource_type", "user_name_ci", unique=True),
    Index("ix_resources_external_id", "source", "resource_type", "external_id"),
    Index("ix_resources_display_name", "source", "resource_type", "display_name_ci"),
    Index("ix_resources_type", "source", "resource_type", "pk"),
)

members = Table(
    "members",
    metadata,
    Column("group_pk", Integer, ForeignKey("resources.pk", ondelete="CASCADE"), primary_key=True),
    Column("member_pk", Integer, ForeignKey("resources.pk", ondelete="CASCADE"), primary_key=True),
    Column("display", Text),
    Index("ix_members_member", "member_pk"),
)

emails = Table(
    "emails",
    metadata,
    Column("owner_pk", Integer, ForeignKey("resources.pk", ondelete="CASCADE"), nullable=False),
    Column("value_ci", Text, nullable=False),
    Index("ix_emails_value", "value_ci"),
    Index("ix_emails_owner", "owner_pk"),
)

# The reconciler's work list: a user whose desired state changed and whose identity has not yet
# converged. Keyed by SCIM id, not by pk, because a deleted user still has an identity to remove.
dirty = Table(
    "dirty",
    metadata,
    Column("source", String(100), primary_key=True),
    Column("user_id", String(64), primary_key=True),
    Column("generation", Integer, nullable=False, default=1),
    Column("due_at", Float, nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("claimed_until", Float),
    # The SCIM request that last marked the user, for the audit log of the reconcile it causes.
    Column("request_id", String(64)),
    Column("operation", String(100)),
    Index("ix_dirty_due", "due_at"),
)

# What the reconciler knows of each user's identity on the controller.
provisioning = Table(
    "provisioning",
    metadata,
    Column("source", String(100), primary_key=True),
    Column("user_id", String(64), primary_key=True),
    Column("identity_id", String(64)),
    # The externalId the mapping gives this user: unique across sources, so that two users can never
    # claim the identity one IdP token resolves to. NULL once the user is deleted.
    Column("external_id", Text),
    Column("user_name", Text),
    Column("state", String(16), nullable=False),
    Column("last_error", Text),
    # The identity fields (and disabled flag) last written to the controller: an update sends the diff.
    Column("applied", JsonDocument),
    Column("adopted", Boolean, nullable=False, default=False),
    Column("updated_at", Float, nullable=False),
    Index("ix_provisioning_identity", "identity_id"),
    Index("ix_provisioning_external_id", "external_id", unique=True),
)

# Small key/value facts the service keeps about itself (pause flag, last full sync, ...).
settings = Table(
    "settings",
    metadata,
    Column("key", String(100), primary_key=True),
    Column("value", JsonDocument, nullable=False),
)

# What ziti-scim did on the controller and why: one row per controller action (or failed attempt).
audit = Table(
    "audit",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", Float, nullable=False),
    Column("source", String(100), nullable=False),
    Column("request_id", String(64)),
    Column("operation", String(100)),
    Column("user_id", String(64)),
    Column("user_name", Text),
    Column("identity_id", String(64)),
    Column("action", String(32), nullable=False),
    Column("outcome", String(32), nullable=False),
    Column("error", Text),
    Index("ix_audit_at", "at"),
    Index("ix_audit_user", "source", "user_id"),
    Index("ix_audit_action_at", "action", "at"),
)

# Webhook deliveries already accepted (replay protection), kept until their timestamp window closes.
webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("key", String(200), primary_key=True),
    Column("expires_at", Float, nullable=False),
    Index("ix_webhook_deliveries_expires", "expires_at"),
)

# ZITADEL user grants: later grant events carry only the grant id, so the grant's user is remembered here.
idp_grants = Table(
    "idp_grants",
    metadata,
    Column("source", String(100), primary_key=True),
    Column("grant_id", String(200), primary_key=True),
    Column("idp_user_id", String(200), nullable=False),
    Column("role_keys", JsonDocument, nullable=False),
    Column("active", Boolean, nullable=False, default=True),
    Index("ix_idp_grants_user", "source", "idp_user_id"),
)

# Per-user IdP state that SCIM has no attribute for: administrative activation and lockout are kept apart,
# so that an unlock never re-enables a deactivated user (SCIM ``active`` = active and not locked).
idp_user_flags = Table(
    "idp_user_flags",
    metadata,
    Column("source", String(100), primary_key=True),
    Column("idp_user_id", String(200), primary_key=True),
    Column("active", Boolean, nullable=False, default=True),
    Column("locked", Boolean, nullable=False, default=False),
)

# Authenticated events of event-sourced IdPs (ZITADEL), per aggregate (a user, a user grant) and numbered
# by the IdP's per-aggregate sequence: the aggregate's state is their fold in sequence order, whatever order
# they were delivered in. A second delivery of the same sequence is not stored again.
idp_events = Table(
    "idp_events",
    metadata,
    Column("source", String(100), primary_key=True),
    Column("aggregate_id", String(200), primary_key=True),
    Column("sequence", BigInteger, primary_key=True, autoincrement=False),
    Column("aggregate_type", String(32), nullable=False),
    Column("event_type", String(100), nullable=False),
    Column("payload", JsonDocument, nullable=False),
    Column("received_at", Float, nullable=False),
)

# The base an aggregate's fold starts from: its state at ``sequence`` (a read from the IdP's API, or its
# events compacted after the retention). ``closed``: the aggregate was removed (a tombstone); no further
# event is kept for it.
idp_aggregates = Table(
    "idp_aggregates",
    metadata,
    Column("source", String(100), primary_key=True),
    Column("aggregate_id", String(200), primary_key=True),
    Column("aggregate_type", String(32), nullable=False),
    Column("sequence", BigInteger, nullable=False),
    Column("state", JsonDocument, nullable=False),
    Column("closed", Boolean, nullable=False, default=False),
    Column("updated_at", Float, nullable=False),
)
