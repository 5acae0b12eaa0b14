"""Job specs: a matched job's JDL turned into what the pilot agent runs.

A pilot never sees JDL (``docs/pilot-protocol.md``): the server reads the job's expanded JDL
(defaults applied, stored at submission) and its input rows and writes a plain JSON object.

Rules, gLite's where gLite has one:

* ``Arguments`` is one string that gLite's job wrapper puts on a ``/bin/sh`` command line after
  the executable. It is split here with :func:`shlex.split` (POSIX rules): blanks separate
  words, single quotes keep everything literally, double quotes keep blanks and let ``\\"`` and
  ``\\\\`` through, a backslash outside quotes escapes the next character. What a shell would
  do beyond splitting (``$VAR`` expansion, globs, ``;``, pipes, redirections) is not done: the
  words reach the executable as written. An Arguments string that does not split (an unclosed
  quote) is passed as one word.
* ``Environment`` entries are ``NAME=value``, split at the first ``=``.
* ``OutputSandboxDestURI`` pairs with ``OutputSandbox`` by position; entries that are not URIs
  (no ``scheme://``) mean "to the server" and are left out. ``OutputSandboxBaseDestURI`` is
  the directory for every other file.
* ``Prologue``/``Epilogue`` with ``PrologueArguments``/``EpilogueArguments``, split like
  ``Arguments``.
* Cores, whole node, memory and wall time come from the job row (submission derived them from
  ``CpuNumber``/``SMPGranularity``/``WholeNodes``, ``Memory`` and ``MaxWallTime``); the memory
  request is also the limit the agent enforces.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping, Sequence
from typing import Any

from pilotwms.classad import ClassAd, parse_ad


def split_arguments(text: str) -> list[str]:
    """``Arguments`` as the words the executable receives (see the module docstring)."""
    if _PLAIN.fullmatch(text):  # no quote, escape or odd blank: what shlex would do, quicker
        return text.split()
    try:
        return shlex.split(text, posix=True)
    except ValueError:
        return [text] if text else []


#: Words of anything but quotes, backslashes and blanks, separated by shlex's own blanks.
_PLAIN = re.compile(r"[^'\"\\\s]*(?:[ \t\r\n]+[^'\"\\\s]*)*")

#: The JDL attributes a job spec reads (lower case).
_SPEC_ATTRIBUTES = frozenset(
    name.lower()
    for name in (
        "Executable",
        "Arguments",
        "Environment",
        "StdInput",
        "StdOutput",
        "StdError",
        "Prologue",
        "PrologueArguments",
        "Epilogue",
        "EpilogueArguments",
        "OutputSandbox",
        "OutputSandboxDestURI",
        "OutputSandboxBaseDestURI",
        "PerusalFileEnable",
    )
)


def _spec_values(ad: ClassAd) -> dict[str, Any]:
    """The spec attributes ``ad`` has, evaluated once each, by lower-case name: a JDL sets a
    few of them, and looking each of the others up costs more than the evaluations."""
    values: dict[str, Any] = {}
    for name in ad:
        lname = name.lower()
        if lname in _SPEC_ATTRIBUTES:
            values[lname] = ad.evaluate(name)
    return values


def _string(values: Mapping[str, Any], name: str) -> str | None:
    value = values.get(name)
    return value if isinstance(value, str) and value != "" else None


def _strings(values: Mapping[str, Any], name: str) -> list[str]:
    value = values.get(name)
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [v if isinstance(v, str) else "" for v in value]
    return []


def _environment(entries: Sequence[str]) -> dict[str, str]:
    env: dict[str, str] = {}
    for entry in entries:
        name, sep, value = entry.partition("=")
        if sep and name:
            env[name] = value
    return env


def _script(values: Mapping[str, Any], name: str) -> dict[str, Any] | None:
    path = _string(values, name)
    if path is None:
        return None
    return {"path": path, "arguments": split_arguments(_string(values, f"{name}arguments") or "")}


def _destinations(outputs: list[str], uris: list[str]) -> dict[str, str]:
    return {name: uri for name, uri in zip(outputs, uris, strict=False) if name and "://" in uri}


def build_job_spec(
    *,
    job_id: int,
    attempt: int,
    jdl: str,
    cpus: int,
    whole_node: bool,
    memory_mb: int | None,
    wall_time_s: int | None,
    inputs: Sequence[tuple[str, str | None, str | None, int | None]],
) -> dict[str, Any]:
    """The job spec of one attempt. ``inputs`` are ``(name, digest, uri, size)`` rows of the
    job's input sandbox (a blob of the store, or a URI the pilot fetches itself)."""
    values = _spec_values(parse_ad(jdl))
    outputs = [o for o in _strings(values, "outputsandbox") if o]
    perusal = values.get("perusalfileenable", False)
    sandbox: list[dict[str, Any]] = []
    for name, digest, uri, size in inputs:
        if digest is not None:
            entry: dict[str, Any] = {"name": name, "digest": digest}
            if size is not None:
                entry["size"] = size
            sandbox.append(entry)
        elif uri is not None:
            sandbox.append({"name": name, "url": uri})
    spec: dict[str, Any] = {
        "job_id": str(job_id),
        "attempt": attempt,
        "cores": max(1, cpus),
        "whole_node": whole_node,
        "memory_mb": memory_mb or 0,
        "executable": _string(values, "executable") or "",
        "arguments": split_arguments(_string(values, "arguments") or ""),
        "environment": _environment(_strings(values, "environment")),
        "stdin": _string(values, "stdinput"),
        "stdout": _string(values, "stdoutput"),
        "stderr": _string(values, "stderror"),
        "prologue": _script(values, "prologue"),
        "epilogue": _script(values, "epilogue"),
        "input_sandbox": sandbox,
        "output_sandbox": outputs,
        "output_destinations": _destinations(outputs, _strings(values, "outputsandboxdesturi")),
        "output_base_uri": _string(values, "outputsandboxbasedesturi"),
        "max_wall_time_s": wall_time_s,
        "max_memory_mb": memory_mb,
        "perusal": perusal is True,
    }
    return spec


__all__ = ["build_job_spec", "split_arguments"]
