"""Pilot factory: pilot rows from submission, pilot logs, agent releases, new pilot states.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22

The pilot factory records a pilot when it submits the batch job, before any agent registers:
``pilots.registered_at`` becomes nullable and pilots gain the submission time, the backend, the
factory's name, the paths of the batch job's own logs and the time the pilot ended. The pilot
states ``gone`` (deregistered) and ``lost`` (lease expired) are renamed ``finished`` and
``failed``. Adds ``pilot_logs`` (the tails of a pilot's stdout and stderr) and
``agent_releases`` (agent zipapps installed at run time, the newest one current).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_RENAMES = (("gone", "finished"), ("lost", "failed"))


def _pilot_columns() -> list[sa.Column[object]]:
    return [
        sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("backend", sa.String(length=64), nullable=True),
        sa.Column("factory", sa.String(length=256), nullable=True),
        sa.Column("log_paths", sa.JSON(), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
    ]


def upgrade() -> None:
    with op.batch_alter_table("pilots") as batch:
        for column in _pilot_columns():
            batch.add_column(column)
        batch.alter_column("registered_at", existing_type=sa.DateTime(timezone=True), nullable=True)
        batch.create_index("ix_pilots_queue_batch_job_id", ["queue", "batch_job_id"], unique=False)
        batch.create_index("ix_pilots_ended_at", ["ended_at"], unique=False)
    pilots = sa.table(
        "pilots",
        sa.column("state", sa.String()),
        sa.column("ended_at", sa.DateTime(timezone=True)),
        sa.column("last_heartbeat_at", sa.DateTime(timezone=True)),
    )
    for old, new in _RENAMES:
        op.execute(
            pilots.update()
            .where(pilots.c.state == old)
            .values(state=new, ended_at=pilots.c.last_heartbeat_at)
        )
    op.create_table(
        "pilot_logs",
        sa.Column("pilot_id", ID, nullable=False),
        sa.Column("stream", sa.String(length=16), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.Column("total_bytes", sa.BigInteger(), nullable=False),
        sa.Column("truncated", sa.Boolean(), server_default="0", nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["pilot_id"],
            ["pilots.id"],
            name=op.f("fk_pilot_logs_pilot_id_pilots"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("pilot_id", "stream", name=op.f("pk_pilot_logs")),
    )
    op.create_table(
        "agent_releases",
        sa.Column("id", ID, sa.Identity(always=False), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("installed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("installed_by", sa.String(length=256), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_agent_releases")),
    )


def downgrade() -> None:
    op.drop_table("agent_releases")
    op.drop_table("pilot_logs")
    pilots = sa.table(
        "pilots",
        sa.column("state", sa.String()),
        sa.column("registered_at", sa.DateTime(timezone=True)),
        sa.column("submitted_at", sa.DateTime(timezone=True)),
    )
    # Rows of pilots that never registered have no place in the old schema.
    op.execute(pilots.delete().where(pilots.c.registered_at.is_(None)))
    for old, new in _RENAMES:
        op.execute(pilots.update().where(pilots.c.state == new).values(state=old))
    with op.batch_alter_table("pilots") as batch:
        batch.drop_index("ix_pilots_ended_at")
        batch.drop_index("ix_pilots_queue_batch_job_id")
        batch.alter_column(
            "registered_at", existing_type=sa.DateTime(timezone=True), nullable=False
        )
        for column in reversed(_pilot_columns()):
            batch.drop_column(column.name)
