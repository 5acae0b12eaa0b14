"""The app factory: ``create_app(settings)`` assembles database, sandbox store, routers, error
mapping, metrics, the dispatcher (task-queue index and long-poll notifier), the agent zipapp and
the background tasks (expiry, leases, task-queue recount)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

import anyio
import uvicorn
from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pilotwms import __version__
from pilotwms.agent.zipapp import build_zipapp
from pilotwms.core.settings import ServerSettings
from pilotwms.server.api import (
    admin,
    errors,
    factory,
    jobs,
    outputs,
    pilot,
    pilots,
    resources,
    sandboxes,
    system,
)
from pilotwms.server.api.policy import iter_api_routes, route_policy
from pilotwms.server.api.services import Services
from pilotwms.server.blobstore import FileBlobStore
from pilotwms.server.db import Database, utcnow
from pilotwms.server.db.migrate import require_current, upgrade
from pilotwms.server.logic import dag_release
from pilotwms.server.logic.agent_releases import AgentReleases
from pilotwms.server.logic.attempts import Effects
from pilotwms.server.logic.dispatch import Dispatcher, Notifier
from pilotwms.server.logic.expiry import expire_jobs
from pilotwms.server.logic.leases import expire_leases, prune_reports
from pilotwms.server.logic.matchmaking import FairShare
from pilotwms.server.logic.submission import SubmitOptions
from pilotwms.server.metrics import Metrics

logger = logging.getLogger(__name__)

API_PREFIX = "/api/v1"
#: How long the ids of applied pilot reports are remembered (see ``leases.prune_reports``).
REPORT_ID_MEMORY = timedelta(days=1)
#: Routes FastAPI adds itself (documentation); public by design.
DOC_PATHS = frozenset({f"{API_PREFIX}/openapi.json", f"{API_PREFIX}/docs", f"{API_PREFIX}/redoc"})


def prepare_database(settings: ServerSettings, db: Database | None = None) -> Database:
    """Open the database and bring its schema to this version (or check it is there).

    Raises ``ConfigurationError`` when ``migrate_on_start`` is off and the schema is behind;
    SQLAlchemy's ``OperationalError`` when the database cannot be reached.
    """
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = db or Database(
        settings.effective_database_url,
        pool_size=settings.db_pool_size,
        busy_timeout_ms=settings.db_busy_timeout_ms,
    )
    if settings.migrate_on_start:
        upgrade(db.engine)
    else:
        require_current(db.engine)
    return db


def create_app(settings: ServerSettings) -> FastAPI:
    """The WMS server application; the database is opened (and migrated) at startup."""
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        started_at = utcnow()
        db = await anyio.to_thread.run_sync(prepare_database, settings)
        store = FileBlobStore(settings.effective_sandbox_dir)
        metrics.db = db
        agent_dir = settings.data_dir / "agent"
        await anyio.to_thread.run_sync(build_zipapp, agent_dir / "agent.pyz")
        agents = AgentReleases(db, store, agent_dir)
        await anyio.to_thread.run_sync(agents.start, agent_dir / "agent.pyz")
        dispatcher = Dispatcher(
            db,
            fair_share=FairShare(settings.fair_share_weights, settings.fair_share_default_weight),
            max_jobs_per_request=settings.max_jobs_per_request,
            notifier=Notifier(asyncio.get_running_loop()),
        )
        # Release is committed with the report that causes it; recomputing it from the
        # database still covers whatever else a crash or an expiry may have left owed.
        await anyio.to_thread.run_sync(_reconcile_dags, db)
        await anyio.to_thread.run_sync(dispatcher.resync)
        services = app.state.services = Services(
            settings=settings,
            db=db,
            store=store,
            submit_options=SubmitOptions.from_settings(settings),
            metrics=metrics,
            dispatcher=dispatcher,
            agents=agents,
            started_at=started_at,
        )
        # Everything allocated so far lives as long as the process: move it out of the
        # collector's generations so that full collections triggered by a large submission
        # do not walk the imported modules and tables again and again.
        gc.collect()
        gc.freeze()
        tasks = [
            asyncio.create_task(_expiry_loop(db, settings.expiry_check_interval_s, dispatcher)),
            asyncio.create_task(_lease_loop(services)),
            asyncio.create_task(_resync_loop(dispatcher, settings.task_queue_resync_s)),
        ]
        try:
            yield
        finally:
            release_long_polls(app)
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            metrics.db = None
            db.dispose()

    app = FastAPI(
        title="pilotwms",
        version=__version__,
        description="Pilot-job workload management system speaking gLite JDL.",
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url=f"{API_PREFIX}/docs",
        redoc_url=f"{API_PREFIX}/redoc",
        lifespan=lifespan,
    )
    errors.install(app, retry_after=settings.db_retry_after_s)
    for router in (
        system.router,
        pilot.router,
        pilots.router,
        resources.router,
        jobs.router,
        outputs.router,
        sandboxes.router,
        admin.router,
        factory.router,
    ):
        app.include_router(router)
    _check_policies(app)

    app.add_middleware(ObserveLatency, metrics=metrics)
    return app


class ObserveLatency:
    """Request latency per route template and status, as a plain ASGI middleware: Starlette's
    ``BaseHTTPMiddleware`` would run every request in an extra task with its own response
    stream, a noticeable share of a pilot request's time."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def observed_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, observed_send)
        finally:
            template = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.request_latency.labels(scope["method"], template, str(status)).observe(
                time.perf_counter() - start
            )


def release_long_polls(app: FastAPI) -> None:
    """The server is stopping: answer every waiting long-poll work request now (with no jobs),
    and any later one at once. Safe to call from any thread, and more than once."""
    services = getattr(app.state, "services", None)
    dispatcher = getattr(services, "dispatcher", None)
    if dispatcher is not None and dispatcher.notifier is not None:
        dispatcher.notifier.close()


class Server(uvicorn.Server):
    """uvicorn's server, releasing the long polls as soon as it is told to stop.

    On a stop (a signal, or ``should_exit`` set by whoever runs it), uvicorn waits for the
    requests in progress before it runs the app's shutdown; pilots' work requests wait up to
    ``work_max_wait_s``, so it would wait that long, then cancel them with a traceback each.
    Releasing them the moment ``should_exit`` is set lets the shutdown finish at once.
    """

    @property
    def should_exit(self) -> bool:
        return self._should_exit

    @should_exit.setter
    def should_exit(self, value: bool) -> None:
        self._should_exit = value
        if value and isinstance(self.config.app, FastAPI):
            release_long_polls(self.config.app)


def _check_policies(app: FastAPI) -> None:
    undeclared = [
        f"{sorted(r.methods or ())} {r.path}"
        for r in iter_api_routes(app.routes)
        if route_policy(r) is None
    ]
    if undeclared:
        raise RuntimeError(f"routes without a policy: {', '.join(undeclared)}")


async def _expiry_loop(db: Database, interval: float, dispatcher: Dispatcher) -> None:
    """Abort expired jobs every ``interval`` seconds; a failing round is logged and retried."""

    def once() -> int:
        total = 0
        while True:
            with db.write() as conn:
                expired = expire_jobs(conn)
                # An expired DAG node dooms its descendants and frees a throttle slot.
                dag_release.reconcile(conn, dag_release.parents_of(conn, expired))
            total += len(expired)
            if not expired:
                return total

    while True:
        try:
            count = await anyio.to_thread.run_sync(once)
            if count:
                logger.info("expiry: aborted %d expired jobs", count)
                await anyio.to_thread.run_sync(dispatcher.resync)
        except Exception as exc:
            logger.warning("expiry round failed: %s", exc)
        await asyncio.sleep(interval)


def _reconcile_dags(db: Database) -> None:
    """DAG release recomputed from the database for every unfinished compound job."""
    with db.write() as conn:
        dag_release.reconcile(conn)


async def _lease_loop(services: Services) -> None:
    """Requeue the attempts of silent pilots, several times per lease period."""
    settings = services.settings
    lease = settings.effective_lease_timeout_s
    interval = min(max(lease / 4, 0.2), 5.0)
    next_prune = 0.0

    def prune() -> None:
        with services.db.write() as conn:
            prune_reports(conn, before=utcnow() - REPORT_ID_MEMORY)

    def once() -> Effects:
        effects = Effects()
        with services.db.write() as conn:
            ended = expire_leases(
                conn,
                lease_s=lease,
                caps=services.retry_caps,
                effects=effects,
                not_before=services.started_at,
            )
        if ended:
            logger.info("leases: %d attempts of silent pilots ended", len(ended))
        return effects

    while True:
        await asyncio.sleep(interval)
        try:
            if time.monotonic() >= next_prune:
                await anyio.to_thread.run_sync(prune)
                next_prune = time.monotonic() + 600
            effects = await anyio.to_thread.run_sync(once)
            if effects.tq_ids or effects.released:
                await anyio.to_thread.run_sync(
                    services.jobs_changed, effects.tq_ids, dict(effects.released)
                )
        except Exception as exc:
            logger.warning("lease round failed: %s", exc)


async def _resync_loop(dispatcher: Dispatcher, interval: float) -> None:
    """Recount the task-queue index from the database (cancels and expiry change it too)."""
    while True:
        await asyncio.sleep(interval)
        try:
            await anyio.to_thread.run_sync(dispatcher.resync)
        except Exception as exc:
            logger.warning("task-queue recount failed: %s", exc)
