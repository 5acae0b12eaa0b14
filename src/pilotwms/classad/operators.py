"""The semantics of ClassAd operators on values, following HTCondor's ``Operation`` class.

Every binary function here takes two already-evaluated operands.  ``bool`` counts as an integer
in arithmetic and comparisons (``true + 1 == 2``) but not in bitwise operators or unary minus,
exactly as classad2 does.  Integers wrap at 64 bits.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Final

from pilotwms.classad.values import (
    ERROR,
    INT_MAX,
    INT_MIN,
    UNDEFINED,
    Value,
    to_unsigned,
    wrap_int,
)

_INF: Final = float("inf")
BinaryFn = Callable[[Value, Value], Value]


def strict_failure(a: Value, b: Value) -> Value:
    """Result of a strict operator on operands it cannot handle: ERROR wins over UNDEFINED."""
    if a is ERROR or b is ERROR:
        return ERROR
    if a is UNDEFINED or b is UNDEFINED:
        return UNDEFINED
    return ERROR


def truth(v: Value) -> Value:
    """The boolean meaning of a value for ``&&``, ``||``, ``!`` and ``?:``."""
    if v is True or v is False:
        return v
    t = type(v)
    if t is int or t is float:
        return v != 0
    if v is UNDEFINED:
        return UNDEFINED
    return ERROR


def _real_result(x: float) -> Value:
    # HTCondor turns a positive infinity produced by arithmetic into ERROR.
    return ERROR if x == _INF else x


def _numeric_pair(a: Value, b: Value) -> tuple[int, Value, Value]:
    """(kind, a, b): kind 1 = both integers, 2 = reals involved, 0 = not numeric."""
    ta = type(a)
    tb = type(b)
    if (ta is int or ta is bool) and (tb is int or tb is bool):
        return 1, int(a), int(b)
    if (ta is float or ta is int or ta is bool) and (tb is float or tb is int or tb is bool):
        return 2, float(a), float(b)
    return 0, a, b


def add(a: Value, b: Value) -> Value:
    if type(a) is int and type(b) is int:
        r = a + b
        return r if INT_MIN <= r <= INT_MAX else wrap_int(r)
    kind, x, y = _numeric_pair(a, b)
    if kind == 1:
        return wrap_int(x + y)
    if kind == 2:
        return _real_result(x + y)
    return strict_failure(a, b)


def sub(a: Value, b: Value) -> Value:
    if type(a) is int and type(b) is int:
        r = a - b
        return r if INT_MIN <= r <= INT_MAX else wrap_int(r)
    kind, x, y = _numeric_pair(a, b)
    if kind == 1:
        return wrap_int(x - y)
    if kind == 2:
        return _real_result(x - y)
    return strict_failure(a, b)


def mul(a: Value, b: Value) -> Value:
    kind, x, y = _numeric_pair(a, b)
    if kind == 1:
        return wrap_int(x * y)
    if kind == 2:
        return _real_result(x * y)
    return strict_failure(a, b)


def c_div(x: int, y: int) -> int:
    """C's truncating integer division (``INT_MIN / -1`` saturates as on HTCondor)."""
    if x == INT_MIN and y == -1:
        return INT_MAX
    q = abs(x) // abs(y)
    return q if (x < 0) == (y < 0) else -q


def div(a: Value, b: Value) -> Value:
    kind, x, y = _numeric_pair(a, b)
    if kind == 1:
        return ERROR if y == 0 else c_div(x, y)
    if kind == 2:
        if y == 0.0:
            if x == 0.0 or math.isnan(x):
                return float("nan")
            negative = (x < 0) != (str(y)[0] == "-")
            return -_INF if negative else ERROR
        return _real_result(x / y)
    return strict_failure(a, b)


def mod(a: Value, b: Value) -> Value:
    kind, x, y = _numeric_pair(a, b)
    if kind == 1:
        if y == 0:
            return ERROR
        return x - y * c_div(x, y) if not (x == INT_MIN and y == -1) else 0
    if kind == 2:
        return ERROR
    return strict_failure(a, b)


def _int_pair(a: Value, b: Value) -> bool:
    return type(a) is int and type(b) is int


def bit_and(a: Value, b: Value) -> Value:
    return a & b if _int_pair(a, b) else strict_failure(a, b)


def bit_or(a: Value, b: Value) -> Value:
    return a | b if _int_pair(a, b) else strict_failure(a, b)


def bit_xor(a: Value, b: Value) -> Value:
    return a ^ b if _int_pair(a, b) else strict_failure(a, b)


def shift_left(a: Value, b: Value) -> Value:
    return wrap_int(a << (b & 63)) if _int_pair(a, b) else strict_failure(a, b)


def shift_right(a: Value, b: Value) -> Value:
    return a >> (b & 63) if _int_pair(a, b) else strict_failure(a, b)


def shift_right_unsigned(a: Value, b: Value) -> Value:
    if _int_pair(a, b):
        return wrap_int(to_unsigned(a) >> (b & 63))
    return strict_failure(a, b)


def _comparable(a: Value, b: Value) -> tuple[Value, Value] | None:
    """Operands made comparable by Python's operators, or None (strings compare caselessly)."""
    ta = type(a)
    tb = type(b)
    if ta is str and tb is str:
        return a.lower(), b.lower()
    if (ta is int or ta is float or ta is bool) and (tb is int or tb is float or tb is bool):
        return a, b
    return None


def _comparison(py_op: Callable[[Value, Value], bool]) -> BinaryFn:
    def compare(a: Value, b: Value) -> Value:
        pair = _comparable(a, b)
        if pair is None:
            return strict_failure(a, b)
        return py_op(pair[0], pair[1])

    return compare


eq = _comparison(lambda x, y: x == y)
ne = _comparison(lambda x, y: x != y)
lt = _comparison(lambda x, y: x < y)
le = _comparison(lambda x, y: x <= y)
gt = _comparison(lambda x, y: x > y)
ge = _comparison(lambda x, y: x >= y)


def identical(a: Value, b: Value) -> Value:
    """``=?=``: same type and same value, strings case-sensitively; never UNDEFINED."""
    ta = type(a)
    if ta is not type(b):
        return False
    if ta is list or (ta is not str and ta is not int and ta is not float and ta is not bool):
        if a is UNDEFINED or a is ERROR:
            return a is b
        return ERROR
    return a == b


def not_identical(a: Value, b: Value) -> Value:
    r = identical(a, b)
    return r if r is ERROR else not r


BINARY: Final[dict[str, BinaryFn]] = {
    "+": add,
    "-": sub,
    "*": mul,
    "/": div,
    "%": mod,
    "&": bit_and,
    "|": bit_or,
    "^": bit_xor,
    "<<": shift_left,
    ">>": shift_right,
    ">>>": shift_right_unsigned,
    "==": eq,
    "!=": ne,
    "<": lt,
    "<=": le,
    ">": gt,
    ">=": ge,
    "=?=": identical,
    "=!=": not_identical,
}


def negate(v: Value) -> Value:
    t = type(v)
    if t is int:
        return wrap_int(-v)
    if t is float:
        return -v
    return UNDEFINED if v is UNDEFINED else ERROR


def plus(v: Value) -> Value:
    t = type(v)
    if t is int or t is float:
        return v
    return UNDEFINED if v is UNDEFINED else ERROR


def logical_not(v: Value) -> Value:
    r = truth(v)
    return r if r is UNDEFINED or r is ERROR else not r


def bit_not(v: Value) -> Value:
    if type(v) is int:
        return ~v
    return UNDEFINED if v is UNDEFINED else ERROR


UNARY: Final[dict[str, Callable[[Value], Value]]] = {
    "-": negate,
    "+": plus,
    "!": logical_not,
    "~": bit_not,
}
