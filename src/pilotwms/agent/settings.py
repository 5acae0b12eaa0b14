"""Agent settings: defaults, then an optional JSON or INI file, then ``PILOTWMS_*``, then arguments.

Later sources win. The agent cannot use pydantic-settings (standard library only), so this module
keeps the same idea by hand: one dataclass, each field documented, validated once at start-up and
passed in to whoever needs it.
"""

from __future__ import annotations

import argparse
import configparser
import dataclasses
import json
import os
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

ENV_PREFIX = "PILOTWMS_"


class SettingsError(ValueError):
    """A setting is missing or has a value the agent cannot use; the message names it."""


@dataclasses.dataclass
class AgentSettings:
    """Everything the agent needs to know that it cannot discover on the node."""

    server: str = ""
    """Base URL of the pilotwms server, e.g. ``https://wms.example.org``."""
    token: str = ""
    """Pilot-role bearer token; never passed on to jobs."""
    work_dir: str = ""
    """Directory for job work directories, blob cache and spool (default: ./pilotwms-work)."""
    site: str = ""
    """Site name published as ``Site`` and in ``GlueCEUniqueID``."""
    queue: str = ""
    """Factory queue name published as ``Queue``/``GlueCEName``."""
    tags: List[str] = dataclasses.field(default_factory=list)
    """Software tags (``GlueHostApplicationSoftwareRunTimeEnvironment``)."""
    vos: List[str] = dataclasses.field(default_factory=list)
    """VOs served, published as ``GlueCEAccessControlBaseRule`` entries ``VO:<vo>``."""
    requirements: str = ""
    """The pilot's own Requirements as ClassAd text (empty: none)."""
    lrms_type: str = ""
    """Batch system name for ``GlueCEInfoLRMSType`` (default: guessed from the environment)."""
    batch_id: str = ""
    """Batch job id of this pilot (default: from the batch system's variables)."""
    wait_term: float = 600.0
    """Exit after this many seconds without a job; 0 or less: never exit for being idle."""
    max_runtime: float = 0.0
    """Pilot lifetime in seconds; 0: bounded only by the batch walltime, if known."""
    heartbeat: float = 0.0
    """Heartbeat period in seconds; 0: use the server's ``heartbeat_interval_s``."""
    poll_wait: float = 0.0
    """Longest long-poll wait in seconds; 0: use the server's ``poll_wait_s``."""
    cores: int = 0
    """Cores to offer; 0: discovered (cgroup, affinity and batch variables, smallest wins)."""
    memory_mb: int = 0
    """Memory to offer in MiB; 0: discovered (cgroup limit, batch variables, MemTotal)."""
    max_jobs: int = 0
    """Most jobs at once; 0: as many as the cores allow."""
    prefetch: int = -1
    """Jobs to queue beyond the free slots, started as slots free; -1: automatic (while the
    recent jobs were short, about a second of work per slot, at most 32 jobs per slot; none
    for long jobs); 0: never."""
    sigterm_grace: float = 30.0
    """After SIGTERM from the batch system, seconds running jobs get before they are killed."""
    cancel_grace: float = 10.0
    """Seconds between SIGTERM and SIGKILL when a job is cancelled or killed."""
    min_time_left: float = 60.0
    """Stop taking work when less than this many seconds of pilot lifetime remain."""
    ca_file: str = ""
    """CA bundle to verify the server's certificate (default: the system's)."""
    insecure: bool = False
    """Skip TLS verification (test set-ups only)."""
    log_file: str = ""
    """Log to this file as well as to stderr."""
    log_level: str = "INFO"
    """Python logging level name."""

    def validate(self, *, need_server: bool = True) -> None:
        """Raise :class:`SettingsError` naming the first unusable setting."""
        if need_server:
            if not self.server:
                raise SettingsError("--server (PILOTWMS_SERVER) is required")
            if not self.server.startswith(("http://", "https://")):
                raise SettingsError(f"--server must be an http(s) URL, got {self.server!r}")
            if not self.token:
                raise SettingsError("--token (PILOTWMS_TOKEN) is required")
        for name in ("wait_term", "max_runtime", "heartbeat", "poll_wait", "min_time_left"):
            if not isinstance(getattr(self, name), (int, float)):
                raise SettingsError(f"{name} must be a number")
        for name in ("cores", "memory_mb", "max_jobs"):
            if getattr(self, name) < 0:
                raise SettingsError(f"{name} must be 0 (discover) or positive")
        if self.prefetch < -1:
            raise SettingsError("prefetch must be -1 (automatic), 0 (none) or positive")
        if self.sigterm_grace < 0 or self.cancel_grace < 0:
            raise SettingsError("grace periods must not be negative")
        if self.ca_file and not Path(self.ca_file).is_file():
            raise SettingsError(f"--ca-file {self.ca_file!r} does not exist")

    @property
    def work_path(self) -> Path:
        """The work directory as an absolute path."""
        return Path(self.work_dir or "pilotwms-work").absolute()


_FIELDS = {f.name: f for f in dataclasses.fields(AgentSettings)}
_LIST_FIELDS = {"tags", "vos"}
_SECRET_FIELDS = {"token"}


def _coerce(name: str, value: Any) -> Any:
    """Convert a text or JSON value to the type of field ``name``."""
    default = _FIELDS[name].default
    if name in _LIST_FIELDS:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        if isinstance(value, (list, tuple)):
            return [str(part) for part in value]
        raise SettingsError(f"{name} must be a list or a comma-separated string")
    try:
        if isinstance(default, bool):
            if isinstance(value, str):
                return value.strip().lower() in ("1", "true", "yes", "on")
            return bool(value)
        if isinstance(default, int):
            return int(value)
        if isinstance(default, float):
            return float(value)
    except (TypeError, ValueError) as exc:
        raise SettingsError(f"{name}: cannot use {value!r}: {exc}") from None
    return str(value)


def _from_file(path: Path) -> Dict[str, Any]:
    """Read a JSON object, or an INI file's ``[pilot]`` section, into field values."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SettingsError(f"cannot read config file {path}: {exc}") from None
    raw: Mapping[str, Any]
    if text.lstrip().startswith("{"):
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SettingsError(f"{path}: invalid JSON: {exc}") from None
    else:
        parser = configparser.ConfigParser()
        try:
            parser.read_string(text, source=str(path))
        except configparser.Error as exc:
            raise SettingsError(f"{path}: invalid INI: {exc}") from None
        if not parser.has_section("pilot"):
            raise SettingsError(f"{path}: expected a [pilot] section")
        raw = dict(parser.items("pilot"))
    values = {}
    for key, value in raw.items():
        name = key.replace("-", "_").lower()
        if name not in _FIELDS:
            raise SettingsError(f"{path}: unknown setting {key!r}")
        values[name] = _coerce(name, value)
    return values


def _from_env(env: Mapping[str, str]) -> Dict[str, Any]:
    values = {}
    for name in _FIELDS:
        key = ENV_PREFIX + name.upper()
        if key in env:
            values[name] = _coerce(name, env[key])
    return values


def build_parser(prog: str = "agent.pyz") -> argparse.ArgumentParser:
    """The agent's command line; every setting has an option of the same name."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="pilotwms pilot agent: describe this slot, pull matching jobs and run them.",
        epilog="Every option can also be given as PILOTWMS_<NAME> or in --config (JSON or INI "
        "with a [pilot] section); the command line wins.",
    )
    parser.add_argument("--config", help="JSON or INI settings file")
    parser.add_argument(
        "--describe", action="store_true", help="print this slot's ad as JSON and exit"
    )
    parser.add_argument("--version", action="store_true", help="print the agent version and exit")
    for name, field in _FIELDS.items():
        option = "--" + name.replace("_", "-")
        default = field.default
        doc = _FIELD_HELP.get(name, "")
        if isinstance(default, bool):
            parser.add_argument(option, dest=name, action="store_true", default=None, help=doc)
        else:
            parser.add_argument(option, dest=name, default=None, metavar=name.upper(), help=doc)
    return parser


def _field_docs() -> Dict[str, str]:
    """Field docstrings, read from this module's source so ``--help`` and the code agree."""
    docs: Dict[str, str] = {}
    try:
        import ast
        import inspect

        tree = ast.parse(inspect.getsource(AgentSettings))
    except (OSError, TypeError, SyntaxError):
        return docs
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
    for position in range(len(body) - 1):
        node, nxt = body[position], body[position + 1]
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(nxt, ast.Expr)
            and isinstance(nxt.value, ast.Constant)
            and isinstance(nxt.value.value, str)
        ):
            docs[node.target.id] = nxt.value.value.replace("%", "%%")
    return docs


_FIELD_HELP = _field_docs()


def load_settings(
    argv: Optional[Sequence[str]] = None,
    env: Optional[Mapping[str, str]] = None,
    prog: str = "agent.pyz",
) -> "tuple[AgentSettings, argparse.Namespace]":
    """Parse ``argv`` and merge the sources; returns the settings and the parsed namespace.

    Validation is left to the caller, because ``--describe`` and ``--version`` need no server.
    """
    env = os.environ if env is None else env
    args = build_parser(prog).parse_args(list(argv) if argv is not None else None)
    values: Dict[str, Any] = {}
    config = args.config or env.get(ENV_PREFIX + "CONFIG")
    if config:
        values.update(_from_file(Path(config)))
    values.update(_from_env(env))
    for name in _FIELDS:
        given = getattr(args, name)
        if given is not None:
            values[name] = _coerce(name, given)
    return AgentSettings(**values), args


def redacted(settings: AgentSettings) -> Dict[str, Any]:
    """The settings as a dict for logging, with secrets hidden."""
    out = dataclasses.asdict(settings)
    for name in _SECRET_FIELDS:
        if out.get(name):
            out[name] = "***"
    return out
