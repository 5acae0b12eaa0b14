"""Alembic migration scripts of the job database (run by ``pilotwms.server.db.migrate``)."""
