"""Learning-rate schedules: the protocol's (constant, cosine, linear, with warmup) and
the ones Neural Optimizer Search found, as torch LR schedulers.

:func:`schedule_factor` is the factor of the protocol's schedules at step t of T: the
learning rate every training of a task runs at, whatever the optimizer (a rule or a
baseline), through :func:`scheduler` (a ``LambdaLR``; ``None`` for a constant rate, so
a constant-rate run takes exactly the steps it always took)::

    warmup (t < W):  (t + 1) / W
    constant:        1
    cosine:          0.5 (1 + cos(π p))      p = (t - W) / (T - W), the progress after warmup
    linear:          1 - p

TensorFlow's ``linear_cosine_decay`` and ``noisy_linear_cosine_decay`` (the same
formulas, the same defaults), usable with any ``torch.optim`` optimizer.  Each group's
learning rate is its initial lr times a factor of t = ``last_epoch`` (the number of
``scheduler.step()`` calls so far; call it once per optimizer step), with t clamped to
``total_steps`` = T::

    linear(t) = (T - t) / T
    cosine(t) = 0.5 (1 + cos(2π · num_periods · t / T))
    LinearCosineDecay:       factor(t) = (alpha + linear(t)) · cosine(t) + beta
    NoisyLinearCosineDecay:  factor(t) = (alpha + linear(t) + ε_t) · cosine(t) + beta
                             ε_t ~ N(0, initial_variance / (1 + t)^variance_decay)

The noise is a pure function of (seed, t): each step's draw comes from its own
``random.Random`` seeded by both, so a schedule is reproducible from its seed, resumes
exactly from a state dict, and gives the same value however often ``get_lr`` is asked.
As in TensorFlow, the noise is not clamped (a factor may go below 0 or above 1 + beta)
and its variance uses the clamped t.
"""
from __future__ import annotations

import math
import random

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR, LRScheduler

__all__ = ["LinearCosineDecay", "NoisyLinearCosineDecay", "linear_cosine_factor",
           "SCHEDULES", "schedule_factor", "scheduler"]

SCHEDULES = ("constant", "cosine", "linear")     # the protocol's schedules


def schedule_factor(schedule: str, t: int, total_steps: int, warmup: int = 0) -> float:
    """The factor of the learning rate at step t (0: the first step) of ``total_steps``,
    after ``warmup`` steps of linear warmup (module docstring)."""
    if t < warmup:
        return (t + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = min(1.0, (t - warmup) / max(1, total_steps - warmup))
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    if schedule == "linear":
        return 1.0 - progress
    raise ValueError(f"unknown schedule {schedule!r}; schedules: {list(SCHEDULES)}")


def scheduler(optimizer: Optimizer, schedule: str, total_steps: int,
              warmup: int = 0) -> LambdaLR | None:
    """The scheduler that runs ``optimizer`` on ``schedule`` (call its ``step()`` after
    each optimizer step), or None for a constant rate without warmup."""
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; schedules: {list(SCHEDULES)}")
    if schedule == "constant" and warmup == 0:
        return None
    return LambdaLR(optimizer, lambda t: schedule_factor(schedule, t, total_steps, warmup))


def linear_cosine_factor(t: int, total_steps: int, num_periods: float = 0.5,
                         alpha: float = 0.0, beta: float = 0.001, noise: float = 0.0) -> float:
    """TensorFlow's (noisy) linear cosine decay factor at step t (``noise`` = ε_t)."""
    tc = min(max(t, 0), total_steps)
    linear = (total_steps - tc) / total_steps
    cosine = 0.5 * (1.0 + math.cos(2.0 * math.pi * num_periods * tc / total_steps))
    return (alpha + linear + noise) * cosine + beta


def _check_total_steps(total_steps) -> int:
    if isinstance(total_steps, bool) or int(total_steps) != total_steps or total_steps < 1:
        raise ValueError(f"total_steps must be an int >= 1, got {total_steps!r}")
    return int(total_steps)


class LinearCosineDecay(LRScheduler):
    """lr(t) = initial_lr · ((alpha + (T−t)/T) · 0.5(1 + cos(2π·n·t/T)) + beta), t ≤ T.

    Args:
        optimizer: any torch optimizer.
        total_steps: T, the number of steps the decay spans (t is clamped to it).
        num_periods: n, periods of the cosine part (0.5: one half-cosine down to 0).
        alpha: added to the linear part (TensorFlow's ``alpha``).
        beta: added to the product, the floor of the factor (TensorFlow's ``beta``).
        last_epoch: index of the last step, -1 to start fresh (torch convention).
    """

    def __init__(self, optimizer: Optimizer, total_steps: int, *, num_periods: float = 0.5,
                 alpha: float = 0.0, beta: float = 0.001, last_epoch: int = -1):
        self.total_steps = _check_total_steps(total_steps)
        if not num_periods > 0:
            raise ValueError(f"num_periods must be > 0, got {num_periods!r}")
        self.num_periods, self.alpha, self.beta = float(num_periods), float(alpha), float(beta)
        super().__init__(optimizer, last_epoch)

    def factor(self, t: int) -> float:
        """The multiplier of each group's initial lr at step t."""
        return linear_cosine_factor(t, self.total_steps, self.num_periods, self.alpha, self.beta)

    def get_lr(self):
        f = self.factor(self.last_epoch)
        return [base_lr * f for base_lr in self.base_lrs]

    def _get_closed_form_lr(self):
        return self.get_lr()


class NoisyLinearCosineDecay(LinearCosineDecay):
    """lr(t) = initial_lr · ((alpha + (T−t)/T + ε_t) · 0.5(1 + cos(2π·n·t/T)) + beta).

    ε_t ~ N(0, initial_variance / (1 + t)^variance_decay) (a variance), fresh each
    step, seeded: the same seed gives the same schedule.  Defaults are TensorFlow's.

    Args:
        optimizer, total_steps, num_periods, alpha, beta, last_epoch: as
            :class:`LinearCosineDecay`.
        initial_variance: variance of the noise at t = 0.
        variance_decay: exponent of the variance's decay.
        seed: seed of the noise; None draws one (kept in the state dict).
    """

    def __init__(self, optimizer: Optimizer, total_steps: int, *, num_periods: float = 0.5,
                 alpha: float = 0.0, beta: float = 0.001, initial_variance: float = 1.0,
                 variance_decay: float = 0.55, seed: int | None = None, last_epoch: int = -1):
        if not initial_variance >= 0:
            raise ValueError(f"initial_variance must be >= 0, got {initial_variance!r}")
        if not variance_decay >= 0:
            raise ValueError(f"variance_decay must be >= 0, got {variance_decay!r}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ValueError(f"seed must be an int or None, got {seed!r}")
        self.initial_variance = float(initial_variance)
        self.variance_decay = float(variance_decay)
        self.seed = seed if seed is not None else random.SystemRandom().randrange(2 ** 63)
        super().__init__(optimizer, total_steps, num_periods=num_periods, alpha=alpha,
                         beta=beta, last_epoch=last_epoch)

    def noise_std(self, t: int) -> float:
        """Standard deviation of ε_t (t clamped to [0, total_steps], as in TensorFlow)."""
        tc = min(max(t, 0), self.total_steps)
        return math.sqrt(self.initial_variance / (1.0 + tc) ** self.variance_decay)

    def noise(self, t: int) -> float:
        """ε_t: a Gaussian draw determined by (seed, t) alone."""
        return random.Random(f"evo_nos.noisy_linear_cosine:{self.seed}:{t}").gauss(
            0.0, self.noise_std(t))

    def factor(self, t: int) -> float:
        return linear_cosine_factor(t, self.total_steps, self.num_periods, self.alpha,
                                    self.beta, noise=self.noise(t))
