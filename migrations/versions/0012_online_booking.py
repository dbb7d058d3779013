"""online booking: organisation slug and flag, motifs' online settings, rdvs.booked_via,
verification codes (the held slots)

Revision ID: 0012
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0009"
branch_labels = None
depends_on = None

PENDING = sa.text("status = 'pending'")


def upgrade() -> None:
    with op.batch_alter_table("organisations") as batch_op:
        batch_op.add_column(sa.Column("slug", sa.String(length=64), nullable=True))
        batch_op.add_column(
            sa.Column("online_booking", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        batch_op.create_unique_constraint("uq_organisations_slug", ["slug"])
    with op.batch_alter_table("motifs") as batch_op:
        batch_op.add_column(
            sa.Column("bookable_online", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        batch_op.add_column(
            sa.Column(
                "online_min_notice_minutes",
                sa.Integer(),
                server_default=sa.text("120"),
                nullable=False,
            )
        )
        batch_op.add_column(
            sa.Column(
                "online_max_delay_days", sa.Integer(), server_default=sa.text("60"), nullable=False
            )
        )
        batch_op.add_column(sa.Column("public_description", sa.String(length=500), nullable=True))
    # Every rdv so far was booked by an agent or the API; the API's cannot be told apart
    # any more, so they read "agent" (the server default fills existing rows).
    with op.batch_alter_table("rdvs") as batch_op:
        batch_op.add_column(
            sa.Column("booked_via", sa.String(length=16), server_default="agent", nullable=False)
        )
        batch_op.drop_index("ix_rdvs_stats")
        batch_op.create_index(
            "ix_rdvs_stats",
            ["organisation_id", "starts_at"],
            unique=False,
            postgresql_include=["status", "cancelled_via", "booked_via"],
        )
    op.create_table(
        "verification_codes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("public_id", sa.String(length=32), nullable=False),
        sa.Column("organisation_id", sa.Integer(), nullable=False),
        sa.Column("motif_id", sa.Integer(), nullable=False),
        sa.Column("lieu_id", sa.Integer(), nullable=False),
        sa.Column("agent_id", sa.Integer(), nullable=False),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("first_name", sa.String(length=100), nullable=False),
        sa.Column("last_name", sa.String(length=100), nullable=False),
        sa.Column("phone", sa.String(length=20), nullable=True),
        sa.Column("email", sa.String(length=254), nullable=True),
        sa.Column("notify_sms", sa.Boolean(), nullable=False),
        sa.Column("notify_email", sa.Boolean(), nullable=False),
        sa.Column("channel", sa.String(length=8), nullable=False),
        sa.Column("recipient", sa.String(length=254), nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("message_id", sa.Integer(), nullable=True),
        sa.Column("rdv_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["agent_id"], ["agents.id"]),
        sa.ForeignKeyConstraint(["lieu_id"], ["lieux.id"]),
        sa.ForeignKeyConstraint(["message_id"], ["messages.id"]),
        sa.ForeignKeyConstraint(["motif_id"], ["motifs.id"]),
        sa.ForeignKeyConstraint(["organisation_id"], ["organisations.id"]),
        sa.ForeignKeyConstraint(["rdv_id"], ["rdvs.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("public_id"),
    )
    op.create_index(
        "ix_verification_codes_holds",
        "verification_codes",
        ["agent_id", "starts_at"],
        postgresql_where=PENDING,
        sqlite_where=PENDING,
    )
    op.create_index(
        "ix_verification_codes_recipient", "verification_codes", ["recipient", "created_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_verification_codes_recipient", table_name="verification_codes")
    op.drop_index(
        "ix_verification_codes_holds",
        table_name="verification_codes",
        postgresql_where=PENDING,
        sqlite_where=PENDING,
    )
    op.drop_table("verification_codes")
    with op.batch_alter_table("rdvs") as batch_op:
        batch_op.drop_index("ix_rdvs_stats")
        batch_op.create_index(
            "ix_rdvs_stats",
            ["organisation_id", "starts_at"],
            unique=False,
            postgresql_include=["status", "cancelled_via"],
        )
        batch_op.drop_column("booked_via")
    with op.batch_alter_table("motifs") as batch_op:
        batch_op.drop_column("public_description")
        batch_op.drop_column("online_max_delay_days")
        batch_op.drop_column("online_min_notice_minutes")
        batch_op.drop_column("bookable_online")
    with op.batch_alter_table("organisations") as batch_op:
        batch_op.drop_constraint("uq_organisations_slug", type_="unique")
        batch_op.drop_column("online_booking")
        batch_op.drop_column("slug")
