"""Initial schema: jobs, task queues, DAG edges, events, users and tokens, sandboxes, pilots.

Revision ID: 0001
Revises:
Create Date: 2026-11-22

Written out table by table (not ``metadata.create_all``) so that this revision stays what it was
when later revisions change the tables. Primary keys are BIGINT identities on PostgreSQL and
SQLite's INTEGER rowid alias.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "task_queues",
        sa.Column("id", ID, sa.Identity(always=False), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("owner_group", sa.String(length=128), nullable=False),
        sa.Column("requirements", sa.Text(), nullable=False),
        sa.Column("rank", sa.Text(), nullable=False),
        sa.Column("cpus", sa.Integer(), nullable=False),
        sa.Column("whole_node", sa.Boolean(), nullable=False),
        sa.Column("memory_mb", sa.Integer(), nullable=True),
        sa.Column("wall_time_s", sa.Integer(), nullable=True),
        sa.Column("cpu_time_s", sa.Integer(), nullable=True),
        sa.Column("priority", sa.Integer(), server_default="0", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_task_queues")),
        sa.UniqueConstraint("key", name=op.f("uq_task_queues_key")),
    )
    op.create_table(
        "users",
        sa.Column("id", ID, sa.Identity(always=False), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("group", sa.String(length=128), nullable=False),
        sa.Column("is_admin", sa.Boolean(), server_default="0", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("name", name=op.f("uq_users_name")),
    )
    op.create_table(
        "jobs",
        sa.Column("id", ID, sa.Identity(always=False), nullable=False),
        sa.Column("parent_id", ID, nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("node_name", sa.String(length=256), nullable=True),
        sa.Column("owner", sa.String(length=128), nullable=False),
        sa.Column("owner_group", sa.String(length=128), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("done_code", sa.String(length=16), nullable=True),
        sa.Column("exit_code", sa.Integer(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("jdl_submitted", sa.Text(), nullable=True),
        sa.Column("jdl", sa.Text(), nullable=False),
        sa.Column("requirements", sa.Text(), nullable=True),
        sa.Column("rank", sa.Text(), nullable=True),
        sa.Column("task_queue_id", ID, nullable=True),
        sa.Column("cpus", sa.Integer(), server_default="1", nullable=False),
        sa.Column("whole_node", sa.Boolean(), server_default="0", nullable=False),
        sa.Column("memory_mb", sa.Integer(), nullable=True),
        sa.Column("wall_time_s", sa.Integer(), nullable=True),
        sa.Column("cpu_time_s", sa.Integer(), nullable=True),
        sa.Column("priority", sa.Integer(), server_default="0", nullable=False),
        sa.Column("retry_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("shallow_retry_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("retries_used", sa.Integer(), server_default="0", nullable=False),
        sa.Column("shallow_retries_used", sa.Integer(), server_default="0", nullable=False),
        sa.Column("attempt", sa.Integer(), server_default="0", nullable=False),
        sa.Column("max_nodes_running", sa.Integer(), nullable=True),
        sa.Column("node_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("cancel_requested", sa.Boolean(), server_default="0", nullable=False),
        sa.Column("expiry_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["parent_id"], ["jobs.id"], name=op.f("fk_jobs_parent_id_jobs"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["task_queue_id"], ["task_queues.id"], name=op.f("fk_jobs_task_queue_id_task_queues")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_jobs")),
    )
    op.create_index("ix_jobs_owner_id", "jobs", ["owner", "id"], unique=False)
    op.create_index("ix_jobs_parent_id_state", "jobs", ["parent_id", "state"], unique=False)
    op.create_index("ix_jobs_state_expiry_time", "jobs", ["state", "expiry_time"], unique=False)
    op.create_index("ix_jobs_state_task_queue_id", "jobs", ["state", "task_queue_id"], unique=False)
    op.create_table(
        "tokens",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("user_id", ID, nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("description", sa.String(length=256), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_tokens_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tokens")),
        sa.UniqueConstraint("hash", name=op.f("uq_tokens_hash")),
    )
    op.create_table(
        "dag_edges",
        sa.Column("dag_id", ID, nullable=False),
        sa.Column("parent_job_id", ID, nullable=False),
        sa.Column("child_job_id", ID, nullable=False),
        sa.ForeignKeyConstraint(
            ["child_job_id"],
            ["jobs.id"],
            name=op.f("fk_dag_edges_child_job_id_jobs"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["dag_id"], ["jobs.id"], name=op.f("fk_dag_edges_dag_id_jobs"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["parent_job_id"],
            ["jobs.id"],
            name=op.f("fk_dag_edges_parent_job_id_jobs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("parent_job_id", "child_job_id", name=op.f("pk_dag_edges")),
    )
    op.create_index("ix_dag_edges_child_job_id", "dag_edges", ["child_job_id"], unique=False)
    op.create_index("ix_dag_edges_dag_id", "dag_edges", ["dag_id"], unique=False)
    op.create_table(
        "job_commands",
        sa.Column("id", ID, sa.Identity(always=False), nullable=False),
        sa.Column("job_id", ID, nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=True),
        sa.Column("command", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_job_commands_job_id_jobs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job_commands")),
    )
    op.create_index("ix_job_commands_delivered_at", "job_commands", ["delivered_at"], unique=False)
    op.create_index("ix_job_commands_job_id", "job_commands", ["job_id"], unique=False)
    op.create_table(
        "job_events",
        sa.Column("id", ID, sa.Identity(always=False), nullable=False),
        sa.Column("job_id", ID, nullable=False),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("event", sa.String(length=32), nullable=False),
        sa.Column("state_from", sa.String(length=16), nullable=True),
        sa.Column("state_to", sa.String(length=16), nullable=False),
        sa.Column("source", sa.String(length=128), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("attempt", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_job_events_job_id_jobs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job_events")),
    )
    op.create_index("ix_job_events_job_id_id", "job_events", ["job_id", "id"], unique=False)
    op.create_table(
        "job_inputs",
        sa.Column("job_id", ID, nullable=False),
        sa.Column("name", sa.String(length=1024), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=True),
        sa.Column("uri", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_job_inputs_job_id_jobs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("job_id", "name", name=op.f("pk_job_inputs")),
    )
    op.create_index("ix_job_inputs_digest", "job_inputs", ["digest"], unique=False)
    op.create_table(
        "job_outputs",
        sa.Column("job_id", ID, nullable=False),
        sa.Column("name", sa.String(length=1024), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_job_outputs_job_id_jobs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("job_id", "name", name=op.f("pk_job_outputs")),
    )
    op.create_index("ix_job_outputs_digest", "job_outputs", ["digest"], unique=False)
    op.create_table(
        "pilots",
        sa.Column("id", ID, sa.Identity(always=False), nullable=False),
        sa.Column("token_id", sa.String(length=32), nullable=True),
        sa.Column("queue", sa.String(length=256), nullable=True),
        sa.Column("site", sa.String(length=256), nullable=True),
        sa.Column("batch_job_id", sa.String(length=256), nullable=True),
        sa.Column("version", sa.String(length=64), nullable=True),
        sa.Column("ad", sa.JSON(), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("registered_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_heartbeat_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("jobs_run", sa.Integer(), server_default="0", nullable=False),
        sa.ForeignKeyConstraint(
            ["token_id"], ["tokens.id"], name=op.f("fk_pilots_token_id_tokens"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pilots")),
    )
    op.create_index(
        "ix_pilots_state_lease_expires_at", "pilots", ["state", "lease_expires_at"], unique=False
    )
    op.create_table(
        "attempts",
        sa.Column("id", ID, sa.Identity(always=False), nullable=False),
        sa.Column("job_id", ID, nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("pilot_id", ID, nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("payload_started", sa.Boolean(), server_default="0", nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("exit_code", sa.Integer(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_attempts_job_id_jobs"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["pilot_id"],
            ["pilots.id"],
            name=op.f("fk_attempts_pilot_id_pilots"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_attempts")),
        sa.UniqueConstraint("job_id", "number", name=op.f("uq_attempts_job_id_number")),
    )
    op.create_index("ix_attempts_pilot_id", "attempts", ["pilot_id"], unique=False)


def downgrade() -> None:
    op.drop_table("attempts")
    op.drop_table("pilots")
    op.drop_table("job_outputs")
    op.drop_table("job_inputs")
    op.drop_table("job_events")
    op.drop_table("job_commands")
    op.drop_table("dag_edges")
    op.drop_table("tokens")
    op.drop_table("jobs")
    op.drop_table("users")
    op.drop_table("task_queues")
