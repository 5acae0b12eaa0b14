"""Recursive-descent parser for ClassAds and ClassAd expressions.

Binary operators are parsed by precedence climbing with HTCondor's table.  Every node gets the
line and column of its first token, and every syntax error names the token where the parser got
stuck.  Nesting is bounded (parentheses, records, lists and long operator chains all count), so
hostile input gives a syntax error instead of exhausting the interpreter's stack.
"""

from __future__ import annotations

from typing import Final

from pilotwms.classad.ad import ClassAd
from pilotwms.classad.ast import (
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
from pilotwms.classad.errors import ClassAdSyntaxError
from pilotwms.classad.lexer import Token, source_line, tokenize
from pilotwms.classad.values import wrap_int

MAX_DEPTH: Final = 150

# Binding power of each binary operator, loosest first (``?:`` is handled separately).
_BINARY_PRECEDENCE: Final = {
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
_UNARY: Final = frozenset({"-", "+", "!", "~"})


def _describe(tok: Token) -> str:
    if tok[0] == "eof":
        return "end of input"
    if tok[0] == "str":
        return f'string "{tok[1]}"'
    if tok[0] in ("int", "real"):
        return f"number {tok[1]}"
    if tok[0] in ("name", "qname"):
        return f"name '{tok[1]}'"
    if tok[0] == "attr":
        return f"name '{tok[1][0]}'"
    if tok[0] == "dotted":
        return f"name '{'.'.join(tok[1])}'"
    if tok[0] == "lit":
        return f"'{str(tok[1]).lower()}'"
    return f"'{tok[1]}'"


class _Parser:
    __slots__ = ("depth", "i", "text", "toks")

    def __init__(self, text: str, ad: bool) -> None:
        self.text = text
        self.toks = tokenize(text, attributes=ad)
        self.i = 0
        self.depth = 0

    def error(self, message: str, tok: Token | None = None) -> ClassAdSyntaxError:
        tok = tok or self.toks[self.i]
        return ClassAdSyntaxError(message, tok[2], tok[3], source_line(self.text, tok[2]))

    def expect(self, kind: str, context: str) -> Token:
        tok = self.toks[self.i]
        if tok[0] != kind:
            raise self.error(f"expected '{kind}' {context}, found {_describe(tok)}")
        self.i += 1
        return tok

    def enter(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.error(f"expression nested more than {MAX_DEPTH} levels deep")

    # --- top level -------------------------------------------------------------------

    def top_level_ad(self) -> ClassAd:
        toks = self.toks
        if toks[0][0] == "[":
            ad = self.record_body(top=True)
            if toks[self.i][0] == ";":
                self.i += 1
        else:
            ad = self.attribute_list("eof", top=True)
        if toks[self.i][0] != "eof":
            raise self.error(
                f"expected end of input after the ClassAd, found {_describe(toks[self.i])}"
            )
        return ad

    def top_level_expr(self) -> Expr:
        e = self.expr()
        tok = self.toks[self.i]
        if tok[0] != "eof":
            raise self.error(f"unexpected {_describe(tok)} after the expression")
        return e

    def record_body(self, top: bool = False) -> ClassAd:
        """Parses ``[ ... ]``; the current token is the ``[``."""
        self.i += 1
        ad = self.attribute_list("]", top)
        self.i += 1
        return ad

    def attribute_list(self, closer: str, top: bool = False) -> ClassAd:
        """``name = expr (; name = expr)* ;?`` up to ``closer`` (not consumed).

        A name defined twice in one record is a syntax error, nested records included.
        HTCondor keeps the last definition in a nested record, silently; for a job
        description that silence loses data (a DAG node declared twice runs once), so we
        report it where it happens.
        """
        toks = self.toks
        attrs: dict[str, Expr] = {}
        names: dict[str, str] = {}
        positions: dict[str, tuple[int, int]] = {}
        while True:
            tok = toks[self.i]
            if tok[0] == closer:
                break
            kind = tok[0]
            if kind == "attr":
                name, value = tok[1]
            elif kind not in ("name", "qname"):
                want = "an attribute name" + (" or ']'" if closer == "]" else "")
                raise self.error(f"expected {want}, found {_describe(tok)}")
            else:
                name = tok[1]
            lname = name.lower()
            if lname in attrs:
                first = positions[lname]
                raise self.error(
                    f"attribute '{name}' is defined twice (first at line {first[0]}, "
                    f"column {first[1]})"
                )
            self.i += 1
            if kind == "attr":
                # The lexer has consumed the ``;`` (or seen the ``]``) after the value.
                attrs[lname] = value
                if lname not in names:
                    names[lname] = name
                    positions[lname] = (tok[2], tok[3])
                continue
            if toks[self.i][0] != "=":
                raise self.error(
                    f"expected '=' after attribute name '{name}', found {_describe(toks[self.i])}"
                )
            self.i += 1
            attrs[lname] = self.expr()
            if lname not in names:
                names[lname] = name
                positions[lname] = (tok[2], tok[3])
            nxt = toks[self.i]
            if nxt[0] == ";":
                self.i += 1
            elif nxt[0] != closer:
                end = "';' or ']'" if closer == "]" else "';'"
                raise self.error(
                    f"expected {end} after the value of attribute '{name}', found {_describe(nxt)}"
                )
        return ClassAd._from_parsed(attrs, names, positions)

    # --- expressions -----------------------------------------------------------------

    def expr(self) -> Expr:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.error(f"expression nested more than {MAX_DEPTH} levels deep")
        cond = self.binary(1)
        if self.toks[self.i][0] == "?":
            self.i += 1
            then = self.expr()
            self.expect(":", "in a conditional expression")
            otherwise = self.expr()
            cond = Conditional(cond, then, otherwise, cond.line, cond.column)
        self.depth -= 1
        return cond

    def binary(self, min_prec: int) -> Expr:
        toks = self.toks
        left = self.unary() if toks[self.i][0] in _UNARY else self.operand()
        saved = self.depth
        while True:
            op = toks[self.i][0]
            prec = _BINARY_PRECEDENCE.get(op)
            if prec is None or prec < min_prec:
                break
            self.i += 1
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise self.error(f"expression nested more than {MAX_DEPTH} levels deep")
            right = self.binary(prec + 1)
            left = BinaryOp(op, left, right, left.line, left.column)
        self.depth = saved
        return left

    def unary(self) -> Expr:
        tok = self.toks[self.i]
        if tok[0] in _UNARY:
            self.i += 1
            self.enter()
            operand = self.unary()
            self.depth -= 1
            if tok[0] == "-" and type(operand) is Literal:
                # A negative number is a literal, as in HTCondor (and as ``unparse`` writes it).
                v = operand.value
                if type(v) is int:
                    return Literal(wrap_int(-v), tok[2], tok[3])
                if type(v) is float:
                    return Literal(-v, tok[2], tok[3])
            return UnaryOp(tok[0], operand, tok[2], tok[3])
        return self.operand()

    def operand(self) -> Expr:
        """A primary expression followed by any ``.name`` and ``[index]`` suffixes."""
        toks = self.toks
        e = self.primary()
        if toks[self.i][0] not in (".", "["):
            return e
        saved = self.depth
        while True:
            kind = toks[self.i][0]
            if kind == ".":
                self.i += 1
                tok = toks[self.i]
                if tok[0] == "dotted":  # ``[...].r.a``: the lexer read ``r.a`` as one token
                    self.i += 1
                    for part in tok[1]:
                        self.enter()
                        e = Select(e, part, e.line, e.column)
                    continue
                if tok[0] not in ("name", "qname"):
                    raise self.error(
                        f"expected an attribute name after '.', found {_describe(tok)}"
                    )
                self.i += 1
                self.enter()
                e = Select(e, tok[1], e.line, e.column)
            elif kind == "[":
                self.i += 1
                self.enter()
                index = self.expr()
                self.expect("]", "to close the subscript")
                e = Subscript(e, index, e.line, e.column)
            else:
                break
        self.depth = saved
        return e

    def primary(self) -> Expr:
        tok = self.toks[self.i]
        kind = tok[0]
        self.i += 1
        if kind in ("int", "real", "str", "lit"):
            return Literal(tok[1], tok[2], tok[3])
        if kind == "name":
            if self.toks[self.i][0] == "(":
                return self.call(tok)
            return AttrRef(tok[1], tok[2], tok[3])
        if kind == "dotted":
            parts = tok[1]
            if self.depth + len(parts) > MAX_DEPTH:
                raise self.error(f"expression nested more than {MAX_DEPTH} levels deep", tok)
            line, column = tok[2], tok[3]
            e: Expr = AttrRef(parts[0], line, column)
            for part in parts[1:]:
                e = Select(e, part, line, column)
            return e
        if kind == "qname":
            return AttrRef(tok[1], tok[2], tok[3])
        if kind == "(":
            e = self.expr()
            self.expect(")", "to close the parenthesis")
            return e
        if kind == "{":
            return self.list_literal(tok)
        if kind == "[":
            self.i -= 1
            self.enter()
            ad = self.record_body()
            self.depth -= 1
            return RecordExpr(ad, tok[2], tok[3])
        self.i -= 1
        raise self.error(f"expected an expression, found {_describe(tok)}")

    def call(self, name_tok: Token) -> Expr:
        self.i += 1
        args: list[Expr] = []
        if self.toks[self.i][0] != ")":
            while True:
                args.append(self.expr())
                if self.toks[self.i][0] != ",":
                    break
                self.i += 1
        self.expect(")", f"to close the arguments of {name_tok[1]}()")
        return Call(name_tok[1], tuple(args), name_tok[2], name_tok[3])

    def list_literal(self, open_tok: Token) -> Expr:
        items: list[Expr] = []
        if self.toks[self.i][0] != "}":
            while True:
                items.append(self.expr())
                if self.toks[self.i][0] != ",":
                    break
                self.i += 1
        self.expect("}", "or ',' in a list")
        return ListExpr(tuple(items), open_tok[2], open_tok[3])


def _guarded(text: str, top: bool) -> ClassAd | Expr:
    parser = _Parser(text, top)
    try:
        return parser.top_level_ad() if top else parser.top_level_expr()
    except RecursionError:
        raise parser.error("expression nested too deeply") from None


def parse_ad(text: str) -> ClassAd:
    """Parses ``[ a = 1; b = 2 ]`` or the bracket-less ``a = 1; b = 2;`` form."""
    ad = _guarded(text, True)
    assert isinstance(ad, ClassAd)
    return ad


def parse_expr(text: str) -> Expr:
    """Parses one ClassAd expression such as ``other.Memory >= 2048 && Arch == "X86_64"``."""
    e = _guarded(text, False)
    assert isinstance(e, Expr)
    return e
