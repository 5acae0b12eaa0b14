"""The event history of every job: what ``logging-info`` shows and why a job is where it is."""

from __future__ import annotations

from sqlalchemy import Column, ForeignKey, Identity, Index, Integer, String, Table, Text

from pilotwms.server.db.metadata import IdType, UTCDateTime, metadata

job_events = Table(
    "job_events",
    metadata,
    Column("id", IdType, Identity(), primary_key=True),
    Column("job_id", IdType, ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False),
    Column("time", UTCDateTime, nullable=False),
    Column("event", String(32), nullable=False),
    Column("state_from", String(16)),
    Column("state_to", String(16), nullable=False),
    # Who caused it: "server", "user:NAME", "pilot:ID", "expiry", ...
    Column("source", String(128), nullable=False),
    Column("reason", Text),
    Column("attempt", Integer),
    Index("ix_job_events_job_id_id", "job_id", "id"),
)
