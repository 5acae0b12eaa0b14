"""PCRE-style patterns of ``regexp()`` and friends, mapped onto Python's ``re``.

HTCondor uses PCRE.  The common subset is identical; this module translates the constructs
that differ (POSIX classes such as ``[[:digit:]]``, ``(?<name>...)`` groups, ``\\z`` and
``\\Z``, ``\\h``) and the option letters ``i``, ``m``, ``s`` and ``x``.  Compiled patterns are
cached because the same Requirements run the same regexp against every slot.
"""

from __future__ import annotations

import functools
import re
from typing import Final

_POSIX_CLASSES: Final = {
    "alpha": "a-zA-Z",
    "digit": "0-9",
    "alnum": "a-zA-Z0-9",
    "upper": "A-Z",
    "lower": "a-z",
    "space": r" \t\n\r\f\v",
    "blank": r" \t",
    "punct": r"!-/:-@\[-`{-~",
    "xdigit": "0-9A-Fa-f",
    "word": r"\w",
    "cntrl": r"\x00-\x1f\x7f",
    "print": r"\x20-\x7e",
    "graph": r"\x21-\x7e",
}
_OPTION_FLAGS: Final = {"i": re.IGNORECASE, "m": re.MULTILINE, "s": re.DOTALL, "x": re.VERBOSE}
_TEMPLATE_RE: Final = re.compile(r"\\([0-9])")


class RegexError(ValueError):
    """The pattern is not a valid regular expression."""


def _translate(pattern: str) -> str:
    out: list[str] = []
    i = 0
    n = len(pattern)
    in_class = False
    while i < n:
        c = pattern[i]
        if c == "\\" and i + 1 < n:
            nxt = pattern[i + 1]
            if nxt == "z":
                out.append(r"\Z")
            elif nxt == "Z" and not in_class:
                out.append(r"(?=\n?\Z)")
            elif nxt == "h":
                out.append(r"[ \t]" if not in_class else r" \t")
            else:
                out.append(pattern[i : i + 2])
            i += 2
            continue
        if in_class:
            if c == "[" and pattern.startswith("[:", i):
                end = pattern.find(":]", i + 2)
                name = pattern[i + 2 : end] if end != -1 else ""
                if name in _POSIX_CLASSES:
                    out.append(_POSIX_CLASSES[name])
                    i = end + 2
                    continue
            if c == "]":
                in_class = False
            out.append(c)
            i += 1
            continue
        if c == "[":
            in_class = True
            out.append(c)
            i += 1
            if i < n and pattern[i] == "^":
                out.append("^")
                i += 1
            if i < n and pattern[i] == "]":
                out.append(r"\]")
                i += 1
            continue
        if pattern.startswith("(?<", i) and i + 3 < n and pattern[i + 3] not in "=!":
            out.append("(?P<")
            i += 3
            continue
        out.append(c)
        i += 1
    return "".join(out)


@functools.lru_cache(maxsize=1024)
def compile_regex(pattern: str, options: str = "") -> re.Pattern[str]:
    flags = 0
    for letter in options.lower():
        flags |= _OPTION_FLAGS.get(letter, 0)
    try:
        return re.compile(_translate(pattern), flags)
    except (re.error, OverflowError, RecursionError) as exc:
        raise RegexError(str(exc)) from None


def expand_template(m: re.Match[str], template: str) -> str:
    """``template`` with ``\\0`` .. ``\\9`` replaced by the groups of ``m`` (missing: empty)."""

    def group(g: re.Match[str]) -> str:
        index = int(g.group(1))
        if index > (m.re.groups or 0):
            return ""
        return m.group(index) or ""

    return _TEMPLATE_RE.sub(group, template)
