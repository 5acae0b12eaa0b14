"""Command-line entry point: ``python3 agent.pyz --server URL --token T`` or
``python -m pilotwms.agent``; ``--describe`` prints the slot ad as JSON and exits."""

from __future__ import annotations

import json
import logging
import sys
from typing import Optional, Sequence

from . import AGENT_VERSION
from .glue import slot_ad
from .pilot import EXIT_REJECTED, Pilot, WorkDirBusy
from .protocol import PilotClient
from .settings import AgentSettings, SettingsError, load_settings, redacted
from .slot import Host, SlotFacts, discover
from .transport import Transport


def _logging(settings: AgentSettings) -> None:
    handlers: "list[logging.Handler]" = [logging.StreamHandler(sys.stderr)]
    if settings.log_file:
        handlers.append(logging.FileHandler(settings.log_file))
    logging.basicConfig(
        level=getattr(logging, settings.log_level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=handlers,
        force=True,
    )


def _facts(settings: AgentSettings, host: Optional[Host] = None) -> SlotFacts:
    return discover(
        host or Host(),
        settings.work_path,
        cores_override=settings.cores,
        memory_override_mb=settings.memory_mb,
        lrms_override=settings.lrms_type,
        batch_id_override=settings.batch_id,
    )


def main(argv: Optional[Sequence[str]] = None, prog: str = "agent.pyz") -> int:
    """Run the agent with ``argv``; returns the exit code."""
    try:
        settings, args = load_settings(argv, prog=prog)
        if args.version:
            print(AGENT_VERSION)
            return 0
        if args.describe:
            settings.validate(need_server=False)
            facts = _facts(settings)
            time_left = settings.max_runtime or facts.batch_time_left_s
            ad = slot_ad(facts, settings, agent_version=AGENT_VERSION, time_left_s=time_left)
            print(json.dumps(ad, indent=2, sort_keys=True))
            return 0
        settings.validate()
    except SettingsError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return EXIT_REJECTED
    _logging(settings)
    log = logging.getLogger("pilotwms.agent")
    log.info("pilotwms agent %s starting: %s", AGENT_VERSION, redacted(settings))
    settings.work_path.mkdir(parents=True, exist_ok=True)
    transport = Transport(
        settings.server,
        settings.token,
        ca_file=settings.ca_file or None,
        insecure=settings.insecure,
        user_agent=f"pilotwms-agent/{AGENT_VERSION}",
    )
    facts = _facts(settings)
    log.info("slot: %d cores (%s), %d MiB", facts.cores, facts.cores_source, facts.memory_mb)
    try:
        pilot = Pilot(settings, PilotClient(transport), facts)
    except WorkDirBusy as exc:
        log.error("%s; give each pilot its own --work-dir", exc)
        return EXIT_REJECTED
    return pilot.run()


if __name__ == "__main__":
    sys.exit(main(prog="python -m pilotwms.agent"))
