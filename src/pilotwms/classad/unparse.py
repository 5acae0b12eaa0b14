"""ClassAd text from ads, expressions and values.

Two spellings of reals exist: ``unparse`` (the public function) writes the shortest text that
reads back to the same float, so ``parse_ad(unparse(ad)) == ad``; the ``string()``/``strcat()``
built-ins must reproduce HTCondor's own text, which prints reals as ``%.15E`` and puts a space
before unary operators.  ``_Writer`` does both, switched by ``htcondor``.
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Final

from pilotwms.classad.ast import (
    BINARY_PRECEDENCE,
    AttrRef,
    BinaryOp,
    Call,
    Conditional,
    Expr,
    ListExpr,
    Literal,
    RecordExpr,
    Select,
    Subscript,
    UnaryOp,
)
from pilotwms.classad.values import ERROR, UNDEFINED, Value, format_real

if TYPE_CHECKING:
    from pilotwms.classad.ad import ClassAd

_UNARY_PREC: Final = 11
_POSTFIX_PREC: Final = 12
_IDENT_RE: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_RESERVED: Final = frozenset({"true", "false", "undefined", "error", "is", "isnt"})
_STRING_ESCAPES: Final = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r"}
_NEEDS_ESCAPE_RE: Final = re.compile(r'["\\\x00-\x1f\x7f]')


def _escape_char(m: re.Match[str]) -> str:
    c = m.group()
    return _STRING_ESCAPES.get(c) or f"\\{ord(c):03o}"


def quote_string(s: str, quote: str = '"') -> str:
    """``s`` as a ClassAd string literal (or, with ``quote="'"``, a quoted attribute name)."""
    if quote == "'":
        body = _NEEDS_ESCAPE_RE.sub(_escape_char, s).replace("'", "\\'")
        return f"'{body}'"
    return f'"{_NEEDS_ESCAPE_RE.sub(_escape_char, s)}"'


def attribute_name(name: str) -> str:
    """An attribute name as written in ClassAd text, quoted when it is not an identifier."""
    if _IDENT_RE.match(name) and name.lower() not in _RESERVED:
        return name
    return quote_string(name, "'")


def _real_text(x: float) -> str:
    if math.isnan(x) or x in (float("inf"), float("-inf")):
        return format_real(x)
    text = repr(x)
    if text[0].isdigit() or text[0] == "-":
        return text
    return format_real(x)


class _Writer:
    __slots__ = ("htcondor",)

    def __init__(self, htcondor: bool) -> None:
        self.htcondor = htcondor

    def literal(self, v: Value) -> str:
        t = type(v)
        if t is bool:
            return "true" if v else "false"
        if t is int:
            return str(v)
        if t is float:
            return format_real(v) if self.htcondor else _real_text(v)
        if t is str:
            return quote_string(v)
        if v is UNDEFINED:
            return "undefined"
        if v is ERROR:
            return "error"
        raise TypeError(f"not a literal value: {v!r}")

    def value(self, v: Value) -> str:
        """A value (lists already evaluated) in HTCondor's compact form."""
        if type(v) is list:
            return "{ " + ",".join(self.value(x) for x in v) + " }"
        from pilotwms.classad.ad import ClassAd

        if isinstance(v, ClassAd):
            return self.record(v)
        return self.literal(v)

    def record(self, ad: ClassAd) -> str:
        parts = [f"{attribute_name(ad._names[k])} = {self.expr(e)}" for k, e in ad._attrs.items()]
        return "[ " + "; ".join(parts) + " ]"

    def expr(self, e: Expr, context: int = 0) -> str:
        """``e`` as text, parenthesised if it binds looser than ``context`` requires."""
        t = type(e)
        if t is Literal:
            assert isinstance(e, Literal)
            text = self.literal(e.value)
            if context >= _POSTFIX_PREC and text.startswith("-"):
                return f"({text})"
            return text
        if t is AttrRef:
            assert isinstance(e, AttrRef)
            return attribute_name(e.name)
        if t is BinaryOp:
            assert isinstance(e, BinaryOp)
            prec = BINARY_PRECEDENCE[e.op]
            text = f"{self.expr(e.left, prec)} {e.op} {self.expr(e.right, prec + 1)}"
            return f"({text})" if prec < context else text
        if t is UnaryOp:
            assert isinstance(e, UnaryOp)
            inner = self.expr(e.operand, _UNARY_PREC)
            if not self.htcondor and e.op in "-+" and inner.startswith(e.op):
                inner = f"({inner})"
            text = f"{' ' if self.htcondor else ''}{e.op}{inner}"
            return f"({text})" if context > _UNARY_PREC else text
        if t is Select:
            assert isinstance(e, Select)
            return f"{self.expr(e.base, _POSTFIX_PREC)}.{attribute_name(e.name)}"
        if t is Subscript:
            assert isinstance(e, Subscript)
            return f"{self.expr(e.base, _POSTFIX_PREC)}[{self.expr(e.index)}]"
        if t is Conditional:
            assert isinstance(e, Conditional)
            text = f"{self.expr(e.cond, 1)} ? {self.expr(e.then)} : {self.expr(e.otherwise)}"
            return f"({text})" if context > 0 else text
        if t is Call:
            assert isinstance(e, Call)
            sep = "," if self.htcondor else ", "
            return f"{e.name}({sep.join(self.expr(a) for a in e.args)})"
        if t is ListExpr:
            assert isinstance(e, ListExpr)
            if not self.htcondor and not e.items:
                return "{}"
            sep = "," if self.htcondor else ", "
            return "{ " + sep.join(self.expr(x) for x in e.items) + " }"
        if t is RecordExpr:
            assert isinstance(e, RecordExpr)
            if not self.htcondor and not e.ad:
                return "[]"
            return self.record(e.ad)
        raise TypeError(f"cannot unparse {type(e).__name__}")


_PUBLIC: Final = _Writer(htcondor=False)
HTCONDOR: Final = _Writer(htcondor=True)


def unparse_expr(e: Expr) -> str:
    return _PUBLIC.expr(e)


def value_to_string(v: Value) -> str:
    """What HTCondor's ``string()`` gives for a non-string value."""
    return HTCONDOR.value(v)


def unparse(obj: ClassAd | Expr, pretty: bool = False) -> str:
    """ClassAd text for an ad or an expression; ``parse_ad(unparse(ad)) == ad``.

    ``pretty=True`` writes an ad one attribute per line, the way JDL files are usually laid
    out.
    """
    if isinstance(obj, Expr):
        return _PUBLIC.expr(obj)
    if not obj._attrs:
        return "[]"
    if pretty:
        lines = [
            f"    {attribute_name(obj._names[k])} = {_PUBLIC.expr(e)};"
            for k, e in obj._attrs.items()
        ]
        return "[\n" + "\n".join(lines) + "\n]"
    return _PUBLIC.record(obj)
