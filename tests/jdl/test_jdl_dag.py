"""DAG dependencies in every form gLite accepts, and cycle detection."""

from __future__ import annotations

import itertools

import pytest

from pilotwms.jdl.dag import DependencyError, find_cycle, parse_dependencies

FORMS = [
    ("pairs", "{ {a, b}, {b, c} }", [("a", "b"), ("b", "c")]),
    ("one child list", "{ {a, {b, c}} }", [("a", "b"), ("a", "c")]),
    ("one parent list", "{ {{a, b}, c} }", [("a", "c"), ("b", "c")]),
    ("lists both sides", "{ {{a, b}, {c, d}} }", [("a", "c"), ("a", "d"), ("b", "c"), ("b", "d")]),
    ("bare pair", "{a, b}", [("a", "b")]),
    ("bare pair with list", "{a, {b, c}}", [("a", "b"), ("a", "c")]),
    ("quoted names", '{ {"a", "b"} }', [("a", "b")]),
    ("empty declarations dropped", "{ {}, {a, b} }", [("a", "b")]),
    ("no dependencies", "{ }", []),
    ("duplicates once", "{ {a, b}, {a, b} }", [("a", "b")]),
]


@pytest.mark.parametrize(("text", "edges"), [f[1:] for f in FORMS], ids=[f[0] for f in FORMS])
def test_dependency_forms(text: str, edges: list[tuple[str, str]]) -> None:
    assert parse_dependencies(text) == edges


@pytest.mark.parametrize("text", ["{ {a, b, c} }", "{ {a} }", "{ {{a, {b}}, c} }", "a"])
def test_malformed_dependencies(text: str) -> None:
    with pytest.raises(DependencyError):
        parse_dependencies(text)


CYCLES = [
    ("self loop", ["a"], [("a", "a")], ["a", "a"]),
    ("two", ["a", "b"], [("a", "b"), ("b", "a")], ["a", "b", "a"]),
    ("three", ["A", "B", "C"], [("A", "B"), ("B", "C"), ("C", "A")], ["A", "B", "C", "A"]),
    (
        "behind a diamond",
        ["r", "x", "y", "z"],
        [("r", "x"), ("r", "y"), ("x", "z"), ("y", "z"), ("z", "y")],
        ["z", "y", "z"],
    ),
    (
        "diamond has none",
        ["a", "b", "c", "d"],
        [("a", "b"), ("a", "c"), ("b", "d"), ("c", "d")],
        None,
    ),
    ("empty", [], [], None),
]


@pytest.mark.parametrize(
    ("names", "edges", "cycle"), [c[1:] for c in CYCLES], ids=[c[0] for c in CYCLES]
)
def test_find_cycle(
    names: list[str], edges: list[tuple[str, str]], cycle: list[str] | None
) -> None:
    assert find_cycle(names, edges) == cycle


def test_long_chain_has_no_cycle_and_no_recursion_limit() -> None:
    names = [f"n{i}" for i in range(5000)]
    edges = list(itertools.pairwise(names))
    assert find_cycle(names, edges) is None
    assert find_cycle(names, [*edges, ("n4999", "n0")]) == [*names, "n0"]
