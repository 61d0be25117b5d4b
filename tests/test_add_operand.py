"""Adding an operand is one entry of the primitive table.

Each toy operand below is one :class:`Primitive`, put into the table for the test by
:func:`evo_nos.core.primitives.registered` (what adding it to ``PRIMITIVES`` does for
good).  Nothing else is told about it, yet it parses, simplifies (sympy), prints
(readable and LaTeX), trains under :class:`RuleOptimizer` and exports to a file that
steps identically.

What this covers: everything that reads the table through ``BY_NAME`` or rebuilds on
``primitives.on_change`` -- the rules, the algebra (symbols, rewrites, caches), the
kernels (their compile cache) and the export.  What it does not: what copied the
table when it was imported (the default ``SearchSpace``, a ``TokenGrammar``'s
vocabulary, the DEAP primitive sets of :mod:`evo_nos.operators`).
"""
import pytest
import torch

from evo_nos.core import algebra, primitives
from evo_nos.core.primitives import BY_NAME, operand, registered
from evo_nos.core.rules import Rule, RuleSyntaxError
from evo_nos.optim.export import export_source, export_spec
from evo_nos.optim.kernels import compile_direction, direction_source
from evo_nos.optim.optimizer import RuleOptimizer

# |g|: computed from the gradient alone; sympy knows it is >= 0
G_ABS = operand("g_abs", "torch.abs(g)", "|g|", r"\left|g\right|", "Abs(g)", doc="|g|")
# m·g: reads the running average m (the optimizer keeps it because `needs` says so);
# `spells`: simplify writes mul(m, g), the very same product, as this operand
MG = operand("mg", "(m * g)", "m̂·g", r"\hat{{m}} \cdot g", "m*g", ("m",), "m times g",
             spells=("mul(m, g)",))
# 1/2: a 0-dim constant the direction function binds in its prelude
HALF = operand("half", "half", "½", r"\tfrac{{1}}{{2}}", "1/2", doc="constant 1/2",
               scalar=True, prelude="half = g.new_full((), 0.5)")


@pytest.fixture
def toys():
    with registered(G_ABS, MG, HALF):
        yield
    assert not {"g_abs", "mg", "half"} & set(BY_NAME)


def test_it_parses_and_prints(toys):
    rule = Rule.parse("mul(g_abs, sign_g)")
    assert Rule.parse(rule.canonical) == rule and rule.needs == frozenset()
    assert rule.math == "|g|·sign(g)"
    assert rule.latex == r"\left|g\right| \cdot \operatorname{sign}(g)"
    assert Rule.parse("mg").needs == {"m"}


def test_the_algebra_knows_it_from_its_entry(toys):
    assert algebra.equivalent(Rule.parse("mul(g_abs, sign_g)"), Rule.parse("g"))
    assert algebra.nonnegative(Rule.parse("g_abs"))           # from its sympy form
    assert algebra.simplify(Rule.parse("exp(log(g_abs))")) == Rule.parse("g_abs")
    assert algebra.simplify(Rule.parse("add(g_abs, sub(m, m))")) == Rule.parse("g_abs")
    assert algebra.simplify(Rule.parse("mul(m, g)")) == Rule.parse("mg")   # its spelling
    assert algebra.readable(Rule.parse("g_abs")) == "|g|"
    assert algebra.readable_latex(Rule.parse("g_abs")) == r"\left|{g}\right|"   # sympy's
    assert algebra.readable(Rule.parse("sub(mg, mul(half, g))")) == "g·m̂ − g/2"
    assert not algebra.full(Rule.parse("mul(half, 2)"))       # 0-dim, as the table says
    assert all(algebra.check_rewrite(r) is None for r in algebra.REWRITES
               if "mg" in str(r))


def test_the_kernel_binds_it_from_its_entry(toys):
    source = direction_source(Rule.parse("mul(half, g_abs)"))
    assert "    half = g.new_full((), 0.5)\n" in source
    assert "return (half * torch.abs(g))" in source
    fn = compile_direction(Rule.parse("mul(half, g_abs)"))
    g = torch.tensor([2.0, -4.0])
    assert torch.equal(fn(g, None, None, None, None, 0, None), torch.tensor([1.0, 2.0]))


def _params():
    gen = torch.Generator().manual_seed(0)
    return [torch.nn.Parameter(torch.randn(4, 3, generator=gen)),
            torch.nn.Parameter(torch.randn(3, generator=gen))]


def _train(make_optimizer, steps=5):
    """A few steps on a tiny least-squares problem; the parameters after them."""
    params = _params()
    opt = make_optimizer(params)
    gen = torch.Generator().manual_seed(1)
    x, y = torch.randn(8, 4, generator=gen), torch.randn(8, 3, generator=gen)
    for _ in range(steps):
        opt.zero_grad()
        loss = ((x @ params[0] + params[1] - y) ** 2).mean()
        loss.backward()
        opt.step()
    return [p.detach().clone() for p in params]


@pytest.mark.parametrize("text", ["sub(mg, mul(half, g_abs))", "mul(g_abs, sign_m)"])
def test_it_trains_and_its_export_steps_identically(toys, text):
    rule = Rule.parse(text)
    trained = _train(lambda ps: RuleOptimizer(ps, rule, lr=0.05))
    assert all(torch.isfinite(p).all() for p in trained)
    assert not all(torch.equal(a, b) for a, b in zip(trained, _params()))
    namespace = {"__name__": "exported_toy"}
    exec(compile(export_source(rule, class_name="Toy"), "<export toy>", "exec"),  # noqa: S102
         namespace)
    exported = _train(lambda ps: namespace["Toy"](ps, lr=0.05))
    assert all(torch.equal(a, b) for a, b in zip(trained, exported))
    assert export_spec(rule)["state"] == ["step", "m"]


def test_after_it_the_table_and_the_algebra_are_the_papers_again():
    with registered(MG):
        assert algebra.simplify(Rule.parse("mul(m, g)")) == Rule.parse("mg")
    assert algebra.simplify(Rule.parse("mul(m, g)")) == Rule.parse("mul(m, g)")
    with pytest.raises(RuleSyntaxError, match="unknown token 'mg'"):
        Rule.parse("mg")
    assert all("mg" not in str(r) for r in algebra.REWRITES)


def test_registration_refuses_what_would_break_the_table():
    with pytest.raises(ValueError, match="already in the table"):
        primitives.register(operand("g", "g", "g", "g", "g"))
    with pytest.raises(ValueError, match="token of letters"):
        primitives.register(operand("g abs", "g", "g", "g", "g"))
    with pytest.raises(ValueError, match="paper's table"):
        primitives.unregister("g")
