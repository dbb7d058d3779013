"""indexes for the public statistics

Revision ID: 0004
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0002"
branch_labels = None
depends_on = None

_SENT = sa.text("sent_at IS NOT NULL")


def upgrade() -> None:
    with op.batch_alter_table("rdvs", schema=None) as batch_op:
        batch_op.create_index(
            "ix_rdvs_stats",
            ["organisation_id", "starts_at"],
            unique=False,
            postgresql_include=["status", "cancelled_via"],
        )
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.create_index(
            "ix_messages_stats_sent",
            ["sent_at"],
            unique=False,
            postgresql_include=["organisation_id", "channel", "provider", "status", "segments"],
            postgresql_where=_SENT,
            sqlite_where=_SENT,
        )
        batch_op.create_index(
            "ix_messages_stats_org_sent",
            ["organisation_id", "sent_at"],
            unique=False,
            postgresql_include=["channel", "provider", "status", "segments"],
            postgresql_where=_SENT,
            sqlite_where=_SENT,
        )


def downgrade() -> None:
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_messages_stats_org_sent", postgresql_where=_SENT, sqlite_where=_SENT
        )
        batch_op.drop_index("ix_messages_stats_sent", postgresql_where=_SENT, sqlite_where=_SENT)
    with op.batch_alter_table("rdvs", schema=None) as batch_op:
        batch_op.drop_index("ix_rdvs_stats")
