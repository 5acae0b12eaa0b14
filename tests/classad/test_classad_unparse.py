"""Round trip: ``parse_ad(unparse(ad)) == ad`` for generated ads and expressions."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from pilotwms.classad import ERROR, UNDEFINED, ClassAd, parse_ad, parse_expr, unparse
from pilotwms.classad.ad import to_expr
from pilotwms.classad.ast import (
    AttrRef,
    BinaryOp,
    Call,
    Conditional,
    Expr,
    ListExpr,
    Literal,
    Select,
    Subscript,
    UnaryOp,
)

NAMES = st.one_of(
    st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True).filter(
        lambda s: s.lower() not in {"true", "false", "undefined", "error", "is", "isnt"}
    ),
    st.text(min_size=1, max_size=6),
)
SCALARS = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**63) + 1, max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=10),
    st.sampled_from([UNDEFINED, ERROR]),
)
PY_VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(NAMES, inner, max_size=4)),
    max_leaves=12,
)
OPS = [
    "||",
    "&&",
    "|",
    "^",
    "&",
    "==",
    "!=",
    "=?=",
    "=!=",
    "<",
    "<=",
    ">",
    ">=",
    "<<",
    ">>",
    ">>>",
    "+",
    "-",
    "*",
    "/",
    "%",
]


def _exprs() -> st.SearchStrategy[Expr]:
    leaves = st.one_of(SCALARS.map(Literal), NAMES.map(AttrRef))

    def extend(inner: st.SearchStrategy[Expr]) -> st.SearchStrategy[Expr]:
        return st.one_of(
            st.builds(BinaryOp, st.sampled_from(OPS), inner, inner),
            # The parser reads ``-1`` as the literal -1, never as minus applied to 1.
            st.builds(UnaryOp, st.sampled_from(["-", "+", "!", "~"]), inner).filter(
                lambda u: (
                    not (
                        u.op == "-"
                        and type(u.operand) is Literal
                        and type(u.operand.value) in (int, float)
                    )
                )
            ),
            st.builds(Conditional, inner, inner, inner),
            st.builds(Select, inner, NAMES),
            st.builds(Subscript, inner, inner),
            st.builds(
                Call,
                st.sampled_from(["member", "strcat", "f"]),
                st.lists(inner, max_size=3).map(tuple),
            ),
            st.lists(inner, max_size=3).map(lambda xs: ListExpr(tuple(xs))),
        )

    return st.recursive(leaves, extend, max_leaves=10)


@settings(max_examples=300, derandomize=True, deadline=None)
@given(st.dictionaries(NAMES, PY_VALUES, max_size=6))
def test_ad_built_from_python_values_round_trips(data: dict[str, Any]) -> None:
    ad = ClassAd.from_python(data)
    assert parse_ad(unparse(ad)) == ad
    assert parse_ad(unparse(ad, pretty=True)) == ad


@settings(max_examples=300, derandomize=True, deadline=None)
@given(_exprs())
def test_expression_tree_round_trips(e: Expr) -> None:
    assert parse_expr(unparse(e)) == e


@settings(max_examples=100, derandomize=True, deadline=None)
@given(st.dictionaries(NAMES, _exprs(), max_size=4))
def test_ad_of_arbitrary_expressions_round_trips(data: dict[str, Expr]) -> None:
    ad = ClassAd({name: to_expr(e) for name, e in data.items()})
    assert parse_ad(unparse(ad)) == ad
