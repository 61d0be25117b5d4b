"""The primitive table: every operand, unary and binary function against hand values."""
import math

import pytest
import torch

from evo_nos.optim.standalone import decay_values, drop
from evo_nos.optim.kernels import compile_direction, direction_source
from evo_nos.core.primitives import (
    BINARIES, BY_NAME, OPERANDS, PRIMITIVES, UNARIES, RuleSettings, get,
)
from evo_nos.core.rules import Rule

E = math.e


def direction(text, g, *, w=None, m=None, v=None, r=None, t=0, T=None, settings=None):
    """Run the compiled direction of rule ``text`` on the given operands."""
    fn = compile_direction(Rule.parse(text), settings)
    return fn(g, w, m, v, r, t, T)


def tensor(*values):
    return torch.tensor(values, dtype=torch.float64)


G = tensor(2.0, -0.5, 0.0)
W = tensor(1.0, -2.0, 0.5)
M = tensor(0.3, -0.1, 0.0)
V = tensor(0.09, 0.04, 0.0)
R = tensor(0.027, -0.001, 0.0)

# name -> (rule text, operands, expected); every value worked out by hand.
CASES = {
    # operands
    "g": ("g", {}, [2.0, -0.5, 0.0]),
    "g2": ("g2", {}, [4.0, 0.25, 0.0]),
    "g3": ("g3", {}, [8.0, -0.125, 0.0]),
    "m": ("m", {}, [0.3, -0.1, 0.0]),
    "v": ("v", {}, [0.09, 0.04, 0.0]),
    "r": ("r", {}, [0.027, -0.001, 0.0]),
    "sign_g": ("sign_g", {}, [1.0, -1.0, 0.0]),          # sign(0) = 0
    "sign_m": ("sign_m", {}, [1.0, -1.0, 0.0]),
    "1": ("1", {}, 1.0),
    "2": ("2", {}, 2.0),
    "w4": ("w4", {}, [1e-4, -2e-4, 5e-5]),
    "w3": ("w3", {}, [1e-3, -2e-3, 5e-4]),
    "w2": ("w2", {}, [1e-2, -2e-2, 5e-3]),
    "w1": ("w1", {}, [1e-1, -2e-1, 5e-2]),
    "adam": ("adam", {}, [0.3 / (0.3 + 1e-8), -0.1 / (0.2 + 1e-8), 0.0]),
    "rmsprop": ("rmsprop", {}, [2.0 / (0.3 + 1e-8), -0.5 / (0.2 + 1e-8), 0.0]),
    "ld": ("ld", {"t": 1, "T": 4}, 0.75),
    "cd": ("cd", {"t": 1, "T": 4}, 0.5 * (1 + math.sqrt(0.5))),   # 0.5(1 + cos(π/4))
    "rd": ("rd", {"t": 4, "T": 4}, 1.0),                          # restarted at t = T
    # unary functions
    "neg": ("neg(g)", {}, [-2.0, 0.5, 0.0]),
    "exp": ("exp(g)", {"g": tensor(0.0, 1.0, -1.0)}, [1.0, E, 1 / E]),
    "log": ("log(g)", {"g": tensor(E, -E * E, 1.0, 0.0)}, [1.0, 2.0, 0.0, -math.inf]),
    "sqrt": ("sqrt(g)", {"g": tensor(4.0, -9.0, 0.25, 0.0)}, [2.0, 3.0, 0.5, 0.0]),
    "clip5": ("clip5(g)", {"g": tensor(-1.0, -5e-6, 5e-6, 1.0)}, [-1e-5, -5e-6, 5e-6, 1e-5]),
    "clip4": ("clip4(g)", {"g": tensor(-1.0, -5e-5, 5e-5, 1.0)}, [-1e-4, -5e-5, 5e-5, 1e-4]),
    "clip3": ("clip3(g)", {"g": tensor(-1.0, -5e-4, 5e-4, 1.0)}, [-1e-3, -5e-4, 5e-4, 1e-3]),
    "sign": ("sign(add(g, m))", {}, [1.0, -1.0, 0.0]),
    # binary functions (g = [2, -0.5, 0], m = [0.3, -0.1, 0])
    "add": ("add(g, m)", {}, [2.3, -0.6, 0.0]),
    "sub": ("sub(g, m)", {}, [1.7, -0.4, 0.0]),
    "mul": ("mul(g, m)", {}, [0.6, 0.05, 0.0]),
    "div": ("div(g, m)", {}, [2.0 / (0.3 + 1e-8), -0.5 / (-0.1 + 1e-8), 0.0]),
    "pow": ("pow(g, 2)", {"g": tensor(4.0, -3.0, 0.5)}, [16.0, 9.0, 0.25]),
    "keep": ("keep(g, exp(m))", {}, [2.0, -0.5, 0.0]),
}
# checked statistically below
RANDOM = {"eps", "eps_t", "drop1", "drop3", "drop5"}


def test_every_primitive_has_a_hand_checked_case():
    assert set(CASES) | RANDOM | {"id"} == set(BY_NAME)


@pytest.mark.parametrize("name", sorted(CASES))
def test_kernel_matches_hand_value(name):
    text, operands, expected = CASES[name]
    kwargs = {"g": G, "w": W, "m": M, "v": V, "r": R, **operands}
    got = direction(text, **kwargs)
    torch.testing.assert_close(got, torch.as_tensor(expected, dtype=torch.float64).expand_as(got),
                               rtol=1e-12, atol=0)


def test_identity_is_elided():
    assert Rule.parse("id(g)") == Rule.parse("g")
    assert Rule.parse("mul(id(g), id(m))") == Rule.parse("mul(g, m)")


def test_constants_are_zero_dim_and_follow_the_dtype():
    one = direction("1", G.float())
    assert one.shape == () and one.dtype == torch.float32 and one.item() == 1.0


def test_div_adds_delta_to_the_denominator():
    got = direction("div(g, v)", tensor(1.0, 2.0), v=tensor(0.0, 0.0))
    torch.testing.assert_close(got, tensor(1e8, 2e8), rtol=1e-12, atol=0)
    custom = direction("div(g, v)", tensor(1.0), v=tensor(0.0), settings=RuleSettings(delta=0.5))
    assert custom.item() == 2.0


def test_pow_of_a_negative_base_with_a_fractional_exponent_is_nan():
    got = direction("pow(g, m)", tensor(-4.0, 4.0), m=tensor(0.5, 0.5))
    assert math.isnan(got[0].item()) and got[1].item() == 2.0


def test_adam_eps_setting_reaches_the_kernel():
    got = direction("rmsprop", tensor(1.0), v=tensor(0.0), settings=RuleSettings(adam_eps=0.25))
    assert got.item() == 4.0


def test_decay_values_at_chosen_steps():
    # T = 8, cd with n = 0.5 (plain cosine), rd with n = 1
    ld, cd, rd = decay_values(0, 8, 0.5, 1.0)
    assert (ld, cd, rd) == (1.0, 1.0, 1.0)
    ld, cd, rd = decay_values(2, 8, 0.5, 1.0)
    assert ld == 0.75
    assert cd == pytest.approx(0.5 * (1 + math.sqrt(0.5)), abs=1e-15)   # cos(π/4)
    assert rd == pytest.approx(0.5 * (1 + math.sqrt(0.5)), abs=1e-15)
    ld, cd, rd = decay_values(4, 8, 0.5, 1.0)
    assert ld == 0.5 and cd == pytest.approx(0.5, abs=1e-15) and rd == pytest.approx(0.5, abs=1e-15)
    ld, cd, rd = decay_values(8, 8, 0.5, 1.0)
    assert ld == 0.0 and cd == pytest.approx(0.0, abs=1e-15) and rd == 1.0   # restart at t = T
    assert decay_values(12, 8, 0.5, 1.0) == decay_values(8, 8, 0.5, 1.0)  # t clamped to T


def test_decay_periods_are_settings():
    # cd with n = 1: a full cosine, back to 1 at T/2 · 2 ... 0 at t = T/2
    _, cd, _ = decay_values(4, 8, 1.0, 1.0)
    assert cd == pytest.approx(0.0, abs=1e-15)
    # rd with n = 2: restarts at t = T/2
    _, _, rd = decay_values(4, 8, 0.5, 2.0)
    assert rd == 1.0
    _, _, rd = decay_values(2, 8, 0.5, 2.0)
    assert rd == pytest.approx(0.5, abs=1e-15)   # 0.5(1 + cos(π·4/8))


def test_decays_come_from_the_settings_in_generated_code():
    got = direction("rd", G, t=2, T=8, settings=RuleSettings(rd_periods=2.0))
    assert got.item() == pytest.approx(0.5, abs=1e-15)
    got = direction("cd", G, t=4, T=8, settings=RuleSettings(cd_periods=1.0))
    assert got.item() == pytest.approx(0.0, abs=1e-15)


@pytest.mark.parametrize("name,p", [("drop1", 0.1), ("drop3", 0.3), ("drop5", 0.5)])
def test_drop_zeroes_entries_at_its_rate_and_rescales_the_rest(name, p):
    torch.manual_seed(0)
    n = 200_000
    got = direction(f"{name}(g)", torch.ones(n, dtype=torch.float64))
    zero = (got == 0).double().mean().item()
    assert abs(zero - p) < 5 * math.sqrt(p * (1 - p) / n)          # 5 sigma
    kept = got[got != 0]
    torch.testing.assert_close(kept, torch.full_like(kept, 1 / (1 - p)), rtol=1e-12, atol=0)


def test_drop_without_rescale_keeps_values():
    torch.manual_seed(0)
    got = direction("drop3(g)", torch.full((1000,), 2.0), settings=RuleSettings(drop_rescale=False))
    assert set(got.unique().tolist()) == {0.0, 2.0}


def test_drop_is_reproducible_under_a_seed():
    x = torch.arange(1.0, 101.0)
    torch.manual_seed(7)
    a = drop(x, 0.5, True)
    torch.manual_seed(7)
    b = drop(x, 0.5, True)
    assert torch.equal(a, b) and not torch.equal(a, x * 2)


def test_eps_is_gaussian_with_noise_std():
    torch.manual_seed(0)
    n = 200_000
    got = direction("eps", torch.zeros(n, dtype=torch.float64))
    assert abs(got.mean().item()) < 5 * 0.1 / math.sqrt(n)
    # std of a sample std ≈ σ / sqrt(2n)
    assert abs(got.std().item() - 0.1) < 5 * 0.1 / math.sqrt(2 * n)
    custom = direction("eps", torch.zeros(n), settings=RuleSettings(noise_std=0.5))
    assert abs(custom.std().item() - 0.5) < 5 * 0.5 / math.sqrt(2 * n)


def test_annealed_noise_variance_decays_with_t():
    torch.manual_seed(0)
    n = 200_000
    for t in (0, 3, 99):
        got = direction("eps_t", torch.zeros(n, dtype=torch.float64), t=t)
        std = (1.0 + t) ** (-0.55 / 2)          # variance 1 / (1 + t)^0.55
        assert abs(got.std().item() - std) < 5 * std / math.sqrt(2 * n), t


def test_generated_source_is_plain_torch():
    src = direction_source(Rule.parse("mul(exp(mul(sign_g, sign_m)), g)"), name="powersign")
    assert src.startswith("def powersign(g, w, m, v, r, t, T):")
    assert "return (torch.exp((torch.sign(g) * torch.sign(m))) * g)" in src


# ---- the table itself ---------------------------------------------------------------

def test_table_holds_the_papers_primitives_under_unique_names():
    # the paper's set is present by name; the table may hold more (no counts asserted)
    assert len(BY_NAME) == len(PRIMITIVES)
    assert {p.name for p in OPERANDS} >= {"g", "g2", "g3", "m", "v", "r", "sign_g", "sign_m",
                                           "1", "2", "eps", "w4", "w3", "w2", "w1", "adam",
                                           "rmsprop", "ld", "cd", "rd", "eps_t"}
    assert {p.name for p in UNARIES} >= {"id", "neg", "exp", "log", "sqrt", "clip5", "clip4",
                                          "clip3", "drop1", "drop3", "drop5", "sign"}
    assert {p.name for p in BINARIES} >= {"add", "sub", "mul", "div", "pow", "keep"}


@pytest.mark.parametrize("prim", PRIMITIVES, ids=lambda p: p.name)
def test_templates_take_the_primitives_arity(prim):
    args = [f"x{i}" for i in range(prim.arity)]
    for template in (prim.math, prim.latex):
        template.format(*args)       # no missing or extra positional fields
    code = prim.code.format(*args, **RuleSettings().as_dict())
    used = args[:1] if prim.name == "keep" else args     # keep(x, y) is x: y is not computed
    for a in used:
        assert a in code
    assert prim.needs <= {"m", "v", "r", "w", "T", "rng"}


def test_get_names_an_unknown_primitive():
    assert get("exp") is BY_NAME["exp"]
    with pytest.raises(KeyError, match="unknown primitive 'expo'"):
        get("expo")


def test_settings_defaults_are_the_reference_ones():
    s = RuleSettings()
    assert (s.beta1, s.beta2, s.beta3) == (0.9, 0.999, 0.999)
    assert s.bias_correction is True and s.noise_std == 0.1 and s.drop_rescale is True
    assert (s.anneal_power, s.cd_periods, s.rd_periods) == (0.55, 0.5, 1.0)
    assert s.delta == 1e-8 and s.adam_eps == 1e-8


def test_settings_round_trip_and_validation():
    s = RuleSettings(beta1=0.5, bias_correction=False)
    assert RuleSettings.from_dict(s.as_dict()) == s
    with pytest.raises(ValueError, match="beta1 must be in"):
        RuleSettings(beta1=1.0)
    with pytest.raises(ValueError, match="noise_std"):
        RuleSettings(noise_std=-1)
    with pytest.raises(ValueError, match="unknown rule setting.*'beta4'"):
        RuleSettings.from_dict({"beta4": 0.5})


def test_docs_show_the_primitive_table(docs_rules):
    from evo_nos.optim.export import primitives_markdown

    assert primitives_markdown() in docs_rules, (
        "docs/rules.md is out of date: paste evo_nos.optim.export.primitives_markdown() into it")


@pytest.fixture
def docs_rules():
    from pathlib import Path

    return (Path(__file__).resolve().parents[1] / "docs" / "rules.md").read_text(encoding="utf-8")
