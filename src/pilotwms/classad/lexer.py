"""Turns ClassAd text into tokens, tracking line and column.

One compiled regular expression with a named group per token class does the scanning, which is
much faster in CPython than a character loop.  Comments (``#`` and ``//`` to end of line,
``/* ... */``) and whitespace are dropped here.
"""

from __future__ import annotations

import re
from typing import Final

from pilotwms.classad.ast import Expr, ListExpr, Literal
from pilotwms.classad.errors import ClassAdSyntaxError
from pilotwms.classad.values import ERROR, INT_MAX, UNDEFINED, Value

_STRING: Final = r'"[^"\\]*(?:\\.[^"\\]*)*"'

# One group holds the token; blanks before it are swallowed by the same match.  The
# alternatives start with a literal character or a character class and carry no groups of
# their own, so the regex engine rejects a wrong alternative by its first character; the
# lexer then tells the token class from the token's first character.  The last alternative
# (``.``) matches anything, so ``finditer`` never skips text silently.
_TOKENS: Final = r"""
     [A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*
    |[;,(){}\[\]+*%~^?:]|=\?=|=!=|>>>|<<|>>|<=|>=|==|!=|&&|\|\||[-<>=!&|]|\.(?!\d)
    |STRING
    |//[^\n]*|\#[^\n]*|/\*[^*]*\*+(?:[^/*][^*]*\*+)*/
    |/(?!\*)
    |(?:\d+\.\d+|\.\d+)(?:[eE][+-]?\d+)?|\d+[eE][+-]?\d+
    |0[xX][0-9a-fA-F]+|\d+
    |'[^'\\]*(?:\\.[^'\\]*)*'
    |/\*|"|'|.
""".replace("STRING", _STRING)

# In ads, most attributes are ``Name = "text";``, ``Name = 42;`` or ``Name = {"a", "b"};``.
# One extra alternative reads such a definition as a single ``attr`` token, which keeps the
# per-token Python work (the bulk of parsing time) off the common case.
_ATTRIBUTE: Final = r"""
     ([A-Za-z_][A-Za-z0-9_]*)[ \t]*=[ \t]*
     (STRING
       |(?:[1-9]\d*|0)(?:\.\d+)?(?:[eE][+-]?\d+)?
       |\{[ \t]*STRING(?:[ \t]*,[ \t]*STRING)*[ \t]*\})
     [ \t]*(?:;|(?=\]))
""".replace("STRING", _STRING)

_EXPR_RE: Final = re.compile(r"\s*+(" + _TOKENS + ")", re.VERBOSE | re.DOTALL)
_AD_RE: Final = re.compile(r"\s*+(" + _ATTRIBUTE + "|" + _TOKENS + ")", re.VERBOSE | re.DOTALL)
_STRING_RE: Final = re.compile(_STRING)

_OPERATORS: Final = frozenset(
    {";", ",", "(", ")", "{", "}", "[", "]", "+", "-", "*", "/", "%", "~", "^", "?", ":"}
    | {"=?=", "=!=", ">>>", "<<", ">>", "<=", ">=", "==", "!=", "&&", "||"}
    | {"<", ">", "=", "!", "&", "|", "."}
)
_NAME, _STR, _QNAME, _NUM, _DOT, _HASH, _SLASH, _OTHER = range(8)
_FIRST_CHAR: Final = {
    **dict.fromkeys("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_", _NAME),
    **dict.fromkeys("0123456789", _NUM),
    '"': _STR,
    "'": _QNAME,
    ".": _DOT,
    "#": _HASH,
    "/": _SLASH,
}

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


# A token is a plain tuple ``(kind, value, line, column)``: ``kind`` is ``int``, ``real``,
# ``str``, ``name``, ``qname``, ``dotted`` (``other.Memory``, value the list of names),
# ``attr``, ``lit``, ``eof`` or the operator text itself.  (A NamedTuple
# would cost a third of the parse time.)
Token = tuple[str, Value, int, int]


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
    back as one ``attr`` token whose value is ``(name, expr)``.
    """
    tokens: list[Token] = []
    append = tokens.append
    line = 1
    line_start = 0
    keywords = _KEYWORDS
    first_char = _FIRST_CHAR
    operators = _OPERATORS
    end = 0
    count = text.count
    for m in (_AD_RE if attributes else _EXPR_RE).finditer(text):
        tok = m[1]
        kind = first_char.get(tok[0], _OTHER)
        start = m.start(1)
        # Newlines are swallowed with the blanks before a token; count the ones skipped.
        if start != end:
            newlines = count("\n", end, start)
            if newlines:
                line += newlines
                line_start = text.rfind("\n", end, start) + 1
        end = m.end()
        column = start - line_start + 1
        if kind == _NAME:
            if attributes and "=" in tok:
                append(_attribute_token(m, column, line, line_start, text))
                continue
            if "." in tok:
                # ``other.Memory`` comes as one ``dotted`` token, unless a part is a keyword.
                parts = tok.split(".")
                if not any(part in keywords for part in parts):
                    append(("dotted", parts, line, column))
                    continue
                for part in parts:
                    kw = keywords.get(part)
                    if kw is None:
                        append(("name", part, line, column))
                    else:
                        append((kw[0], kw[1], line, column))
                    column += len(part)
                    append((".", ".", line, column))
                    column += 1
                tokens.pop()
                continue
            kw = keywords.get(tok)
            if kw is None:
                append(("name", tok, line, column))
            else:
                append((kw[0], kw[1], line, column))
        elif kind == _OTHER or (kind == _DOT and len(tok) == 1) or tok == "/":
            if tok not in operators:
                raise ClassAdSyntaxError(
                    f"unexpected character {tok!r}", line, column, source_line(text, line)
                )
            append((tok, tok, line, column))
        elif kind in (_STR, _QNAME):
            if len(tok) == 1:
                raise ClassAdSyntaxError(
                    "unterminated quoted string", line, column, source_line(text, line)
                )
            body = tok[1:-1]
            if "\\" in body:
                body = unescape(body)
            append(("str" if kind == _STR else "qname", body, line, column))
        elif kind in (_NUM, _DOT):
            if tok[:2] in ("0x", "0X") or not any(c in tok for c in ".eE"):
                append(("int", _int_value(tok, line, column, text), line, column))
            else:
                append(("real", float(tok), line, column))
        elif tok == "/*":
            raise ClassAdSyntaxError("unterminated comment", line, column, source_line(text, line))
        elif "\n" in tok:  # a block comment over several lines
            line += tok.count("\n")
            line_start = start + tok.rindex("\n") + 1
    newlines = count("\n", end)
    if newlines:
        line += newlines
        line_start = text.rfind("\n") + 1
    append(("eof", None, line, len(text) - line_start + 1))
    return tokens


def _attribute_token(
    m: re.Match[str], name_column: int, line: int, line_start: int, text: str
) -> Token:
    """The ``attr`` token of ``Name = literal;`` matched as one piece (``;`` included)."""
    name = m[2]
    if name in _KEYWORDS:
        raise ClassAdSyntaxError(
            f"expected an attribute name, found '{name.lower()}'",
            line,
            name_column,
            source_line(text, line),
        )
    value_text = m[3]
    column = m.start(3) - line_start + 1
    expr: Expr
    first = value_text[0]
    if first == '"':
        body = value_text[1:-1]
        expr = Literal(unescape(body) if "\\" in body else body, line, column)
    elif first == "{":
        if "\\" in value_text:
            items = tuple(
                Literal(unescape(s[0][1:-1]), line, column + s.start())
                for s in _STRING_RE.finditer(value_text)
            )
        else:
            # Without escapes the quotes alone delimit the items: every odd piece is one.
            pieces = value_text.split('"')
            found = []
            offset = column
            for i, piece in enumerate(pieces):
                if i & 1:
                    found.append(Literal(piece, line, offset - 1))
                offset += len(piece) + 1
            items = tuple(found)
        expr = ListExpr(items, line, column)
    elif "." in value_text or "e" in value_text or "E" in value_text:
        expr = Literal(float(value_text), line, column)
    else:
        expr = Literal(_int_value(value_text, line, column, text), line, column)
    return ("attr", (name, expr), line, name_column)
