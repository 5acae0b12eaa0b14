"""Compiles expressions to Python closures and evaluates them.

Each node is compiled once, on first evaluation, into a closure ``fn(ctx) -> value`` stored on
the node (``node._fn``), so the matcher's millions of Requirements evaluations run without
walking the tree.  Common shapes (``other.X`` reading a literal, comparisons against a
constant) get specialised closures.

Scoping follows HTCondor's ``MatchClassAd``: an unscoped name is looked up in the current ad,
then in the records enclosing it, then in the target ad; ``my.``/``self.`` name the own ad,
``other.``/``target.`` the counterpart, ``parent.`` the enclosing record and ``root.`` the
outermost one.  Attributes are evaluated lazily when referenced; an attribute reached again
while it is being evaluated (``a = b; b = a``) evaluates to ERROR.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from pilotwms.classad import operators
from pilotwms.classad.ast import (
    SCOPE_NAMES,
    AttrRef,
    BinaryOp,
    Call,
    Compiled,
    Conditional,
    Expr,
    ListExpr,
    Literal,
    RecordExpr,
    Select,
    Subscript,
    UnaryOp,
)
from pilotwms.classad.operators import truth
from pilotwms.classad.values import ERROR, UNDEFINED, Value

if TYPE_CHECKING:
    from pilotwms.classad.ad import ClassAd


class Context:
    """Where an expression is being evaluated.

    ``scope`` is the ad whose attributes unscoped names see first, ``my`` and ``target`` the
    two sides of a match, ``busy`` the attributes being evaluated (shared by every context of
    one evaluation, to detect cycles).
    """

    __slots__ = ("_flipped", "busy", "my", "scope", "target")

    def __init__(
        self,
        scope: ClassAd | None,
        my: ClassAd | None,
        target: ClassAd | None,
        busy: set[tuple[int, str]],
    ) -> None:
        self.scope = scope
        self.my = my
        self.target = target
        self.busy = busy
        self._flipped: Context | None = None

    def flipped(self) -> Context:
        """The context of the counterpart ad (its ``other`` is our ``my``)."""
        f = self._flipped
        if f is None:
            f = Context(self.target, self.target, self.my, self.busy)
            f._flipped = self
            self._flipped = f
        return f

    def within(self, ad: ClassAd) -> Context:
        return self if ad is self.scope else Context(ad, self.my, self.target, self.busy)


def compiled(e: Expr) -> Compiled:
    try:
        return e._fn
    except AttributeError:
        fn = e._fn = _compile(e)
        return fn


def evaluate_in(ctx: Context, ad: ClassAd, lname: str, e: Expr) -> Value:
    """Evaluates attribute ``lname`` of ``ad`` (whose expression is ``e``) in ``ctx``."""
    if type(e) is Literal:
        return e.value
    key = (id(ad._attrs), lname)
    busy = ctx.busy
    if key in busy:
        return ERROR
    busy.add(key)
    try:
        try:
            fn = e._fn
        except AttributeError:
            fn = e._fn = _compile(e)
        return fn(ctx)
    finally:
        busy.discard(key)


def lookup(ctx: Context, ad: ClassAd, lname: str) -> Value:
    """An attribute of ``ad`` or of the records around it (no fallback to the target)."""
    scope: ClassAd | None = ad
    while scope is not None:
        e = scope._attrs.get(lname)
        if e is not None:
            return evaluate_in(ctx.within(scope), scope, lname, e)
        scope = scope._parent
    return UNDEFINED


def evaluate_expr(e: Expr, my: ClassAd | None, target: ClassAd | None) -> Value:
    ctx = Context(my, my, target, set())
    try:
        return compiled(e)(ctx)
    except RecursionError:
        return ERROR


def evaluate_attribute(ad: ClassAd, lname: str, target: ClassAd | None) -> Value:
    e = ad._attrs.get(lname)
    if e is None:
        return UNDEFINED
    try:
        return evaluate_in(Context(ad, ad, target, set()), ad, lname, e)
    except RecursionError:
        return ERROR


# --- compilation ----------------------------------------------------------------------


def _const(v: Value) -> Compiled:
    return lambda ctx: v


def _compile(e: Expr) -> Compiled:
    t = type(e)
    if t is Literal:
        return _const(e.value)  # type: ignore[attr-defined]
    if t is AttrRef:
        assert isinstance(e, AttrRef)
        return _compile_ref(e.lname)
    if t is Select:
        assert isinstance(e, Select)
        return _compile_select(e)
    if t is BinaryOp:
        assert isinstance(e, BinaryOp)
        return _compile_binary(e)
    if t is UnaryOp:
        assert isinstance(e, UnaryOp)
        return _compile_unary(e)
    if t is Conditional:
        assert isinstance(e, Conditional)
        return _compile_conditional(e)
    if t is Call:
        assert isinstance(e, Call)
        from pilotwms.classad.functions import compile_call

        return compile_call(e)
    if t is ListExpr:
        assert isinstance(e, ListExpr)
        return _compile_list(e)
    if t is RecordExpr:
        assert isinstance(e, RecordExpr)
        record = e.ad
        return lambda ctx: record._scoped(ctx.scope)
    if t is Subscript:
        assert isinstance(e, Subscript)
        return _compile_subscript(e)
    raise TypeError(f"cannot compile {t.__name__}")


def _compile_ref(lname: str) -> Compiled:
    special = lname in SCOPE_NAMES

    def ref(ctx: Context) -> Value:
        scope = ctx.scope
        ad = scope
        while ad is not None:
            e = ad._attrs.get(lname)
            if e is not None:
                if type(e) is Literal:
                    return e.value
                return evaluate_in(ctx if ad is scope else ctx.within(ad), ad, lname, e)
            ad = ad._parent
        target = ctx.target
        if target is not None:
            e = target._attrs.get(lname)
            if e is not None:
                if type(e) is Literal:
                    return e.value
                return evaluate_in(ctx.flipped(), target, lname, e)
        if special:
            found = _scope_ad(ctx, lname)
            return UNDEFINED if found is None else found
        return UNDEFINED

    return ref


def _scope_ad(ctx: Context, name: str) -> ClassAd | None:
    if name in ("my", "self"):
        return ctx.my
    if name in ("target", "other"):
        return ctx.target
    scope = ctx.scope
    if name == "parent":
        return None if scope is None else scope._parent
    while scope is not None and scope._parent is not None:
        scope = scope._parent
    return scope


def _compile_select(e: Select) -> Compiled:
    lname = e.lname
    base = e.base
    if type(base) is AttrRef and base.lname in SCOPE_NAMES:
        which = base.lname
        if which in ("target", "other"):

            def other_attr(ctx: Context) -> Value:
                t = ctx.target
                if t is None:
                    return UNDEFINED
                x = t._attrs.get(lname)
                if x is None:
                    return UNDEFINED
                if type(x) is Literal:
                    return x.value
                return evaluate_in(ctx.flipped(), t, lname, x)

            return other_attr

        if which in ("my", "self"):

            def my_attr(ctx: Context) -> Value:
                m = ctx.my
                return UNDEFINED if m is None else lookup(ctx.within(m), m, lname)

            return my_attr

        def scoped_attr(ctx: Context) -> Value:
            ad = _scope_ad(ctx, which)
            return UNDEFINED if ad is None else lookup(ctx, ad, lname)

        return scoped_attr

    base_fn = compiled(base)

    def select(ctx: Context) -> Value:
        return select_value(ctx, base_fn(ctx), lname)

    return select


def select_value(ctx: Context, v: Value, lname: str) -> Value:
    from pilotwms.classad.ad import ClassAd

    if isinstance(v, ClassAd):
        return lookup(ctx, v, lname)
    if type(v) is list:
        return [select_value(ctx, x, lname) for x in v]
    return UNDEFINED if v is UNDEFINED else ERROR


def _compile_subscript(e: Subscript) -> Compiled:
    base_fn = compiled(e.base)
    index_fn = compiled(e.index)
    from pilotwms.classad.ad import ClassAd

    def subscript(ctx: Context) -> Value:
        v = base_fn(ctx)
        i = index_fn(ctx)
        if v is ERROR or i is ERROR:
            return ERROR
        if v is UNDEFINED or i is UNDEFINED:
            return UNDEFINED
        if type(v) is list:
            if type(i) is int and 0 <= i < len(v):
                return v[i]
            return ERROR
        if isinstance(v, ClassAd) and type(i) is str:
            return lookup(ctx, v, i.lower())
        return ERROR

    return subscript


def _compile_list(e: ListExpr) -> Compiled:
    if all(type(x) is Literal for x in e.items):
        values = tuple(x.value for x in e.items)  # type: ignore[attr-defined]
        return lambda ctx: list(values)
    fns = tuple(compiled(x) for x in e.items)
    return lambda ctx: [f(ctx) for f in fns]


def _compile_unary(e: UnaryOp) -> Compiled:
    fn = compiled(e.operand)
    op = operators.UNARY[e.op]
    if type(e.operand) is Literal:
        return _const(op(e.operand.value))
    return lambda ctx: op(fn(ctx))


def _compile_conditional(e: Conditional) -> Compiled:
    cond = compiled(e.cond)
    then = compiled(e.then)
    otherwise = compiled(e.otherwise)

    def conditional(ctx: Context) -> Value:
        c = truth(cond(ctx))
        if c is True:
            return then(ctx)
        if c is False:
            return otherwise(ctx)
        return c

    return conditional


def _compile_and(left: Compiled, right: Compiled) -> Compiled:
    def and_(ctx: Context) -> Value:
        a = left(ctx)
        if a is not True:
            a = truth(a)
            if a is False or a is ERROR:
                return a
        b = right(ctx)
        if b is True or b is False:
            return b if a is True or b is False else UNDEFINED
        b = truth(b)
        if b is False or b is ERROR:
            return b
        if a is UNDEFINED or b is UNDEFINED:
            return UNDEFINED
        return True

    return and_


def _compile_or(left: Compiled, right: Compiled) -> Compiled:
    def or_(ctx: Context) -> Value:
        a = left(ctx)
        if a is not False:
            a = truth(a)
            if a is True or a is ERROR:
                return a
        b = right(ctx)
        if b is True or b is False:
            return b if a is False or b is True else UNDEFINED
        b = truth(b)
        if b is True or b is ERROR:
            return b
        if a is UNDEFINED or b is UNDEFINED:
            return UNDEFINED
        return False

    return or_


_FAST_COMPARE: Final[dict[str, Any]] = {
    "==": lambda a, c: a == c,
    "!=": lambda a, c: a != c,
    "<": lambda a, c: a < c,
    "<=": lambda a, c: a <= c,
    ">": lambda a, c: a > c,
    ">=": lambda a, c: a >= c,
}


def _compile_binary(e: BinaryOp) -> Compiled:
    left = compiled(e.left)
    right = compiled(e.right)
    op = e.op
    if op == "&&":
        return _compile_and(left, right)
    if op == "||":
        return _compile_or(left, right)
    fn = operators.BINARY[op]
    r = e.right
    if type(r) is Literal and op in _FAST_COMPARE:
        c = r.value
        if type(c) is int or type(c) is float:
            return _compare_number(left, op, c, fn)
        if type(c) is str:
            return _compare_string(left, op, c.lower(), c, fn)
    return lambda ctx: fn(left(ctx), right(ctx))


def _compare_number(left: Compiled, op: str, c: Value, fn: operators.BinaryFn) -> Compiled:
    if op == ">=":

        def ge(ctx: Context) -> Value:
            a = left(ctx)
            t = type(a)
            return a >= c if t is int or t is float else fn(a, c)

        return ge
    if op == "==":

        def eq(ctx: Context) -> Value:
            a = left(ctx)
            t = type(a)
            return a == c if t is int or t is float else fn(a, c)

        return eq
    py = _FAST_COMPARE[op]

    def compare(ctx: Context) -> Value:
        a = left(ctx)
        t = type(a)
        return py(a, c) if t is int or t is float else fn(a, c)

    return compare


def _compare_string(
    left: Compiled, op: str, lowered: str, c: str, fn: operators.BinaryFn
) -> Compiled:
    if op == "==":

        def eq(ctx: Context) -> Value:
            a = left(ctx)
            return a.lower() == lowered if type(a) is str else fn(a, c)

        return eq
    py = _FAST_COMPARE[op]

    def compare(ctx: Context) -> Value:
        a = left(ctx)
        return py(a.lower(), lowered) if type(a) is str else fn(a, c)

    return compare
