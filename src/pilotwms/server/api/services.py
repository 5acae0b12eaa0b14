"""What every request handler needs, built once per app and reached through ``app.state``."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated

from fastapi import Depends, Request

from pilotwms.core.settings import ServerSettings
from pilotwms.server.blobstore import BlobStore
from pilotwms.server.db import Database, utcnow
from pilotwms.server.logic.agent_releases import AgentReleases
from pilotwms.server.logic.attempts import RetryCaps
from pilotwms.server.logic.dispatch import Dispatcher
from pilotwms.server.logic.submission import SubmitOptions
from pilotwms.server.metrics import Metrics


@dataclass
class Services:
    settings: ServerSettings
    db: Database
    store: BlobStore
    submit_options: SubmitOptions
    metrics: Metrics
    #: The task-queue index and the hand-out (``None`` only in apps built without a lifespan).
    dispatcher: Dispatcher | None = None
    #: The agent zipapp served to pilots (built at start, replaceable at run time).
    agents: AgentReleases | None = None
    #: When this server process started (leases do not count the time it was down).
    started_at: datetime = field(default_factory=utcnow)

    @property
    def shared_groups(self) -> frozenset[str]:
        return frozenset(self.settings.shared_groups)

    @property
    def retry_caps(self) -> RetryCaps:
        return RetryCaps(self.settings.max_retry_count, self.settings.max_shallow_retry_count)

    @property
    def agent_version(self) -> str:
        """The version of the agent served now (every other version is drained)."""
        return self.agents.version if self.agents is not None else ""

    def jobs_changed(self, tq_ids: set[int], released: dict[str, int] | None = None) -> None:
        """Tell the dispatcher that jobs of these task queues changed (after the commit)."""
        if self.dispatcher is not None and (tq_ids or released):
            self.dispatcher.jobs_changed(tq_ids, released=released)


async def get_services(request: Request) -> Services:
    """The app's services. A coroutine, so that FastAPI resolves it in the event loop: a plain
    function dependency costs a worker-thread hop on every request."""
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]
