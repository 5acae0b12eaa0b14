"""Turns ClassAd text into tokens, tracking line and column.

One compiled regular expression with a group per token class does the scanning, which is much
faster in CPython than a character loop.  Comments (``#`` and ``//`` to end of line,
``/* ... */``) and whitespace are dropped here.

Per-token Python work is most of the cost of parsing, so the commonest shapes of ad text are
read as single tokens that already hold their syntax tree: a whole ``Name = literal;``
definition (``attr``) and a comparison of a name with a literal or a name, such as
``other.Memory >= 2048`` (``cmp``).  The parser builds exactly the tree it would have built
from the separate tokens, with the same positions and the same errors.
"""

from __future__ import annotations

import re
from bisect import bisect
from collections.abc import Callable
from itertools import accumulate
from typing import Any, Final

from pilotwms.classad.ast import AttrRef, BinaryOp, Expr, ListExpr, Literal, Select
from pilotwms.classad.errors import ClassAdSyntaxError
from pilotwms.classad.values import ERROR, INT_MAX, UNDEFINED

# Possessive quantifiers: a name or a string never matches a shorter prefix of itself, so the
# regex engine must not spend time trying to.
_STRING: Final = r'"[^"\\]*+(?:\\.[^"\\]*+)*+"'
_NAME: Final = r"[A-Za-z_][A-Za-z0-9_]*+(?:\.[A-Za-z_][A-Za-z0-9_]*+)*+"
_REAL: Final = r"(?:\d+\.\d+|\.\d+)(?:[eE][+-]?\d+)?|\d+[eE][+-]?\d+"
_INT: Final = r"0[xX][0-9a-fA-F]+|\d+"


def _pattern(template: str) -> str:
    return (
        template.replace("STRING", _STRING)
        .replace("NAME", _NAME)
        .replace("REAL", _REAL)
        .replace("INT", _INT)
    )


# Blanks before a token are swallowed by the same match.  Each token class has its own group, so
# ``Match.lastindex`` names the class without a Python-level look at the text; comments have no
# group (``lastindex`` is None) and are skipped.  The alternatives are mutually exclusive by
# their first characters except ``/`` (an operator unless it opens a comment) and ``.`` (an
# operator unless a digit follows).  The last alternative (``.``) matches anything, so
# ``finditer`` never skips text silently.
_TOKENS: Final = _pattern(r"""
     (NAME)
    |([;,(){}\[\]+*%~^?:]|=\?=|=!=|>>>|<<|>>|<=|>=|==|!=|&&|\|\||[-<>=!&|]|\.(?!\d)|/(?![*/]))
    |(STRING)
    |//[^\n]*|\#[^\n]*|/\*[^*]*\*+(?:[^/*][^*]*\*+)*/
    |(REAL)
    |(INT)
    |('[^'\\]*(?:\\.[^'\\]*)*')
    |(/\*|"|'|.)
""")

# ``left op right`` where both sides are names or the right one a literal, on one line, and
# followed by something that binds more loosely than a comparison (or ends the expression): the
# tree is then ``BinaryOp(op, left, right)`` whatever comes next.  Whether what comes before
# lets the comparison stand alone (``a + b == 1`` does not) is the lexer's to check.  The sides
# are the same token classes as in ``_TOKENS``, so a comparison that cannot be fused splits
# into exactly the tokens a plain scan would give.
_COMPARISON: Final = _pattern(r"""
     (NAME)[ \t]*(=\?=|=!=|==|!=|<=|>=|<|>)[ \t]*
     (?:(STRING)|(REAL)|(INT)|(NAME))
     (?=\s*+(?:&&|\|\||[;)\]},?:]|\Z))
""")

# In ads, most attributes are ``Name = "text";``, ``Name = 42;`` or ``Name = {"a", "b"};``.
# This alternative, tried first, reads such a definition, ``;`` included, as one token.  Its
# groups are the name, then one per kind of value, so that the value needs no second look: the
# body of a string without escapes, any other string, an integer, a real, a list of strings.
_ATTRIBUTE: Final = _pattern(r"""
     ([A-Za-z_][A-Za-z0-9_]*+)[ \t]*=[ \t]*
     (?:"([^"\\]*)"
       |(STRING)
       |([1-9]\d*|0)
       |((?:[1-9]\d*|0)(?:\.\d+)?(?:[eE][+-]?\d+)?)
       |(\{[ \t]*STRING(?:[ \t]*,[ \t]*STRING)*[ \t]*\}))
     [ \t]*(?:;|(?=\]))
""")

_FLAGS: Final = re.VERBOSE | re.DOTALL
_EXPR_RE: Final = re.compile(r"\s*+(?:" + _COMPARISON + "|" + _TOKENS + ")", _FLAGS)
_AD_RE: Final = re.compile(
    r"\s*+(?:" + _ATTRIBUTE + "|" + _COMPARISON + "|" + _TOKENS + ")", _FLAGS
)
_STRING_RE: Final = re.compile(_STRING)

# Group numbers.  ``_EXPR_RE`` has the six groups of ``_COMPARISON`` and then the seven of
# ``_TOKENS``; ``_AD_RE`` has the six of ``_ATTRIBUTE`` in front of them.
_ATTR_NAME, _ATTR_PLAIN_STR, _ATTR_STR, _ATTR_INT, _ATTR_REAL, _ATTR_LIST = range(1, 7)
_ATTRIBUTE_GROUPS: Final = 6
_CMP_LEFT, _CMP_OP, _CMP_STR, _CMP_REAL, _CMP_INT, _CMP_NAME = range(1, 7)
_COMPARISON_GROUPS: Final = 6
_TOK_NAME, _TOK_OP, _TOK_STR, _TOK_REAL, _TOK_INT, _TOK_QNAME = range(1, 7)

# A comparison is fused only after a token that starts an operand of the loosest binding.
_FUSE_AFTER: Final = frozenset({"&&", "||", "(", ",", "=", "?", ":", "{"})

_KEYWORD_TOKENS: Final[dict[str, tuple[str, object]]] = {
    "true": ("lit", True),
    "false": ("lit", False),
    "undefined": ("lit", UNDEFINED),
    "error": ("lit", ERROR),
    "is": ("=?=", "=?="),
    "isnt": ("=!=", "=!="),
}


def _case_variants(word: str) -> list[str]:
    variants = [""]
    for ch in word:
        variants = [v + c for v in variants for c in {ch.lower(), ch.upper()}]
    return variants


# Every spelling of every keyword, so the lexer needs no ``str.lower`` call per name.
_KEYWORDS: Final = {
    spelling: token for word, token in _KEYWORD_TOKENS.items() for spelling in _case_variants(word)
}
_KEYWORD_SET: Final = frozenset(_KEYWORDS)

_SIMPLE_ESCAPES: Final = {
    "n": "\n",
    "t": "\t",
    "r": "\r",
    "b": "\b",
    "f": "\f",
    "v": "\v",
    "a": "\a",
    "\\": "\\",
    '"': '"',
    "'": "'",
    "?": "?",
    "\n": "",
}
_ESCAPE_RE: Final = re.compile(r"\\(?:([0-7]{1,3})|x([0-9a-fA-F]{1,2})|(.))", re.DOTALL)


# A token is a plain tuple ``(kind, value, line, column, ...)``: ``kind`` is ``int``, ``real``,
# ``str``, ``name``, ``qname``, ``dotted`` (``other.Memory``, value the list of names), ``lit``,
# ``eof`` or the operator text itself.  Two kinds carry a tree and more:
# ``("attr", name, line, column, value)`` and
# ``("cmp", tree, line, column, left_parts, right_column, right_parts)``, where the ``parts``
# are the number of names of a dotted side (0 for an undotted one), which the parser needs for
# its nesting limit.  (A NamedTuple would cost a third of the parse time.)
Token = tuple[Any, ...]


def _unescape_match(m: re.Match[str]) -> str:
    octal, hexa, other = m.groups()
    if octal is not None:
        return chr(int(octal, 8))
    if hexa is not None:
        return chr(int(hexa, 16))
    return _SIMPLE_ESCAPES.get(other, other)


def unescape(body: str) -> str:
    """The value of a quoted string's body, with C-style escapes resolved."""
    if "\\" not in body:
        return body
    return _ESCAPE_RE.sub(_unescape_match, body)


def source_line(text: str, line: int) -> str:
    lines = text.split("\n")
    return lines[line - 1] if 0 < line <= len(lines) else ""


def _int_value(text: str, line: int, column: int, source: str) -> int:
    if text[0] != "0" and len(text) < 19:
        return int(text)
    if text[:2] in ("0x", "0X"):
        n = int(text[2:], 16)
    elif len(text) > 1 and text[0] == "0":
        if not text.isdigit() or "8" in text or "9" in text:
            raise ClassAdSyntaxError(
                f"invalid octal integer {text!r}", line, column, source_line(source, line)
            )
        n = int(text, 8)
    else:
        n = int(text)
    # strtoll saturates rather than wrapping.
    return min(n, INT_MAX)


def tokenize(text: str, attributes: bool = False) -> list[Token]:
    """All tokens of ``text``, ending with an ``eof`` token.

    With ``attributes`` (text that is an ad), a definition whose value is a plain literal comes
    back as one ``attr`` token, its ``;`` included.
    """
    tokens: list[Token] = []
    append = tokens.append
    keywords = _KEYWORDS
    keyword_set = _KEYWORD_SET
    fuse_after = _FUSE_AFTER
    # Lines are tracked by offsets: ``next_nl`` is the offset of the newline that ends the
    # current line (or the end of the text), so a token on the current line costs one
    # comparison.  The offsets where lines start are listed (by C-level iterators) once the
    # text turns out to have a second line; a new line then costs one bisection.
    line = 1
    line_start = 0
    end_of_text = len(text)
    next_nl = text.find("\n")
    if next_nl < 0:
        next_nl = end_of_text
    starts: list[int] = []
    if attributes:
        pattern = _AD_RE
        cmp_base = _ATTRIBUTE_GROUPS
    else:
        pattern = _EXPR_RE
        cmp_base = 0
    tok_base = cmp_base + _COMPARISON_GROUPS
    name_g = tok_base + _TOK_NAME
    op_g = tok_base + _TOK_OP
    str_g = tok_base + _TOK_STR
    real_g = tok_base + _TOK_REAL
    int_g = tok_base + _TOK_INT
    qname_g = tok_base + _TOK_QNAME
    for m in pattern.finditer(text):
        group = m.lastindex
        if group is None:  # a comment
            continue
        if group > tok_base:
            start = m.start(group)
        elif group > cmp_base:
            start = m.start(cmp_base + _CMP_LEFT)
        else:
            start = m.start(_ATTR_NAME)
        if start > next_nl:
            if not starts:
                starts = _line_starts(text)
            line = bisect(starts, start)
            line_start = starts[line - 1]
            next_nl = starts[line] - 1
        column = start - line_start + 1
        if group > tok_base:
            tok = m[group]
            if group == op_g:
                append((tok, tok, line, column))
            elif group == name_g:
                if "." in tok:
                    # ``other.Memory`` is one ``dotted`` token, unless a part is a keyword.
                    parts = tok.split(".")
                    if keyword_set.isdisjoint(parts):
                        append(("dotted", parts, line, column))
                    else:
                        _append_name(append, tok, line, column)
                    continue
                kw = keywords.get(tok)
                if kw is None:
                    append(("name", tok, line, column))
                else:
                    append((kw[0], kw[1], line, column))
            elif group == str_g:
                body = tok[1:-1]
                if "\\" in body:
                    body = unescape(body)
                append(("str", body, line, column))
            elif group == int_g:
                append(("int", _int_value(tok, line, column, text), line, column))
            elif group == real_g:
                append(("real", float(tok), line, column))
            elif group == qname_g:
                append(("qname", unescape(tok[1:-1]), line, column))
            elif tok == "/*":
                raise ClassAdSyntaxError(
                    "unterminated comment", line, column, source_line(text, line)
                )
            elif tok in "\"'":
                raise ClassAdSyntaxError(
                    "unterminated quoted string", line, column, source_line(text, line)
                )
            else:
                raise ClassAdSyntaxError(
                    f"unexpected character {tok!r}", line, column, source_line(text, line)
                )
        elif group > cmp_base:
            fuse = tokens[-1][0] in fuse_after if tokens else not attributes
            _comparison(m, group, cmp_base, line, line_start, text=text, fuse=fuse, append=append)
        else:  # ``Name = literal;``
            name = m[_ATTR_NAME]
            if name in keywords:
                raise ClassAdSyntaxError(
                    f"expected an attribute name, found '{name.lower()}'",
                    line,
                    column,
                    source_line(text, line),
                )
            if group == _ATTR_PLAIN_STR:  # the group holds the body, after the quote
                expr: Expr = Literal(m[group], line, m.start(group) - line_start)
            elif group == _ATTR_INT:
                value = m[group]
                value_column = m.start(group) - line_start + 1
                expr = Literal(
                    int(value) if len(value) < 19 else _int_value(value, line, value_column, text),
                    line,
                    value_column,
                )
            else:
                expr = _attribute_value(m, group, line, line_start, text)
            append(("attr", name, line, column, expr))
    if end_of_text > next_nl:
        if not starts:
            starts = _line_starts(text)
        line = bisect(starts, end_of_text)
        line_start = starts[line - 1]
    append(("eof", None, line, end_of_text - line_start + 1))
    return tokens


_PLUS_ONE: Final = (1).__add__


def _line_starts(text: str) -> list[int]:
    """The offset where each line starts, and one past the end of the text."""
    return list(accumulate(map(_PLUS_ONE, map(len, text.split("\n"))), initial=0))


def _append_name(append: Callable[[Token], None], tok: str, line: int, column: int) -> None:
    """The tokens of a (possibly dotted) name: ``dotted`` unless a part is a keyword, which
    splits it into names, keywords and ``.`` operators."""
    if "." not in tok:
        kw = _KEYWORDS.get(tok)
        append(("name", tok, line, column) if kw is None else (kw[0], kw[1], line, column))
        return
    parts = tok.split(".")
    if _KEYWORD_SET.isdisjoint(parts):
        append(("dotted", parts, line, column))
        return
    for n, part in enumerate(parts):
        if n:
            append((".", ".", line, column))
            column += 1
        kw = _KEYWORDS.get(part)
        append(("name", part, line, column) if kw is None else (kw[0], kw[1], line, column))
        column += len(part)


def _comparison(
    m: re.Match[str],
    group: int,
    base: int,
    line: int,
    line_start: int,
    *,
    text: str,
    fuse: bool,
    append: Callable[[Token], None],
) -> None:
    """Appends the ``cmp`` token of a comparison matched by ``_COMPARISON`` or, where it cannot
    stand alone (``fuse`` is false, or a side holds a keyword), its separate tokens."""
    left = m[base + _CMP_LEFT]
    column = m.start(base + _CMP_LEFT) - line_start + 1
    op = m[base + _CMP_OP]
    right = m[group]
    right_column = m.start(group) - line_start + 1
    kind = group - base
    if fuse:
        keywords = _KEYWORD_SET
        if "." in left:
            left_parts = left.split(".")
            fused = keywords.isdisjoint(left_parts)
            left_expr: Expr = AttrRef(left_parts[0], line, column)
            for part in left_parts[1:]:
                left_expr = Select(left_expr, part, line, column)
            left_count = len(left_parts)
        else:
            fused = left not in keywords
            left_expr = AttrRef(left, line, column)
            left_count = 0
        right_count = 0
        value: Expr
        if kind == _CMP_STR:
            body = right[1:-1]
            value = Literal(unescape(body) if "\\" in body else body, line, right_column)
        elif kind == _CMP_INT:
            value = Literal(_int_value(right, line, right_column, text), line, right_column)
        elif kind == _CMP_REAL:
            value = Literal(float(right), line, right_column)
        elif "." in right:
            right_parts = right.split(".")
            fused = fused and keywords.isdisjoint(right_parts)
            value = AttrRef(right_parts[0], line, right_column)
            for part in right_parts[1:]:
                value = Select(value, part, line, right_column)
            right_count = len(right_parts)
        else:
            fused = fused and right not in keywords
            value = AttrRef(right, line, right_column)
        if fused:
            append(
                (
                    "cmp",
                    BinaryOp(op, left_expr, value, line, column),
                    line,
                    column,
                    left_count,
                    right_column,
                    right_count,
                )
            )
            return
    _append_name(append, left, line, column)
    append((op, op, line, m.start(base + _CMP_OP) - line_start + 1))
    if kind == _CMP_STR:
        append(("str", unescape(right[1:-1]), line, right_column))
    elif kind == _CMP_INT:
        append(("int", _int_value(right, line, right_column, text), line, right_column))
    elif kind == _CMP_REAL:
        append(("real", float(right), line, right_column))
    else:
        _append_name(append, right, line, right_column)


def _attribute_value(m: re.Match[str], group: int, line: int, line_start: int, text: str) -> Expr:
    """The value of ``Name = literal;`` matched as one piece, when it is not one of the two
    commonest kinds (a string without escapes, an integer) that the lexer reads inline."""
    value_text = m[group]
    value_start = m.start(group)
    column = value_start - line_start + 1
    if group == _ATTR_STR:
        return Literal(unescape(value_text[1:-1]), line, column)
    if group == _ATTR_REAL:
        return Literal(float(value_text), line, column)
    if "\n" in value_text:
        # A string item spans lines: place every item by its offset.
        return ListExpr(
            tuple(
                Literal(unescape(s[0][1:-1]), *_position(text, value_start + s.start()))
                for s in _STRING_RE.finditer(value_text)
            ),
            line,
            column,
        )
    if "\\" in value_text:
        return ListExpr(
            tuple(
                Literal(unescape(s[0][1:-1]), line, column + s.start())
                for s in _STRING_RE.finditer(value_text)
            ),
            line,
            column,
        )
    # Without escapes the quotes alone delimit the items: every odd piece is one.
    found = []
    offset = column
    odd = False
    for piece in value_text.split('"'):
        if odd:
            found.append(Literal(piece, line, offset - 1))
        offset += len(piece) + 1
        odd = not odd
    return ListExpr(tuple(found), line, column)


def _position(text: str, offset: int) -> tuple[int, int]:
    """``(line, column)`` of ``offset`` in ``text``."""
    line_start = text.rfind("\n", 0, offset) + 1
    return text.count("\n", 0, offset) + 1, offset - line_start + 1
