"""The algebra of rules: sympy forms, exact simplification, readable forms, and the hall
of fame that groups the spellings of one rule."""
import pickle
import random

import pytest
import sympy
import torch

from evo_nos.core import algebra
from evo_nos.core.algebra import (REWRITES, ZERO, Rewrite, check_rewrite, draws, equivalent,
                                  readable, readable_latex, simplified_complexity, simplify,
                                  to_sympy)
from evo_nos.core.known import KNOWN
from evo_nos.core.primitives import PRIMITIVES, RuleSettings
from evo_nos.core.rules import Rule
from evo_nos.fitness.evaluation import Evaluation
from evo_nos.operators.space import SearchSpace
from evo_nos.optim.kernels import compile_direction
from evo_nos.search import HallOfFame

P = Rule.parse
POWERSIGN = "mul(exp(mul(sign_g, sign_m)), g)"


# -- the sympy form of every primitive --------------------------------------------------------
@pytest.mark.parametrize("prim", PRIMITIVES, ids=lambda p: p.name)
def test_every_primitive_has_a_sympy_form_in_the_table(prim):
    assert prim.sympy, f"{prim.name} has no sympy template"
    expr = algebra.template(prim.name)          # parses, names only known things
    assert isinstance(expr, sympy.Basic)


@pytest.mark.parametrize("text,expected", [
    ("g2", "g**2"), ("g3", "g**3"), ("sign_g", "Sign(g)"), ("w4", "w/10000"),
    ("adam", "m̂/(sqrt(v̂) + ε_adam)"), ("div(g, m)", "g/(m̂ + δ)"),
    ("log(g)", "log(Abs(g))"), ("sqrt(g)", "sqrt(Abs(g))"), ("clip4(g)", "Clip(g, 1/10000)"),
    ("keep(g, m)", "g"), ("sub(m, m)", "0"), ("sqrt(g2)", "Abs(g)"),
])
def test_sympy_forms_of_rules(text, expected):
    assert str(to_sympy(P(text))) == expected


def test_each_random_occurrence_is_its_own_draw():
    assert to_sympy(P("sub(eps, eps)")) != 0
    assert to_sympy(P("sub(drop1(g), drop1(g))")) != 0
    assert to_sympy(P("sub(eps_t, eps_t)")) != 0
    assert to_sympy(P("sub(g, g)")) == 0
    # numbered in the order the compiled rule draws: drop's argument first
    assert str(to_sympy(P("drop1(add(eps, eps))"))) == "Drop(Noise(1) + Noise(2), 1/10, 3)"
    assert draws(P("drop1(add(eps, keep(g, eps_t)))")) == ("eps", "drop1")


# -- simplification ------------------------------------------------------------------------------
@pytest.mark.parametrize("text,simple,text_form", [
    ("add(g, sub(m, m))", "g", "g"),
    ("mul(g, 1)", "g", "g"),
    ("mul(1, g)", "g", "g"),
    ("sign(sign(sign_g))", "sign_g", "sign(g)"),
    ("neg(neg(g))", "g", "g"),
    ("keep(g, m)", "g", "g"),
    ("keep(add(g, sub(v, v)), eps)", "g", "g"),
    ("sign(g)", "sign_g", "sign(g)"),
    ("sign(mul(sign_g, sign_m))", "mul(sign_g, sign_m)", "sign(g)·sign(m̂)"),
    ("sub(m, m)", "sub(1, 1)", "0"),
    ("mul(sub(g, g), m)", "sub(1, 1)", "0"),
    ("sub(sub(1, 1), m)", "neg(m)", "−m̂"),
    ("add(g, neg(m))", "sub(g, m)", "g − m̂"),
    ("neg(sub(g, m))", "sub(m, g)", "m̂ − g"),
    ("add(m, m)", "mul(2, m)", "2·m̂"),
    ("mul(g, g)", "g2", "g²"),
    ("mul(g2, g)", "g3", "g³"),
    ("clip5(clip3(g))", "clip5(g)", "clip(g, 10⁻⁵)"),
    ("sign(clip4(m))", "sign_m", "sign(m̂)"),
    ("exp(log(v))", "v", "v̂"),
    ("log(exp(sign_g))", "sign_g", "sign(g)"),
    ("pow(g, sub(m, m))", "1", "1"),
    ("exp(sub(adam, adam))", "1", "1"),
    ("drop3(sub(1, 1))", "sub(1, 1)", "0"),
    (POWERSIGN, POWERSIGN, "g·exp(sign(g)·sign(m̂))"),
])
def test_simplified_rule_and_readable_form(text, simple, text_form):
    rule = P(text)
    assert simplify(rule) == P(simple)
    assert readable(rule) == text_form
    assert simplified_complexity(rule) == P(simple).complexity


@pytest.mark.parametrize("text,text_form", [
    ("sub(eps, eps)", "ε₁ − ε₂"),                       # two draws: no zero
    ("sub(drop1(g), drop1(g))", "drop₁(g, 0.1) − drop₂(g, 0.1)"),
    ("add(eps_t, g)", "g + ε_t"),
    ("add(eps, eps)", "ε₁ + ε₂"),                       # no 2ε: two draws
    ("sub(log(g), log(g))", "0"),                       # log|0| = −inf: the rule stays
    ("exp(log(g))", "|g|"),                             # g may be < 0: the rule stays
    ("div(m, add(sqrt(v), w3))", "m̂/(√v̂ + 10⁻³·w + δ)"),
    ("adam", "m̂/(√v̂ + ε_adam)"),
    ("pow(g, neg(2))", "1/g²"),
])
def test_what_is_not_exact_in_floats_or_random_is_left_alone(text, text_form):
    rule = P(text)
    assert simplify(rule) == rule
    assert readable(rule) == text_form


def test_under_a_drop_a_tensor_is_not_rewritten_into_a_0_dim_constant():
    # drop(x) draws one mask entry per entry of x; 1, 2, the decays are 0-dim tensors
    assert simplify(P("drop1(sub(m, m))")) == P("drop1(sub(m, m))")
    assert simplify(P("drop1(pow(g, sub(m, m)))")) == P("drop1(pow(g, sub(1, 1)))")
    assert readable(P("drop1(sub(m, m))")) == "0"                      # its value is 0
    assert simplify(P("drop1(add(g, sub(m, m)))")) == P("drop1(g)")     # shape kept
    assert simplify(P("drop1(sub(1, 1))")) == ZERO
    assert simplify(P("add(g, sub(m, m))")) == P("g")                   # no drop: fine


@pytest.mark.parametrize("prim", [p for p in PRIMITIVES if p.kind == "operand"],
                         ids=lambda p: p.name)
def test_the_0_dim_operands_are_those_the_kernels_bind_0_dim(prim):
    g, w, m, v, r = _inputs()
    out = compile_direction(Rule(prim.name))(g, w, m, v, r, 3, 10)
    assert algebra.full(Rule(prim.name)) == (out.dim() > 0)


def test_latex_forms():
    assert readable_latex(P("add(g, sub(m, m))")) == "g"
    assert readable_latex(P(POWERSIGN)) == (
        r"g \cdot e^{\operatorname{sign}{\left(g \right)} \cdot "
        r"\operatorname{sign}{\left(\hat{m} \right)}}")
    assert readable_latex(P("adam")) == (
        r"\frac{\hat{m}}{\sqrt{\hat{v}} + \epsilon_{\mathrm{adam}}}")
    assert readable_latex(P("sub(eps, clip5(log(g)))")) == (
        r"\epsilon - \operatorname{clip}\left(\log\left|g\right|, 10^{-5}\right)")
    assert readable_latex(P("sub(drop1(g), eps_t)")) == (
        r"\operatorname{drop}\left(g, 0.1\right) - \epsilon_{t}")
    assert readable_latex(P("sub(eps, eps)")) == r"\epsilon_{1} - \epsilon_{2}"


def test_powers_of_functions_read_unambiguously():
    assert readable(P("mul(log(g), log(g))")) == "(log|g|)²"
    assert readable_latex(P("mul(log(g), log(g))")) == r"\left(\log\left|g\right|\right)^{2}"
    assert readable(P("mul(clip4(g), clip4(g))")) == "clip(g, 10⁻⁴)²"
    assert readable_latex(P("mul(eps, eps)")) == r"\epsilon_{1} \cdot \epsilon_{2}"
    assert readable_latex(P("mul(drop1(g), drop1(g))")).count(r"\operatorname{drop}") == 2


def test_every_sampled_rule_has_readable_forms():
    rng = random.Random(5)
    for space in SPACES:
        for _ in range(300):
            rule = space.sample(rng)
            assert readable(rule) and readable_latex(rule), rule


def test_literal_forms_stay_as_written():
    rule = P("add(g, sub(m, m))")
    assert rule.math == "g + (m̂ − m̂)" and rule.complexity == 5
    assert simplified_complexity(rule) == 1


def test_known_rules_are_written_in_their_simplest_form():
    assert {n: str(simplify(r)) for n, r in KNOWN.items()} == {
        n: str(r) for n, r in KNOWN.items()}


@pytest.mark.parametrize("rewrite", REWRITES, ids=str)
def test_every_rewrite_is_an_identity_sympy_shows(rewrite):
    assert check_rewrite(rewrite) is None


def test_a_wrong_rewrite_is_caught_by_sympy():
    assert check_rewrite(Rewrite("sign(X)", "X")) is not None
    assert check_rewrite(Rewrite("exp(log(X))", "X")) is not None     # not for x < 0


def test_bad_rewrites_are_refused_with_the_reason():
    with pytest.raises(ValueError, match="unknown primitive 'foo'"):
        Rewrite("foo(X)", "X")
    with pytest.raises(ValueError, match=r"\['Y'\] not in"):
        Rewrite("neg(X)", "Y")
    with pytest.raises(ValueError, match="unknown condition 'tiny'"):
        Rewrite("neg(X)", "X", ("tiny X",))
    with pytest.raises(ValueError, match="takes 2 argument"):
        Rewrite("add(X)", "X")
    with pytest.raises(TypeError, match="expected a Rule"):
        simplify("g")


# -- never a change of behaviour ------------------------------------------------------------------
def _inputs():
    gen = torch.Generator().manual_seed(0)
    n = 64

    def rand(scale=1.0):
        return torch.randn(n, generator=gen, dtype=torch.float64) * scale

    g = rand()
    g[::9] = 0.0                                  # zero gradients: log|0|, sign(0)
    m, r, w = rand(0.5), rand(0.1), rand()
    v = rand().abs() * 0.1
    return g, w, m, v, r


SPACES = [SearchSpace(), SearchSpace(root="slot"), SearchSpace(max_binary=5),
          SearchSpace(operands=("g", "m", "v", "1", "2", "sign_g", "g2", "eps"),
                      unaries=("id", "neg", "sign", "exp", "log", "sqrt", "clip4"),
                      binaries=("add", "sub", "mul", "keep", "pow"))]


def _sampled_rules():
    rng = random.Random(12)
    rules = [space.sample(rng) for space in SPACES for _ in range(400)]
    return rules + [P(t) for t in (
        "add(g, sub(m, m))", "mul(g, 1)", "sign(sign(sign_g))", "neg(neg(g))", "keep(g, m)",
        "exp(log(g2))", "log(exp(clip3(g)))", "sub(mul(v, sub(g, g)), neg(neg(m)))",
        "add(neg(eps), drop1(g))", "neg(sub(eps, eps_t))", "pow(g, sub(m, m))",
        "div(sub(g, g), v)", "add(add(g, g), mul(g, g2))")]


def _direction(rule, inputs, settings):
    g, w, m, v, r = inputs
    torch.manual_seed(7)                          # the same draws for both spellings
    out = compile_direction(rule, settings)(g, w, m, v, r, 3, 10)
    return torch.broadcast_to(torch.as_tensor(out, dtype=g.dtype), g.shape)


def test_simplified_rules_compute_the_same_direction():
    inputs, settings = _inputs(), RuleSettings()
    compared = changed = 0
    for rule in _sampled_rules():
        simple = simplify(rule)
        assert simplify(simple) == simple, rule                     # idempotent
        assert simple.complexity <= rule.complexity, rule
        assert simple.needs <= rule.needs, rule
        if simple == rule:
            continue
        changed += 1
        if draws(simple) != draws(rule):
            continue                  # fewer draws: equal in distribution, not draw by draw
        torch.testing.assert_close(_direction(simple, inputs, settings),
                                   _direction(rule, inputs, settings), rtol=1e-6, atol=1e-6,
                                   equal_nan=True, msg=lambda m: f"{rule} -> {simple}: {m}")
        compared += 1
    assert changed > 300 and compared > 250, (changed, compared)


def test_simplified_rules_are_equal_for_sympy():
    rng = random.Random(3)
    checked = 0
    for _ in range(150):
        rule = SearchSpace(root="slot", max_binary=2).sample(rng)
        simple = simplify(rule)
        if simple != rule and draws(simple) == draws(rule):
            assert equivalent(rule, simple), (rule, simple)
            checked += 1
    assert checked > 20


# -- the hall of fame groups spellings -------------------------------------------------------------
def ev(rule, fitness, fingerprint=None, seeds=1):
    return Evaluation(rule=rule, fitness=fitness, status="ok", best_lr=0.1,
                      lr_scores={0.1: fitness}, fingerprint=fingerprint, seeds=seeds)


def test_spellings_of_one_rule_are_one_entry_with_its_variants():
    hof = HallOfFame(size=5)
    for rule in ["add(g, sub(m, m))", "keep(g, v)", "mul(g, 1)", "keep(g, v)"]:
        hof.update(ev(rule, 0.8))            # no fingerprint: grouped by the simplified key
    hof.update(ev("mul(g, m)", 0.5))
    (first, second) = hof.rows()
    assert (first["rule"], first["simplified"], first["readable"], first["variants"]) == (
        "keep(g, v)", "g", "g", 3)
    assert (first["complexity"], first["simplified_complexity"], first["name"]) == (3, 1, "sgd")
    assert second["variants"] == 1
    assert "= g" in hof.table_text()


def test_the_pareto_front_uses_the_simplified_complexity():
    hof = HallOfFame(size=5)
    hof.update(ev("keep(m, g)", 0.6, fingerprint="M"))
    hof.update(ev("mul(g, m)", 0.5))
    front = hof.pareto_frame()
    assert list(zip(front["simplified_complexity"], front["rule"])) == [(1, "keep(m, g)")]


def test_an_old_checkpoint_loads_and_reads_like_a_new_one():
    hof = HallOfFame(size=3)
    for rule, fitness in [("mul(g, 1)", 0.7), ("keep(g, m)", 0.7), ("m", 0.4)]:
        hof.update(ev(rule, fitness))
    state = hof.state_dict()
    # before simplification: keyed by the written rule's key, the front by its complexity,
    # no variants
    old = {"size": 3, "seen": 3,
           "top": {P(r).key: (ev(r, f).to_dict(), i, P(r).complexity)
                   for i, (r, f) in enumerate([("mul(g, 1)", 0.7), ("keep(g, m)", 0.7),
                                               ("m", 0.4)])},
           "by_complexity": {3: (ev("mul(g, 1)", 0.7).to_dict(), 0, 3),
                             1: (ev("m", 0.4).to_dict(), 2, 1)}}
    loaded = HallOfFame(size=9)
    loaded.load_state_dict(pickle.loads(pickle.dumps(old)))
    assert [(r["rule"], r["simplified"]) for r in loaded.rows()] == [
        ("mul(g, 1)", "g"), ("m", "m")]
    assert [r["simplified_complexity"] for r in loaded.pareto_rows()] == [1]
    again = HallOfFame(size=9)
    again.load_state_dict(pickle.loads(pickle.dumps(state)))
    assert again.rows() == hof.rows() and again.pareto_rows() == hof.pareto_rows()
    assert hof.rows()[0]["variants"] == 2


def test_zero_is_spelled_one_way():
    assert ZERO == P("sub(1, 1)") and simplify(ZERO) == ZERO
    assert simplify(P("sub(adam, adam)")) == ZERO
