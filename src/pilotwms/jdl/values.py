"""Reading attribute values out of a JDL ad.

Small helpers shared by validation, defaults, expansion and the sandbox/resource views: they
evaluate an attribute without a target (JDL values are constants or expressions over the job's
own ad), find where it was written, and turn gLite's "string or list of strings" into a list.
They never raise on odd values; the validator reports those.
"""

from __future__ import annotations

import re
from typing import Any

from pilotwms.classad import ERROR, UNDEFINED, ClassAd, Expr, parse_expr, unparse

_BARE_WORD = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")


def value_of(ad: ClassAd, name: str) -> Any:
    """The value of ``name`` evaluated in ``ad`` alone (``UNDEFINED`` when absent)."""
    if name not in ad:
        return UNDEFINED
    try:
        return ad.evaluate(name)
    except RecursionError:
        return ERROR


def is_int(value: Any) -> bool:
    """A ClassAd integer (``bool`` is not one, although Python says so)."""
    return type(value) is int


def is_number(value: Any) -> bool:
    return type(value) in (int, float)


def is_missing(value: Any) -> bool:
    return value is UNDEFINED or value is ERROR


def int_of(ad: ClassAd, name: str) -> int | None:
    """The integer value of ``name``, or ``None`` if absent or not an integer."""
    value = value_of(ad, name)
    return value if is_int(value) else None


def string_of(ad: ClassAd, name: str) -> str | None:
    """The string value of ``name``, or ``None`` if absent or not a string."""
    value = value_of(ad, name)
    return value if isinstance(value, str) else None


def bool_of(ad: ClassAd, name: str, default: bool = False) -> bool:
    value = value_of(ad, name)
    return value if isinstance(value, bool) else default


def strings_of(value: Any) -> list[str] | None:
    """gLite's "string or list of strings" as a list; ``None`` when it is neither."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    return None


def string_list(ad: ClassAd, name: str) -> list[str]:
    """The strings of a "string or list" attribute; non-strings are skipped."""
    value = value_of(ad, name)
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str)]
    return []


def spelling(ad: ClassAd, name: str) -> str:
    """The name as the user spelled it in ``ad`` (attribute names are case-insensitive)."""
    lowered = name.lower()
    for key in ad:
        if key.lower() == lowered:
            return str(key)
    return name


def position(ad: ClassAd, name: str) -> tuple[int, int]:
    """Where ``name`` is defined in the source, ``(0, 0)`` when unknown."""
    if name not in ad:
        return (0, 0)
    try:
        line, column = ad.position(name)
        if line:
            return (int(line), int(column))
    except (KeyError, AttributeError, TypeError, ValueError):
        pass
    expr = ad.get(name)
    if isinstance(expr, Expr):
        return (int(getattr(expr, "line", 0) or 0), int(getattr(expr, "column", 0) or 0))
    return (0, 0)


def text_of(ad: ClassAd, name: str) -> str:
    """The expression of ``name`` as ClassAd text (empty when absent)."""
    expr = ad.get(name)
    return unparse(expr) if expr is not None else ""


def is_bare_word(ad: ClassAd, name: str) -> bool:
    """True when the value is an unquoted word such as ``jobType`` or ``std.out``.

    DIRAC's JDL reads such words as strings; for gLite they are attribute references that are
    undefined, which is why the validator treats them per dialect.
    """
    return bool(_BARE_WORD.match(text_of(ad, name).strip()))


def expr(text: str) -> Expr:
    """Parse a ClassAd expression written by this package (always valid)."""
    return parse_expr(text)


def quote(text: str) -> str:
    """A ClassAd string literal for ``text``."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def leaf(path: str) -> str:
    """The last component of a path or URI (gLite's ``path.leaf()``)."""
    stripped = path.rstrip("/")
    return stripped.rsplit("/", 1)[-1] if stripped else ""


def list_items(text: str) -> list[str]:
    """The element texts of a ClassAd list literal ``{a, "b", {c}}``."""
    text = text.strip()
    if not (text.startswith("{") and text.endswith("}")):
        return []
    inner = text[1:-1]
    items: list[str] = []
    depth = 0
    current: list[str] = []
    in_string = False
    escaped = False
    for ch in inner:
        if in_string:
            current.append(ch)
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
            continue
        if ch == '"':
            in_string = True
        elif ch in "{[(":
            depth += 1
        elif ch in "}])":
            depth -= 1
        elif ch == "," and depth == 0:
            items.append("".join(current).strip())
            current = []
            continue
        current.append(ch)
    if "".join(current).strip():
        items.append("".join(current).strip())
    return items
