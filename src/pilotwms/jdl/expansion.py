"""Turning a JDL into the concrete jobs gLite would generate.

``expand(ad)`` gives an :class:`Expansion`: its ``kind`` (``job``, ``parametric``,
``collection`` or ``dag``), the original ``ad``, the ``nodes`` (each a concrete job: its name,
its JDL text with defaults applied, its parents) and the DAG ``edges``. A normal job expands to
one node named ``None``.

- Parametric jobs: see :mod:`pilotwms.jdl.parametric` (textual ``_PARAM_`` substitution, no
  parsing per node).
- Collections (``Type = "collection"``): ``nodes`` is a list of job records, or of
  ``[ file = "node.jdl" ]`` records naming a JDL file relative to ``base_dir`` (the directory of
  the parent JDL); other attributes of such a record override the file's. A node is named by its
  ``NodeName`` (sanitised) or ``Node_<index>``; names must be distinct. There are no edges.
- DAGs (``Type = "dag"``): ``nodes`` is a record of ``name = [ file = ... ]`` or
  ``name = [ description = [ ... ] ]``; dependencies and cycles as in :mod:`pilotwms.jdl.dag`.

Every node inherits from its parent as in :mod:`pilotwms.jdl.inheritance`, gets gLite's
defaults (:mod:`pilotwms.jdl.defaults`) and has its ``root.InputSandbox`` references resolved.
A node that is itself a parametric job, DAG or collection is refused: gLite's nodes are plain
jobs (``node_type = "edg-jdl"``).
"""

from __future__ import annotations

from pathlib import Path

from pilotwms.classad import ClassAd, unparse
from pilotwms.jdl import dag as dagmod
from pilotwms.jdl.defaults import Defaults, apply_defaults, job_types, request_type
from pilotwms.jdl.errors import JDLExpansionError, JDLSyntaxError
from pilotwms.jdl.inheritance import inherit, resolve_root_sandbox
from pilotwms.jdl.nodes import Expansion, Kind, Node
from pilotwms.jdl.parametric import MAX_NODES, expand_parametric, sanitise_node_name
from pilotwms.jdl.syntax import load_jdl
from pilotwms.jdl.values import position, string_of, value_of


def kind_of(ad: ClassAd) -> Kind:
    """Which of the four forms ``ad`` is."""
    rtype = request_type(ad)
    if rtype == "dag":
        return "dag"
    if rtype == "collection":
        return "collection"
    if "parametric" in job_types(ad):
        return "parametric"
    return "job"


def expand(
    ad: ClassAd,
    base_dir: str | Path | None = None,
    defaults: Defaults | None = None,
    *,
    max_nodes: int = MAX_NODES,
) -> Expansion:
    """Expand ``ad`` into concrete jobs with ``defaults`` applied (gLite's when ``None``).

    ``base_dir`` is where ``file = "..."`` node references are resolved (the directory of the
    JDL file). Without it no file is read at all, absolute paths included: a server expands with
    ``base_dir=None`` so that a JDL can never make it open one of its own files (the client
    inlines node files before submitting). A parametric job may give at most ``max_nodes``
    nodes; the count is checked before any node is made. Raises :class:`JDLExpansionError`
    naming the node, the file or the cycle at fault.
    """
    kind = kind_of(ad)
    if kind == "job":
        return Expansion("job", ad, [Node(None, unparse(apply_defaults(ad, defaults)))])
    if kind == "parametric":
        return Expansion("parametric", ad, expand_parametric(ad, defaults, max_nodes))
    if kind == "collection":
        return Expansion("collection", ad, _collection_nodes(ad, base_dir, defaults))
    return _expand_dag(ad, base_dir, defaults)


def _load_node_file(
    holder: ClassAd, name: str, base_dir: str | Path | None, *, what: str
) -> ClassAd:
    line, column = position(holder, "file")
    ref = string_of(holder, "file")
    if ref is None:
        raise JDLExpansionError(
            f'{what}: file must be a string naming a JDL file, e.g. file = "node.jdl"',
            node=name,
            line=line,
            column=column,
        )
    if base_dir is None:
        raise JDLExpansionError(
            f'{what}: file "{ref}" cannot be read: node files are read only on the submitting '
            "side (no base directory was given); describe the node inline instead",
            node=name,
            line=line,
            column=column,
        )
    path = Path(ref)
    if not path.is_absolute():
        path = Path(base_dir) / path
    if not path.is_file():
        raise JDLExpansionError(
            f'{what}: file "{ref}" not found (looked for {path})',
            node=name,
            line=line,
            column=column,
        )
    try:
        return load_jdl(path)
    except JDLSyntaxError as exc:
        raise JDLExpansionError(
            f"{what}: {exc.filename}:{exc.line}:{exc.column}: {exc.message}",
            node=name,
            line=line,
            column=column,
        ) from exc
    except OSError as exc:
        raise JDLExpansionError(
            f'{what}: cannot read file "{ref}": {exc.strerror}',
            node=name,
            line=line,
            column=column,
        ) from exc


def _refuse_compound(node: ClassAd, name: str) -> None:
    if kind_of(node) != "job":
        line, column = position(node, "Type" if "Type" in node else "JobType")
        raise JDLExpansionError(
            f"node {name} is itself a {kind_of(node)} job; nodes of a collection or DAG must "
            "be plain jobs",
            node=name,
            line=line,
            column=column,
        )


def _finish(
    node: ClassAd,
    parent: ClassAd,
    name: str,
    defaults: Defaults | None,
    nodes_record: ClassAd | None = None,
) -> str:
    _refuse_compound(node, name)
    merged = inherit(node, parent, name=name, nodes_record=nodes_record)
    resolve_root_sandbox(merged, parent, node_name=name)
    return unparse(apply_defaults(merged, defaults))


def collection_members(ad: ClassAd) -> list[ClassAd]:
    """The node records of a collection (raises when ``nodes`` is not a list of records)."""
    value = value_of(ad, "nodes")
    line, column = position(ad, "nodes")
    if not isinstance(value, list) or not value:
        raise JDLExpansionError(
            "a collection needs nodes = { [ ...job... ], [ ...job... ] } (a non-empty list)",
            line=line,
            column=column,
        )
    for index, item in enumerate(value):
        if not isinstance(item, ClassAd):
            raise JDLExpansionError(
                f"collection node {index} is not a record [ ... ]", line=line, column=column
            )
    return list(value)


def node_name_of(node: ClassAd, index: int) -> str:
    """gLite's ``list2nodes`` naming: NodeName (sanitised) or ``Node_<index>``."""
    value = value_of(node, "NodeName")
    if isinstance(value, str):
        return sanitise_node_name(value)
    return f"Node_{index}"


def _collection_nodes(
    ad: ClassAd, base_dir: str | Path | None, defaults: Defaults | None
) -> list[Node]:
    effective = apply_defaults(ad, defaults)
    nodes: list[Node] = []
    seen: set[str] = set()
    for index, member in enumerate(collection_members(ad)):
        node = member
        if "file" in member:
            loaded = _load_node_file(member, f"Node_{index}", base_dir, what=f"node {index}")
            for key in member:
                if str(key).lower() != "file":
                    expr = member.get(str(key))
                    if expr is not None:
                        loaded[str(key)] = expr
            node = loaded
        name = node_name_of(node, index)
        if name in seen:
            line, column = position(member, "NodeName")
            raise JDLExpansionError(
                f"Duplicated NodeName({name}): collection nodes need distinct names",
                node=name,
                line=line,
                column=column,
            )
        seen.add(name)
        node = node.copy()
        node["NodeName"] = name
        nodes.append(Node(name, _finish(node, effective, name, defaults)))
    return nodes


def dag_node_ad(
    nodes_record: ClassAd, name: str, base_dir: str | Path | None, *, load_files: bool = True
) -> ClassAd | None:
    """The job ad of DAG node ``name`` (``None`` for a file node when ``load_files`` is off)."""
    entry = value_of(nodes_record, name)
    line, column = position(nodes_record, name)
    if not isinstance(entry, ClassAd):
        raise JDLExpansionError(
            f"DAG node {name} must be a record [ file = ... ] or [ description = [ ... ] ]",
            node=name,
            line=line,
            column=column,
        )
    has_file, has_description = "file" in entry, "description" in entry
    if has_file == has_description:
        raise JDLExpansionError(
            f"DAG node {name} needs exactly one of file and description "
            f"({'both' if has_file else 'neither'} given)",
            node=name,
            line=line,
            column=column,
        )
    node_type = value_of(entry, "node_type")
    if "node_type" in entry and (not isinstance(node_type, str) or not node_type):
        raise JDLExpansionError(
            f"DAG node {name}: node_type must be a non-empty string",
            node=name,
            line=line,
            column=column,
        )
    if has_description:
        description = value_of(entry, "description")
        if not isinstance(description, ClassAd):
            dline, dcolumn = position(entry, "description")
            raise JDLExpansionError(
                f"DAG node {name}: description must be a record [ ... ]",
                node=name,
                line=dline,
                column=dcolumn,
            )
        return description
    if not load_files:
        return None
    return _load_node_file(entry, name, base_dir, what=f"DAG node {name}")


def _expand_dag(ad: ClassAd, base_dir: str | Path | None, defaults: Defaults | None) -> Expansion:
    try:
        shape = dagmod.structure(ad)
    except dagmod.DependencyError as exc:
        raise JDLExpansionError(exc.message, line=exc.line, column=exc.column) from None
    if not shape.names:
        line, column = position(ad, "nodes")
        raise JDLExpansionError("a DAG needs at least one node", line=line, column=column)
    if shape.max_nodes_running is not None and shape.max_nodes_running <= 0:
        line, column = position(ad, "max_nodes_running")
        raise JDLExpansionError(
            "'max_nodes_running' has to be an integer > 0", line=line, column=column
        )
    nodes_record = value_of(ad, "nodes")
    assert isinstance(nodes_record, ClassAd)
    effective = apply_defaults(ad, defaults)
    parents = dagmod.parents_of(shape.names, shape.edges)
    nodes: list[Node] = []
    for name in shape.names:
        node = dag_node_ad(nodes_record, name, base_dir)
        assert node is not None
        jdl = _finish(node, effective, name, defaults, nodes_record=nodes_record)
        nodes.append(Node(name, jdl, parents[name]))
    return Expansion("dag", ad, nodes, list(shape.edges), shape.max_nodes_running)


__all__ = ["Expansion", "Node", "expand", "kind_of"]
