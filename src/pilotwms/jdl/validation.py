"""Validating a JDL against gLite's rules, reporting every problem at once.

The rules are those of gLite's JDL library and WMProxy (``JobAd::checkSemantic``,
``checkJobType``, ``JdlAttributeList::check*``, ``AdConverter::bulk2dag``, ``DAGAd``), applied as
WMProxy applies them on the server side, where a bare Executable must be a file of the
InputSandbox. Every problem carries the attribute, where it is written and a hint saying how to
fix it. Unknown attributes are allowed, as in gLite; one that looks like a misspelling of a known
attribute gets a warning.

DIRAC dialect. Files written for DIRAC (``dirac-wms-job-submit``; corpus 070-080) are JDL files
gLite's parser accepts, but DIRAC reads them differently: unquoted words are strings
(``StdOutput = std.out;``), a bare Executable may be a command on the worker's PATH
(``dirac-jobexec``), ``InputData`` holds ``LFN:`` paths without ``DataAccessProtocol``,
``OutputData`` is a list of file names, and ``Parameters`` without ``JobType = "Parametric"``
makes a DIRAC parametric job with ``%s``/``%n`` placeholders. A JDL is taken as DIRAC's when it
uses an attribute only DIRAC defines (JobName, JobGroup, CPUTime, Site, Tags, Platform, Priority,
Owner, ...; ``dialect="auto"``). Those gLite rules then become warnings, so such a file
validates; it runs as one gLite job (pilotwms does not expand DIRAC's placeholders), and the
warnings say so. ``dialect="glite"`` or ``"dirac"`` forces the reading.
"""

from __future__ import annotations

from pilotwms.classad import ClassAd
from pilotwms.jdl import dag as dagmod
from pilotwms.jdl.attributes import check_attributes
from pilotwms.jdl.defaults import job_types, request_type
from pilotwms.jdl.errors import JDLExpansionError, JDLValidationError
from pilotwms.jdl.expansion import collection_members, dag_node_ad, node_name_of
from pilotwms.jdl.inheritance import inherit, resolve_root_sandbox
from pilotwms.jdl.problems import Collector, Problem, ValidationReport, Where, detect_dialect
from pilotwms.jdl.rules import check_job
from pilotwms.jdl.values import position, spelling, value_of


def _where_in(*ads: ClassAd) -> Where:
    def at(name: str) -> tuple[int, int]:
        for ad in ads:
            if name and name in ad:
                found = position(ad, name)
                if found != (0, 0):
                    return found
        return position(ads[-1], "nodes") if "nodes" in ads[-1] else (0, 0)

    return at


def _check_node(
    node: ClassAd, parent: ClassAd, name: str, out: Collector, nodes_record: ClassAd | None
) -> None:
    child = out.for_node(name)
    own = node.copy()
    try:
        resolve_root_sandbox(own, parent, node_name=name)
    except JDLExpansionError as exc:
        child.error("InputSandbox", (exc.line, exc.column), exc.message, "")
        return
    merged = inherit(own, parent, name=name, nodes_record=nodes_record)
    at = _where_in(node, parent)
    check_attributes(own, at, child)
    if request_type(node) != "job" or "parametric" in job_types(node):
        child.error(
            "Type",
            at("Type") if "Type" in node else at("JobType"),
            "nodes of a collection or DAG must be plain jobs",
            "describe the node as a normal job",
        )
        return
    check_job(merged, at, child, check_names=False)


def _check_collection(ad: ClassAd, out: Collector) -> None:
    try:
        members = collection_members(ad)
    except JDLExpansionError as exc:
        out.error("nodes", (exc.line, exc.column), exc.message, "")
        return
    seen: set[str] = set()
    for index, member in enumerate(members):
        name = node_name_of(member, index)
        if name in seen:
            out.error(
                "NodeName",
                position(member, "NodeName"),
                f"Duplicated NodeName({name})",
                "give every node a distinct NodeName",
            )
        seen.add(name)
        if "file" in member:
            if not isinstance(value_of(member, "file"), str):
                out.error("file", position(member, "file"), "file must be a string", "")
            continue
        _check_node(member, ad, name, out, None)


def _check_dag(ad: ClassAd, out: Collector) -> None:
    try:
        shape = dagmod.structure(ad)
    except dagmod.DependencyError as exc:
        out.error(
            "dependencies",
            (exc.line, exc.column),
            exc.message,
            "every dependency must name nodes defined in nodes, without cycles",
        )
        return
    if shape.max_nodes_running is not None and shape.max_nodes_running <= 0:
        out.error(
            "max_nodes_running",
            position(ad, "max_nodes_running"),
            "'max_nodes_running' has to be an integer > 0",
            "",
        )
    nodes_record = value_of(ad, "nodes")
    assert isinstance(nodes_record, ClassAd)
    if not shape.names:
        out.error("nodes", position(ad, "nodes"), "a DAG needs at least one node", "")
    for name in shape.names:
        try:
            node = dag_node_ad(nodes_record, name, None, load_files=False)
        except JDLExpansionError as exc:
            out.error(name, (exc.line, exc.column), exc.message, "")
            continue
        if node is not None:
            _check_node(node, ad, name, out, nodes_record)


def validate(ad: ClassAd, *, dialect: str = "auto") -> ValidationReport:
    """Check ``ad`` against gLite's rules and return every error and warning.

    Collections and DAGs are checked at their level and node by node (inline nodes, with what
    they inherit); nodes given as ``file = ...`` are read and checked by :func:`expand`.
    ``dialect`` is ``auto``, ``glite`` or ``dirac`` (see the module docstring).
    """
    chosen = detect_dialect(ad) if dialect == "auto" else dialect
    out = Collector(chosen)
    at = _where_in(ad)
    rtype_value = value_of(ad, "Type")
    rtype = request_type(ad)
    if "Type" in ad and isinstance(rtype_value, str) and rtype not in ("job", "dag", "collection"):
        out.error(
            spelling(ad, "Type"),
            at("Type"),
            f'Type = "{rtype_value}": expected "Job", "DAG" or "Collection"',
            'write Type = "Job"; (or remove it)',
        )
    if rtype in ("dag", "collection"):
        check_attributes(ad, at, out)
        if "nodes" not in ad:
            out.error(
                "nodes",
                at("Type"),
                f"a {rtype} needs nodes",
                "add nodes = { [ ... ], [ ... ] };"
                if rtype == "collection"
                else "add nodes = [ a = [ description = [ ... ] ]; ];",
            )
        elif rtype == "collection":
            _check_collection(ad, out)
        else:
            _check_dag(ad, out)
    else:
        check_job(ad, at, out)
    return ValidationReport(out.errors, out.warnings, chosen)


def check(ad: ClassAd, *, filename: str = "<jdl>", dialect: str = "auto") -> ValidationReport:
    """Validate ``ad``; raise :class:`JDLValidationError` with every error if there is one."""
    report = validate(ad, dialect=dialect)
    if report.errors:
        raise JDLValidationError(report.errors, filename)
    return report


__all__ = ["Problem", "ValidationReport", "check", "detect_dialect", "validate"]
