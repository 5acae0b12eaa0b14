"""Alembic environment: runs on the engine handed over by ``pilotwms.server.db.migrate``."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from pilotwms.server.db import metadata

config = context.config
engine = config.attributes.get("engine")
if engine is None:
    # Plain ``alembic -x url=...`` use by a developer.
    engine = create_engine(context.get_x_argument(as_dictionary=True)["url"])

with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
