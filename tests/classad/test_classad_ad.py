"""The ClassAd mapping, evaluation entry points, lazy references and cycles."""

from __future__ import annotations

import pytest

from pilotwms.classad import ERROR, UNDEFINED, ClassAd, parse_ad, parse_expr, unparse
from pilotwms.classad.ast import Literal


def test_mapping_protocol_is_case_insensitive_and_ordered() -> None:
    ad = ClassAd()
    ad["Executable"] = "/bin/sh"
    ad["Arguments"] = "-c true"
    ad["executable"] = "/bin/bash"
    assert list(ad) == ["Executable", "Arguments"]
    assert ad.evaluate("EXECUTABLE") == "/bin/bash"
    assert ad.get("missing") is None
    del ad["ARGUMENTS"]
    assert "arguments" not in ad and len(ad) == 1


def test_setitem_accepts_expressions_and_python_values() -> None:
    ad = ClassAd()
    ad["a"] = parse_expr("b + 1")
    ad["b"] = 2
    ad["l"] = [1, "x", 2.5, True]
    ad["r"] = {"x": 1}
    ad["u"] = None
    assert ad.evaluate("a") == 3
    assert ad.evaluate("l") == [1, "x", 2.5, True]
    assert ad.evaluate("u") is UNDEFINED
    assert parse_expr("r.x").evaluate(ad) == 1
    with pytest.raises(ValueError, match="64 bits"):
        ad["big"] = 1 << 70


def test_from_python_and_to_python_round_trip() -> None:
    data = {"Name": "job", "Cpus": 4, "Tags": ["a", "b"], "Env": {"HOME": "/home"}}
    ad = ClassAd.from_python(data)
    assert ad.to_python() == data


def test_copy_is_independent_but_shares_expressions() -> None:
    ad = parse_ad("[ a = 1; b = a + 1 ]")
    clone = ad.copy()
    clone["a"] = 10
    assert ad.evaluate("b") == 2 and clone.evaluate("b") == 11
    assert clone["b"] is ad["b"]


def test_equality_is_structural() -> None:
    assert parse_ad("[A = 1 + 2; b = {1}]") == parse_ad("[ b = { 1 } ; a = (1+2) ]")
    assert parse_ad("[a = 1]") != parse_ad("[a = 1.0]")


def test_missing_attribute_evaluates_to_undefined() -> None:
    assert parse_ad("[a = 1]").evaluate("b") is UNDEFINED


def test_evaluation_is_lazy() -> None:
    ad = parse_ad("[ a = 1/0; b = true || a ]")
    assert ad.evaluate("b") is True
    assert ad.evaluate("a") is ERROR


@pytest.mark.parametrize(
    "text", ["[a = b; b = a]", "[a = a]", "[a = b + 1; b = c; c = a]", "[a = {a}[0]]"]
)
def test_reference_cycles_evaluate_to_error(text: str) -> None:
    assert parse_ad(text).evaluate("a") is ERROR


def test_exponential_but_acyclic_sharing_is_not_a_cycle() -> None:
    ad = parse_ad("[ x = 1; y = x + x; z = y + y ]")
    assert ad.evaluate("z") == 4


def test_cross_ad_cycle_is_error() -> None:
    my = parse_ad("[ a = other.b ]")
    target = parse_ad("[ b = other.a ]")
    assert my.evaluate("a", target) is ERROR


def test_deep_reference_chain_does_not_crash() -> None:
    text = "[" + "; ".join(f"a{i} = a{i + 1} + 1" for i in range(3000)) + "; a3000 = 0 ]"
    assert parse_ad(text).evaluate("a0") in (3000, ERROR)


def test_nested_records_see_their_parents() -> None:
    ad = parse_ad("[ x = 5; r = [ y = x + 1; z = parent.x; q = [ w = root.x ] ] ]")
    assert parse_expr("r.y").evaluate(ad) == 6
    assert parse_expr("r.z").evaluate(ad) == 5
    assert parse_expr("r.q.w").evaluate(ad) == 5


def test_unscoped_name_falls_back_to_the_target_ad() -> None:
    my = parse_ad("[ Requirements = Memory > 1000 ]")
    target = parse_ad("[ Memory = 2048 ]")
    assert my.evaluate("Requirements", target) is True
    assert my.evaluate("Requirements") is UNDEFINED


def test_target_attributes_are_evaluated_in_the_target_scope() -> None:
    my = parse_ad("[ a = 1; want = other.b ]")
    target = parse_ad("[ a = 100; b = a + my.a + other.a ]")
    # inside the target, `a` and `my.a` are the target's own, `other.a` is ours
    assert my.evaluate("want", target) == 201


def test_expr_evaluate_without_ads() -> None:
    assert parse_expr("1 + 2").evaluate() == 3
    assert parse_expr("x").evaluate() is UNDEFINED


def test_compiled_form_is_cached_on_the_node() -> None:
    e = parse_expr("a + 1")
    ad = parse_ad("[a = 1]")
    assert e.evaluate(ad) == 2
    fn = e._fn
    assert e.evaluate(ad) == 2 and e._fn is fn


def test_unparse_keeps_strings_escaped_and_names_quoted() -> None:
    ad = ClassAd({"odd name": 'say "hi"\n', "Tabs": "\t", "n": -1.5})
    text = unparse(ad)
    assert text == '[ \'odd name\' = "say \\"hi\\"\\n"; Tabs = "\\t"; n = -1.5 ]'
    assert parse_ad(text) == ad


def test_pretty_unparse_puts_one_attribute_per_line() -> None:
    text = unparse(parse_ad("[a = 1; b = {1, 2}]"), pretty=True)
    assert text == "[\n    a = 1;\n    b = { 1, 2 };\n]"


def test_literal_values_are_python_values() -> None:
    assert parse_ad("[ l = {1, [a = 2]} ]").evaluate("l")[1].evaluate("a") == 2
    assert isinstance(parse_expr("1"), Literal)
