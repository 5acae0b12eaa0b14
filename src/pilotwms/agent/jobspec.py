"""The job spec the server hands to a pilot, parsed and validated defensively.

A pilot never sees JDL: the server turns a matched job into this JSON object (see
``docs/pilot-protocol.md``). Anything wrong with it is collected into :class:`JobSpecError`, which
still carries the job id and attempt when they could be read, so the pilot reports the job as a
setup failure instead of crashing or silently dropping it.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from typing import Any, Dict, List, Mapping, Optional

_DIGEST = re.compile(r"^(?:sha256:)?([0-9a-f]{64})$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class JobSpecError(ValueError):
    """A job spec that cannot be run; ``problems`` lists every defect found."""

    def __init__(self, job_id: Optional[str], attempt: Optional[int], problems: List[str]):
        super().__init__(f"bad job spec for job {job_id!r}: " + "; ".join(problems))
        self.job_id = job_id
        self.attempt = attempt
        self.problems = problems


@dataclasses.dataclass(frozen=True)
class Script:
    """A prologue or epilogue: a path (absolute, or in the sandbox) and its arguments."""

    path: str
    arguments: List[str]


@dataclasses.dataclass(frozen=True)
class InputFile:
    """One input sandbox entry: a server blob (``digest``) or a URI (``url``)."""

    name: str
    digest: Optional[str] = None
    url: Optional[str] = None
    size: Optional[int] = None


@dataclasses.dataclass(frozen=True)
class JobSpec:
    """What one attempt of one job needs; field names follow the protocol document."""

    job_id: str
    attempt: int
    executable: str
    arguments: List[str]
    cores: int = 1
    whole_node: bool = False
    memory_mb: int = 0
    environment: Dict[str, str] = dataclasses.field(default_factory=dict)
    stdin: Optional[str] = None
    stdout: Optional[str] = None
    stderr: Optional[str] = None
    prologue: Optional[Script] = None
    epilogue: Optional[Script] = None
    input_sandbox: List[InputFile] = dataclasses.field(default_factory=list)
    output_sandbox: List[str] = dataclasses.field(default_factory=list)
    output_destinations: Dict[str, str] = dataclasses.field(default_factory=dict)
    output_base_uri: Optional[str] = None
    max_wall_time_s: Optional[float] = None
    max_memory_mb: Optional[int] = None
    perusal: bool = False

    @functools.cached_property
    def key(self) -> str:
        """``job_id/attempt``: unique among everything one pilot ever runs."""
        return f"{self.job_id}/{self.attempt}"


def safe_relative_name(name: str) -> Optional[str]:
    """Return why ``name`` is not a safe relative path inside a work directory, or None."""
    if not isinstance(name, str) or not name:
        return "empty name"
    if "\x00" in name:
        return "NUL byte in name"
    if name.startswith(("/", "\\")):
        return "absolute path"
    parts = name.replace("\\", "/").split("/")
    if any(part == ".." for part in parts):
        return "'..' in path"
    if all(part in ("", ".") for part in parts):
        return "names no file"
    return None


def normalise_digest(digest: str) -> Optional[str]:
    """The 64-hex sha256 digest, accepting an optional ``sha256:`` prefix; None if malformed."""
    match = _DIGEST.match(digest.strip().lower()) if isinstance(digest, str) else None
    return match.group(1) if match else None


class _Reader:
    """Collects problems while reading fields, so one pass reports every defect."""

    def __init__(self, raw: Mapping[str, Any]):
        self.raw = raw
        self.problems: List[str] = []

    def text(self, key: str, *, required: bool = False) -> Optional[str]:
        value = self.raw.get(key)
        if value is None or value == "":
            if required:
                self.problems.append(f"{key} is required")
            return None
        if not isinstance(value, str):
            self.problems.append(f"{key} must be a string")
            return None
        return value

    def number(self, key: str, *, integer: bool = False, minimum: float = 0) -> Optional[float]:
        value = self.raw.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.problems.append(f"{key} must be a number")
            return None
        if integer and int(value) != value:
            self.problems.append(f"{key} must be an integer")
            return None
        if value < minimum:
            self.problems.append(f"{key} must be at least {minimum}")
            return None
        return value

    def strings(self, key: str) -> List[str]:
        value = self.raw.get(key)
        if value is None:
            return []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.problems.append(f"{key} must be a list of strings")
            return []
        return list(value)

    def mapping(self, key: str) -> Dict[str, str]:
        value = self.raw.get(key)
        if value is None:
            return {}
        if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        ):
            self.problems.append(f"{key} must be an object of strings")
            return {}
        return dict(value)

    def script(self, key: str) -> Optional[Script]:
        value = self.raw.get(key)
        if value is None:
            return None
        if isinstance(value, str):
            value = {"path": value}
        if not isinstance(value, dict) or not isinstance(value.get("path"), str):
            self.problems.append(f"{key} must be {{path, arguments}}")
            return None
        arguments = value.get("arguments") or []
        if not isinstance(arguments, list) or not all(isinstance(a, str) for a in arguments):
            self.problems.append(f"{key}.arguments must be a list of strings")
            return None
        return Script(path=value["path"], arguments=list(arguments))

    def stream(self, key: str) -> Optional[str]:
        name = self.text(key)
        if name is not None:
            why = safe_relative_name(name)
            if why:
                self.problems.append(f"{key} {name!r}: {why}")
                return None
        return name


def _input_file(entry: Any, index: int, problems: List[str]) -> Optional[InputFile]:
    where = f"input_sandbox[{index}]"
    if not isinstance(entry, dict):
        problems.append(f"{where} must be an object")
        return None
    name = entry.get("name")
    why = safe_relative_name(name) if isinstance(name, str) else "name must be a string"
    if why or not isinstance(name, str):
        problems.append(f"{where} name {name!r}: {why}")
        return None
    digest, url = entry.get("digest"), entry.get("url")
    size = entry.get("size")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
        problems.append(f"{where} size must be a non-negative integer")
        return None
    if digest is not None:
        norm = normalise_digest(digest)
        if norm is None:
            problems.append(f"{where} digest {digest!r} is not a sha256 hex digest")
            return None
        return InputFile(name=name, digest=norm, size=size)
    if isinstance(url, str) and url.split(":", 1)[0].lower() in ("http", "https", "file"):
        return InputFile(name=name, url=url, size=size)
    problems.append(f"{where} needs a digest or an http(s)/file url")
    return None


def parse_job_spec(raw: Any) -> JobSpec:
    """Validate ``raw`` (decoded JSON) and return a :class:`JobSpec`.

    Raises :class:`JobSpecError` listing every problem; its ``job_id``/``attempt`` are set when
    they themselves were readable, so the failure can still be reported against the attempt.
    """
    if not isinstance(raw, dict):
        raise JobSpecError(None, None, ["job spec must be a JSON object"])
    r = _Reader(raw)
    job_id_raw = raw.get("job_id")
    job_id = str(job_id_raw) if isinstance(job_id_raw, (str, int)) and job_id_raw != "" else None
    if job_id is None:
        r.problems.append("job_id is required")
    attempt_value = r.number("attempt", integer=True, minimum=0)
    if attempt_value is None and "attempt" not in raw:
        r.problems.append("attempt is required")
    attempt = int(attempt_value) if attempt_value is not None else None

    executable = r.text("executable", required=True)
    arguments = r.strings("arguments")
    cores = r.number("cores", integer=True, minimum=1)
    whole_node = raw.get("whole_node", False)
    if not isinstance(whole_node, bool):
        r.problems.append("whole_node must be true or false")
        whole_node = False
    memory_mb = r.number("memory_mb", integer=True)
    environment = r.mapping("environment")
    for name in environment:
        if not _ENV_NAME.match(name):
            r.problems.append(f"environment name {name!r} is not a valid variable name")
    stdin, stdout, stderr = r.stream("stdin"), r.stream("stdout"), r.stream("stderr")
    prologue, epilogue = r.script("prologue"), r.script("epilogue")

    inputs: List[InputFile] = []
    sandbox = raw.get("input_sandbox") or []
    if not isinstance(sandbox, list):
        r.problems.append("input_sandbox must be a list")
        sandbox = []
    for index, entry in enumerate(sandbox):
        parsed = _input_file(entry, index, r.problems)
        if parsed is not None:
            inputs.append(parsed)
    names = [f.name for f in inputs]
    if len(set(names)) != len(names):
        r.problems.append("input_sandbox names must be unique")

    outputs = r.strings("output_sandbox")
    for pattern in outputs:
        why = safe_relative_name(pattern)
        if why:
            r.problems.append(f"output_sandbox pattern {pattern!r}: {why}")
    destinations = r.mapping("output_destinations")
    base_uri = r.text("output_base_uri")
    wall = r.number("max_wall_time_s", minimum=1)
    max_mem = r.number("max_memory_mb", integer=True, minimum=1)
    perusal = raw.get("perusal", False)

    if r.problems or job_id is None or attempt is None or executable is None:
        raise JobSpecError(job_id, attempt, r.problems)
    return JobSpec(
        job_id=job_id,
        attempt=attempt,
        executable=executable,
        arguments=arguments,
        cores=int(cores) if cores is not None else 1,
        whole_node=whole_node,
        memory_mb=int(memory_mb) if memory_mb is not None else 0,
        environment=environment,
        stdin=stdin,
        stdout=stdout,
        stderr=stderr,
        prologue=prologue,
        epilogue=epilogue,
        input_sandbox=inputs,
        output_sandbox=outputs,
        output_destinations=destinations,
        output_base_uri=base_uri,
        max_wall_time_s=float(wall) if wall is not None else None,
        max_memory_mb=int(max_mem) if max_mem is not None else None,
        perusal=bool(perusal),
    )
