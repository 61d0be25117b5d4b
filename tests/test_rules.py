"""Rule: canonical string round trip, display forms, structure, parse errors."""
import pytest

from evo_nos.core.known import KNOWN
from evo_nos.core.primitives import BINARY, OPERAND, PRIMITIVES, UNARY
from evo_nos.core.rules import Rule, RuleSyntaxError

POWERSIGN = "mul(exp(mul(sign_g, sign_m)), g)"


def _rule_using(prim) -> str:
    """The smallest rule string that uses ``prim``."""
    if prim.kind == OPERAND:
        return prim.name
    if prim.kind == UNARY:
        return f"{prim.name}(g)"
    return f"{prim.name}(g, m)"


@pytest.mark.parametrize("name", list(KNOWN))
def test_known_rule_round_trips(name):
    rule = KNOWN[name]
    text = str(rule)
    assert Rule.parse(text) == rule
    assert str(Rule.parse(text)) == text


@pytest.mark.parametrize("prim", [p for p in PRIMITIVES if p.name != "id"], ids=lambda p: p.name)
def test_rule_with_each_primitive_round_trips(prim):
    text = _rule_using(prim)
    rule = Rule.parse(text)
    assert rule.op == prim.name
    assert str(rule) == text
    assert Rule.parse(str(rule)) == rule


def test_whitespace_is_free_and_the_canonical_form_is_fixed():
    assert str(Rule.parse("  mul ( exp(mul(sign_g,sign_m)) ,g ) ")) == POWERSIGN


def test_identity_is_accepted_and_never_printed():
    assert str(Rule.parse("exp(id(g))")) == "exp(g)"
    assert Rule.make("id", Rule("g")) == Rule("g")
    with pytest.raises(ValueError, match="id is not stored"):
        Rule("id", (Rule("g"),))


def test_powersign_math_and_latex():
    rule = Rule.parse(POWERSIGN)
    assert rule.math == "exp(sign(g)·sign(m̂))·g"
    assert rule.latex == (r"e^{\operatorname{sign}(g) \cdot \operatorname{sign}(\hat{m})}"
                          r" \cdot g")


def test_addsign_math_and_latex_parenthesise_the_sum():
    rule = Rule.parse("mul(add(1, mul(sign_g, sign_m)), g)")
    assert rule.math == "(1 + sign(g)·sign(m̂))·g"
    assert rule.latex == (r"\left(1 + \operatorname{sign}(g) \cdot \operatorname{sign}(\hat{m})"
                          r"\right) \cdot g")


@pytest.mark.parametrize("text,math", [
    ("adam", "Adam"),
    ("sub(g, sub(m, v))", "g − (m̂ − v̂)"),
    ("sub(sub(g, m), v)", "g − m̂ − v̂"),
    ("div(drop1(m), exp(g2))", "drop(m̂, 0.1)/(exp(g²) + δ)"),
    ("pow(2, mul(sign_g, sign_m))", "2^(sign(g)·sign(m̂))"),
    ("neg(add(g, m))", "−(g + m̂)"),
    ("mul(sqrt(v), log(g))", "√|v̂|·log|g|"),
    ("mul(drop3(m), exp(w3))", "drop(m̂, 0.3)·exp(10⁻³w)"),
    ("mul(exp(mul(ld, mul(sign_g, sign_m))), g)", "exp(ld·sign(g)·sign(m̂))·g"),
])
def test_math_form(text, math):
    assert Rule.parse(text).math == math


@pytest.mark.parametrize("text,latex", [
    ("div(g, add(v, m))", r"\frac{g}{\hat{v} + \hat{m} + \delta}"),
    ("neg(add(g, m))", r"-\left(g + \hat{m}\right)"),
    ("clip4(g2)", r"\operatorname{clip}\left(g^{2}, 10^{-4}\right)"),
])
def test_latex_form(text, latex):
    assert Rule.parse(text).latex == latex


def test_structure_of_powersign():
    rule = Rule.parse(POWERSIGN)
    assert rule.complexity == 6
    assert rule.n_binary == 2
    assert rule.depth == 4
    assert rule.needs == frozenset({"m"})
    assert not rule.uses_decay
    assert [n.op for n in rule.nodes()] == ["mul", "exp", "mul", "sign_g", "sign_m", "g"]
    assert rule.kind == BINARY


def test_needs_collects_state_from_every_node():
    assert Rule.parse("mul(adam, exp(w3))").needs == frozenset({"m", "v", "w"})
    assert Rule.parse("add(drop1(r), ld)").needs == frozenset({"r", "rng", "T"})
    assert Rule.parse("add(drop1(r), ld)").uses_decay
    assert Rule.parse("g").needs == frozenset()


def test_key_ignores_argument_order_of_commutative_functions_only():
    assert Rule.parse("mul(g, m)").key == Rule.parse("mul(m, g)").key
    assert Rule.parse("add(exp(g), mul(m, v))").key == Rule.parse("add(mul(v, m), exp(g))").key
    assert Rule.parse("sub(g, m)").key != Rule.parse("sub(m, g)").key
    assert Rule.parse("mul(g, m)") != Rule.parse("mul(m, g)")   # the rules stay distinct


def test_rules_are_hashable_values():
    a, b = Rule.parse(POWERSIGN), Rule.parse(POWERSIGN)
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
    assert repr(a) == f"Rule.parse({POWERSIGN!r})"


# ---- errors ------------------------------------------------------------------------------

def _error(text) -> str:
    with pytest.raises(RuleSyntaxError) as info:
        Rule.parse(text)
    assert isinstance(info.value, ValueError)
    return str(info.value)


def test_unknown_token_is_named_with_its_position():
    msg = _error("mul(foo, g)")
    assert msg.startswith("unknown token 'foo' at position 4")
    assert "mul(foo, g)\n      ^" in msg      # pointer under the token


def test_known_name_inside_a_rule_gets_a_hint():
    assert "a known rule name" in _error("mul(powersign, g)")


def test_wrong_arity_names_the_function():
    assert _error("exp(g, m)").startswith("'exp' takes 1 argument(s), got 2 at position 0")
    assert _error("mul(g)").startswith("'mul' takes 2 argument(s), got 1 at position 0")
    assert _error("add(g, exp)").startswith("'exp' takes 1 argument(s), got 0 at position 7")
    assert _error("g(m)").startswith("'g' takes 0 argument(s), got 1 at position 0")


def test_trailing_garbage_is_reported():
    assert _error("g)").startswith("unexpected ')' after a complete rule at position 1")
    assert _error("mul(g, m) m").startswith("unexpected 'm' after a complete rule at position 10")


def test_empty_rule_is_reported():
    assert _error("").startswith("empty rule at position 0")
    assert _error("   ").startswith("empty rule")


def test_unexpected_character_and_unclosed_parenthesis():
    assert _error("mul(g; m)").startswith("unexpected character ';' at position 5")
    assert _error("mul(g, m").startswith("unexpected end of rule, expected ')' at position 8")
    assert _error("mul(, g)").startswith("expected a primitive, found ',' at position 4")


def test_a_non_string_is_a_type_error():
    with pytest.raises(TypeError, match="must be str"):
        Rule.parse(3)


def test_direct_construction_checks_arity_and_names():
    with pytest.raises(ValueError, match="'exp' takes 1 argument"):
        Rule("exp", ())
    with pytest.raises(ValueError, match="unknown primitive 'expo'"):
        Rule("expo", ())
