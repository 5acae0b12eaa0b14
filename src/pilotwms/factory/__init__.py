"""The pilot factory: keeps each configured queue supplied with the pilots its demand needs.

- ``config``: ``FactorySettings`` and the queues of a factory TOML file; ``slot_attributes``.
- ``demand``: the ``DemandSource`` seam to the server and the ClassAd filter of task queues.
- ``pilots``: a pilot's batch state joined with its agent's report: phase, start outcome.
- ``policy``: the sizing policy, a pure function of demand, pilots, limits and time.
- ``ratelimit``: per-queue submission rate limit with failure back-off and pause.
- ``backends``: batch systems (local, Slurm, HTCondor, PBS) behind one bulk interface.
- ``server_api``: the HTTP side: demand, pilot records, batch states, pilot tokens, logs, queues.
- ``state``: what survives a restart (``state.json``), the status report, the state lock.
- ``daemon``: the runner: one scheduler loop over the queues (``pilotwms factory run``).
"""
