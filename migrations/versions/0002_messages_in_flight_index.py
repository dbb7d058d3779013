"""messages in flight index, for the pipeline's reconciler

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 06:50:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_WHERE = sa.text("status IN ('queued', 'sending')")


def upgrade() -> None:
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.create_index(
            "ix_messages_in_flight",
            ["status", "status_changed_at"],
            unique=False,
            postgresql_where=_WHERE,
            sqlite_where=_WHERE,
        )


def downgrade() -> None:
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_index("ix_messages_in_flight", postgresql_where=_WHERE, sqlite_where=_WHERE)
