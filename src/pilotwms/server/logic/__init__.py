"""Plain functions over the job database: no HTTP here, every function takes a connection.

``lifecycle`` is the only module that changes a job's state; the others decide what to change.
"""
