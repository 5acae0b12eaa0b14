"""The factory's configuration: ``FactorySettings`` and the queues read from a TOML file.

One file describes the whole factory (see ``examples/factory.toml``)::

    [factory]                      # FactorySettings; PILOTWMS_FACTORY_* variables override it
    server_url = "https://wms.example.org"

    [queues.slurm-short]           # one table per queue; the key is the queue's name
    backend = "slurm"
    sched_min = 0
    sched_max = 20
    [queues.slurm-short.ad]        # the slot every pilot of this queue will get
    cores = 4
    memory_mb = 8000
    walltime_s = 7200
    site = "NIKHEF"
    tags = ["apptainer"]
    [queues.slurm-short.options]   # passed to the batch system
    partition = "short"

lgipilot's knobs keep their meaning under clearer names: ``sched_min`` (pilots kept alive even
when idle), ``sched_max``, ``poll``, ``wait_new``, ``wait_term``, ``max_runtime``.

Every problem in the file is reported at once, each naming the file, the queue, the field and how
to fix it, because a factory that refuses to start should say everything that is wrong in one go.

``slot_attributes`` is the one place where a queue's static ad becomes ClassAd attributes (native
names and the GLUE 1.3 names that gLite JDLs use), so that list-match and the factory's own demand
filter evaluate jobs against exactly what a pilot of that queue will publish.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from pilotwms.core.errors import ConfigurationError
from pilotwms.factory.backends.base import PilotScriptContext
from pilotwms.factory.policy import QueueLimits
from pilotwms.factory.ratelimit import DEFAULT_BACKOFF_S, RateLimitRules

__all__ = [
    "BACKEND_NAMES",
    "BackendOptions",
    "FactoryConfig",
    "FactoryConfigError",
    "FactorySettings",
    "PilotAd",
    "QueueConfig",
    "SubmitRateLimit",
    "load_factory_config",
    "parse_factory_config",
    "pilot_context",
    "slot_attributes",
]

BackendName = Literal["local", "slurm", "htcondor", "pbs"]
#: The batch systems a queue can use; a Kubernetes backend will add its name here.
BACKEND_NAMES: tuple[str, ...] = ("local", "slurm", "htcondor", "pbs")

_QUEUE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_DIRECTIVE_PREFIX = {"slurm": "#SBATCH", "pbs": "#PBS", "htcondor": "", "local": ""}
#: backend -> the LRMS name the agent detects and publishes (``GlueCEInfoLRMSType``)
_LRMS_TYPE = {"local": "fork", "slurm": "slurm", "htcondor": "condor", "pbs": "pbs"}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PilotAd(_Strict):
    """The slot one pilot of the queue gets from the batch system (what it asks for)."""

    cores: int = Field(1, ge=1, le=1024, description="cores per pilot")
    memory_mb: int = Field(2000, ge=1, description="memory per pilot in MB")
    walltime_s: int = Field(3600, ge=60, description="wall-clock limit of the pilot job")
    site: str = Field("local", min_length=1, description="site name jobs can ask for")
    tags: tuple[str, ...] = Field((), description="software or features the slot offers")
    gpus: int = Field(0, ge=0, le=64, description="GPUs per pilot")
    attributes: dict[str, str | int | float | bool | list[str]] = Field(
        default_factory=dict,
        description="further slot attributes known before a pilot runs (OpSys, Arch...)",
    )


class BackendOptions(_Strict):
    """How to talk to the batch system; which options apply depends on the backend."""

    partition: str | None = Field(None, description="Slurm partition or PBS queue")
    account: str | None = Field(None, description="account/project charged for the pilots")
    directives: tuple[str, ...] = Field(
        (), description="extra lines for the job header, without the #SBATCH/#PBS prefix"
    )
    environment: dict[str, str] = Field(
        default_factory=dict,
        description="variables exported in the pilot's environment; PILOTWMS_* ones configure "
        "the agent (e.g. PILOTWMS_WORK_DIR for the jobs' scratch space)",
    )
    python: str = Field("python3", description="Python interpreter on the worker nodes")
    agent: str | None = Field(
        None,
        description="agent zipapp on the worker node (path) or URL to fetch it from; "
        "default: the server's agent URL (local backend: the installed package)",
    )
    pbs_flavor: Literal["pro", "torque"] = Field(
        "pro", description="PBS resource syntax: 'pro' (select=) or 'torque' (nodes=:ppn=)"
    )

    @field_validator("environment")
    @classmethod
    def _variable_names(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                raise ValueError(
                    f"{name!r} is not a valid environment variable name "
                    "(letters, digits and '_', not starting with a digit)"
                )
        return value


class SubmitRateLimit(_Strict):
    """Submission rate limit and failure back-off of one queue (see ``ratelimit``)."""

    max_per_minute: int = Field(60, ge=1, description="pilots submitted per sliding minute")
    backoff_s: tuple[float, ...] = Field(
        DEFAULT_BACKOFF_S, min_length=1, description="delay after 0, 1, 2, ... failures in a row"
    )
    pause_after_submit_failures: int = Field(10, ge=1)
    pause_after_start_failures: int = Field(3, ge=1)

    @field_validator("backoff_s")
    @classmethod
    def _non_negative(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if any(step < 0 for step in value):
            raise ValueError("back-off delays cannot be negative")
        return value

    def rules(self) -> RateLimitRules:
        """The limiter's rules for this configuration."""
        return RateLimitRules(
            max_per_minute=self.max_per_minute,
            backoff_s=self.backoff_s,
            pause_after_submit_failures=self.pause_after_submit_failures,
            pause_after_start_failures=self.pause_after_start_failures,
        )


class QueueConfig(_Strict):
    """One factory queue: a batch-system target and the pilots it gets."""

    name: str
    backend: BackendName
    ad: PilotAd = Field(default_factory=PilotAd)
    options: BackendOptions = Field(default_factory=BackendOptions)
    sched_min: int = Field(0, ge=0, description="pilots kept alive even when idle (keep-warm)")
    sched_max: int = Field(10, ge=0, description="most pilots alive at once in this queue")
    poll: float = Field(30.0, gt=0, description="seconds between factory cycles for this queue")
    wait_new: float = Field(60.0, ge=0, description="seconds a backlog must last before adding")
    wait_term: int = Field(300, ge=1, description="seconds a pilot waits idle before it exits")
    max_runtime: int | None = Field(
        None, ge=60, description="a pilot takes no new job after this many seconds"
    )
    rate_limit: SubmitRateLimit = Field(default_factory=SubmitRateLimit)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _QUEUE_NAME.fullmatch(value):
            raise ValueError(
                f"queue name {value!r} must be 1-64 letters, digits, '_', '.' or '-', "
                "starting with a letter or digit (it is used in file and batch-job names)"
            )
        return value

    @model_validator(mode="after")
    def _coherent(self) -> QueueConfig:
        if self.sched_min > self.sched_max:
            raise ValueError(
                f"sched_min ({self.sched_min}) is larger than sched_max ({self.sched_max}); "
                "raise sched_max or lower sched_min"
            )
        if self.max_runtime is not None and self.max_runtime > self.ad.walltime_s:
            raise ValueError(
                f"max_runtime ({self.max_runtime}s) exceeds the pilot's walltime_s "
                f"({self.ad.walltime_s}s): the batch system would kill pilots first; "
                "lower max_runtime or raise ad.walltime_s"
            )
        if self.wait_term >= self.ad.walltime_s:
            raise ValueError(
                f"wait_term ({self.wait_term}s) is not shorter than walltime_s "
                f"({self.ad.walltime_s}s): pilots could never time out idle; lower wait_term"
            )
        if self.backend == "local" and (self.options.partition or self.options.account):
            raise ValueError(
                "the local backend has no partitions or accounts; remove options.partition "
                "and options.account, or use backend = 'slurm', 'pbs' or 'htcondor'"
            )
        if self.backend == "htcondor" and self.options.partition:
            raise ValueError(
                "HTCondor has no partitions; remove options.partition and steer pilots with "
                "options.directives, e.g. 'requirements = (Machine == \"node1\")'"
            )
        computed = set(
            slot_attributes(self.model_copy(update={"ad": _without_attributes(self.ad)}))
        )
        clashes = sorted(set(self.ad.attributes) & computed)
        if clashes:
            raise ValueError(
                f"ad.attributes redefines {', '.join(clashes)}, which the factory derives from "
                "the ad; set ad.cores, ad.memory_mb, ad.site, ad.tags... instead"
            )
        prefix = _DIRECTIVE_PREFIX[self.backend]
        for line in self.options.directives:
            if line.lstrip().startswith("#"):
                raise ValueError(
                    f"directive {line!r} starts with '#': write it without the "
                    f"{prefix or 'comment'} prefix, the backend adds it"
                )
            if self.backend == "local":
                raise ValueError("the local backend takes no directives; remove options.directives")
        return self

    def limits(self) -> QueueLimits:
        """The part of this queue the sizing policy uses."""
        return QueueLimits(
            name=self.name,
            pilot_cores=self.ad.cores,
            sched_min=self.sched_min,
            sched_max=self.sched_max,
            wait_new=self.wait_new,
        )


def _without_attributes(ad: PilotAd) -> PilotAd:
    return ad.model_copy(update={"attributes": {}})


def slot_attributes(queue: QueueConfig) -> dict[str, Any]:
    """The ClassAd attributes a fresh pilot of ``queue`` will publish, known before it exists.

    The names and units are the agent's (``pilotwms.agent.glue``): native names (``Cpus``,
    ``Memory``, ``Tags``...) and the GLUE 1.3 names gLite JDLs use (``other.GlueCEInfoTotalCPUs
    >= 4``, ``Member("X", other.GlueHostApplicationSoftwareRunTimeEnvironment)``), with GLUE
    policy times in minutes. What only the node knows (host name, OS, CPU model) is absent, so a
    Requirements clause on it is UNDEFINED and does not match; ``ad.attributes`` states such
    facts for a queue whose nodes are known (``OpSys = "LINUX"``).
    """
    ad = queue.ad
    time_left = queue.max_runtime or ad.walltime_s
    minutes = time_left // 60
    tags = list(ad.tags)
    attributes: dict[str, Any] = {
        "Cpus": ad.cores,
        "Memory": ad.memory_mb,
        "GPUs": ad.gpus,
        "Site": ad.site,
        "Queue": queue.name,
        "Tags": tags,
        "BatchSystem": _LRMS_TYPE[queue.backend],
        "FreeCpus": ad.cores,
        "FreeMemory": ad.memory_mb,
        "RunningJobs": 0,
        "TimeLeft": time_left,
        "PilotState": "running",
        "GlueCEUniqueID": f"{queue.backend}:pilotwms/{ad.site}-{queue.name}",
        "GlueCEName": queue.name,
        "GlueCEInfoLRMSType": _LRMS_TYPE[queue.backend],
        "GlueCEInfoTotalCPUs": ad.cores,
        "GlueCEImplementationName": "pilotwms",
        "GlueCEPolicyMaxTotalJobs": ad.cores,
        "GlueCEPolicyMaxRunningJobs": ad.cores,
        "GlueHostArchitectureSMPSize": ad.cores,
        "GlueHostMainMemoryRAMSize": ad.memory_mb,
        "GlueHostMainMemoryVirtualSize": ad.memory_mb,
        "GlueHostApplicationSoftwareRunTimeEnvironment": tags,
        "GlueSubClusterLogicalCPUs": ad.cores,
        "GlueSiteName": ad.site,
        "GlueCEStateFreeCPUs": ad.cores,
        "GlueCEStateFreeJobSlots": ad.cores,
        "GlueCEStateRunningJobs": 0,
        "GlueCEStateWaitingJobs": 0,
        "GlueCEStateTotalJobs": 0,
        "GlueCEStateEstimatedResponseTime": 0,
        "GlueCEStateWorstResponseTime": 0,
        "GlueCEPolicyMaxWallClockTime": minutes,
        "GlueCEPolicyMaxCPUTime": minutes * ad.cores,
        "GlueCEPolicyMaxObtainableWallClockTime": minutes,
        "GlueCEStateStatus": "Production",
    }
    attributes.update(ad.attributes)
    return attributes


class FactorySettings(BaseSettings):
    """Settings of the factory daemon: the ``[factory]`` table, overridden by environment
    variables ``PILOTWMS_FACTORY_<FIELD>`` (so a deployment can change the server URL or the
    state directory without editing the file)."""

    model_config = SettingsConfigDict(env_prefix="PILOTWMS_FACTORY_", extra="forbid")

    server_url: str = Field(
        "http://127.0.0.1:8080", description="the pilotwms server the pilots connect to"
    )
    state_dir: Path = Field(
        Path("~/.pilotwms/factory"),
        description="where pilot scripts and per-pilot logs are kept (one folder per queue)",
    )
    token_file: Path | None = Field(
        None,
        description="file holding the factory's admin token for the server "
        "(or PILOTWMS_FACTORY_TOKEN; 'pilotwms admin token create USER --role admin')",
    )
    keep_logs_h: float = Field(
        168.0, gt=0, description="hours the logs of ended pilots are kept (lgipilot KeepJobs)"
    )
    name: str = Field(
        "",
        description="this factory's name in the server's pilot records (default: the host name)",
    )

    @field_validator("server_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not re.match(r"^https?://[^\s/]+", value):
            raise ValueError(f"{value!r} is not an http(s) URL, e.g. 'https://wms.example.org'")
        return value.rstrip("/")

    @field_validator("state_dir")
    @classmethod
    def _expand(cls, value: Path) -> Path:
        return value.expanduser()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The environment wins over the file's [factory] table (passed as init arguments).
        return env_settings, init_settings

    def queue_dir(self, queue: str) -> Path:
        """The folder of one queue's pilot scripts and logs."""
        return self.state_dir / "queues" / queue


def pilot_context(
    queue: QueueConfig,
    settings: FactorySettings,
    token: str,
    agent_url: str | None = None,
    warm: bool = False,
) -> PilotScriptContext:
    """What the backend of ``queue`` needs to write its pilot script.

    The agent is, in order: the queue's ``options.agent`` (a path on the worker nodes or a URL),
    ``agent_url`` (the server's zipapp, fetched by the pilot), or -- for the local backend only --
    the installed package. A ``warm`` (keep-warm, ``sched_min``) pilot gets no idle timeout:
    the agent's ``--wait-term 0``.
    """
    agent = queue.options.agent or (None if queue.backend == "local" else agent_url)
    return PilotScriptContext(
        server_url=settings.server_url,
        token=token,
        queue=queue.name,
        site=queue.ad.site,
        wait_term=0 if warm else queue.wait_term,
        max_runtime=queue.max_runtime,
        log_dir=settings.queue_dir(queue.name),
        cores=queue.ad.cores,
        memory_mb=queue.ad.memory_mb,
        walltime_s=queue.ad.walltime_s,
        gpus=queue.ad.gpus,
        tags=queue.ad.tags,
        python=queue.options.python,
        agent=agent,
        environment=dict(queue.options.environment),
        partition=queue.options.partition,
        account=queue.options.account,
        directives=queue.options.directives,
    )


class FactoryConfig(BaseModel):
    """A validated factory file: the settings and the queues in file order."""

    model_config = ConfigDict(frozen=True)

    settings: FactorySettings
    queues: tuple[QueueConfig, ...]
    source: str = "<factory config>"

    def queue(self, name: str) -> QueueConfig:
        for queue in self.queues:
            if queue.name == name:
                return queue
        known = ", ".join(q.name for q in self.queues) or "none"
        raise KeyError(f"no queue {name!r} in {self.source} (queues: {known})")


class FactoryConfigError(ConfigurationError):
    """A factory file that cannot work; ``problems`` lists every finding with where and how."""

    title = "Invalid factory configuration"

    def __init__(self, source: str, problems: list[str]) -> None:
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(
            f"{source}: {len(problems)} problem(s) in the factory configuration:\n{lines}"
        )
        self.source = source
        self.problems = problems

    def extra(self) -> dict[str, Any]:
        return {"source": self.source, "problems": self.problems}


_FIELDS_OF: dict[str, type[BaseModel]] = {
    "queue": QueueConfig,
    "ad": PilotAd,
    "options": BackendOptions,
    "rate_limit": SubmitRateLimit,
    "factory": FactorySettings,
}


def _hint(kind: str, loc: tuple[str, ...], model_name: str) -> str:
    field = loc[-1] if loc else ""
    if kind == "extra_forbidden":
        known = list(_FIELDS_OF[model_name].model_fields)
        if model_name == "queue":
            known.remove("name")
        close = difflib.get_close_matches(field, known, n=1)
        guess = f"did you mean '{close[0]}'? " if close else ""
        return f"unknown field; {guess}known fields: {', '.join(known)}"
    if kind == "missing":
        return "this field is required; add it"
    if kind == "literal_error" and field == "backend":
        return f"use one of: {', '.join(BACKEND_NAMES)}"
    return ""


def _problems(error: ValidationError, where: str, model_name: str) -> list[str]:
    out = []
    for item in error.errors():
        loc = tuple(str(part) for part in item["loc"])
        inner = model_name
        for part in loc[:-1]:
            if part in _FIELDS_OF:
                inner = part
        message = str(item["msg"]).removeprefix("Value error, ")
        hint = _hint(item["type"], loc, inner)
        text = f"{where}: field '{'.'.join(loc)}': {message}" if loc else f"{where}: {message}"
        if hint:
            text += f" ({hint})"
        out.append(text)
    return out


def parse_factory_config(
    data: Mapping[str, Any], source: str = "<factory config>"
) -> FactoryConfig:
    """Validate an already-parsed factory file; raises ``FactoryConfigError`` with every problem."""
    problems: list[str] = []
    for key in data:
        if key not in ("factory", "queues"):
            close = difflib.get_close_matches(key, ["factory", "queues"], n=1)
            guess = f"; did you mean [{close[0]}]?" if close else ""
            problems.append(
                f"top level: unknown table [{key}] (use [factory] and [queues.NAME]{guess})"
            )
    settings: FactorySettings | None = None
    try:
        settings = FactorySettings(**dict(data.get("factory", {})))
    except ValidationError as exc:
        problems.extend(_problems(exc, "[factory]", "factory"))
    raw_queues = data.get("queues", {})
    queues: list[QueueConfig] = []
    if not isinstance(raw_queues, Mapping) or not raw_queues:
        problems.append(
            "no queues: add at least one [queues.NAME] table with a backend, e.g. "
            '[queues.local] backend = "local"'
        )
        raw_queues = {}
    for name, table in raw_queues.items():
        where = f"queue '{name}'"
        if not isinstance(table, Mapping):
            problems.append(f"{where}: expected a table [queues.{name}], found a value")
            continue
        if "name" in table:
            problems.append(
                f"{where}: field 'name': the table key is the queue's name; remove 'name'"
            )
            continue
        try:
            queues.append(QueueConfig(name=name, **dict(table)))
        except ValidationError as exc:
            problems.extend(_problems(exc, where, "queue"))
    if problems or settings is None:
        raise FactoryConfigError(source, problems)
    return FactoryConfig(settings=settings, queues=tuple(queues), source=source)


def load_factory_config(path: str | Path) -> FactoryConfig:
    """Read and validate a factory TOML file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise FactoryConfigError(str(path), [f"cannot read the file: {exc.strerror}"]) from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise FactoryConfigError(str(path), [f"not valid TOML: {exc}"]) from exc
    return parse_factory_config(data, source=str(path))
