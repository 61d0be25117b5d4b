"""Run a rule's update on fixed pseudo-random gradients: cheap, exact, no network.

The probe drives a real :class:`RuleOptimizer` (so the state updates are the ones
training uses) over a fixed gradient sequence and records the update direction it
computes at every step.  Screening, functional fingerprints and the stand-in fitness
are built on it.
"""
from __future__ import annotations

import torch

from evo_nos.core.known import resolve
from evo_nos.core.primitives import RuleSettings
from evo_nos.optim.optimizer import RuleOptimizer
from evo_nos.core.rules import Rule


def probe_gradients(steps: int, dim: int, seed: int, *, log10_range=(-3.0, 1.0),
                    persistence: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed (gradients [steps, dim], weights [dim]) pair in float64.

    Element scales span ``log10_range`` so clip bounds and powers are told apart; each
    element has a persistent component (``persistence``) plus fresh noise, so running
    averages and sign agreement matter.
    """
    gen = torch.Generator().manual_seed(seed)
    scales = torch.logspace(log10_range[0], log10_range[1], dim, dtype=torch.float64)
    drift = torch.randn(dim, generator=gen, dtype=torch.float64)
    noise = torch.randn(steps, dim, generator=gen, dtype=torch.float64)
    grads = scales * (persistence * drift + noise)
    grads[:, 0] = 0.0   # one coordinate with zero gradient: sign(0) = 0 matters
    weights = torch.randn(dim, generator=gen, dtype=torch.float64)
    return grads, weights


def probe_updates(rule: "Rule | str", *, steps: int = 32, dim: int = 64, seed: int = 0,
                  settings: RuleSettings | None = None, total_steps: int | None = None,
                  grads: torch.Tensor | None = None, weights: torch.Tensor | None = None,
                  rng_seed: int = 0) -> torch.Tensor:
    """The directions ``RuleOptimizer`` computes at each step, shape [steps, dim].

    The weights stay fixed (lr = 0) so every step sees the same w.  Randomness inside
    the rule (ε, drop) is seeded with ``rng_seed`` without touching the caller's RNG.
    ``total_steps`` defaults to ``steps`` so decays run their whole course.
    """
    rule = resolve(rule)
    if grads is None or weights is None:
        grads, weights = probe_gradients(steps, dim, seed)
    param = torch.nn.Parameter(weights.clone())
    opt = RuleOptimizer([param], rule, lr=0.0, settings=settings,
                        total_steps=total_steps or len(grads), foreach=False)
    recorded = []

    def recording(direction):
        def recorded_direction(g, w, m, v, r, t, T):
            d = direction(g, w, m, v, r, t, T)
            recorded.append(torch.broadcast_to(d, g.shape).clone())
            return d
        return recorded_direction

    opt.wrap_direction(recording)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(rng_seed)
        for g in grads:
            param.grad = g.clone()
            opt.step()
    return torch.stack(recorded)
