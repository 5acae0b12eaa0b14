"""Thin FastAPI routers: parse the request, call ``logic``, shape the response.

Every route declares its policy (``policy.Policy``); ``app.create_app`` refuses to build an app
with a route that does not. Errors are mapped to RFC 9457 problem responses in ``errors``.
"""
