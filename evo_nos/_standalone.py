"""Helpers the generated update code calls.

This module imports only torch and the standard library: :mod:`evo_nos.export` copies
it verbatim into every exported optimizer file.
"""
import math

import torch

__all__ = ["_drop", "_decay_values"]


def _drop(x, p, rescale):
    """Zero each entry of x with probability p (rescaled by 1/(1-p) when asked)."""
    kept = x * (torch.rand_like(x) >= p)
    return kept / (1.0 - p) if rescale else kept


def _decay_values(t, T, cd_periods, rd_periods):
    """Linear, cosine and restart decays at step t of T (t clamped to [0, T])."""
    tc = min(max(t, 0), T)
    linear = max(0.0, (T - tc) / T)
    cosine = 0.5 * (1.0 + math.cos(math.pi * 2.0 * cd_periods * tc / T))
    restart = 0.5 * (1.0 + math.cos(math.pi * ((rd_periods * tc) % T) / T))
    return linear, cosine, restart
