"""The NOS learning-rate schedules against TensorFlow's formulas."""
import math
import statistics

import pytest
import torch

from evo_nos.optim.schedules import (LinearCosineDecay, NoisyLinearCosineDecay, linear_cosine_factor,
                                     schedule_factor, scheduler)


def sgd(*lrs):
    groups = [{"params": [torch.nn.Parameter(torch.zeros(1))], "lr": lr} for lr in lrs]
    return torch.optim.SGD(groups, lr=lrs[0])


def lrs_over(sched, steps):
    """The lr of every group before each of ``steps`` optimizer steps."""
    out = []
    for _ in range(steps):
        out.append([g["lr"] for g in sched.optimizer.param_groups])
        sched.optimizer.step()
        sched.step()
    return out


def tf_linear_cosine(t, T, n=0.5, alpha=0.0, beta=0.001, eps=0.0):
    """TensorFlow's (noisy_)linear_cosine_decay factor, written out from its docs."""
    t = min(t, T)
    linear = (T - t) / T
    cosine = 0.5 * (1 + math.cos(math.pi * 2 * n * t / T))
    return (alpha + linear + eps) * cosine + beta


def test_linear_cosine_factor_at_hand_picked_steps():
    assert linear_cosine_factor(0, 10) == pytest.approx(1.001, abs=1e-15)   # (0 + 1)·1 + β
    assert linear_cosine_factor(5, 10) == pytest.approx(0.251, abs=1e-15)   # 0.5·0.5 + β
    assert linear_cosine_factor(10, 10) == pytest.approx(0.001, abs=1e-15)  # 0·0 + β
    assert linear_cosine_factor(15, 10) == linear_cosine_factor(10, 10)     # t clamped to T
    # n = 1, alpha = 0.1, beta = 0.01: a full cosine period
    assert linear_cosine_factor(5, 10, 1.0, 0.1, 0.01) == pytest.approx(0.01, abs=1e-15)
    assert linear_cosine_factor(10, 10, 1.0, 0.1, 0.01) == pytest.approx(0.11, abs=1e-15)


def test_linear_cosine_decay_step_by_step():
    sched = LinearCosineDecay(sgd(0.5, 0.1), total_steps=10)
    for t, (a, b) in enumerate(lrs_over(sched, 14)):
        assert a == pytest.approx(0.5 * tf_linear_cosine(t, 10), rel=1e-12), t
        assert b == pytest.approx(0.1 * tf_linear_cosine(t, 10), rel=1e-12), t
    assert sched.get_last_lr()[0] == pytest.approx(0.5 * 0.001)


def test_linear_cosine_decay_options():
    sched = LinearCosineDecay(sgd(1.0), total_steps=8, num_periods=2.0, alpha=0.2, beta=0.05)
    for t, (lr,) in enumerate(lrs_over(sched, 10)):
        assert lr == pytest.approx(tf_linear_cosine(t, 8, 2.0, 0.2, 0.05), rel=1e-12), t


def test_noisy_decay_step_by_step_with_a_fixed_seed():
    sched = NoisyLinearCosineDecay(sgd(0.5), total_steps=10, seed=1234)
    values = lrs_over(sched, 14)
    for t, (lr,) in enumerate(values):
        assert lr == pytest.approx(0.5 * tf_linear_cosine(t, 10, eps=sched.noise(t)), rel=1e-12)
    eps = [sched.noise(t) for t in range(14)]
    assert len(set(eps)) == 14                                   # a fresh draw each step


def test_noise_is_not_clamped():
    # with a huge variance the factor must go negative at some early step
    sched = NoisyLinearCosineDecay(sgd(1.0), total_steps=100, initial_variance=100.0, seed=0)
    assert min(lr for (lr,) in lrs_over(sched, 20)) < 0


def test_same_seed_same_schedule_other_seed_other_schedule():
    a = lrs_over(NoisyLinearCosineDecay(sgd(0.1), 50, seed=7), 50)
    b = lrs_over(NoisyLinearCosineDecay(sgd(0.1), 50, seed=7), 50)
    c = lrs_over(NoisyLinearCosineDecay(sgd(0.1), 50, seed=8), 50)
    assert a == b
    assert a != c


def test_unseeded_schedules_differ_and_remember_their_seed():
    a = NoisyLinearCosineDecay(sgd(0.1), 50)
    b = NoisyLinearCosineDecay(sgd(0.1), 50)
    assert a.seed != b.seed
    assert a.state_dict()["seed"] == a.seed


def test_zero_variance_is_the_plain_schedule():
    a = lrs_over(NoisyLinearCosineDecay(sgd(0.3), 12, initial_variance=0.0, seed=1), 15)
    b = lrs_over(LinearCosineDecay(sgd(0.3), 12), 15)
    assert a == b


def test_noise_std_follows_the_variance_schedule():
    sched = NoisyLinearCosineDecay(sgd(1.0), total_steps=100, initial_variance=2.0,
                                   variance_decay=0.55, seed=0)
    assert sched.noise_std(0) == pytest.approx(math.sqrt(2.0))
    assert sched.noise_std(3) == pytest.approx(math.sqrt(2.0 / 4 ** 0.55))
    assert sched.noise_std(500) == sched.noise_std(100)          # t clamped to T, as TF


def test_noise_over_many_steps_is_standard_normal_once_scaled():
    n = 20_000
    sched = NoisyLinearCosineDecay(sgd(1.0), total_steps=n, seed=42)
    z = [sched.noise(t) / sched.noise_std(t) for t in range(n)]
    # mean ~ N(0, 1/n), sample variance ~ N(1, 2/n): 5-sigma bounds
    assert abs(statistics.fmean(z)) < 5 / math.sqrt(n)
    assert abs(statistics.pvariance(z) - 1.0) < 5 * math.sqrt(2 / n)


@pytest.mark.parametrize("t", [0, 9, 40])
def test_noise_variance_at_a_step_across_seeds(t):
    n = 5_000
    draws = [NoisyLinearCosineDecay(sgd(1.0), 100, seed=s).noise(t) for s in range(n)]
    variance = 1.0 / (1 + t) ** 0.55
    assert abs(statistics.fmean(draws)) < 5 * math.sqrt(variance / n)
    assert abs(statistics.pvariance(draws) / variance - 1.0) < 5 * math.sqrt(2 / n)


def test_resuming_from_a_state_dict_continues_identically():
    sched = NoisyLinearCosineDecay(sgd(0.2), total_steps=30, seed=5)
    lrs_over(sched, 10)
    saved = sched.state_dict()
    rest = lrs_over(sched, 10)

    opt = sgd(0.2)
    resumed = NoisyLinearCosineDecay(opt, total_steps=30, seed=99)
    resumed.load_state_dict(saved)
    for group in opt.param_groups:                 # the optimizer's lr comes with its own state
        group["lr"] = saved["_last_lr"][0]
    assert lrs_over(resumed, 10) == rest


def test_get_lr_is_stable_within_a_step():
    sched = NoisyLinearCosineDecay(sgd(1.0), total_steps=10, seed=3)
    assert sched.factor(4) == sched.factor(4)


@pytest.mark.parametrize("kwargs,match", [
    (dict(total_steps=0), "total_steps"),
    (dict(total_steps=2.5), "total_steps"),
    (dict(total_steps=10, num_periods=0), "num_periods"),
    (dict(total_steps=10, initial_variance=-1.0), "initial_variance"),
    (dict(total_steps=10, variance_decay=-0.1), "variance_decay"),
    (dict(total_steps=10, seed=1.5), "seed"),
])
def test_bad_arguments_raise_value_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        NoisyLinearCosineDecay(sgd(0.1), **kwargs)


def test_schedules_are_torch_lr_schedulers():
    assert issubclass(LinearCosineDecay, torch.optim.lr_scheduler.LRScheduler)
    assert issubclass(NoisyLinearCosineDecay, torch.optim.lr_scheduler.LRScheduler)


# -- the protocol's schedules -------------------------------------------------------------------
def test_protocol_schedule_factors_at_hand_picked_steps():
    assert [schedule_factor("constant", t, 10) for t in (0, 5, 9)] == [1.0, 1.0, 1.0]
    assert schedule_factor("cosine", 0, 10) == 1.0
    assert schedule_factor("cosine", 5, 10) == pytest.approx(0.5)
    assert schedule_factor("cosine", 10, 10) == pytest.approx(0.0)
    assert [schedule_factor("linear", t, 4) for t in range(4)] == [1.0, 0.75, 0.5, 0.25]
    # two warmup steps reach the full rate, then the decay runs over the remaining 8
    assert [schedule_factor("linear", t, 10, warmup=2) for t in range(4)] == [0.5, 1.0, 1.0,
                                                                             0.875]
    assert [schedule_factor("constant", t, 10, warmup=4) for t in range(5)] == [
        0.25, 0.5, 0.75, 1.0, 1.0]
    with pytest.raises(ValueError, match="unknown schedule 'step'.*constant"):
        schedule_factor("step", 0, 10)


def test_scheduler_is_none_for_a_constant_rate_and_a_lambda_lr_otherwise():
    assert scheduler(sgd(0.1), "constant", 10) is None
    sched = scheduler(sgd(0.1), "cosine", 4)
    assert [lr for (lr,) in lrs_over(sched, 4)] == [
        0.1 * schedule_factor("cosine", t, 4) for t in range(4)]
    warm = scheduler(sgd(0.2), "constant", 4, warmup=2)
    assert [lr for (lr,) in lrs_over(warm, 3)] == [0.1, 0.2, 0.2]
    with pytest.raises(ValueError, match="unknown schedule"):
        scheduler(sgd(0.1), "cyclic", 4)
