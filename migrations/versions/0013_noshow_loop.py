"""the no-show loop: second reminder settings, waiting list (freed slots, offers)

Revision ID: 0013
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

DUE = sa.text("next_offer_at IS NOT NULL")


def upgrade() -> None:
    with op.batch_alter_table("organisations") as batch_op:
        batch_op.add_column(sa.Column("second_reminder_offset", sa.String(20), nullable=True))
        batch_op.add_column(
            sa.Column(
                "second_reminder_noshow_only",
                sa.Boolean(),
                server_default=sa.false(),
                nullable=False,
            )
        )
        batch_op.add_column(
            sa.Column(
                "waitlist_notice_minutes",
                sa.Integer(),
                server_default=sa.text("240"),
                nullable=False,
            )
        )
    with op.batch_alter_table("motifs") as batch_op:
        batch_op.add_column(sa.Column("second_reminder_offset", sa.String(20), nullable=True))
    for table in ("rdvs", "verification_codes"):
        with op.batch_alter_table(table) as batch_op:
            batch_op.add_column(
                sa.Column("waitlist", sa.Boolean(), server_default=sa.false(), nullable=False)
            )
    op.create_table(
        "freed_slots",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("organisation_id", sa.Integer(), nullable=False),
        sa.Column("motif_id", sa.Integer(), nullable=False),
        sa.Column("lieu_id", sa.Integer(), nullable=False),
        sa.Column("agent_id", sa.Integer(), nullable=False),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("freed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("freed_by_usager", sa.Boolean(), nullable=False),
        sa.Column("source_rdv_id", sa.Integer(), nullable=True),
        sa.Column("next_offer_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("filled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("filled_via", sa.String(16), nullable=True),
        sa.Column("filled_rdv_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["organisation_id"], ["organisations.id"]),
        sa.ForeignKeyConstraint(["motif_id"], ["motifs.id"]),
        sa.ForeignKeyConstraint(["lieu_id"], ["lieux.id"]),
        sa.ForeignKeyConstraint(["agent_id"], ["agents.id"]),
        sa.ForeignKeyConstraint(["source_rdv_id"], ["rdvs.id"]),
        sa.ForeignKeyConstraint(["filled_rdv_id"], ["rdvs.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_freed_slots_org_freed", "freed_slots", ["organisation_id", "freed_at"])
    op.create_index(
        "ix_freed_slots_due",
        "freed_slots",
        ["next_offer_at"],
        postgresql_where=DUE,
        sqlite_where=DUE,
    )
    op.create_table(
        "waitlist_offers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("organisation_id", sa.Integer(), nullable=False),
        sa.Column("freed_slot_id", sa.Integer(), nullable=False),
        sa.Column("rdv_id", sa.Integer(), nullable=False),
        sa.Column("usager_id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("message_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["organisation_id"], ["organisations.id"]),
        sa.ForeignKeyConstraint(["freed_slot_id"], ["freed_slots.id"]),
        sa.ForeignKeyConstraint(["rdv_id"], ["rdvs.id"]),
        sa.ForeignKeyConstraint(["usager_id"], ["usagers.id"]),
        sa.ForeignKeyConstraint(["message_id"], ["messages.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("code"),
    )
    op.create_index("ix_waitlist_offers_freed_slot_id", "waitlist_offers", ["freed_slot_id"])
    op.create_index("ix_waitlist_offers_rdv_id", "waitlist_offers", ["rdv_id"])
    op.create_index("ix_waitlist_offers_usager_at", "waitlist_offers", ["usager_id", "created_at"])


def downgrade() -> None:
    op.drop_table("waitlist_offers")
    op.drop_table("freed_slots")
    for table in ("verification_codes", "rdvs"):
        with op.batch_alter_table(table) as batch_op:
            batch_op.drop_column("waitlist")
    with op.batch_alter_table("motifs") as batch_op:
        batch_op.drop_column("second_reminder_offset")
    with op.batch_alter_table("organisations") as batch_op:
        batch_op.drop_column("waitlist_notice_minutes")
        batch_op.drop_column("second_reminder_noshow_only")
        batch_op.drop_column("second_reminder_offset")
