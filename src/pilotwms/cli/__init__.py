"""The ``pilotwms`` command line: one entry point assembling the commands of each component."""
