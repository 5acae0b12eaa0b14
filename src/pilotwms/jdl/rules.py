"""Rules on a whole job: how its attributes relate (gLite's ``JobAd::checkSemantic``).

Mandatory Executable; Executable, StdInput, Prologue and Epilogue either absolute (``/``, ``$``)
or files of the InputSandbox (not checked for parametric jobs, whose names vary); StdOutput and
StdError with one file name only if one path; PrologueArguments/EpilogueArguments need their
script; distinct file names in each sandbox; OutputSandboxDestURI one per OutputSandbox entry,
not with wildcards, not with OutputSandboxBaseDestURI; InputData xor DataRequirements, either
needing DataAccessProtocol; JobType values (checkpointable and partitionable deprecated, one type
only); ListenerPort for interactive jobs only; SMPGranularity with HostNumber only for
WholeNodes; the parametric attributes.
"""

from __future__ import annotations

import re

from pilotwms.classad import ClassAd
from pilotwms.jdl.attributes import check_attributes
from pilotwms.jdl.errors import JDLExpansionError
from pilotwms.jdl.parametric import PLACEHOLDER, STATIC_ATTRIBUTES, parameter_values
from pilotwms.jdl.problems import Collector, Where
from pilotwms.jdl.values import (
    int_of,
    leaf,
    spelling,
    string_of,
    strings_of,
    text_of,
    value_of,
)

JOBTYPE_VALUES = ("normal", "mpich", "parametric", "interactive")
DEPRECATED_JOBTYPES = {
    "checkpointable": "Checkpointable jobs have been deprecated!",
    "partitionable": "Partitionable jobs have been deprecated!",
}
_DATA_ACCESS_COST = re.compile(r"other\s*\.\s*DataAccessCost", re.IGNORECASE)


def _is_absolute(path: str) -> bool:
    """gLite's ``isAbsolutePath``: ``/...``, ``$VAR...`` or a Windows drive."""
    return path.startswith(("/", "$", "\\")) or (len(path) > 2 and path[1:3] == ":\\")


def _sandbox_leaves(ad: ClassAd) -> list[str] | None:
    """Leaves of the InputSandbox entries; ``None`` when they cannot be known statically."""
    value = value_of(ad, "InputSandbox")
    if "InputSandbox" not in ad:
        return []
    strings = strings_of(value)
    if strings is None:
        return None
    return [leaf(s) for s in strings]


def _check_file_attribute(
    ad: ClassAd, attr: str, at: Where, out: Collector, *, parametric: bool
) -> None:
    path = string_of(ad, attr)
    if path is None or not path:
        return
    shown = spelling(ad, attr)
    where = at(attr)
    if _is_absolute(path):
        return
    if "/" in path and attr == "Executable":
        out.error(
            shown,
            where,
            f'{shown} = "{path}": a relative path is not allowed',
            f'use an absolute path on the worker node, or put "{path}" in InputSandbox and '
            f'write {shown} = "{leaf(path)}";',
        )
        return
    if parametric:
        return
    leaves = _sandbox_leaves(ad)
    if leaves is None or ("InputSandboxBaseURI" in ad and not leaves):
        return
    if leaf(path) not in leaves:
        out.soft(
            shown,
            where,
            f'{shown} = "{path}" is neither an absolute path nor a file of the InputSandbox',
            f'add "{path}" to InputSandbox, or give the absolute path on the worker node',
        )


def _check_sandboxes(ad: ClassAd, at: Where, out: Collector) -> None:
    isb = strings_of(value_of(ad, "InputSandbox"))
    if isb:
        seen: dict[str, str] = {}
        for entry in isb:
            name = leaf(entry)
            if name and name in seen and seen[name] != entry:
                out.error(
                    spelling(ad, "InputSandbox"),
                    at("InputSandbox"),
                    f'InputSandbox: "{seen[name]}" and "{entry}" have the same file name "{name}"',
                    "rename one of them: the files land in the same directory",
                )
            seen.setdefault(name, entry)
    osb = strings_of(value_of(ad, "OutputSandbox"))
    if osb is None:
        osb = []
    names: set[str] = set()
    for entry in osb:
        if not entry.strip():
            out.warn(
                spelling(ad, "OutputSandbox"),
                at("OutputSandbox"),
                "OutputSandbox has an empty entry, which is ignored",
                'remove the "" entry',
            )
            continue
        name = leaf(entry)
        if name in names:
            out.error(
                spelling(ad, "OutputSandbox"),
                at("OutputSandbox"),
                f'OutputSandbox: file name "{name}" appears twice',
                "output files come back into one directory: give them distinct names",
            )
        names.add(name)
    if "OutputSandboxDestURI" in ad:
        dest = strings_of(value_of(ad, "OutputSandboxDestURI")) or []
        where = at("OutputSandboxDestURI")
        shown = spelling(ad, "OutputSandboxDestURI")
        if any(any(c in e for c in "*?[") for e in osb):
            out.error(
                shown,
                where,
                "OutputSandbox (with WildCards), OutputSandboxDestURI: a destination per file "
                "cannot be given when OutputSandbox has wildcards",
                "use OutputSandboxBaseDestURI instead",
            )
        elif len(dest) != len(osb):
            out.error(
                shown,
                where,
                f"OutputSandbox and OutputSandboxDestURI cardinalities are different "
                f"({len(osb)} files, {len(dest)} destinations)",
                "give exactly one destination URI per OutputSandbox entry",
            )
        if "OutputSandboxBaseDestURI" in ad:
            out.error(
                shown,
                where,
                "OutputSandboxDestURI and OutputSandboxBaseDestURI cannot both be given",
                "keep one of them",
            )


def _check_streams(ad: ClassAd, at: Where, out: Collector) -> None:
    stdout, stderr = string_of(ad, "StdOutput"), string_of(ad, "StdError")
    if stdout and stderr and leaf(stdout) == leaf(stderr) and stdout != stderr:
        out.error(
            spelling(ad, "StdError"),
            at("StdError"),
            "StdOutput,StdError: can have the same file name only if the absolute path is the same",
            f'write StdError = "{stdout}"; or choose another file name',
        )
    for script in ("Prologue", "Epilogue"):
        args = f"{script}Arguments"
        if args in ad and script not in ad:
            out.error(
                spelling(ad, args),
                at(args),
                f"{args} given without {script}",
                f"add {script} = ...; or remove {args}",
            )


def _check_data(ad: ClassAd, at: Where, out: Collector) -> None:
    has_id, has_dr = "InputData" in ad, "DataRequirements" in ad
    if has_id and has_dr:
        out.error(
            spelling(ad, "DataRequirements"),
            at("DataRequirements"),
            "InputData and DataRequirements cannot be given together",
            "move InputData into the DataRequirements record",
        )
    elif (has_id or has_dr) and "DataAccessProtocol" not in ad:
        attr = "InputData" if has_id else "DataRequirements"
        out.soft(
            spelling(ad, attr),
            at(attr),
            f"{attr} needs DataAccessProtocol",
            'add DataAccessProtocol = {"gsiftp"}; (the protocols the job reads data with)',
        )
    requirements = value_of(ad, "DataRequirements")
    records = [requirements] if isinstance(requirements, ClassAd) else requirements
    if isinstance(records, list):
        for record in records:
            if not isinstance(record, ClassAd):
                continue
            for needed in ("InputData", "DataCatalogType"):
                if needed not in record:
                    out.error(
                        spelling(ad, "DataRequirements"),
                        at("DataRequirements"),
                        f"DataRequirements: each record needs {needed}",
                        'e.g. [ InputData = {"lfn:/grid/vo/f"}; DataCatalogType = "DLI"; ]',
                    )
    output = value_of(ad, "OutputData")
    records = [output] if isinstance(output, ClassAd) else output
    if isinstance(records, list):
        for record in records:
            if not isinstance(record, ClassAd):
                continue
            if not isinstance(value_of(record, "OutputFile"), str):
                out.error(
                    spelling(ad, "OutputData"),
                    at("OutputData"),
                    "OutputData: each record needs OutputFile (a string)",
                    'e.g. [ OutputFile = "result.dat"; StorageElement = "se.example.org" ]',
                )
            lfn = value_of(record, "LogicalFileName")
            if "LogicalFileName" in record and (
                not isinstance(lfn, str) or not lfn.startswith("lfn:")
            ):
                out.error(
                    spelling(ad, "OutputData"),
                    at("OutputData"),
                    "OutputData: LogicalFileName must be lfn:<value>",
                    'e.g. LogicalFileName = "lfn:/grid/vo/result.dat"',
                )
    rank = text_of(ad, "Rank")
    if rank and _DATA_ACCESS_COST.search(rank):
        if not has_id or "DataAccessProtocol" not in ad:
            out.error(
                spelling(ad, "Rank"),
                at("Rank"),
                "a Rank on other.DataAccessCost needs InputData and DataAccessProtocol",
                "add both, or rank on something else",
            )
        elif rank.strip().lstrip("-").strip().lower() != "other.dataaccesscost":
            out.error(
                spelling(ad, "Rank"),
                at("Rank"),
                "DataAccessCost rank not alone: other.DataAccessCost must be the only term",
                "write Rank = other.DataAccessCost; or -other.DataAccessCost;",
            )


def _check_job_type(ad: ClassAd, at: Where, out: Collector) -> list[str]:
    if "JobType" not in ad:
        return ["normal"]
    value = value_of(ad, "JobType")
    values = strings_of(value)
    shown = spelling(ad, "JobType")
    where = at("JobType")
    if values is None:
        return ["normal"]
    lowered = [v.lower() for v in values]
    for v in lowered:
        if v in DEPRECATED_JOBTYPES:
            out.error(
                shown, where, f"{shown}: {DEPRECATED_JOBTYPES[v]}", f'remove "{v}" from {shown}'
            )
        elif v not in JOBTYPE_VALUES:
            out.soft(
                shown,
                where,
                f'{shown} = "{v}": expected MpiCh | Normal | Parametric | Interactive',
                'write JobType = "Normal";',
            )
    if "parametric" in lowered and "partitionable" in lowered:
        out.error(shown, where, "JobType PARAMETRIC & PARTITIONABLE cannot be combined", "")
    elif len(lowered) > 1:
        out.error(
            shown,
            where,
            f"{shown} = {text_of(ad, 'JobType')}: Composite Job Type not yet supported",
            "give one job type",
        )
    return lowered


def _check_parallel(ad: ClassAd, types: list[str], at: Where, out: Collector) -> None:
    if "ListenerPort" in ad and "interactive" not in types:
        out.error(
            spelling(ad, "ListenerPort"),
            at("ListenerPort"),
            "ListenerPort is only allowed for interactive jobs",
            'add JobType = "Interactive"; or remove ListenerPort',
        )
    whole = value_of(ad, "WholeNodes") is True
    if not whole and "SMPGranularity" in ad and "HostNumber" in ad:
        out.error(
            spelling(ad, "HostNumber"),
            at("HostNumber"),
            "SMPGranularity and HostNumber are mutually exclusive when WholeNodes allocation "
            "is not requested",
            "remove one of them, or add WholeNodes = true;",
        )
    hosts, cpus = int_of(ad, "HostNumber"), int_of(ad, "CpuNumber")
    if hosts is not None and cpus is not None and hosts > cpus:
        out.warn(
            spelling(ad, "HostNumber"),
            at("HostNumber"),
            f"HostNumber ({hosts}) should not exceed CpuNumber ({cpus})",
            "lower HostNumber",
        )


def _check_parametric(ad: ClassAd, types: list[str], at: Where, out: Collector) -> None:
    if "parametric" not in types:
        if "Parameters" in ad:
            if out.dialect == "dirac":
                out.warn(
                    spelling(ad, "Parameters"),
                    at("Parameters"),
                    'Parameters without JobType = "Parametric": a DIRAC parametric job; '
                    "pilotwms runs it as one job and does not expand %s/%n placeholders",
                    'for one job per value write JobType = "Parametric"; and use _PARAM_',
                )
            else:
                out.warn(
                    spelling(ad, "Parameters"),
                    at("Parameters"),
                    'Parameters is ignored: JobType is not "Parametric"',
                    'add JobType = "Parametric"; to run one job per parameter value',
                )
        return
    try:
        values = parameter_values(ad)
    except JDLExpansionError as exc:
        where = (exc.line, exc.column) if exc.line else at("JobType")
        out.error("Parameters", where, exc.message, "Parameters = 10; or Parameters = {...};")
        return
    start, step = int_of(ad, "ParameterStart"), int_of(ad, "ParameterStep")
    if step == 0:
        out.error(
            spelling(ad, "ParameterStep"),
            at("ParameterStep"),
            "ParameterStep must be different from zero",
            "use ParameterStep = 1; (or remove it)",
        )
    elif step is not None and step < 0:
        out.error(
            spelling(ad, "ParameterStep"),
            at("ParameterStep"),
            "ParameterStep cannot be negative",
            "",
        )
    if start is not None and start >= len(values):
        out.error(
            spelling(ad, "ParameterStart"),
            at("ParameterStart"),
            f"ParameterStart = {start} leaves no node: Parameters gives {len(values)} value(s)",
            "lower ParameterStart or raise Parameters",
        )
    for attr in STATIC_ATTRIBUTES:
        if attr in ad and PLACEHOLDER in text_of(ad, attr):
            out.warn(
                spelling(ad, attr),
                at(attr),
                f"{attr}: Found parametric value for non-parametric attribute",
                f"{attr} is the same for every node: remove {PLACEHOLDER} from it",
            )
    if not any(PLACEHOLDER in text_of(ad, str(k)) for k in ad):
        out.warn(
            spelling(ad, "Parameters"),
            at("Parameters"),
            f"no attribute uses {PLACEHOLDER}: every node is the same job",
            f"use {PLACEHOLDER} in Arguments or file names to vary the nodes",
        )


def check_job(ad: ClassAd, at: Where, out: Collector, *, check_names: bool = True) -> None:
    if check_names:
        check_attributes(ad, at, out)
    types = _check_job_type(ad, at, out)
    parametric = "parametric" in types
    if "Executable" not in ad:
        out.error(
            "Executable",
            at("") if out.node else (1, 1),
            "mandatory attribute Executable is missing",
            'add Executable = "/bin/hostname"; (an absolute path, or a script listed in '
            "InputSandbox)",
        )
    for attr in ("Executable", "StdInput", "Prologue", "Epilogue"):
        _check_file_attribute(ad, attr, at, out, parametric=parametric)
    _check_streams(ad, at, out)
    _check_sandboxes(ad, at, out)
    _check_data(ad, at, out)
    _check_parallel(ad, types, at, out)
    _check_parametric(ad, types, at, out)


__all__ = ["check_job"]
