"""Known rules: names, their exact trees, resolve() and the docs table."""
from pathlib import Path

import pytest

from evo_nos.core.known import KNOWN, REFERENCE_NAMES, name_of, resolve
from evo_nos.operators.space import SearchSpace
from evo_nos.core.rules import Rule, RuleSyntaxError

S = "mul(sign_g, sign_m)"


@pytest.mark.parametrize("name,text", [
    ("sgd", "g"),
    ("signsgd", "sign_g"),
    ("momentum", "m"),
    ("adam", "adam"),
    ("rmsprop", "rmsprop"),
    ("powersign", f"mul(exp({S}), g)"),
    ("powersign-ld", f"mul(exp(mul(ld, {S})), g)"),
    ("powersign-cd", f"mul(exp(mul(cd, {S})), g)"),
    ("powersign-rd", f"mul(exp(mul(rd, {S})), g)"),
    ("powersign2", f"mul(pow(2, {S}), g)"),
    ("addsign", f"mul(add(1, {S}), g)"),
    ("addsign-ld", f"mul(add(1, mul(ld, {S})), g)"),
    ("addsign-cd", f"mul(add(1, mul(cd, {S})), g)"),
    ("addsign-rd", f"mul(add(1, mul(rd, {S})), g)"),
    ("addsign2", f"mul(add(2, {S}), g)"),
])
def test_named_rule_is_the_expected_tree(name, text):
    assert KNOWN[name] == Rule.parse(text)


def test_the_papers_table_has_fourteen_rules():
    table = [n for n in KNOWN if n.startswith("nos-")]
    assert table == [f"nos-{i}" for i in range(1, 15)]
    assert KNOWN["nos-1"].math == "(exp(sign(g)·sign(m̂)) + clip(g, 10⁻⁴))·g"
    assert KNOWN["nos-14"].math == "drop(m̂, 0.3)·exp(10⁻³w)"
    assert KNOWN["nos-14"].needs == frozenset({"m", "w", "rng"})


def test_decay_variants_need_total_steps_and_plain_ones_do_not():
    for name, rule in KNOWN.items():
        assert rule.uses_decay == name.endswith(("-ld", "-cd", "-rd")), name


def test_every_known_rule_follows_the_papers_grammar():
    # AddSign with a decay needs 4 binary functions: (1 + ld·(sign(g)·sign(m̂)))·g
    space = SearchSpace(max_binary=4, root="slot")
    for name, rule in KNOWN.items():
        assert space.violation(rule) is None, name
    too_big = {n for n, r in KNOWN.items() if not SearchSpace(max_binary=3, root="slot").contains(r)}
    assert too_big == {"addsign-ld", "addsign-cd", "addsign-rd"}


def test_reference_names_are_known():
    assert set(REFERENCE_NAMES) <= set(KNOWN)


def test_resolve_accepts_names_strings_and_rules():
    rule = KNOWN["powersign"]
    assert resolve("powersign") is rule
    assert resolve("  powersign ") is rule
    assert resolve(f"mul(exp({S}), g)") == rule
    assert resolve(rule) is rule


def test_resolve_explains_an_unknown_name():
    with pytest.raises(RuleSyntaxError, match="'powersine' is neither a known rule name"):
        resolve("powersine")
    with pytest.raises(RuleSyntaxError, match="unknown token 'foo' at position 4"):
        resolve("mul(foo, g)")
    with pytest.raises(TypeError, match="expected a rule string"):
        resolve(42)


def test_name_of_inverts_the_table():
    for name, rule in KNOWN.items():
        assert name_of(rule) == name
    assert name_of(Rule.parse("mul(g, m)")) is None


def test_docs_list_every_known_rule():
    from evo_nos.optim.export import known_rules_markdown

    doc = (Path(__file__).resolve().parents[1] / "docs" / "rules.md").read_text(encoding="utf-8")
    assert known_rules_markdown() in doc, (
        "docs/rules.md is out of date: paste evo_nos.optim.export.known_rules_markdown() into it")
