"""Parsing: both top-level forms, comments, literals, positions, and errors that point at the
fault."""

from __future__ import annotations

import classad2
import pytest

from pilotwms.classad import ClassAd, ClassAdSyntaxError, Expr, parse_ad, parse_expr, unparse
from pilotwms.classad.ast import (
    AttrRef,
    BinaryOp,
    Call,
    ListExpr,
    Literal,
    RecordExpr,
    Select,
    UnaryOp,
)


def test_record_and_bracketless_forms_give_the_same_ad() -> None:
    assert parse_ad("[ a = 1; b = 2 ]") == parse_ad("a = 1; b = 2;") == parse_ad("a = 1; b = 2")


@pytest.mark.parametrize("text", ["[a = 1];", "[a = 1] ; \n", "  [a = 1]  ", "[a = 1;]"])
def test_trailing_semicolon_and_blanks_after_the_record_are_accepted(text: str) -> None:
    assert parse_ad(text) == parse_ad("[a = 1]")


def test_empty_text_is_an_empty_ad() -> None:
    assert parse_ad("") == ClassAd()
    assert len(parse_ad("[]")) == 0


def test_comments_of_all_three_kinds_are_ignored() -> None:
    text = """
    # a hash comment
    // a slash comment
    a = 1; /* a block
    comment */ b = "x # not a comment";   // trailing
    """
    ad = parse_ad(text)
    assert ad.evaluate("a") == 1
    assert ad.evaluate("b") == "x # not a comment"


def test_attribute_names_are_case_insensitive_and_keep_the_first_spelling() -> None:
    ad = parse_ad("[ Executable = 1 ]")
    assert "executable" in ad and "EXECUTABLE" in ad
    assert list(ad) == ["Executable"]
    assert ad["eXecutable"] == Literal(1)


def test_quoted_attribute_names_allow_any_text() -> None:
    ad = parse_ad("[ 'odd name' = 1; b = 'odd name' + 1 ]")
    assert ad.evaluate("odd name") == 1
    assert ad.evaluate("b") == 2


def test_duplicate_attribute_is_reported_at_the_second_definition() -> None:
    with pytest.raises(ClassAdSyntaxError) as info:
        parse_ad("[\n  a = 1;\n  A = 2\n]")
    err = info.value
    assert (err.line, err.column) == (3, 3)
    assert "'A'" in err.message and "line 2, column 3" in err.message


def test_duplicate_in_a_nested_record_is_an_error_too() -> None:
    """On purpose unlike classad2, which keeps the last definition of a nested record silently:
    a DAG node declared twice would then run once, and the user would never know why."""
    with pytest.raises(ClassAdSyntaxError) as info:
        parse_ad("[ nodes = [\n  n = 1;\n  n = 2 ] ]")
    assert (info.value.line, info.value.column) == (3, 3)
    assert "'n'" in info.value.message
    assert classad2.parseOne("[ nodes = [ n = 1; n = 2 ] ]").eval("nodes").eval("n") == 2


def test_missing_semicolon_points_at_the_next_attribute() -> None:
    with pytest.raises(ClassAdSyntaxError) as info:
        parse_ad('Requirements = member("x",\n    other.RTE)\nRank = 0;\n')
    err = info.value
    assert (err.line, err.column) == (3, 1)
    assert err.source_line == "Rank = 0;"
    assert err.format().splitlines()[-1] == "^"


@pytest.mark.parametrize(
    ("text", "line", "column"),
    [
        ("a = ;", 1, 5),
        ("a = (1 + 2;", 1, 11),
        ("a = {1, 2", 1, 10),
        ('a = "unterminated', 1, 5),
        ("a = 1 /* never closed", 1, 7),
        ("a = 1;\nb = 2 $", 2, 7),
        ("[ a = 1 ] b = 2", 1, 11),
        ("a = 09", 1, 5),
        ("a = 1.", 1, 7),
        ("true = 1", 1, 1),
        ("a = f(1,)", 1, 9),
    ],
)
def test_syntax_error_points_at_the_offending_token(text: str, line: int, column: int) -> None:
    with pytest.raises(ClassAdSyntaxError) as info:
        parse_ad(text)
    assert (info.value.line, info.value.column) == (line, column), info.value.format()


def test_syntax_error_is_a_value_error_with_a_caret_under_the_column() -> None:
    with pytest.raises(ValueError) as info:
        parse_expr("1 + * 2")
    assert isinstance(info.value, ClassAdSyntaxError)
    assert (
        info.value.format() == "line 1, column 5: expected an expression, found '*'\n1 + * 2\n    ^"
    )


def test_deep_nesting_is_a_syntax_error_not_a_crash() -> None:
    with pytest.raises(ClassAdSyntaxError, match="nested"):
        parse_expr("(" * 5000 + "1" + ")" * 5000)
    with pytest.raises(ClassAdSyntaxError, match="nested"):
        parse_expr("+".join(["1"] * 5000))
    with pytest.raises(ClassAdSyntaxError, match="nested"):
        parse_ad("a = " + "[b = " * 3000 + "1" + "]" * 3000)


def test_long_lists_are_not_nesting() -> None:
    e = parse_expr("{" + ", ".join(str(i) for i in range(5000)) + "}")
    assert isinstance(e, ListExpr) and len(e.items) == 5000


def test_every_node_carries_line_and_column() -> None:
    e = parse_expr('x &&\n  member("a", other.L)')
    assert isinstance(e, BinaryOp)
    assert (e.line, e.column) == (1, 1)
    call = e.right
    assert isinstance(call, Call)
    assert (call.line, call.column) == (2, 3)
    assert (call.args[0].line, call.args[0].column) == (2, 10)
    select = call.args[1]
    assert isinstance(select, Select) and (select.line, select.column) == (2, 15)


def test_ad_positions_are_those_of_the_attribute_names() -> None:
    ad = parse_ad('[\n  Executable = "/bin/sh";\n  Args = {"a",\n "b"};\n]')
    assert ad.position("executable") == (2, 3)
    assert ad.position("Args") == (3, 3)
    value = ad["executable"]
    assert (value.line, value.column) == (2, 16)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("42", 42),
        ("0x1f", 31),
        ("017", 15),
        ("1.5e3", 1500.0),
        (".25", 0.25),
        ('"a\\"b\\\\c\\n"', 'a"b\\c\n'),
        ('"\\101"', "A"),
        ("TRUE", True),
        ("False", False),
    ],
)
def test_literals(text: str, value: object) -> None:
    e = parse_expr(text)
    assert isinstance(e, Literal)
    assert e.value == value and type(e.value) is type(value)


def test_structural_equality_ignores_positions_and_parentheses() -> None:
    assert parse_expr("(a + 1)") == parse_expr("A+1")
    assert hash(parse_expr("a + 1")) == hash(parse_expr("\n  a+1"))
    assert parse_expr("a + 1") != parse_expr("a + 1.0")
    assert parse_expr("1 =?= 2") == parse_expr("1 is 2")


def test_precedence_follows_htcondor() -> None:
    assert unparse(parse_expr("a || b && c | d ^ e & f == g < h << i + j * -k")) == (
        "a || b && c | d ^ e & f == g < h << i + j * -k"
    )
    e = parse_expr("1 + 2 * 3")
    assert isinstance(e, BinaryOp) and e.op == "+"
    e = parse_expr("c ? 1 : d ? 2 : 3")
    assert parse_expr("c ? 1 : (d ? 2 : 3)") == e
    assert isinstance(parse_expr("-x.y"), UnaryOp)


def test_nested_records_and_lists_parse() -> None:
    e = parse_expr('{ [ a = 1; b = { "x" } ], [] }')
    assert isinstance(e, ListExpr) and isinstance(e.items[0], RecordExpr)


def test_parse_expr_rejects_trailing_text() -> None:
    with pytest.raises(ClassAdSyntaxError) as info:
        parse_expr("a = 1")
    assert info.value.column == 3


def test_expr_is_the_public_base_class() -> None:
    assert isinstance(parse_expr("1"), Expr)


def _layout(e: object) -> object:
    """A node's type, position and fields, recursively: what ``==`` ignores included."""
    if isinstance(e, ClassAd):
        return [(e.name_of(k), e.position(k), _layout(e[k])) for k in e]
    if isinstance(e, tuple):
        return [_layout(x) for x in e]
    if not isinstance(e, Expr):
        return (type(e).__name__, repr(e))
    fields = [getattr(e, f) for f in type(e).__slots__ if not f.startswith("_")]
    return (type(e).__name__, e.line, e.column, [_layout(f) for f in fields])


@pytest.mark.parametrize(
    "text",
    [
        'a = other.Status    == "Production"    && other.CPUs    >= 4;',
        "a = (Memory    > 2048.5) || other.Mem    <= 1e3 ? x    != y : 0x10;",
        'a = f(other.Arch    == "x86_64", b    =?= undefined);',
        'a = { other.A    == "q\\"uote", other.B.C    != my.D };',
        'Type    = "Job"; Args    = {"a",    "b"}; N    = 42; R    = 1.5; S    = "e\\t";',
    ],
)
def test_one_token_shapes_give_the_trees_and_positions_of_separate_tokens(text: str) -> None:
    """The lexer reads ``Name = literal;`` and ``x == literal`` as single tokens; a comment
    (in place of blanks, so no column moves) stops that, and the result must be the same."""
    separate = text.replace("    ", "/**/")
    assert separate != text
    assert _layout(parse_ad(text)) == _layout(parse_ad(separate))


def test_lines_are_counted_inside_multi_line_strings() -> None:
    ad = parse_ad('[\n  a = "one\ntwo";\n  b = x + "three\nfour" + y;\n  c = 1\n]')
    assert ad.position("b") == (4, 3)
    b = ad["b"]
    assert isinstance(b, BinaryOp) and isinstance(b.right, AttrRef)
    assert (b.right.line, b.right.column) == (5, 9)
    assert ad.position("c") == (6, 3)
    with pytest.raises(ClassAdSyntaxError) as info:
        parse_expr('"a\nb" + \n  * 2')
    assert (info.value.line, info.value.column) == (3, 3)
