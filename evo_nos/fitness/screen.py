"""Screening and functional fingerprints: judge a rule before any training.

:func:`screen` runs the rule's update (the very step :class:`RuleOptimizer` takes, via
:func:`evo_nos.fitness.probe.probe_updates`) on fixed pseudo-random gradient and weight
sequences, twice: once on gradient sequence A and once on an independent sequence B,
with the same weights and the same seed for the rule's own noise (ε, drop), so that two
runs differ only in the gradients.  A rule is *invalid* when

* any update is non-finite (NaN/inf: ``log(g)`` at a zero gradient, overflowing powers),
* every update is zero (``clip5(sub(g, g))``), or
* the updates on A and B are the same: the rule ignores the gradient (``w4``, ``2``).

The *fingerprint* of a valid rule hashes its updates on A, each rounded to
``digits`` significant digits (relative rounding, so float noise of order 1e-16 does
not split rules that compute the same function, while real differences, even tiny
ones like clip bounds, survive).  Rules with equal fingerprints behave identically on
the probe (``g``, ``mul(g, 1)``, ``add(g, g)`` vs ``mul(2, g)``), and the fitness cache
treats them as one.  For rules with randomness the fingerprint is that of the fixed
probe seed: deterministic, and equal for rules that draw the same noise the same way.
"""
from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass

import numpy as np
import torch

from evo_nos.fitness.probe import probe_gradients, probe_updates
from evo_nos.core.known import resolve
from evo_nos.core.rules import Rule

PROBE_SEED_A, PROBE_SEED_B, NOISE_SEED = 0, 1, 0


@dataclass(frozen=True)
class ScreenResult:
    valid: bool
    fingerprint: str | None   # None when the updates are not finite
    reason: str = ""


def rounded(updates: torch.Tensor, digits: int = 6) -> np.ndarray:
    """Round every entry to ``digits`` significant digits (zeros, incl. -0.0, to 0)."""
    x = updates.detach().to(torch.float64).cpu().numpy()
    out = np.zeros_like(x)
    nonzero = x != 0
    exponent = np.floor(np.log10(np.abs(x[nonzero])))
    scale = 10.0 ** (exponent - (digits - 1))
    out[nonzero] = np.round(x[nonzero] / scale) * scale
    return out


def fingerprint_of(updates: torch.Tensor, digits: int = 6) -> str:
    """Hash of the rounded updates (their shape included)."""
    values = rounded(updates, digits)
    # repr of each rounded float is exact and stable; join them to one byte string
    text = ",".join(f"{v:.{digits - 1}e}" for v in values.ravel())
    digest = hashlib.sha256(f"{tuple(values.shape)}|{text}".encode()).hexdigest()
    return digest[:20]


@functools.lru_cache(maxsize=8)
def _probe_inputs(steps: int, dim: int):
    grads_a, weights = probe_gradients(steps, dim, PROBE_SEED_A)
    grads_b, _ = probe_gradients(steps, dim, PROBE_SEED_B)
    return grads_a, grads_b, weights


def screen(rule: Rule | str, *, steps: int = 32, dim: int = 64, digits: int = 6,
           settings=None) -> ScreenResult:
    """Screen ``rule`` and compute its fingerprint (milliseconds, no network)."""
    rule = resolve(rule)
    grads_a, grads_b, weights = _probe_inputs(steps, dim)

    def run(grads):
        return probe_updates(rule, grads=grads, weights=weights, settings=settings,
                             total_steps=steps, rng_seed=NOISE_SEED)

    try:
        updates = run(grads_a)
    except (RuntimeError, ValueError, OverflowError, ZeroDivisionError) as err:
        return ScreenResult(False, None, f"the update fails on the probe: {err}")
    if not bool(torch.isfinite(updates).all()):
        return ScreenResult(False, None, "non-finite updates (NaN or inf) on the probe gradients")
    fingerprint = fingerprint_of(updates, digits)
    if not bool((updates != 0).any()):
        return ScreenResult(False, fingerprint, "every update is zero")
    other = run(grads_b)
    if torch.isfinite(other).all() and np.array_equal(rounded(other, digits),
                                                      rounded(updates, digits)):
        return ScreenResult(False, fingerprint,
                            "the updates do not depend on the gradient")
    return ScreenResult(True, fingerprint)
