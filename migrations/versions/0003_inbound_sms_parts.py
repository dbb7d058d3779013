"""inbound SMS: parts of long messages and the reply sent

Revision ID: 0003
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("inbound_sms", schema=None) as batch_op:
        batch_op.add_column(sa.Column("concat_ref", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("concat_part", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("concat_total", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("reply_message_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key(
            "fk_inbound_sms_reply_message_id", "messages", ["reply_message_id"], ["id"]
        )
        batch_op.create_index(
            "ix_inbound_sms_concat", ["provider", "from_number", "concat_ref"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("inbound_sms", schema=None) as batch_op:
        batch_op.drop_index("ix_inbound_sms_concat")
        batch_op.drop_constraint("fk_inbound_sms_reply_message_id", type_="foreignkey")
        batch_op.drop_column("reply_message_id")
        batch_op.drop_column("concat_total")
        batch_op.drop_column("concat_part")
        batch_op.drop_column("concat_ref")
