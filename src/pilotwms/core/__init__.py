"""Shared vocabulary of the server-side components: settings, errors, states and models.

Depends on nothing of ours except ``pilotwms.classad`` and ``pilotwms.jdl``.
"""
