"""Jobs, task queues and DAG edges: what a job is and where it waits.

A compound job (parametric, collection, DAG) is one parent row plus one row per node, linked by
``parent_id``; every node is a normal job with its own id, retries and history. The JDL text is
stored as submitted (top-level rows only) and as expanded with the defaults applied (every row):
the expanded form is what the matcher and the pilot protocol read, so nothing re-expands later.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    ForeignKey,
    Identity,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from pilotwms.server.db.metadata import IdType, UTCDateTime, metadata

# Waiting jobs with equal owner group, Requirements, Rank and resource needs: the matcher
# evaluates Requirements once per task queue, not once per job (DIRAC's TaskQueueDB).
task_queues = Table(
    "task_queues",
    metadata,
    Column("id", IdType, Identity(), primary_key=True),
    Column("key", String(64), nullable=False),
    Column("owner_group", String(128), nullable=False),
    Column("requirements", Text, nullable=False),
    Column("rank", Text, nullable=False),
    Column("cpus", Integer, nullable=False),
    Column("whole_node", Boolean, nullable=False),
    Column("memory_mb", Integer),
    Column("wall_time_s", Integer),
    Column("cpu_time_s", Integer),
    Column("priority", Integer, nullable=False, server_default="0"),
    Column("created_at", UTCDateTime, nullable=False),
    UniqueConstraint("key"),
)

jobs = Table(
    "jobs",
    metadata,
    Column("id", IdType, Identity(), primary_key=True),
    Column("parent_id", IdType, ForeignKey("jobs.id", ondelete="CASCADE")),
    Column("kind", String(16), nullable=False),
    Column("node_name", String(256)),
    Column("owner", String(128), nullable=False),
    Column("owner_group", String(128), nullable=False),
    Column("state", String(16), nullable=False),
    Column("done_code", String(16)),
    Column("exit_code", Integer),
    Column("reason", Text),
    Column("jdl_submitted", Text),
    Column("jdl", Text, nullable=False),
    Column("requirements", Text),
    Column("rank", Text),
    Column("task_queue_id", IdType, ForeignKey("task_queues.id")),
    Column("cpus", Integer, nullable=False, server_default="1"),
    Column("whole_node", Boolean, nullable=False, server_default="0"),
    Column("memory_mb", Integer),
    Column("wall_time_s", Integer),
    Column("cpu_time_s", Integer),
    Column("priority", Integer, nullable=False, server_default="0"),
    # Effective retry limits: min(job value, server cap); ShallowRetryCount = -1 stores 0.
    Column("retry_count", Integer, nullable=False, server_default="0"),
    Column("shallow_retry_count", Integer, nullable=False, server_default="0"),
    Column("retries_used", Integer, nullable=False, server_default="0"),
    Column("shallow_retries_used", Integer, nullable=False, server_default="0"),
    # Number of the current attempt (0: never handed out); see the attempts table.
    Column("attempt", Integer, nullable=False, server_default="0"),
    # DAG parents only: how many nodes may be active at once (None: no limit).
    Column("max_nodes_running", Integer),
    Column("node_count", Integer, nullable=False, server_default="0"),
    Column("cancel_requested", Boolean, nullable=False, server_default="0"),
    Column("expiry_time", UTCDateTime),
    Column("submitted_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("started_at", UTCDateTime),
    Column("finished_at", UTCDateTime),
    Index("ix_jobs_parent_id_state", "parent_id", "state"),
    Index("ix_jobs_owner_id", "owner", "id"),
    Index("ix_jobs_state_task_queue_id", "state", "task_queue_id"),
    Index("ix_jobs_state_expiry_time", "state", "expiry_time"),
)

# DAG dependencies: the child becomes eligible when every parent ended DONE with exit code 0.
dag_edges = Table(
    "dag_edges",
    metadata,
    Column("dag_id", IdType, ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False),
    Column("parent_job_id", IdType, ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
    Column("child_job_id", IdType, ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
    Index("ix_dag_edges_child_job_id", "child_job_id"),
    Index("ix_dag_edges_dag_id", "dag_id"),
)
