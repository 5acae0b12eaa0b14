"""The two non-values of the ClassAd language and helpers on plain values.

ClassAd values are plain Python objects (``bool``, ``int``, ``float``, ``str``, ``list`` and
``ClassAd``) plus the singletons ``UNDEFINED`` and ``ERROR``, which take part in three-valued
logic.  Because ``bool`` is a subclass of ``int`` in Python, every helper here that cares about
the ClassAd type compares ``type(v)`` rather than using ``isinstance``.
"""

from __future__ import annotations

import math
from typing import Any, Final

INT_MIN: Final = -(1 << 63)
INT_MAX: Final = (1 << 63) - 1
_MASK64: Final = (1 << 64) - 1


class _Singleton:
    """A named marker value; identity is the only thing that matters."""

    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return self._name

    def __reduce__(self) -> str:
        return self._name

    def __bool__(self) -> bool:
        raise TypeError(f"{self._name} has no truth value; compare it with `is`")


class UndefinedType(_Singleton):
    """The type of ``UNDEFINED``: an attribute that is missing or cannot be known yet."""

    __slots__ = ()


class ErrorType(_Singleton):
    """The type of ``ERROR``: an expression that is ill-typed or failed."""

    __slots__ = ()


UNDEFINED: Final = UndefinedType("UNDEFINED")
ERROR: Final = ErrorType("ERROR")

# A ClassAd value.  ``Any`` because lists and ClassAds nest and mypy cannot express the
# recursive union without making every caller cast.
Value = Any


def wrap_int(n: int) -> int:
    """Reduce to a signed 64-bit integer, as HTCondor's C++ arithmetic does."""
    if INT_MIN <= n <= INT_MAX:
        return n
    n &= _MASK64
    return n - (1 << 64) if n > INT_MAX else n


def to_unsigned(n: int) -> int:
    """The 64-bit two's complement bit pattern of ``n``, for ``>>>``."""
    return n & _MASK64


def real_to_int(x: float) -> int:
    """C's cast of a double to a 64-bit integer on x86: out of range gives INT_MIN."""
    if math.isnan(x) or x >= 9.223372036854775807e18 or x < -9.223372036854775808e18:
        return INT_MIN
    return int(x)


def format_real(x: float) -> str:
    """HTCondor's spelling of a real: ``%.15E``, with its special cases."""
    if math.isnan(x):
        return 'real("NaN")'
    if x == float("inf"):
        return 'real("INF")'
    if x == float("-inf"):
        return '-real("INF")'
    if x == 0.0:
        return "-0.0" if str(x).startswith("-") else "0.0"
    return f"{x:.15E}"
