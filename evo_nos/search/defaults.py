"""The defaults of a search, written once: every command and experiment reads them here."""
from __future__ import annotations

import os

DEFAULT_OUT = "evo_nos_runs"         # checkpoint folders go under ./evo_nos_runs/
DEFAULT_STRATEGY = "evo"
DEFAULT_SEED = 0
DEFAULT_HALL_OF_FAME = 10
# Budgets (child trainings) that finish well under an hour with the preset's hardware:
# (seconds per candidate of each preset: docs/benchmarks.md; nos is full CIFAR-10, for a GPU)
DEFAULT_BUDGETS = {"smoke": 30, "cpu": 60, "fast": 300, "fast-cosine": 300, "mix": 100, "nos": 40}
FALLBACK_BUDGET = 50


def default_budget(preset_key: str | None) -> int:
    """The budget of a search on ``preset_key`` when none is given."""
    return DEFAULT_BUDGETS.get(preset_key or "", FALLBACK_BUDGET)


def default_batch_size(n_jobs: int | None) -> int:
    """Rules per ask/evaluate round when none is given: one per parallel training
    (``n_jobs`` -1 or 0: one per CPU core), at least 1."""
    n_jobs = n_jobs or 1
    return max(1, n_jobs if n_jobs > 0 else (os.cpu_count() or 1))
# The re-evaluation funnel: a rule that enters the top FUNNEL_TOP of the hall of fame is
# re-scored until it has FUNNEL_SEEDS backend seeds, charged to the budget.  The final
# stage re-scores the top FINAL_TOP on FINAL_SEEDS seeds after the budget (0: off).
FUNNEL_TOP = 10
FUNNEL_SEEDS = 3
FINAL_TOP = 3
FINAL_SEEDS = 0
FUNNEL = {"funnel_top": FUNNEL_TOP, "funnel_seeds": FUNNEL_SEEDS, "final_top": FINAL_TOP,
          "final_seeds": FINAL_SEEDS}      # Search's keyword arguments, as configs carry them


def funnel_settings(given: dict | None = None) -> dict:
    """:data:`FUNNEL` with the ``given`` values (None: the default); refuses other keys."""
    given = {k: v for k, v in (given or {}).items() if v is not None}
    unknown = sorted(set(given) - set(FUNNEL))
    if unknown:
        raise ValueError(f"unknown funnel setting(s) {unknown}; known: {sorted(FUNNEL)}")
    out = {**FUNNEL, **{k: int(v) for k, v in given.items()}}
    for key, value in out.items():
        if value < 0:
            raise ValueError(f"{key} must be >= 0, got {value} (--{key.replace('_', '-')})")
    return out
