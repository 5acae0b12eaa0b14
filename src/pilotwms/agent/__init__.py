"""The pilot agent: runs on a worker node, describes its slot, pulls jobs and runs them.

Standard library only and Python 3.9 syntax, because worker nodes offer nothing but a bare
interpreter; the server serves this package as one zipapp (``agent.pyz``). Nothing here imports
from ``pilotwms`` outside ``pilotwms.agent``.

How the modules fit together (pure logic apart from I/O):

``settings``   :class:`AgentSettings` from arguments, ``PILOTWMS_*`` variables and a file.
``slot``       what this slot is (cores, memory, disk, OS, batch job, walltime), probed once.
``gpus``       GPUs seen through ``nvidia-smi``.
``glue``       the slot as ClassAd attribute values, plain and GLUE 1.3 names.
``slots``      bookkeeping of free cores and memory across the jobs this pilot runs.
``lifecycle``  when the pilot takes work, drains and exits (events in, decisions out).
``jobspec``    the job spec the server sends, validated defensively.
``staging``    input sandbox (blob cache by digest, URIs) and output sandbox.
``executor``   one job in its own work directory and process groups, in its own thread.
``spool``      job reports kept on disk until the server has them.
``transport``  HTTP with JSON, bearer token, TLS and back-off.
``protocol``   the pilot routes of ``docs/pilot-protocol.md`` on top of the transport.
``pilot``      the thin runner that ties them together.
"""

from __future__ import annotations

AGENT_VERSION = "0.1.0"
"""Version of the agent; the server compares it to decide when a pilot must be replaced."""

__all__ = ["AGENT_VERSION"]
