"""Webhook receivers: accepted deliveries (replay guard), ZITADEL grants, IdP activation/lock flags, and the
per-aggregate event log of event-sourced IdPs (ZITADEL) with the bases its folds start from.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

Json = sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "webhook_deliveries",
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("expires_at", sa.Float, nullable=False),
    )
    op.create_index("ix_webhook_deliveries_expires", "webhook_deliveries", ["expires_at"])
    op.create_table(
        "idp_grants",
        sa.Column("source", sa.String(100), primary_key=True),
        sa.Column("grant_id", sa.String(200), primary_key=True),
        sa.Column("idp_user_id", sa.String(200), nullable=False),
        sa.Column("role_keys", Json, nullable=False),
        sa.Column("active", sa.Boolean, nullable=False),
    )
    op.create_index("ix_idp_grants_user", "idp_grants", ["source", "idp_user_id"])
    op.create_table(
        "idp_user_flags",
        sa.Column("source", sa.String(100), primary_key=True),
        sa.Column("idp_user_id", sa.String(200), primary_key=True),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("locked", sa.Boolean, nullable=False),
    )
    op.create_table(
        "idp_events",
        sa.Column("source", sa.String(100), primary_key=True),
        sa.Column("aggregate_id", sa.String(200), primary_key=True),
        sa.Column("sequence", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("aggregate_type", sa.String(32), nullable=False),
        sa.Column("event_type", sa.String(100), nullable=False),
        sa.Column("payload", Json, nullable=False),
        sa.Column("received_at", sa.Float, nullable=False),
    )
    op.create_table(
        "idp_aggregates",
        sa.Column("source", sa.String(100), primary_key=True),
        sa.Column("aggregate_id", sa.String(200), primary_key=True),
        sa.Column("aggregate_type", sa.String(32), nullable=False),
        sa.Column("sequence", sa.BigInteger, nullable=False),
        sa.Column("state", Json, nullable=False),
        sa.Column("closed", sa.Boolean, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    for table in ("idp_aggregates", "idp_events", "idp_user_flags", "idp_grants", "webhook_deliveries"):
        op.drop_table(table)
