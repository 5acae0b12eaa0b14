"""The built-in function table of the ClassAd language.

Names are case-insensitive.  Most functions are *strict*: their arguments are evaluated first
and the function sees plain values.  A few (``ifThenElse``, ``eval``, ``unparse`` and gLite's
``anyMatch``/``allMatch``/``whichMatch``) need the unevaluated arguments and the evaluation
context.  A call to an unknown function, or with the wrong number of arguments, compiles to a
constant ERROR: parsing still succeeds, as in HTCondor.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from typing import Any, Final

from pilotwms.classad import operators
from pilotwms.classad.ad import ClassAd
from pilotwms.classad.ast import AttrRef, Call, Compiled, Expr, Select
from pilotwms.classad.evaluator import Context, compiled
from pilotwms.classad.regex import RegexError, compile_regex, expand_template
from pilotwms.classad.unparse import HTCONDOR, value_to_string
from pilotwms.classad.values import (
    ERROR,
    INT_MAX,
    INT_MIN,
    UNDEFINED,
    Value,
    real_to_int,
    wrap_int,
)

Strict = Callable[..., Value]
Lazy = Callable[[Context, tuple[Expr, ...], tuple[Compiled, ...]], Value]


def _is_number(v: Value) -> bool:
    t = type(v)
    return t is int or t is float


def _failure(*values: Value) -> Value:
    """The first UNDEFINED or ERROR argument, left to right (HTCondor checks arguments in
    order); ERROR when the arguments are merely of the wrong type."""
    for v in values:
        if v is UNDEFINED or v is ERROR:
            return v
    return ERROR


def _to_text(v: Value) -> str:
    return v if type(v) is str else value_to_string(v)


# --- lists and membership --------------------------------------------------------------


def _member(x: Value, items: Value, test: operators.BinaryFn = operators.eq) -> Value:
    if type(items) is not list:
        return UNDEFINED if items is UNDEFINED else ERROR
    if x is UNDEFINED or x is ERROR:
        return x
    if type(x) is list or isinstance(x, ClassAd):
        return ERROR
    return any(test(x, item) is True for item in items)


def _identical_member(x: Value, items: Value) -> Value:
    if type(items) is not list:
        return UNDEFINED if items is UNDEFINED else ERROR
    if type(x) is list or isinstance(x, ClassAd):
        return ERROR
    return any(operators.identical(x, item) is True for item in items)


_COMPARE_OPS: Final = {
    "<": operators.lt,
    "<=": operators.le,
    "==": operators.eq,
    "!=": operators.ne,
    ">": operators.gt,
    ">=": operators.ge,
    "is": operators.identical,
    "isnt": operators.not_identical,
}


def _list_compare(everything: bool) -> Strict:
    """``anyCompare``/``allCompare``: ``item op x`` for each item, stopping at the first item
    that decides; an ERROR comparison is ERROR and an UNDEFINED one ends the scan with false,
    as in HTCondor."""

    def compare(op: Value, items: Value, x: Value) -> Value:
        if type(op) is str and op.lower() not in _COMPARE_OPS:
            return ERROR
        if type(op) is not str or type(items) is not list:
            return _failure(op, items)
        fn = _COMPARE_OPS[op.lower()]
        for item in items:
            r = fn(item, x)
            if r is ERROR:
                return ERROR
            if r is not True and r is not False:
                return False
            if r is not everything:
                return r
        return everything

    return compare


def _size(v: Value) -> Value:
    if type(v) is list or type(v) is str or isinstance(v, ClassAd):
        return len(v)
    return UNDEFINED if v is UNDEFINED else ERROR


def _sum_like(kind: str) -> Strict:
    def aggregate(items: Value) -> Value:
        if type(items) is not list:
            return UNDEFINED if items is UNDEFINED else ERROR
        numbers: list[Value] = []
        for v in items:
            if v is UNDEFINED:
                continue
            t = type(v)
            if t is not bool and t is not int and t is not float:
                return ERROR
            numbers.append(v)
        if kind == "sum":
            # A fold with ``+`` from the first element: sum({true}) stays a boolean.
            if not numbers:
                return 0
            total = numbers[0]
            for n in numbers[1:]:
                total = operators.add(total, n)
            return total
        if kind == "avg":
            return (sum(float(n) for n in numbers) / len(numbers)) if numbers else 0
        if not numbers:
            return UNDEFINED
        best = min(numbers) if kind == "min" else max(numbers)
        if len(numbers) == 1:
            return best
        if any(type(n) is float for n in numbers):
            return float(best)
        return int(best)

    return aggregate


# --- strings ---------------------------------------------------------------------------


def _strcat(*args: Value) -> Value:
    if any(a is ERROR or a is UNDEFINED for a in args):
        return _failure(*args)
    return "".join(_to_text(a) for a in args)


def _join(*args: Value) -> Value:
    if not args:
        return ERROR
    if len(args) == 1:
        sep: Value = ""
        items = args[0]
    elif len(args) == 2:
        sep, items = args
    else:
        sep, items = args[0], list(args[1:])
    if sep is ERROR:
        return ERROR
    if items is UNDEFINED or items is ERROR:
        return items
    if type(items) is not list:
        items = [items]
    if any(v is ERROR for v in items):
        return ERROR
    if (sep is UNDEFINED and not items) or (items and all(v is UNDEFINED for v in items)):
        return UNDEFINED
    glue = "" if sep is UNDEFINED else _to_text(sep)
    return glue.join(_to_text(v) for v in items if v is not UNDEFINED)


def _split(s: Value, seps: Value = None) -> Value:
    if type(s) is not str or (seps is not None and type(seps) is not str):
        return ERROR
    if seps is None:
        return _split_default(s)
    return _split_any(s, seps) if seps else [s]


def _split_default(s: str) -> list[str]:
    """Words separated by a comma or whitespace; blanks before a word are skipped, so
    ``"a, b"`` has two words but ``"b ,c"`` has an empty one between the blank and the comma
    (except before the first word)."""
    out: list[str] = []
    i = 0
    n = len(s)
    while True:
        while i < n and s[i].isspace():
            i += 1
        if i >= n:
            return out
        start = i
        while i < n and s[i] != "," and not s[i].isspace():
            i += 1
        if out or i > start:
            out.append(s[start:i])
        i += 1


def _split_any(s: str, seps: str) -> list[str]:
    out: list[str] = []
    start = 0
    for i, ch in enumerate(s):
        if ch in seps:
            out.append(s[start:i])
            start = i + 1
    out.append(s[start:])
    return out


def _string_list(s: str, delims: str) -> list[str]:
    return [w.strip() for w in _split_any(s, delims) if w.strip()]


def _string_list_member(ignore_case: bool) -> Strict:
    def member(x: Value, s: Value, delims: Value = " ,") -> Value:
        args = (x, s, delims)
        if any(a is ERROR or (a is not UNDEFINED and type(a) is not str) for a in args):
            return ERROR
        if x is UNDEFINED and s is UNDEFINED:
            return UNDEFINED
        if x is UNDEFINED or s is UNDEFINED or delims is UNDEFINED:
            return False
        words = _string_list(s, delims)
        if ignore_case:
            x = x.lower()
            return any(w.lower() == x for w in words)
        return x in words

    return member


def _string_list_size(s: Value, delims: Value = " ,") -> Value:
    if type(s) is not str or type(delims) is not str:
        return ERROR
    return len(_string_list(s, delims))


def _substr(s: Value, offset: Value, length: Value = None) -> Value:
    if s is UNDEFINED or offset is UNDEFINED or length is UNDEFINED:
        return UNDEFINED
    if (
        type(s) is not str
        or type(offset) is not int
        or (length is not None and type(length) is not int)
    ):
        return _failure(s, offset, length)
    n = len(s)
    start = offset + n if offset < 0 else offset
    start = min(max(start, 0), n)
    if length is None:
        end = n
    else:
        end = n + length if length < 0 else start + length
        end = min(max(end, start), n)
    return s[start:end]


def _case(upper: bool) -> Strict:
    def convert(v: Value) -> Value:
        if v is UNDEFINED or v is ERROR:
            return v
        text = _to_text(v)
        return text.upper() if upper else text.lower()

    return convert


def _strcmp(ignore_case: bool) -> Strict:
    def compare(a: Value, b: Value) -> Value:
        if a is UNDEFINED or b is UNDEFINED:
            return UNDEFINED
        if a is ERROR or b is ERROR:
            return ERROR
        x, y = _to_text(a), _to_text(b)
        if ignore_case:
            x, y = x.lower(), y.lower()
        return (x > y) - (x < y)

    return compare


def _regex_args(pattern: Value, target: Value, options: Value) -> Any:
    if type(pattern) is not str or type(target) is not str or type(options) is not str:
        return _failure(pattern, target, options)
    try:
        return compile_regex(pattern, options)
    except RegexError:
        return ERROR


def _regexp(pattern: Value, target: Value, options: Value = "") -> Value:
    rx = _regex_args(pattern, target, options)
    if rx is ERROR or rx is UNDEFINED:
        return rx
    return rx.search(target) is not None


def _regexps(pattern: Value, target: Value, subst: Value, options: Value = "") -> Value:
    rx = _regex_args(pattern, target, options)
    if rx is ERROR or rx is UNDEFINED:
        return rx
    if type(subst) is not str:
        return _failure(subst)
    m = rx.search(target)
    return "" if m is None else expand_template(m, subst)


def _replace(every: bool) -> Strict:
    def replace(pattern: Value, target: Value, subst: Value, options: Value = "") -> Value:
        rx = _regex_args(pattern, target, options)
        if rx is ERROR or rx is UNDEFINED:
            return rx
        if type(subst) is not str:
            return _failure(subst)
        return rx.sub(lambda m: expand_template(m, subst), target, count=0 if every else 1)

    return replace


# --- numbers and conversions -----------------------------------------------------------


def _parse_number(s: str) -> int | float | None:
    """The number at the start of ``s``, as C's strtod would read it (None if there is none)."""
    text = s.strip()
    for end in range(len(text), 0, -1):
        chunk = text[:end]
        try:
            if chunk.lower().lstrip("+-").startswith("0x"):
                return float(int(chunk, 16))
            return float(chunk)
        except ValueError:
            continue
    return None


def _to_number(v: Value) -> Value:
    t = type(v)
    if t is int or t is float:
        return v
    if t is bool:
        return int(v)
    if t is str:
        n = _parse_number(v)
        return ERROR if n is None else n
    return ERROR


def _int(v: Value) -> Value:
    if v is UNDEFINED:
        return UNDEFINED
    n = _to_number(v)
    if n is ERROR:
        return ERROR
    return n if type(n) is int else real_to_int(n)


def _real(v: Value) -> Value:
    if v is UNDEFINED:
        return UNDEFINED
    n = _to_number(v)
    return n if n is ERROR else float(n)


def _string(v: Value) -> Value:
    if v is UNDEFINED or v is ERROR:
        return v
    return _to_text(v)


def _bool(v: Value) -> Value:
    t = type(v)
    if t is bool:
        return v
    if t is int or t is float:
        return v != 0
    if t is str:
        low = v.lower()
        return True if low == "true" else False if low == "false" else UNDEFINED
    return UNDEFINED if v is UNDEFINED else ERROR


def _rounding(fn: Callable[[float], float]) -> Strict:
    def rounded(v: Value) -> Value:
        n = _to_number(v)  # UNDEFINED gives ERROR here, unlike int() and real()
        if n is ERROR:
            return ERROR
        return n if type(n) is int else real_to_int(fn(n))

    return rounded


def _pow_operand(v: Value) -> Value:
    """pow() and quantize() read booleans and numeric strings as reals; UNDEFINED is ERROR."""
    t = type(v)
    if t is int or t is float:
        return v
    if t is bool or t is str:
        n = _to_number(v)
        return n if n is ERROR else float(n)
    return ERROR


def _pow(base: Value, exponent: Value) -> Value:
    b = _pow_operand(base)
    e = _pow_operand(exponent)
    if b is ERROR or e is ERROR:
        return ERROR
    if type(b) is int and type(e) is int and e >= 0:
        if abs(b) > 1 and e > 64:
            return INT_MIN  # overflows 64 bits, like HTCondor's cast of the double result
        r = int(b) ** int(e)
        return r if INT_MIN <= r <= INT_MAX else INT_MIN
    fb, fe = float(b), float(e)
    if fb == 0.0 and fe < 0.0:
        return math.inf
    try:
        return math.pow(fb, fe)
    except OverflowError:
        return math.inf
    except ValueError:
        return math.nan


def _quantize(original: Value, b: Value) -> Value:
    a = _pow_operand(original)
    if a is ERROR:
        return ERROR
    if type(b) is not list:
        b = _pow_operand(b)
    if type(b) is list:
        if not b:
            return original
        for item in b:
            if not _is_number(item):
                return ERROR
            if item >= a:
                return item
        b = b[-1]
    elif b is ERROR:
        return ERROR
    if b == 0:
        return original
    if type(a) is int and type(b) is int:
        # HTCondor's integer rounding up, (a + b - 1) / b * b, also for negative operands.
        return wrap_int(operators.c_div(wrap_int(a + b - 1), b) * b)
    return float(math.ceil(a / b) * b)


def _type_test(test: Callable[[Value], bool]) -> Strict:
    return test


def _time() -> Value:
    return int(time.time())


def _random(limit: Value = 1.0) -> Value:
    t = type(limit)
    if t is int and limit > 0:
        return random.randrange(limit)
    if t is float and limit > 0:
        return random.uniform(0.0, limit)
    return ERROR


def _fqan_member(fqan: Value, fqans: Value) -> Value:
    """gLite's ``fqanMember``: VOMS FQANs compared without ``/Role=NULL``/``/Capability=NULL``."""
    if type(fqans) is str:
        fqans = [fqans]
    if type(fqan) is not str or type(fqans) is not list:
        return _failure(fqan, fqans)
    wanted = _normalise_fqan(fqan)
    return any(type(f) is str and _normalise_fqan(f) == wanted for f in fqans)


def _normalise_fqan(fqan: str) -> str:
    text = fqan.lower()
    for suffix in ("/capability=null", "/role=null"):
        if text.endswith(suffix):
            text = text[: -len(suffix)]
    return text.rstrip("/")


# --- functions that see unevaluated arguments ------------------------------------------


def _if_then_else(ctx: Context, args: tuple[Expr, ...], fns: tuple[Compiled, ...]) -> Value:
    c = operators.truth(fns[0](ctx))
    if c is True:
        return fns[1](ctx)
    if c is False:
        return fns[2](ctx)
    return c


def _eval(ctx: Context, args: tuple[Expr, ...], fns: tuple[Compiled, ...]) -> Value:
    from pilotwms.classad.errors import ClassAdSyntaxError
    from pilotwms.classad.parser import parse_expr

    v = fns[0](ctx)
    if v is UNDEFINED:
        return ERROR
    if type(v) is not str:
        return v
    try:
        e = parse_expr(v)
    except ClassAdSyntaxError:
        return ERROR
    return compiled(e)(ctx)


def _unparse(ctx: Context, args: tuple[Expr, ...], fns: tuple[Compiled, ...]) -> Value:
    arg = args[0]
    if type(arg) is AttrRef:
        lname = arg.lname
        ads = [ctx.scope, ctx.target]
    elif type(arg) is Select and type(arg.base) is AttrRef:
        lname = arg.lname
        which = arg.base.lname
        ads = [ctx.target] if which in ("target", "other") else [ctx.my]
    else:
        return ERROR
    for start in ads:
        ad = start
        while ad is not None:
            e = ad._attrs.get(lname)
            if e is not None:
                return HTCONDOR.expr(e)
            ad = ad._parent
    return ""


def _matcher(kind: str) -> Lazy:
    def match(ctx: Context, args: tuple[Expr, ...], fns: tuple[Compiled, ...]) -> Value:
        items = fns[0](ctx)
        if type(items) is not list:
            return UNDEFINED if items is UNDEFINED else ERROR
        test = fns[1]
        found: list[Value] = []
        for item in items:
            ok = False
            if isinstance(item, ClassAd):
                ok = test(Context(ctx.scope, ctx.my, item, ctx.busy)) is True
            if kind == "any" and ok:
                return True
            if kind == "all" and not ok:
                return False
            if ok:
                found.append(item)
        if kind == "which":
            return found if found else UNDEFINED
        return kind == "all"

    return match


# name -> (implementation, minimum arity, maximum arity, takes unevaluated arguments)
_TABLE: Final[dict[str, tuple[Callable[..., Value], int, int, bool]]] = {
    "member": (_member, 2, 2, False),
    "identicalmember": (_identical_member, 2, 2, False),
    "anycompare": (_list_compare(False), 3, 3, False),
    "allcompare": (_list_compare(True), 3, 3, False),
    "size": (_size, 1, 1, False),
    "strcat": (_strcat, 0, 255, False),
    "join": (_join, 1, 255, False),
    "split": (_split, 1, 2, False),
    "substr": (_substr, 2, 3, False),
    "toupper": (_case(True), 1, 1, False),
    "tolower": (_case(False), 1, 1, False),
    "strcmp": (_strcmp(False), 2, 2, False),
    "stricmp": (_strcmp(True), 2, 2, False),
    "regexp": (_regexp, 2, 3, False),
    "regexps": (_regexps, 3, 4, False),
    "replace": (_replace(False), 3, 4, False),
    "replaceall": (_replace(True), 3, 4, False),
    "stringlistmember": (_string_list_member(False), 2, 3, False),
    "stringlistimember": (_string_list_member(True), 2, 3, False),
    "stringlistsize": (_string_list_size, 1, 2, False),
    "floor": (_rounding(math.floor), 1, 1, False),
    "ceiling": (_rounding(math.ceil), 1, 1, False),
    "round": (_rounding(round), 1, 1, False),
    "int": (_int, 1, 1, False),
    "real": (_real, 1, 1, False),
    "string": (_string, 1, 1, False),
    "bool": (_bool, 1, 1, False),
    "pow": (_pow, 2, 2, False),
    "quantize": (_quantize, 2, 2, False),
    "sum": (_sum_like("sum"), 1, 1, False),
    "avg": (_sum_like("avg"), 1, 1, False),
    "min": (_sum_like("min"), 1, 1, False),
    "max": (_sum_like("max"), 1, 1, False),
    "isundefined": (_type_test(lambda v: v is UNDEFINED), 1, 1, False),
    "iserror": (_type_test(lambda v: v is ERROR), 1, 1, False),
    "isstring": (_type_test(lambda v: type(v) is str), 1, 1, False),
    "isinteger": (_type_test(lambda v: type(v) is int), 1, 1, False),
    "isreal": (_type_test(lambda v: type(v) is float), 1, 1, False),
    "isboolean": (_type_test(lambda v: type(v) is bool), 1, 1, False),
    "islist": (_type_test(lambda v: type(v) is list), 1, 1, False),
    "isclassad": (_type_test(lambda v: isinstance(v, ClassAd)), 1, 1, False),
    "time": (_time, 0, 0, False),
    "random": (_random, 0, 1, False),
    "fqanmember": (_fqan_member, 2, 2, False),
    "ifthenelse": (_if_then_else, 3, 3, True),
    "eval": (_eval, 1, 1, True),
    "unparse": (_unparse, 1, 1, True),
    "anymatch": (_matcher("any"), 2, 2, True),
    "allmatch": (_matcher("all"), 2, 2, True),
    "whichmatch": (_matcher("which"), 2, 2, True),
}

FUNCTION_NAMES: Final = frozenset(_TABLE)


def compile_call(e: Call) -> Compiled:
    entry = _TABLE.get(e.lname)
    if entry is None or not entry[1] <= len(e.args) <= entry[2]:
        return lambda ctx: ERROR
    impl, _, _, lazy = entry
    args = e.args
    fns = tuple(compiled(a) for a in args)
    if lazy:
        return lambda ctx: impl(ctx, args, fns)
    if len(fns) == 1:
        (f0,) = fns
        return lambda ctx: impl(f0(ctx))
    if len(fns) == 2:
        f0, f1 = fns
        if e.lname == "member":
            return _compile_member(f0, f1)
        return lambda ctx: impl(f0(ctx), f1(ctx))
    return lambda ctx: impl(*[f(ctx) for f in fns])


def _compile_member(needle: Compiled, haystack: Compiled) -> Compiled:
    """``member(x, list)`` is in most Requirements; avoid the generic path for strings."""

    def member(ctx: Context) -> Value:
        x = needle(ctx)
        items = haystack(ctx)
        if type(x) is str and type(items) is list:
            lowered = x.lower()
            return any(type(item) is str and item.lower() == lowered for item in items)
        return _member(x, items)

    return member


__all__ = ["FUNCTION_NAMES", "compile_call"]
