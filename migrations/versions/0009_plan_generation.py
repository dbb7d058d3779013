"""plan generations: rdvs.plan_generation, messages.plan_generation

Every move or cancel of an rdv bumps its generation; each message records the
generation it was planned in. A dated message of an older generation is stale
(scheduler.jobs). Existing rows start at 0: the messages a past move made
stale were already cancelled by that move.

Revision ID: 0009
Revises: 0008_outbound_webhooks
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008_outbound_webhooks"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ("rdvs", "messages"):
        with op.batch_alter_table(table) as batch_op:
            batch_op.add_column(
                sa.Column("plan_generation", sa.Integer(), server_default="0", nullable=False)
            )


def downgrade() -> None:
    for table in ("messages", "rdvs"):
        with op.batch_alter_table(table) as batch_op:
            batch_op.drop_column("plan_generation")
