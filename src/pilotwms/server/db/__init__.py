"""Tables (SQLAlchemy Core) and the engine of the job database.

One module per table group; importing this package registers all of them with ``metadata``.
Hot paths use Core statements and bulk ``executemany`` inserts, never the ORM.
"""

from pilotwms.server.db.accounts import tokens, users
from pilotwms.server.db.engine import Database
from pilotwms.server.db.events import job_events
from pilotwms.server.db.jobs import dag_edges, jobs, task_queues
from pilotwms.server.db.metadata import metadata, utcnow
from pilotwms.server.db.pilots import (
    agent_releases,
    attempts,
    factory_queues,
    job_commands,
    pilot_logs,
    pilot_reports,
    pilots,
)
from pilotwms.server.db.sandboxes import job_inputs, job_outputs

__all__ = [
    "Database",
    "agent_releases",
    "attempts",
    "dag_edges",
    "factory_queues",
    "job_commands",
    "job_events",
    "job_inputs",
    "job_outputs",
    "jobs",
    "metadata",
    "pilot_logs",
    "pilot_reports",
    "pilots",
    "task_queues",
    "tokens",
    "users",
    "utcnow",
]
