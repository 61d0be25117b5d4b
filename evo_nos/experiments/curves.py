"""Search runs as curves: what one search contributes to a comparison, and like with like.

A :class:`SearchCurve` is one search run read back from MLflow as plain data: its
identity (strategy, seed, preset, budget, scoring settings), its best fitness so far
after each candidate against the compute spent (child trainings) and wall-clock time,
its counts (candidates, cache hits, invalid) and its hall of fame.

Contract:

* :func:`load_curve` reads a run's ``evaluations.json`` table when the search logged it
  (the final stage's re-scores are not on the curve), else its ``best_fitness`` metric
  (a search still running, or killed hard);
* :func:`search_budget` is a run's budget (its ``budget`` tag, else the param of older
  runs);
* :func:`check_comparable` raises :class:`MixedRunsError` unless all curves share
  preset, budget and scoring settings, naming the groups, their runs and the filter
  that picks one.
"""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from evo_nos.experiments.references import scoring_settings
from evo_nos.fitness.evaluation import CACHED, OK
from evo_nos.tracking import load_hall_of_fame, load_table, metric_history

SCORED = (OK, CACHED)                  # statuses whose fitness counts (as the driver's)


class MixedRunsError(ValueError):
    """Searches that cannot be compared (different presets, budgets or settings)."""


# -- what one search contributes -----------------------------------------------------------
@dataclass
class SearchCurve:
    """One search run as plain data: identity, best-so-far curve, counts, hall of fame."""

    run_id: str
    name: str
    strategy: str
    seed: int | None
    preset: str
    budget: int | None
    status: str
    settings: dict = field(repr=False)           # scoring settings (fitness.* params)
    steps: list = field(repr=False)              # child trainings after each candidate
                                                 # (compute: may be fractional)
    elapsed: list = field(repr=False)            # seconds after each candidate
    best: list = field(repr=False)               # best fitness so far (nan before any)
    trainings: float = 0.0                       # compute spent, in child trainings
    evaluations: int = 0
    cached: int = 0
    invalid: int = 0
    seconds: float = 0.0
    hall_of_fame: list = field(default_factory=list, repr=False)

    @property
    def final_best(self) -> float:
        finite = [b for b in self.best if math.isfinite(b)]
        return finite[-1] if finite else math.nan

    @property
    def label(self) -> str:
        seed = "?" if self.seed is None else self.seed
        return f"{self.strategy} seed {seed} ({self.run_id[:8]})"

    def best_at(self, xs, axis: str = "steps") -> np.ndarray:
        """Best fitness so far at each x (child trainings or seconds); nan before any."""
        points = np.asarray(self.steps if axis == "steps" else self.elapsed, dtype=float)
        values = np.asarray(self.best, dtype=float)
        out = np.full(len(xs), np.nan)
        if len(points) == 0:
            return out
        idx = np.searchsorted(points, np.asarray(xs, dtype=float), side="right") - 1
        ok = idx >= 0
        out[ok] = values[idx[ok]]
        return out

    def compute_to_reach(self, score: float | None) -> float | None:
        """The child trainings spent when the best so far first reached ``score``
        (``>=``); None when it never did (censored) or there is no score."""
        if score is None or not math.isfinite(score):
            return None
        for step, best in zip(self.steps, self.best):
            if math.isfinite(best) and best >= score:
                return float(step)
        return None


def _int(value) -> int | None:
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return None


def search_budget(run) -> int | None:
    """A search run's budget: its ``budget`` tag (a resume may grow it), else the
    ``budget`` param of runs logged before it became a tag."""
    return _int(run.tags.get("budget") or run.params.get("budget"))


def load_curve(run, tracking_uri: str | None = None) -> SearchCurve:
    """A search run's curve: from its ``evaluations.json`` table when the search logged
    it (at the end, or when interrupted), else from its ``best_fitness`` metric."""
    params, tags = run.params, run.tags
    curve = SearchCurve(
        run_id=run.run_id, name=run.name, strategy=tags.get("strategy") or params.get(
            "strategy", "?"), seed=_int(params.get("seed")),
        preset=params.get("preset") or tags.get("preset") or "?",
        budget=search_budget(run), status=run.status,
        settings=scoring_settings(params), steps=[], elapsed=[], best=[])
    rows = load_table(run.run_id, "evaluations.json", tracking_uri)
    if rows:
        rows.sort(key=lambda r: (r.get("index") is None, r.get("index") or 0))
        best = -math.inf
        # the final stage (kind "final") re-scores after the budget: not on the curve
        rows = [r for r in rows if r.get("kind") != "final"]
        for row in rows:
            fitness = row.get("fitness")
            if "best" in row:        # the hall of fame's best mean after this record
                best = float(row["best"]) if row["best"] is not None else -math.inf
            elif row.get("status") in SCORED and fitness is not None and \
                    math.isfinite(float(fitness)) and float(fitness) > best:
                best = float(fitness)    # runs logged before the funnel: running maximum
            # the compute spent in child trainings (searches that count optimizer steps
            # log it as "compute"; before, "step" was the child trainings)
            x = row.get("compute") if row.get("compute") is not None else row.get("step")
            curve.steps.append(float(x or 0.0))
            curve.elapsed.append(float(row.get("elapsed") or 0.0))
            curve.best.append(best if math.isfinite(best) else math.nan)
        statuses = [r.get("status") for r in rows if r.get("kind", "candidate") == "candidate"]
        curve.evaluations = len(statuses)
        curve.cached = statuses.count("cached")
        curve.invalid = statuses.count("invalid")
        curve.trainings = max(curve.steps)
        curve.seconds = max(curve.elapsed)
    else:       # a search still running (or killed hard): its metrics are all there is
        start = run.start_time or 0.0
        unit = float(params.get("steps_per_training") or 1.0) or 1.0   # step -> trainings
        for step, value, stamp in metric_history(run.run_id, "best_fitness", tracking_uri):
            curve.steps.append(step / unit)
            curve.elapsed.append(max(0.0, stamp - start))
            curve.best.append(value)
        metrics = run.metrics
        curve.evaluations = int(metrics.get("evaluations", len(curve.steps)))
        curve.cached = int(metrics.get("cache_hits", 0))
        curve.invalid = int(metrics.get("invalid", 0))
        curve.trainings = max(curve.steps, default=0.0)
        curve.seconds = max(curve.elapsed, default=0.0)
    try:
        curve.hall_of_fame = load_hall_of_fame(run.run_id, tracking_uri)
    except ValueError:
        curve.hall_of_fame = []
    return curve


# -- like with like -------------------------------------------------------------------------
def check_comparable(curves: list[SearchCurve]) -> None:
    """Raise :class:`MixedRunsError` unless all searches share preset, budget and scoring
    settings; the message names the groups, their runs, and the filter to use."""
    groups: dict = defaultdict(list)
    for c in curves:
        groups[(c.preset, c.budget)].append(c)
    if len(groups) > 1:
        lines = ["refusing to compare searches run with different presets or budgets "
                 "(their fitness values and curves are not comparable):"]
        for (preset, budget), members in sorted(groups.items(), key=lambda kv: str(kv[0])):
            runs = ", ".join(c.label for c in members[:6]) + (
                f", ... ({len(members) - 6} more)" if len(members) > 6 else "")
            lines.append(f"  preset {preset!r}, budget {budget}: {len(members)} run(s): {runs}")
        (preset, budget), members = max(groups.items(), key=lambda kv: len(kv[1]))
        lines.append(f"compare one group at a time, e.g.: python -m evo_nos.compare "
                     f"--preset {preset} --budget {budget}")
        raise MixedRunsError("\n".join(lines))
    keys = set().union(*(c.settings for c in curves)) if curves else set()
    differ = sorted(k for k in keys if len({c.settings.get(k) for c in curves}) > 1)
    if differ:
        lines = ["refusing to compare searches whose preset and budget agree but whose "
                 "scoring settings differ:"]
        for key in differ[:8]:
            values: dict = defaultdict(list)
            for c in curves:
                values[c.settings.get(key)].append(c.run_id[:8])
            lines.append(f"  {key}: " + "; ".join(
                f"{v!r} in {', '.join(ids)}" for v, ids in values.items()))
        lines.append("pick the runs to compare with --runs RUN_ID [RUN_ID ...]")
        raise MixedRunsError("\n".join(lines))
