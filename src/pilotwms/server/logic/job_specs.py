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

import shlex
from collections.abc import Sequence
from typing import Any

from pilotwms.classad import ERROR, UNDEFINED, ClassAd, parse_ad

_NO_VALUE = (UNDEFINED, ERROR)


def split_arguments(text: str) -> list[str]:
    """``Arguments`` as the words the executable receives (see the module docstring)."""
    try:
        return shlex.split(text, posix=True)
    except ValueError:
        return [text] if text else []


def _string(ad: ClassAd, name: str) -> str | None:
    if name not in ad:
        return None
    value = ad.evaluate(name)
    return value if isinstance(value, str) and value != "" else None


def _strings(ad: ClassAd, name: str) -> list[str]:
    if name not in ad:
        return []
    value = ad.evaluate(name)
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


def _script(ad: ClassAd, name: str) -> dict[str, Any] | None:
    path = _string(ad, name)
    if path is None:
        return None
    return {"path": path, "arguments": split_arguments(_string(ad, f"{name}Arguments") or "")}


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
    ad = parse_ad(jdl)
    outputs = [o for o in _strings(ad, "OutputSandbox") if o]
    perusal = ad.evaluate("PerusalFileEnable") if "PerusalFileEnable" in ad else False
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
        "executable": _string(ad, "Executable") or "",
        "arguments": split_arguments(_string(ad, "Arguments") or ""),
        "environment": _environment(_strings(ad, "Environment")),
        "stdin": _string(ad, "StdInput"),
        "stdout": _string(ad, "StdOutput"),
        "stderr": _string(ad, "StdError"),
        "prologue": _script(ad, "Prologue"),
        "epilogue": _script(ad, "Epilogue"),
        "input_sandbox": sandbox,
        "output_sandbox": outputs,
        "output_destinations": _destinations(outputs, _strings(ad, "OutputSandboxDestURI")),
        "output_base_uri": _string(ad, "OutputSandboxBaseDestURI"),
        "max_wall_time_s": wall_time_s,
        "max_memory_mb": memory_mb,
        "perusal": perusal is True,
    }
    return spec


__all__ = ["build_job_spec", "split_arguments"]
