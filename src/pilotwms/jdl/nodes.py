"""The result of an expansion: concrete jobs and the structure linking them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pilotwms.classad import ClassAd
from pilotwms.jdl.syntax import parse_jdl

Kind = Literal["job", "parametric", "collection", "dag"]


class Node:
    """One concrete job of an expansion: its name, its complete JDL text, its parents.

    ``ad`` parses ``jdl`` on first use only, so that expanding a large parametric job costs one
    string replacement per node (a plain class with ``__slots__``: a 10,000-node job creates
    10,000 of these).
    """

    __slots__ = ("_ad", "jdl", "name", "parents")

    def __init__(self, name: str | None, jdl: str, parents: tuple[str, ...] = ()) -> None:
        self.name = name
        self.jdl = jdl
        self.parents = parents
        self._ad: ClassAd | None = None

    @property
    def ad(self) -> ClassAd:
        """The node's ClassAd, parsed from ``jdl`` the first time it is asked for."""
        if self._ad is None:
            self._ad = parse_jdl(self.jdl, f"<node {self.name}>" if self.name else "<job>")
        return self._ad

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Node):
            return NotImplemented
        return (self.name, self.jdl, self.parents) == (other.name, other.jdl, other.parents)

    def __hash__(self) -> int:
        return hash((self.name, self.jdl, self.parents))

    def __repr__(self) -> str:
        return f"Node(name={self.name!r}, parents={self.parents!r}, jdl={self.jdl[:60]!r}...)"


@dataclass(frozen=True)
class Expansion:
    """The concrete jobs of a JDL and the structure linking them."""

    kind: Kind
    ad: ClassAd
    nodes: list[Node]
    edges: list[tuple[str, str]] = field(default_factory=list)
    max_nodes_running: int | None = None

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form, as ``pilotwms jdl expand --json`` prints it."""
        return {
            "kind": self.kind,
            "max_nodes_running": self.max_nodes_running,
            "nodes": [
                {"name": n.name, "parents": list(n.parents), "jdl": n.jdl} for n in self.nodes
            ],
            "edges": [list(e) for e in self.edges],
        }


__all__ = ["Expansion", "Kind", "Node"]
