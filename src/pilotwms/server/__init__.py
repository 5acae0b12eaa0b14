"""The WMS server: job store, REST API, tokens, lifecycle and bookkeeping, sandboxes.

``db`` holds the tables and the engine, ``logic`` the plain functions that act on them,
``api`` the thin FastAPI routers; ``app.create_app`` assembles them.
"""
