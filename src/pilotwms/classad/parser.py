"""Recursive-descent parser for ClassAds and ClassAd expressions.

Binary operators are parsed by precedence climbing with HTCondor's table, written as a loop
(see ``_Parser.expr``).  Every node gets the line and column of its first token, and every
syntax error names the token where the parser got stuck.  Nesting is bounded (parentheses,
records, lists and long operator chains all count), so hostile input gives a syntax error
instead of exhausting the interpreter's stack.

The lexer hands over some common pieces already built (``attr`` and ``cmp`` tokens, see
``lexer``); the parser applies to them the nesting checks their separate tokens would have met,
so that the result never depends on which way a piece was read.
"""

from __future__ import annotations

from typing import Final

from pilotwms.classad.ad import ClassAd
from pilotwms.classad.ast import (
    BINARY_PRECEDENCE,
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

_UNARY: Final = frozenset({"-", "+", "!", "~"})
_LITERAL_KINDS: Final = frozenset({"str", "int", "real", "lit"})
_OPERAND_KINDS: Final = _LITERAL_KINDS | {"name", "qname", "dotted"}


def _describe(tok: Token) -> str:
    if tok[0] == "eof":
        return "end of input"
    if tok[0] == "str":
        return f'string "{tok[1]}"'
    if tok[0] in ("int", "real"):
        return f"number {tok[1]}"
    if tok[0] in ("name", "qname", "attr"):
        return f"name '{tok[1]}'"
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
        i = self.i
        while True:
            tok = toks[i]
            kind = tok[0]
            if kind == "attr":
                # ``Name = literal;`` in one token, its ``;`` (or the look at ``]``) included.
                name = tok[1]
                lname = name.lower()
                if lname in attrs:
                    self.i = i
                    raise self._defined_twice(name, positions[lname])
                attrs[lname] = tok[4]
                names[lname] = name
                positions[lname] = tok[2:4]
                i += 1
                continue
            if kind == closer:
                break
            if kind not in ("name", "qname"):
                self.i = i
                want = "an attribute name" + (" or ']'" if closer == "]" else "")
                raise self.error(f"expected {want}, found {_describe(tok)}")
            name = tok[1]
            lname = name.lower()
            if lname in attrs:
                self.i = i
                raise self._defined_twice(name, positions[lname])
            i += 1
            if toks[i][0] != "=":
                self.i = i
                raise self.error(
                    f"expected '=' after attribute name '{name}', found {_describe(toks[i])}"
                )
            self.i = i + 1
            attrs[lname] = self.expr()
            names[lname] = name
            positions[lname] = tok[2:4]
            i = self.i
            nxt = toks[i]
            if nxt[0] == ";":
                i += 1
            elif nxt[0] != closer:
                end = "';' or ']'" if closer == "]" else "';'"
                raise self.error(
                    f"expected {end} after the value of attribute '{name}', found {_describe(nxt)}"
                )
        self.i = i
        return ClassAd._from_parsed(attrs, names, positions)

    def _defined_twice(self, name: str, first: tuple[int, int]) -> ClassAdSyntaxError:
        return self.error(
            f"attribute '{name}' is defined twice (first at line {first[0]}, column {first[1]})"
        )

    # --- expressions -----------------------------------------------------------------

    def expr(self) -> Expr:
        """One expression, ``?:`` included.

        Binary operators are parsed by precedence climbing, written as a loop over a stack of
        suspended ``(min_prec, left, op, saved_depth)`` frames instead of one recursive call
        per operand: each frame is exactly a recursive call's state, so trees, depth limits and
        errors are those of the recursive form, for far fewer Python calls.  The operands that
        make up most of real expressions (literals, names, ``other.X``) are read inline.
        """
        depth = self.depth + 1
        if depth > MAX_DEPTH:
            self.depth = depth
            raise self.error(f"expression nested more than {MAX_DEPTH} levels deep")
        toks = self.toks
        i = self.i
        min_prec = 1
        frames: list[tuple[int, Expr, str, int]] = []
        left: Expr
        while True:
            # ``saved`` is the depth this frame restores when it hands ``left`` back.
            saved = depth
            tok = toks[i]
            kind = tok[0]
            if kind == "cmp":
                # ``a.b == c.d`` read as one token; the checks are those the separate tokens
                # would have met: the left side's names, then the operator and the right side.
                if depth + tok[4] > MAX_DEPTH:
                    raise self.error(f"expression nested more than {MAX_DEPTH} levels deep", tok)
                depth += 1
                if depth + tok[6] > MAX_DEPTH:
                    raise self.error(
                        f"expression nested more than {MAX_DEPTH} levels deep",
                        ("", None, tok[2], tok[5]),
                    )
                left = tok[1]
                i += 1
            elif kind == "dotted":
                parts = tok[1]
                if depth + len(parts) > MAX_DEPTH:
                    raise self.error(f"expression nested more than {MAX_DEPTH} levels deep", tok)
                line = tok[2]
                column = tok[3]
                left = AttrRef(parts[0], line, column)
                for part in parts[1:]:
                    left = Select(left, part, line, column)
                i += 1
            elif kind in _LITERAL_KINDS:
                left = Literal(tok[1], tok[2], tok[3])
                i += 1
            elif kind == "name" and toks[i + 1][0] != "(":
                left = AttrRef(tok[1], tok[2], tok[3])
                i += 1
            else:
                self.i = i
                self.depth = depth
                left = self.unary() if kind in _UNARY else self.primary()
                i = self.i
            kind = toks[i][0]
            if kind in {".", "["}:
                self.i = i
                self.depth = depth
                left = self.postfix(left)
                i = self.i
                kind = toks[i][0]
            # The frame that has just read ``left`` consumes operators binding at least as
            # tightly as its ``min_prec``; one that cannot hands ``left`` back to its parent.
            while True:
                prec = BINARY_PRECEDENCE.get(kind)
                if prec is not None and prec >= min_prec:
                    i += 1
                    depth += 1
                    if depth > MAX_DEPTH:
                        self.i = i
                        raise self.error(f"expression nested more than {MAX_DEPTH} levels deep")
                    frames.append((min_prec, left, kind, saved))
                    min_prec = prec + 1
                    break
                depth = saved
                if not frames:
                    min_prec = 0
                    break
                min_prec, first, op, saved = frames.pop()
                left = BinaryOp(op, first, left, first.line, first.column)
            if not min_prec:
                break
        if kind == "?":
            self.i = i + 1
            self.depth = depth
            then = self.expr()
            self.expect(":", "in a conditional expression")
            otherwise = self.expr()
            left = Conditional(left, then, otherwise, left.line, left.column)
            i = self.i
        self.i = i
        self.depth = depth - 1
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
        e = self.primary()
        if self.toks[self.i][0] in (".", "["):
            return self.postfix(e)
        return e

    def postfix(self, e: Expr) -> Expr:
        """``e`` with the ``.name`` and ``[index]`` suffixes that follow it."""
        toks = self.toks
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
        args = self.items(")")
        self.expect(")", f"to close the arguments of {name_tok[1]}()")
        return Call(name_tok[1], args, name_tok[2], name_tok[3])

    def list_literal(self, open_tok: Token) -> Expr:
        items = self.items("}")
        self.expect("}", "or ',' in a list")
        return ListExpr(items, open_tok[2], open_tok[3])

    def items(self, closer: str) -> tuple[Expr, ...]:
        """Comma-separated expressions up to ``closer`` (not consumed).

        An item that is a single literal or name, as most arguments are, is built here rather
        than by ``expr``, with the same nesting checks.
        """
        toks = self.toks
        i = self.i
        found: list[Expr] = []
        if toks[i][0] == closer:
            return ()
        limit = MAX_DEPTH - 1 - self.depth  # the names a dotted item may have
        while True:
            tok = toks[i]
            kind = tok[0]
            if kind in _OPERAND_KINDS and limit >= 0 and toks[i + 1][0] in (",", closer):
                if kind == "dotted":
                    parts = tok[1]
                    if len(parts) > limit:
                        self.i = i
                        raise self.error(
                            f"expression nested more than {MAX_DEPTH} levels deep", tok
                        )
                    line = tok[2]
                    column = tok[3]
                    e: Expr = AttrRef(parts[0], line, column)
                    for part in parts[1:]:
                        e = Select(e, part, line, column)
                    found.append(e)
                elif kind in {"name", "qname"}:
                    found.append(AttrRef(tok[1], tok[2], tok[3]))
                else:
                    found.append(Literal(tok[1], tok[2], tok[3]))
                i += 1
            else:
                self.i = i
                found.append(self.expr())
                i = self.i
            if toks[i][0] != ",":
                break
            i += 1
        self.i = i
        return tuple(found)


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
