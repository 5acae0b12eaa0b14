"""Pilots, the attempts they run, the commands waiting for them, the reports they sent, the
factory queues they come from, their own logs and the agent releases the server serves.

The pilot factory creates a pilot's row when it submits the batch job (state ``submitted``); the
pilot protocol (registration, leases, heartbeats) fills it in once the agent starts. The server
side of job management uses ``job_commands`` to ask a pilot to kill a cancelled job.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Identity,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from pilotwms.server.db.metadata import IdType, UTCDateTime, metadata

pilots = Table(
    "pilots",
    metadata,
    Column("id", IdType, Identity(), primary_key=True),
    Column("token_id", String(32), ForeignKey("tokens.id", ondelete="SET NULL")),
    Column("queue", String(256)),
    Column("site", String(256)),
    Column("batch_job_id", String(256)),
    Column("version", String(64)),
    Column("ad", JSON),
    # submitted, queued (factory rows not registered yet), running, draining (registered and
    # alive), finished, failed (ended); "idle" is derived: running with no attempt.
    Column("state", String(16), nullable=False),
    # Null until the agent registers (a row the factory created at submission).
    Column("registered_at", UTCDateTime),
    Column("last_heartbeat_at", UTCDateTime),
    Column("lease_expires_at", UTCDateTime),
    Column("jobs_run", Integer, nullable=False, server_default="0"),
    # Why the pilot left (its deregistration reason, or "lease expired").
    Column("exit_reason", Text),
    # A drain asked for by an administrator, delivered once with the next heartbeat.
    Column("drain_reason", Text),
    Column("drain_grace_s", Float),
    Column("drain_sent", Boolean, nullable=False, server_default="0"),
    # Filled by the pilot factory when it submits the batch job.
    Column("submitted_at", UTCDateTime),
    Column("backend", String(64)),
    Column("factory", String(256)),
    Column("log_paths", JSON),
    Column("ended_at", UTCDateTime),
    Index("ix_pilots_state_lease_expires_at", "state", "lease_expires_at"),
    Index("ix_pilots_queue_batch_job_id", "queue", "batch_job_id"),
    Index("ix_pilots_ended_at", "ended_at"),
)

# One try at running a job on a pilot; reports name their attempt so stale ones are refused.
attempts = Table(
    "attempts",
    metadata,
    Column("id", IdType, Identity(), primary_key=True),
    Column("job_id", IdType, ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False),
    Column("number", Integer, nullable=False),
    Column("pilot_id", IdType, ForeignKey("pilots.id", ondelete="SET NULL")),
    Column("state", String(16), nullable=False),
    Column("payload_started", Boolean, nullable=False, server_default="0"),
    Column("started_at", UTCDateTime, nullable=False),
    Column("finished_at", UTCDateTime),
    Column("exit_code", Integer),
    Column("reason", Text),
    # The last heartbeat that listed this attempt, and the use it reported.
    Column("last_seen_at", UTCDateTime),
    Column("cpu_s", Float),
    Column("rss_mb", Float),
    Column("max_rss_mb", Float),
    Column("wall_s", Float),
    Column("signal", Integer),
    # The latest stdout tail (peek and perusal).
    Column("stdout_tail", Text),
    UniqueConstraint("job_id", "number"),
    Index("ix_attempts_pilot_id", "pilot_id"),
    Index("ix_attempts_finished_at", "finished_at"),
)

# Commands for the pilot holding a job (e.g. "cancel"), delivered with its next heartbeat.
job_commands = Table(
    "job_commands",
    metadata,
    Column("id", IdType, Identity(), primary_key=True),
    Column("job_id", IdType, ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False),
    Column("attempt", Integer),
    Column("command", String(32), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("delivered_at", UTCDateTime),
    Index("ix_job_commands_job_id", "job_id"),
    Index("ix_job_commands_delivered_at", "delivered_at"),
)

# Reports already applied, by the agent's random report id: a report sent again after a lost
# reply is answered "duplicate" without being applied twice.
pilot_reports = Table(
    "pilot_reports",
    metadata,
    Column("report_id", String(64), primary_key=True),
    Column("pilot_id", IdType),
    Column("job_id", IdType),
    Column("attempt", Integer),
    Column("type", String(16), nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("received_at", UTCDateTime, nullable=False),
    Index("ix_pilot_reports_received_at", "received_at"),
)

# The static ads of the pilot factory's queues (what a pilot started there would offer): the
# resource registry lists them with the live pilots, and list-match explains against them.
factory_queues = Table(
    "factory_queues",
    metadata,
    Column("name", String(256), primary_key=True),
    Column("ad", JSON, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)


# A pilot's own stdout and stderr (the tail the factory uploads from the batch system's files),
# in the database so that every server replica can serve them.
pilot_logs = Table(
    "pilot_logs",
    metadata,
    Column("pilot_id", IdType, ForeignKey("pilots.id", ondelete="CASCADE"), primary_key=True),
    Column("stream", String(16), primary_key=True),
    Column("content", LargeBinary, nullable=False),
    # Bytes the log file had; more than stored when only its tail is kept.
    Column("total_bytes", BigInteger, nullable=False),
    Column("truncated", Boolean, nullable=False, server_default="0"),
    Column("updated_at", UTCDateTime, nullable=False),
)

# The agent zipapps installed at run time (the blob store holds the bytes by digest); the newest
# row is the agent every server replica serves and every pilot is upgraded to.
agent_releases = Table(
    "agent_releases",
    metadata,
    Column("id", IdType, Identity(), primary_key=True),
    Column("version", String(64), nullable=False),
    Column("digest", String(64), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("installed_at", UTCDateTime, nullable=False),
    # "built-in" for the agent of the server's own package, else the administrator.
    Column("installed_by", String(256), nullable=False),
)
