"""Initial schema: resources, members, emails, dirty marks, provisioning state, settings.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

Json = sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "resources",
        sa.Column("pk", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("source", sa.String(100), nullable=False),
        sa.Column("resource_type", sa.String(32), nullable=False),
        sa.Column("id", sa.String(64), nullable=False, unique=True),
        sa.Column("user_name_ci", sa.Text),
        sa.Column("display_name_ci", sa.Text),
        sa.Column("external_id", sa.Text),
        sa.Column("data", Json, nullable=False),
        sa.Column("created", sa.String(40), nullable=False),
        sa.Column("last_modified", sa.String(40), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
    )
    op.create_index(
        "ix_resources_user_name", "resources", ["source", "resource_type", "user_name_ci"], unique=True
    )
    op.create_index("ix_resources_external_id", "resources", ["source", "resource_type", "external_id"])
    op.create_index("ix_resources_display_name", "resources", ["source", "resource_type", "display_name_ci"])
    op.create_index("ix_resources_type", "resources", ["source", "resource_type", "pk"])
    op.create_table(
        "members",
        sa.Column(
            "group_pk", sa.Integer, sa.ForeignKey("resources.pk", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column(
            "member_pk", sa.Integer, sa.ForeignKey("resources.pk", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column("display", sa.Text),
    )
    op.create_index("ix_members_member", "members", ["member_pk"])
    op.create_table(
        "emails",
        sa.Column("owner_pk", sa.Integer, sa.ForeignKey("resources.pk", ondelete="CASCADE"), nullable=False),
        sa.Column("value_ci", sa.Text, nullable=False),
    )
    op.create_index("ix_emails_value", "emails", ["value_ci"])
    op.create_index("ix_emails_owner", "emails", ["owner_pk"])
    op.create_table(
        "dirty",
        sa.Column("source", sa.String(100), primary_key=True),
        sa.Column("user_id", sa.String(64), primary_key=True),
        sa.Column("generation", sa.Integer, nullable=False),
        sa.Column("due_at", sa.Float, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("claimed_until", sa.Float),
        sa.Column("request_id", sa.String(64)),
        sa.Column("operation", sa.String(100)),
    )
    op.create_index("ix_dirty_due", "dirty", ["due_at"])
    op.create_table(
        "provisioning",
        sa.Column("source", sa.String(100), primary_key=True),
        sa.Column("user_id", sa.String(64), primary_key=True),
        sa.Column("identity_id", sa.String(64)),
        sa.Column("external_id", sa.Text),
        sa.Column("user_name", sa.Text),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("last_error", sa.Text),
        sa.Column("applied", Json),
        sa.Column("adopted", sa.Boolean, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_index("ix_provisioning_identity", "provisioning", ["identity_id"])
    op.create_index("ix_provisioning_external_id", "provisioning", ["external_id"], unique=True)
    op.create_table(
        "audit",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("source", sa.String(100), nullable=False),
        sa.Column("request_id", sa.String(64)),
        sa.Column("operation", sa.String(100)),
        sa.Column("user_id", sa.String(64)),
        sa.Column("user_name", sa.Text),
        sa.Column("identity_id", sa.String(64)),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("outcome", sa.String(32), nullable=False),
        sa.Column("error", sa.Text),
    )
    op.create_index("ix_audit_at", "audit", ["at"])
    op.create_index("ix_audit_user", "audit", ["source", "user_id"])
    op.create_index("ix_audit_action_at", "audit", ["action", "at"])
    op.create_table(
        "settings",
        sa.Column("key", sa.String(100), primary_key=True),
        sa.Column("value", Json, nullable=False),
    )


def downgrade() -> None:
    for table in ("settings", "audit", "provisioning", "dirty", "emails", "members", "resources"):
        op.drop_table(table)
