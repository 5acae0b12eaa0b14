"""pilotwms: a pilot-job workload management system speaking gLite JDL.

Glossary (the words every module uses in one sense only):

job
    One unit of work described by a JDL ad: an executable, its arguments, sandboxes,
    Requirements and Rank. A *compound* job (parametric, collection, DAG) has its own
    id and a set of *nodes*, each of which is a normal job.
pilot
    A placeholder job submitted to a batch system by the factory. It starts the *agent*,
    which describes its slot as a ClassAd and pulls matching jobs from the server (late
    binding).
queue
    A factory queue: one batch-system target (backend + options) with the static ad of the
    pilots it produces and the limits ``sched_min``/``sched_max``.
task queue
    Waiting jobs grouped by identical owner group, Requirements, Rank and resource needs,
    so that a pilot's request evaluates Requirements once per group, not once per job.
sandbox
    The files a job takes with it (input sandbox) and brings back (output sandbox). Stored
    content-addressed by sha256 digest, so a file shared by many jobs is stored once.
lease
    The promise a pilot keeps by heartbeating; a job whose pilot stops heartbeating for
    longer than the lease is requeued.
attempt
    One try at running a job on one pilot. Every attempt has its own id so that late
    reports from a stale attempt (zombie pilots) are refused.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
