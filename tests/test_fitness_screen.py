"""Screening before training, and the functional fingerprint behind the fitness cache."""
import pytest
import torch

from evo_nos.fitness.screen import fingerprint_of, rounded, screen


def test_rounding_keeps_six_significant_digits_at_any_magnitude():
    x = torch.tensor([1.23456789, -0.000123456789, 98765432.1, 0.0, -0.0])
    assert rounded(x).tolist() == pytest.approx(
        [1.23457, -0.000123457, 98765400.0, 0.0, 0.0], rel=1e-12)


def test_fingerprint_ignores_float_noise_but_not_real_differences():
    x = torch.linspace(-3, 3, 50, dtype=torch.float64)
    assert fingerprint_of(x) == fingerprint_of(x * (1 + 1e-13))
    assert fingerprint_of(x) != fingerprint_of(x * (1 + 1e-4))


@pytest.mark.parametrize("a, b", [
    ("g", "mul(g, 1)"),                       # the example: mul(id(g), id(1))
    ("mul(2, g)", "add(g, g)"),
    ("powersign", "mul(g, exp(mul(sign_m, sign_g)))"),  # argument order of mul
    ("sub(g, neg(g))", "mul(g, 2)"),
])
def test_behaviourally_identical_rules_share_a_fingerprint(a, b):
    sa, sb = screen(a), screen(b)
    assert sa.valid and sb.valid
    assert sa.fingerprint == sb.fingerprint


@pytest.mark.parametrize("a, b", [
    ("g", "neg(g)"), ("clip4(g)", "clip3(g)"), ("powersign", "powersign-ld"),
    ("powersign", "addsign"), ("adam", "rmsprop"), ("drop1(g)", "drop3(g)"),
])
def test_different_rules_get_different_fingerprints(a, b):
    assert screen(a).fingerprint != screen(b).fingerprint


def test_random_rules_have_a_deterministic_fingerprint():
    assert screen("add(g, eps)").fingerprint == screen("add(g, eps)").fingerprint
    assert screen("drop5(m)").fingerprint == screen("drop5(m)").fingerprint


@pytest.mark.parametrize("rule, reason", [
    ("log(g)", "non-finite"),                 # log|0| = -inf at the zero-gradient entry
    ("clip5(sub(g, g))", "zero"),
    ("w4", "do not depend on the gradient"),
    ("keep(w3, g)", "do not depend on the gradient"),
    ("2", "do not depend on the gradient"),
    ("eps", "do not depend on the gradient"),   # noise alone: same draws for both probes
])
def test_invalid_rules_are_screened_out_with_a_reason(rule, reason):
    result = screen(rule)
    assert not result.valid
    assert reason in result.reason


@pytest.mark.parametrize("rule", ["sgd", "adam", "powersign", "addsign-ld", "neg(g)",
                                  "add(w4, g)", "add(g, eps)", "nos-14"])
def test_gradient_dependent_finite_rules_pass(rule):
    result = screen(rule)
    assert result.valid, result.reason
    assert isinstance(result.fingerprint, str) and len(result.fingerprint) == 20


def test_overflowing_rule_still_passes_the_screen():
    # exp(sign(g)/sqrt|g|) is finite on the probe's gradients (|g| >= ~1e-3) but overflows
    # float32 on a network's small gradients: the screen lets it through, training catches it
    assert screen("exp(div(sign_g, sqrt(g)))").valid
