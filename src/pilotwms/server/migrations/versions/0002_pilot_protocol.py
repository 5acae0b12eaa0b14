"""Pilot protocol: report idempotency, factory queues, attempt usage, pilot drain and exit.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22

Adds the ``pilot_reports`` table (report ids already applied), the ``factory_queues`` table (the
static ads the pilot factory publishes), the resource use and stdout tail of attempts, and the
drain request and exit reason of pilots. Only nullable or defaulted columns are added, so the
upgrade runs on a populated database.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def _attempt_columns() -> list[sa.Column[object]]:
    return [
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cpu_s", sa.Float(), nullable=True),
        sa.Column("rss_mb", sa.Float(), nullable=True),
        sa.Column("max_rss_mb", sa.Float(), nullable=True),
        sa.Column("wall_s", sa.Float(), nullable=True),
        sa.Column("signal", sa.Integer(), nullable=True),
        sa.Column("stdout_tail", sa.Text(), nullable=True),
    ]


def _pilot_columns() -> list[sa.Column[object]]:
    return [
        sa.Column("exit_reason", sa.Text(), nullable=True),
        sa.Column("drain_reason", sa.Text(), nullable=True),
        sa.Column("drain_grace_s", sa.Float(), nullable=True),
        sa.Column("drain_sent", sa.Boolean(), server_default="0", nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "pilot_reports",
        sa.Column("report_id", sa.String(length=64), nullable=False),
        sa.Column("pilot_id", ID, nullable=True),
        sa.Column("job_id", ID, nullable=True),
        sa.Column("attempt", sa.Integer(), nullable=True),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("report_id", name=op.f("pk_pilot_reports")),
    )
    op.create_index("ix_pilot_reports_received_at", "pilot_reports", ["received_at"], unique=False)
    op.create_table(
        "factory_queues",
        sa.Column("name", sa.String(length=256), nullable=False),
        sa.Column("ad", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_factory_queues")),
    )
    with op.batch_alter_table("attempts") as batch:
        for column in _attempt_columns():
            batch.add_column(column)
        batch.create_index("ix_attempts_finished_at", ["finished_at"], unique=False)
    with op.batch_alter_table("pilots") as batch:
        for column in _pilot_columns():
            batch.add_column(column)


def downgrade() -> None:
    with op.batch_alter_table("pilots") as batch:
        for column in reversed(_pilot_columns()):
            batch.drop_column(column.name)
    with op.batch_alter_table("attempts") as batch:
        batch.drop_index("ix_attempts_finished_at")
        for column in reversed(_attempt_columns()):
            batch.drop_column(column.name)
    op.drop_table("factory_queues")
    op.drop_index("ix_pilot_reports_received_at", table_name="pilot_reports")
    op.drop_table("pilot_reports")
