"""inbound SMS: partial index of the rows not yet acted on (the reconciler's query)

Revision ID: 0005
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_inbound_sms_unhandled",
        "inbound_sms",
        ["received_at"],
        unique=False,
        postgresql_where=sa.text("action IS NULL"),
        sqlite_where=sa.text("action IS NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_inbound_sms_unhandled", table_name="inbound_sms")
