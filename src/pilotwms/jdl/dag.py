"""The structure of a gLite DAG: its nodes, its dependencies and their cycles.

A DAG JDL has ``Type = "dag"`` and a ``nodes`` record whose entries are the nodes
(``nodeA = [ file = "a.jdl" ]`` or ``nodeA = [ description = [ ... ] ]``). ``dependencies`` may
sit inside ``nodes`` or beside it ("the attribute dependencies can be either inside nodes or
outside", gLite's ``DAGAd.cpp``) and lists ``{parent, child}`` pairs where either side may be a
list: ``{a, {b, c}}`` means a -> b and a -> c, ``{{a, b}, c}`` means a -> c and b -> c.

Node names in dependencies are written unquoted, so evaluating them would look them up (inside
``nodes`` they even resolve to the node records). The names are therefore read from the text of
the expression, never evaluated. Everything here is pure: no files are read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pilotwms.classad import ClassAd, unparse
from pilotwms.jdl.values import position, value_of

#: Entries of ``nodes`` that are not nodes (gLite's reserved DAG names and per-DAG retry counts).
RESERVED = frozenset(
    {
        "dependencies",
        "node_type",
        "node_retry_count",
        "max_running_nodes",
        "max_nodes_running",
        "nodes",
        "retrycount",
        "shallowretrycount",
    }
)
MAX_RUNNING_NAMES = ("max_nodes_running", "max_running_nodes")

_TOKEN = re.compile(
    r"""\s*(?:(?P<open>\{)|(?P<close>\})|(?P<comma>,)|"(?P<dq>(?:[^"\\]|\\.)*)"|'(?P<sq>(?:[^'\\]|\\.)*)'|(?P<word>[A-Za-z_][A-Za-z0-9_.]*))"""
)

Names = list[str]


class DependencyError(ValueError):
    """A dependency declaration gLite would refuse; ``line``/``column`` locate it."""

    def __init__(self, message: str, line: int = 0, column: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.column = column


@dataclass(frozen=True)
class DagStructure:
    """The node names in declaration order, the edges and ``max_nodes_running``."""

    names: list[str]
    edges: list[tuple[str, str]]
    max_nodes_running: int | None


def _parse_names(text: str) -> object:
    """Parse the text of a dependencies list into nested Python lists of names."""
    pos = 0
    stack: list[list[object]] = [[]]
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            if text[pos:].strip() == "":
                break
            raise DependencyError(f"cannot read dependencies near {text[pos : pos + 20]!r}")
        pos = m.end()
        if m.group("open"):
            new: list[object] = []
            stack[-1].append(new)
            stack.append(new)
        elif m.group("close"):
            if len(stack) == 1:
                raise DependencyError("unbalanced } in dependencies")
            stack.pop()
        elif m.group("comma"):
            continue
        else:
            word = m.group("dq") if m.group("dq") is not None else m.group("sq")
            if word is None:
                word = m.group("word")
            stack[-1].append(word)
    if len(stack) != 1 or len(stack[0]) != 1:
        raise DependencyError("dependencies must be one list of {parent, child} pairs")
    return stack[0][0]


def _side(item: object) -> Names:
    if isinstance(item, str):
        return [item]
    if isinstance(item, list) and all(isinstance(i, str) for i in item):
        return [str(i) for i in item]
    raise DependencyError(
        f"each side of a dependency is a node name or a list of node names, not {_show(item)}"
    )


def _show(item: object) -> str:
    if isinstance(item, list):
        return "{" + ", ".join(_show(i) for i in item) + "}"
    return str(item)


def parse_dependencies(text: str) -> list[tuple[str, str]]:
    """Edges ``(parent, child)`` from the text of a ``dependencies`` expression.

    Accepts ``{ {a, b}, {a, {b, c}}, {{a, b}, c} }`` and a single pair ``{a, b}``; empty
    declarations ``{}`` are dropped as gLite does.
    """
    parsed = _parse_names(text)
    if not isinstance(parsed, list):
        raise DependencyError("dependencies must be a list of {parent, child} pairs")
    pairs: list[object] = parsed
    if any(isinstance(i, str) for i in parsed):
        # A single pair written without the outer braces: {a, b}, {a, {b, c}}, {{a, b}, c}.
        pairs = [parsed]
    # The list keeps declaration order (error messages, cycle paths); the set keeps the
    # duplicate check linear for DAGs with thousands of edges.
    edges: list[tuple[str, str]] = []
    seen: set[tuple[str, str]] = set()
    for pair in pairs:
        if isinstance(pair, list) and not pair:
            continue
        if not isinstance(pair, list) or len(pair) != 2:
            raise DependencyError(f"a dependency is a {{parent, child}} pair, not {_show(pair)}")
        for parent in _side(pair[0]):
            for child in _side(pair[1]):
                edge = (parent, child)
                if edge not in seen:
                    seen.add(edge)
                    edges.append(edge)
    return edges


def find_cycle(names: list[str], edges: list[tuple[str, str]]) -> list[str] | None:
    """A cycle as a path ``[a, b, c, a]``, or ``None``; deterministic (declaration order)."""
    children: dict[str, list[str]] = {n: [] for n in names}
    for parent, kid in edges:
        children.setdefault(parent, []).append(kid)
        children.setdefault(kid, [])
    white, grey, black = 0, 1, 2
    colour = dict.fromkeys(children, white)
    for start, first_children in children.items():
        if colour[start] != white:
            continue
        path: list[str] = [start]
        iters = [iter(first_children)]
        colour[start] = grey
        while iters:
            child = next(iters[-1], None)
            if child is None:
                colour[path.pop()] = black
                iters.pop()
                continue
            if colour[child] == grey:
                return [*path[path.index(child) :], child]
            if colour[child] == white:
                colour[child] = grey
                path.append(child)
                iters.append(iter(children[child]))
    return None


def node_names(nodes: ClassAd) -> list[str]:
    """The node names of a DAG's ``nodes`` record, in declaration order."""
    return [str(key) for key in nodes if str(key).lower() not in RESERVED]


def _dependency_sources(ad: ClassAd, nodes: ClassAd) -> list[tuple[ClassAd, str]]:
    found = []
    for holder in (nodes, ad):
        for key in holder:
            if str(key).lower() == "dependencies":
                found.append((holder, str(key)))
    return found


def structure(ad: ClassAd) -> DagStructure:
    """Read and check the structure of a DAG ad.

    Raises :class:`DependencyError` when a dependency names a node that does not exist, is
    malformed, or the graph has a cycle (the message names it: ``A -> B -> C -> A``).
    """
    nodes = value_of(ad, "nodes")
    if not isinstance(nodes, ClassAd):
        line, column = position(ad, "nodes")
        raise DependencyError(
            "a DAG needs nodes = [ name = [ file = ... ] or [ description = [ ... ] ]; ... ]",
            line,
            column,
        )
    names = node_names(nodes)
    known = {n.lower(): n for n in names}
    edges: list[tuple[str, str]] = []
    seen: set[tuple[str, str]] = set()
    for holder, key in _dependency_sources(ad, nodes):
        line, column = position(holder, key)
        expr = holder.get(key)
        text = unparse(expr) if expr is not None else "{}"
        try:
            declared = parse_dependencies(text)
        except DependencyError as exc:
            raise DependencyError(exc.message, line, column) from None
        for parent, child in declared:
            for name in (parent, child):
                if name.lower() not in known:
                    raise DependencyError(
                        f'dependency {{{parent}, {child}}} names node "{name}", '
                        f"which is not in nodes (nodes: {', '.join(names) or 'none'})",
                        line,
                        column,
                    )
            edge = (known[parent.lower()], known[child.lower()])
            if edge not in seen:
                seen.add(edge)
                edges.append(edge)
    cycle = find_cycle(names, edges)
    if cycle:
        line, column = position(ad, "nodes")
        raise DependencyError("the dependencies form a cycle: " + " -> ".join(cycle), line, column)
    return DagStructure(names, edges, max_nodes_running(ad))


def max_nodes_running(ad: ClassAd) -> int | None:
    """``max_nodes_running`` (any case) or the library's ``max_running_nodes``."""
    for name in MAX_RUNNING_NAMES:
        value = value_of(ad, name)
        if type(value) is int:
            return value
    return None


def parents_of(names: list[str], edges: list[tuple[str, str]]) -> dict[str, tuple[str, ...]]:
    """Each node's parents, in edge order."""
    result: dict[str, list[str]] = {n: [] for n in names}
    for parent, child in edges:
        result[child].append(parent)
    return {n: tuple(p) for n, p in result.items()}
