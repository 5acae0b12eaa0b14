"""The syntax tree of ClassAd expressions.

Nodes are treated as immutable once the parser has built them: they are shared between ads by
``ClassAd.copy`` and hashed by caches.  Equality and hashing are structural and ignore source
positions and the spelling case of attribute and function names (both are case-insensitive in
the language), so ``parse_expr("A + 1") == parse_expr("a+1")``.  The only mutable slot is the
private ``_fn`` cache that holds the compiled closure.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from pilotwms.classad.values import ERROR, UNDEFINED, Value

if TYPE_CHECKING:
    from pilotwms.classad.ad import ClassAd

# A compiled expression: takes an evaluation context, returns a value.
Compiled = Callable[[Any], Value]


class Expr:
    """A ClassAd expression, with the 1-based ``line`` and ``column`` where it starts."""

    __slots__ = ("_fn", "column", "line")

    line: int
    column: int
    # Not set until the node is first compiled (one store less per node while parsing).
    _fn: Compiled

    def _key(self) -> tuple[Any, ...]:
        raise TypeError(f"{type(self).__name__} is abstract")

    def evaluate(self, my: ClassAd | None = None, target: ClassAd | None = None) -> Value:
        """The value of this expression with ``my`` as its own ad and ``target`` as the other.

        Unscoped names are looked up in ``my`` (and its enclosing records), then in ``target``,
        as HTCondor's matchmaking does.
        """
        from pilotwms.classad.evaluator import evaluate_expr

        return evaluate_expr(self, my, target)

    def __eq__(self, other: object) -> bool:
        if self is other:
            return True
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, Expr)
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash((type(self).__name__, self._key()))

    def __repr__(self) -> str:
        from pilotwms.classad.unparse import unparse_expr

        return f"Expr({unparse_expr(self)!r})"

    def __str__(self) -> str:
        from pilotwms.classad.unparse import unparse_expr

        return unparse_expr(self)


class Literal(Expr):
    """A constant: bool, int, float, str, ``UNDEFINED`` or ``ERROR``."""

    __slots__ = ("value",)

    def __init__(self, value: Value, line: int = 0, column: int = 0) -> None:
        self.value = value
        self.line = line
        self.column = column

    def _key(self) -> tuple[Any, ...]:
        v = self.value
        if type(v) is float:
            # nan must equal itself and -0.0 must differ from 0.0 for round trips.
            return (float, "nan" if math.isnan(v) else v.hex())
        if v is UNDEFINED or v is ERROR:
            return (type(v), repr(v))
        return (type(v), v)


class AttrRef(Expr):
    """An unscoped attribute reference such as ``Memory``."""

    __slots__ = ("lname", "name")

    def __init__(self, name: str, line: int = 0, column: int = 0) -> None:
        self.name = name
        self.lname = name.lower()
        self.line = line
        self.column = column

    def _key(self) -> tuple[Any, ...]:
        return (self.lname,)


class Select(Expr):
    """``base.name``; ``other.X``, ``my.X``, ``parent.X`` and ``root.X`` are selections too."""

    __slots__ = ("base", "lname", "name")

    def __init__(self, base: Expr, name: str, line: int = 0, column: int = 0) -> None:
        self.base = base
        self.name = name
        self.lname = name.lower()
        self.line = line
        self.column = column

    def _key(self) -> tuple[Any, ...]:
        return (self.base, self.lname)


class Subscript(Expr):
    """``base[index]``: a list element by position or a record attribute by name."""

    __slots__ = ("base", "index")

    def __init__(self, base: Expr, index: Expr, line: int = 0, column: int = 0) -> None:
        self.base = base
        self.index = index
        self.line = line
        self.column = column

    def _key(self) -> tuple[Any, ...]:
        return (self.base, self.index)


class UnaryOp(Expr):
    """``-x``, ``+x``, ``!x`` or ``~x``."""

    __slots__ = ("op", "operand")

    def __init__(self, op: str, operand: Expr, line: int = 0, column: int = 0) -> None:
        self.op = op
        self.operand = operand
        self.line = line
        self.column = column

    def _key(self) -> tuple[Any, ...]:
        return (self.op, self.operand)


class BinaryOp(Expr):
    """A binary operator; ``is``/``isnt`` are stored as ``=?=``/``=!=``."""

    __slots__ = ("left", "op", "right")

    def __init__(self, op: str, left: Expr, right: Expr, line: int = 0, column: int = 0) -> None:
        self.op = op
        self.left = left
        self.right = right
        self.line = line
        self.column = column

    def _key(self) -> tuple[Any, ...]:
        return (self.op, self.left, self.right)


class Conditional(Expr):
    """``cond ? then : otherwise``."""

    __slots__ = ("cond", "otherwise", "then")

    def __init__(
        self, cond: Expr, then: Expr, otherwise: Expr, line: int = 0, column: int = 0
    ) -> None:
        self.cond = cond
        self.then = then
        self.otherwise = otherwise
        self.line = line
        self.column = column

    def _key(self) -> tuple[Any, ...]:
        return (self.cond, self.then, self.otherwise)


class Call(Expr):
    """A function call; the name keeps its spelling, lookup is case-insensitive."""

    __slots__ = ("args", "lname", "name")

    def __init__(self, name: str, args: tuple[Expr, ...], line: int = 0, column: int = 0) -> None:
        self.name = name
        self.lname = name.lower()
        self.args = args
        self.line = line
        self.column = column

    def _key(self) -> tuple[Any, ...]:
        return (self.lname, self.args)


class ListExpr(Expr):
    """``{ e1, e2, ... }``."""

    __slots__ = ("items",)

    def __init__(self, items: tuple[Expr, ...], line: int = 0, column: int = 0) -> None:
        self.items = items
        self.line = line
        self.column = column

    def _key(self) -> tuple[Any, ...]:
        return self.items


class RecordExpr(Expr):
    """``[ a = ...; b = ... ]`` nested in an expression; evaluates to a ClassAd."""

    __slots__ = ("ad",)

    def __init__(self, ad: ClassAd, line: int = 0, column: int = 0) -> None:
        self.ad = ad
        self.line = line
        self.column = column

    def _key(self) -> tuple[Any, ...]:
        return tuple((k, e) for k, e in self.ad._attrs.items())


SCOPE_NAMES = frozenset({"my", "self", "target", "other", "parent", "root"})


# Binding power of each binary operator, loosest first (``?:`` binds loosest of all and is
# handled apart): the parser builds trees with it and the unparser decides parentheses with it,
# so the two can never disagree.
BINARY_PRECEDENCE: Final[dict[str, int]] = {
    "||": 1,
    "&&": 2,
    "|": 3,
    "^": 4,
    "&": 5,
    "==": 6,
    "!=": 6,
    "=?=": 6,
    "=!=": 6,
    "<": 7,
    "<=": 7,
    ">": 7,
    ">=": 7,
    "<<": 8,
    ">>": 8,
    ">>>": 8,
    "+": 9,
    "-": 9,
    "*": 10,
    "/": 10,
    "%": 10,
}
