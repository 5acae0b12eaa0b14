"""Matchmaking: does a job fit a slot, how well, and which clause keeps them apart.

These functions are the matcher's inner loop, so they build the two evaluation contexts once
and call the compiled Requirements closures directly.
"""

from __future__ import annotations

from pilotwms.classad.ad import ClassAd
from pilotwms.classad.ast import BinaryOp, Expr
from pilotwms.classad.evaluator import Context, compiled
from pilotwms.classad.values import ERROR, Value


def _requirement(ad: ClassAd, ctx: Context) -> Value:
    e = ad._attrs.get("requirements")
    if e is None:
        return False
    key = (id(ad._attrs), "requirements")
    ctx.busy.add(key)
    try:
        return compiled(e)(ctx)
    except RecursionError:
        return ERROR
    finally:
        ctx.busy.discard(key)


def matches(a: ClassAd, b: ClassAd) -> bool:
    """``a.Requirements`` is true with ``b`` as the target (UNDEFINED or ERROR: no match)."""
    return _requirement(a, Context(a, a, b, set())) is True


def symmetric_match(a: ClassAd, b: ClassAd) -> bool:
    """Both ads' Requirements are true against each other."""
    ctx = Context(a, a, b, set())
    return _requirement(a, ctx) is True and _requirement(b, ctx.flipped()) is True


def rank(a: ClassAd, b: ClassAd) -> float:
    """``a.Rank`` against ``b`` as a float; a missing or non-numeric Rank is 0.0."""
    e = a._attrs.get("rank")
    if e is None:
        return 0.0
    ctx = Context(a, a, b, {(id(a._attrs), "rank")})
    try:
        v = compiled(e)(ctx)
    except RecursionError:
        return 0.0
    t = type(v)
    if t is int or t is float or t is bool:
        return float(v)
    return 0.0


def conjuncts(e: Expr) -> list[Expr]:
    """The clauses of a top-level ``&&`` chain, left to right (``[e]`` if there is none)."""
    out: list[Expr] = []
    stack = [e]
    while stack:
        node = stack.pop()
        if type(node) is BinaryOp and node.op == "&&":
            stack.append(node.right)
            stack.append(node.left)
        else:
            out.append(node)
    return out


def explain(a: ClassAd, b: ClassAd) -> list[tuple[Expr, Value]]:
    """Each clause of ``a.Requirements`` with its value against ``b``: why a job waits."""
    e = a._attrs.get("requirements")
    if e is None:
        return []
    result: list[tuple[Expr, Value]] = []
    for clause in conjuncts(e):
        ctx = Context(a, a, b, {(id(a._attrs), "requirements")})
        try:
            result.append((clause, compiled(clause)(ctx)))
        except RecursionError:
            result.append((clause, ERROR))
    return result
