"""Prometheus metrics: jobs per state, submissions, request latencies.

Each app has its own registry (several apps can live in one process, as in the tests). The jobs
per state gauge is collected from the database at scrape time with one GROUP BY over an indexed
column, so it is always exact and costs nothing between scrapes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from pilotwms.core.states import JobState
from pilotwms.server.db import Database, jobs

logger = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _JobsPerState(Collector):
    def __init__(self, db: Callable[[], Database | None]) -> None:
        self._db = db

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "pilotwms_jobs", "Jobs (nodes and top-level jobs) per state", labels=["state"]
        )
        db = self._db()
        counts: dict[str, int] = {}
        if db is not None:
            try:
                with db.read() as conn:
                    rows = conn.execute(select(jobs.c.state, func.count()).group_by(jobs.c.state))
                    counts = {state: int(n) for state, n in rows}
            except Exception as exc:  # a scrape must not fail because the database is down
                logger.warning("metrics: cannot count jobs: %s", exc)
                return
        for state in JobState:
            family.add_metric([state.value], counts.get(state.value, 0))
        yield family


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.db: Database | None = None
        self.submissions = Counter(
            "pilotwms_submissions",
            "Jobs accepted, by kind (a compound job counts once, its nodes in 'nodes')",
            ["kind"],
            registry=self.registry,
        )
        self.submitted_nodes = Counter(
            "pilotwms_submitted_nodes",
            "Concrete jobs (nodes) accepted",
            registry=self.registry,
        )
        self.request_latency = Histogram(
            "pilotwms_request_duration_seconds",
            "HTTP request latency by route template",
            ["method", "route", "status"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.registry.register(_JobsPerState(lambda: self.db))

    def render(self) -> bytes:
        return generate_latest(self.registry)
