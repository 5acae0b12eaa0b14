"""Which sandbox files each job takes in and brings back.

The bytes live in the content-addressed blob store; these rows are the references that keep a
blob alive. A blob no row refers to (its jobs purged) is collected after a grace period.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, ForeignKey, Index, String, Table, Text

from pilotwms.server.db.metadata import IdType, UTCDateTime, metadata

# One row per InputSandbox entry: a local file uploaded as a blob (digest) or a URI the pilot
# fetches itself (http(s)://, file://).
job_inputs = Table(
    "job_inputs",
    metadata,
    Column("job_id", IdType, ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
    Column("name", String(1024), primary_key=True),
    Column("digest", String(64)),
    Column("uri", Text),
    Index("ix_job_inputs_digest", "digest"),
)

# Output sandbox files the pilot uploaded, per node.
job_outputs = Table(
    "job_outputs",
    metadata,
    Column("job_id", IdType, ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
    Column("name", String(1024), primary_key=True),
    Column("digest", String(64), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Index("ix_job_outputs_digest", "digest"),
)
