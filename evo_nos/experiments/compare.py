"""``python -m evo_nos.compare``: the head-to-head report of the searches in an experiment.

Which search finds better optimizers for the same compute?  The report reads the parent
runs of the searches from MLflow (see :mod:`evo_nos.tracking`) and the reference runs
(:mod:`evo_nos.experiments.references`), and shows, per strategy over its seeds:

* best fitness so far against child trainings (the budget's unit) and against
  wall-clock time: the mean over seeds as a line, the spread (min to max) as a band,
  the reference rules as horizontal lines;
* a table: best fitness (mean over seeds with a bootstrap 95% CI, and the sample std),
  cache-hit and invalid rates, candidates per minute, the trainings actually spent;
* the probability that a search of one strategy ends with a better rule than a search
  of another (rliable's *probability of improvement*: P(X > Y) + ½·P(X = Y) over all
  pairs of their seeds, the Mann-Whitney U over n·m), for every ordered pair, with a
  bootstrap 95% CI (seeds resampled within each strategy independently);
* the compute to reach Adam's and PowerSign's level: per search the child trainings
  at which its best so far first reached the same seed's reference score; per
  strategy the mean over the searches that did, with a bootstrap 95% CI, and how many
  did (the others are censored: they never got there within the budget);
* plain sentences from those numbers: whether the CIs overlap (no separation at this
  budget) or not, whether a probability of improvement is within noise (its CI holds ½);
* the top rules each strategy found (its seeds' halls of fame merged), their fitness as
  the mean ± standard error over the backend seeds they were scored on, where the
  search logged those.

Confidence intervals are percentile or BCa bootstraps (:func:`bootstrap_interval`,
``scipy.stats.bootstrap``) from a fixed seed (:data:`BOOTSTRAP_SEED`), so the same runs
give the same report.  BCa needs at least 3 values per sample and a bootstrap
distribution that is not degenerate; otherwise the percentile interval is used, and with
fewer than 2 values there is none (NaN, and a note says so).

Only like can be compared with like: searches on different presets, budgets or scoring
settings are refused, naming which runs differ and how, with the filter that picks one
group (``--preset``, ``--budget``, ``--runs``).

The report's tables are DataFrames (:meth:`Report.tables`: ``strategies``,
``improvement``, ``reach``, ``references``, ``top_rules``, ``runs``).  The report is printed (markdown), written to
``--out`` (``comparison.md``, ``comparison.json``, ``best_vs_trainings.png``,
``best_vs_time.png``, and each table as ``<table>.md``, ``<table>.csv`` and
``<table>.json``) and logged as its own MLflow run tagged ``kind=compare`` in the same
experiment (the strategies table as ``comparison_table.json``, the probabilities of
improvement as ``improvement_table.json``, the compute to reach the references as
``reach_table.json``; the report as its description).  That run logs its numbers as
these tables, not as metrics: MLflow's chart view draws one chart per metric key of
every run in the experiment, and a metric per strategy (or pair) and statistic would
add a score of single-point charts beside the searches' curves.

    python -m evo_nos.compare                                  # every search in evo_nos
    python -m evo_nos.compare --preset cpu --budget 40 --out results/
"""
from __future__ import annotations

import json
import math
import re
import warnings
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure        # no pyplot: no GUI, no global state
from scipy import stats

from evo_nos.core.files import write_atomic
from evo_nos.core.known import name_of
from evo_nos.core.rules import Rule
from evo_nos.core.tables import markdown as markdown_table, records, write_table
from evo_nos.experiments.references import (HEADLINE, fitness_key, load_references,
                                            scoring_settings)
from evo_nos.fitness.evaluation import CACHED, OK
from evo_nos.search.defaults import DEFAULT_OUT
from evo_nos.tracking import (DEFAULT_EXPERIMENT, KIND_TAG, NOTE_TAG, ReportTracker, get_run,
                              load_hall_of_fame, load_search_runs, load_table, metric_history)

THRESHOLDS = ("adam", "powersign")     # "compute to reach ...": the reach table
SCORED = (OK, CACHED)                  # statuses whose fitness counts (as the driver's)
TOP_RULES = 5
CONFIDENCE = 0.95                      # of every interval in the report
RESAMPLES = 10_000                     # bootstrap resamples per interval
BOOTSTRAP_SEED = 0                     # every interval draws from this seed: reproducible
BCA, PERCENTILE, NO_CI = "BCa", "percentile", "none"     # Interval.method


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


# -- statistics -----------------------------------------------------------------------------
def _mean_std(values) -> tuple[float, float]:
    values = [v for v in values if v is not None and math.isfinite(v)]
    if not values:
        return math.nan, math.nan
    std = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    return float(np.mean(values)), std


@dataclass(frozen=True)
class Interval:
    """A statistic and its bootstrap confidence interval (``low``/``high`` NaN: none)."""

    estimate: float
    low: float
    high: float
    method: str          # BCA, PERCENTILE (the fallback), NO_CI (fewer than 2 values)
    sizes: tuple = ()    # the sample sizes it came from

    @property
    def defined(self) -> bool:
        return math.isfinite(self.low) and math.isfinite(self.high)

    def overlaps(self, other: "Interval") -> bool:
        return self.low <= other.high and other.low <= self.high

    def contains(self, value: float) -> bool:
        return self.defined and self.low <= value <= self.high

    def mirrored(self) -> "Interval":
        """The interval of ``1 - statistic`` (P(Y > X) from P(X > Y))."""
        return Interval(1.0 - self.estimate, 1.0 - self.high, 1.0 - self.low, self.method,
                        tuple(reversed(self.sizes)))

    def as_dict(self) -> dict:
        return {"estimate": _finite(self.estimate), "ci_low": _finite(self.low),
                "ci_high": _finite(self.high), "ci_method": self.method}


def _mean(x, axis=-1):
    return np.mean(x, axis=axis)


def bootstrap_interval(samples, statistic=_mean, *, confidence: float = CONFIDENCE,
                       resamples: int = RESAMPLES, seed: int = BOOTSTRAP_SEED) -> Interval:
    """``statistic`` of ``samples`` (a sequence of 1-d samples; non-finite values are
    dropped) with its bootstrap ``confidence`` interval, each sample resampled on its
    own.  ``statistic(*samples, axis=-1)`` must be vectorized.  BCa when every sample has
    at least 3 values and BCa is defined; else the percentile interval (a degenerate
    bootstrap distribution, all resamples equal, gives the point itself); with a sample
    of fewer than 2 values no interval (NaN).  Every call draws from ``seed``: the same
    data give the same interval."""
    data = [np.asarray([v for v in np.asarray(s, dtype=float).ravel() if math.isfinite(v)])
            for s in samples]
    sizes = tuple(len(d) for d in data)
    if min(sizes, default=0) == 0:
        return Interval(math.nan, math.nan, math.nan, NO_CI, sizes)
    estimate = float(statistic(*data, axis=-1))
    if min(sizes) < 2:
        return Interval(estimate, math.nan, math.nan, NO_CI, sizes)

    def run(method: str) -> tuple[float, float]:
        with warnings.catch_warnings():          # BCa on degenerate data: NaN, warned
            warnings.simplefilter("ignore", RuntimeWarning)
            warnings.simplefilter("ignore", stats.DegenerateDataWarning)
            ci = stats.bootstrap(data, statistic, n_resamples=resamples, vectorized=True,
                                 paired=False, confidence_level=confidence, method=method,
                                 rng=np.random.default_rng(seed)).confidence_interval
        return float(ci.low), float(ci.high)

    if min(sizes) >= 3:
        low, high = run(BCA)
        if math.isfinite(low) and math.isfinite(high) and low < high:
            return Interval(estimate, low, high, BCA, sizes)
    low, high = run(PERCENTILE)
    if low == high:                               # every resample gave the same value
        low = high = estimate
    return Interval(estimate, low, high, PERCENTILE, sizes)


def _improvement(x, y, axis=-1):
    """P(X > Y) + ½·P(X = Y) over all pairs (vectorized along ``axis``)."""
    x, y = np.moveaxis(np.asarray(x), axis, -1), np.moveaxis(np.asarray(y), axis, -1)
    diff = x[..., :, None] - y[..., None, :]
    wins = (diff > 0).sum(axis=(-2, -1)) + 0.5 * (diff == 0).sum(axis=(-2, -1))
    return wins / (x.shape[-1] * y.shape[-1])


def probability_of_improvement(x, y) -> float:
    """rliable's probability of improvement of X over Y: P(X > Y) + ½·P(X = Y) over all
    n·m pairs of values, i.e. the Mann-Whitney U statistic of X over n·m (NaN if a
    sample is empty; non-finite values are dropped)."""
    x = [v for v in x if v is not None and math.isfinite(v)]
    y = [v for v in y if v is not None and math.isfinite(v)]
    if not x or not y:
        return math.nan
    return float(_improvement(np.asarray(x, dtype=float), np.asarray(y, dtype=float)))


def improvement_interval(x, y, **kwargs) -> Interval:
    """:func:`probability_of_improvement` of X over Y with its bootstrap interval (the
    seeds of X and of Y resampled independently)."""
    x = [v for v in x if v is not None and math.isfinite(v)]
    y = [v for v in y if v is not None and math.isfinite(v)]
    return bootstrap_interval((x, y), _improvement, **kwargs)


def _seeds(n: int) -> str:
    return f"{n} seed" + ("" if n == 1 else "s")


def _ci_text(i: Interval, spec: str = ".4f") -> str:
    return f"[{i.low:{spec}}, {i.high:{spec}}]" if i.defined else "(no CI)"


# -- the report -----------------------------------------------------------------------------
@dataclass
class StrategySummary:
    strategy: str
    runs: list                       # run ids
    seeds: list
    best_mean: float
    best_std: float
    best_per_seed: list
    best_ci: dict                    # Interval.as_dict() of the mean best fitness
    reach: dict                      # reference -> {"mean": x|None, "ci_low", "ci_high",
                                     #   "ci_method", "reached": k, "runs": n,
                                     #   "per_seed": [trainings | None (censored)]}
    cache_hit_rate: float
    invalid_rate: float
    candidates_per_min: float
    trainings_mean: float
    top_rules: list                  # [{fitness, fitness_se, seeds, rule, math, seed, run_id}]

    @property
    def best_interval(self) -> Interval:
        b = self.best_ci
        return Interval(_nan(b.get("estimate")), _nan(b.get("ci_low")), _nan(b.get("ci_high")),
                        b.get("ci_method", NO_CI),
                        (sum(1 for f in self.best_per_seed if f is not None),))

    def reach_interval(self, ref: str) -> Interval:
        r = self.reach[ref]
        return Interval(_nan(r["mean"]), _nan(r["ci_low"]), _nan(r["ci_high"]),
                        r["ci_method"], (r["reached"],))


@dataclass
class Report:
    experiment: str
    preset: str
    budget: int | None
    runs: list                       # SearchCurve
    references: dict                 # name -> {"mean", "std", "seeds": {seed: fitness}, "rule"}
    strategies: dict                 # name -> StrategySummary
    notes: list
    improvement: list = field(default_factory=list)   # rows of the improvement table
    files: dict = field(default_factory=dict)   # what was written to --out
    run_id: str | None = None        # the compare run in MLflow

    def as_dict(self) -> dict:
        return {
            "experiment": self.experiment, "preset": self.preset, "budget": self.budget,
            "references": self.references,
            "strategies": {k: asdict(v) for k, v in self.strategies.items()},
            "improvement": records(self._improvement_frame()),
            "reach": records(self._reach_frame()),
            "verdicts": verdicts(self),
            "runs": records(self._runs_frame()),
            "notes": self.notes, "compare_run_id": self.run_id,
        }

    # -- the tables -------------------------------------------------------------------------
    def tables(self) -> dict:
        """The report's tables as DataFrames (missing numbers are NaN):

        * ``strategies``: one row per strategy: runs, best fitness (mean over seeds, its
          bootstrap 95% CI ``ci_low``/``ci_high`` and the ``ci_method``, the sample std),
          cache-hit and invalid rates, candidates per minute, mean trainings spent, the
          top rule;
        * ``improvement``: one row per ordered pair of strategies: the probability that a
          search of ``strategy`` ends better than one of ``versus`` (ties count half),
          its bootstrap 95% CI, and the seeds ``n``, ``m`` it is over;
        * ``reach``: one row per strategy and reference of :data:`THRESHOLDS` with a
          score: the mean child trainings to reach it over the searches that did, its
          bootstrap 95% CI over those, how many ``reached`` of ``runs``, and a note
          (``reached 2/5; 3 censored ...``);
        * ``references``: one row per reference rule, best first: fitness (mean and std
          over seeds), how many seeds scored it, its rule;
        * ``top_rules``: each strategy's best rules (its seeds' halls of fame merged),
          best first, with the standard error over the backend seeds each was scored on
          and their number (missing for searches that did not log them);
        * ``runs``: one row per search.
        """
        return {"strategies": self._strategies_frame(),
                "improvement": self._improvement_frame(), "reach": self._reach_frame(),
                "references": self._references_frame(),
                "top_rules": self._top_rules_frame(), "runs": self._runs_frame()}

    def _strategies_frame(self) -> pd.DataFrame:
        rows = []
        for name, s in self.strategies.items():
            ci = s.best_interval
            rows.append({"strategy": name, "runs": len(s.runs), "best_mean": s.best_mean,
                         "ci_low": ci.low, "ci_high": ci.high, "ci_method": ci.method,
                         "best_std": s.best_std, "cache_hit_rate": s.cache_hit_rate,
                         "invalid_rate": s.invalid_rate,
                         "candidates_per_min": s.candidates_per_min,
                         "trainings_mean": s.trainings_mean,
                         "top_rule": s.top_rules[0]["rule"] if s.top_rules else None})
        return pd.DataFrame(rows, columns=list(_COLUMNS["strategies"]))

    def _improvement_frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.improvement, columns=list(_COLUMNS["improvement"]))

    def _reach_frame(self) -> pd.DataFrame:
        rows = []
        for name, s in self.strategies.items():
            for ref in THRESHOLDS:
                r = s.reach.get(ref)
                if r is None:
                    continue
                rows.append({"strategy": name, "reference": ref,
                             "trainings_mean": _nan(r["mean"]), "ci_low": _nan(r["ci_low"]),
                             "ci_high": _nan(r["ci_high"]), "ci_method": r["ci_method"],
                             "reached": r["reached"], "runs": r["runs"],
                             "note": _reach_note(r)})
        return pd.DataFrame(rows, columns=list(_COLUMNS["reach"]))

    def _references_frame(self) -> pd.DataFrame:
        rows = [{"reference": name, "fitness_mean": r["mean"], "fitness_std": r["std"],
                 "seeds": len(r["seeds"]), "rule": r["rule"]}
                for name, r in self.references.items()]
        frame = pd.DataFrame(rows, columns=list(_COLUMNS["references"]))
        return frame.sort_values("fitness_mean", ascending=False, kind="stable",
                                 ignore_index=True)

    def _top_rules_frame(self) -> pd.DataFrame:
        rows = [{"strategy": name, **row} for name, s in self.strategies.items()
                for row in s.top_rules]
        frame = pd.DataFrame(rows, columns=list(_COLUMNS["top_rules"]))
        # missing (NaN) for searches that logged one score per rule
        frame[["fitness_se", "seeds"]] = frame[["fitness_se", "seeds"]].astype(float)
        return frame

    def _runs_frame(self) -> pd.DataFrame:
        rows = [{"run_id": c.run_id, "name": c.name, "strategy": c.strategy, "seed": c.seed,
                 "status": c.status, "trainings": c.trainings, "evaluations": c.evaluations,
                 "cached": c.cached, "invalid": c.invalid, "seconds": c.seconds,
                 "best_fitness": c.final_best,
                 "best_rule": c.hall_of_fame[0]["rule"] if c.hall_of_fame else None}
                for c in self.runs]
        return pd.DataFrame(rows, columns=list(_COLUMNS["runs"]))


_COLUMNS = {     # the columns of Report.tables()
    "strategies": ("strategy", "runs", "best_mean", "ci_low", "ci_high", "ci_method",
                   "best_std", "cache_hit_rate", "invalid_rate", "candidates_per_min",
                   "trainings_mean", "top_rule"),
    "improvement": ("strategy", "versus", "probability", "ci_low", "ci_high", "ci_method",
                    "n", "m"),
    "reach": ("strategy", "reference", "trainings_mean", "ci_low", "ci_high", "ci_method",
              "reached", "runs", "note"),
    "references": ("reference", "fitness_mean", "fitness_std", "seeds", "rule"),
    "top_rules": ("strategy", "fitness", "fitness_se", "seeds", "rule", "name", "math",
                  "seed", "run_id"),
    "runs": ("run_id", "name", "strategy", "seed", "status", "trainings", "evaluations",
             "cached", "invalid", "seconds", "best_fitness", "best_rule"),
}


def _finite(x):
    return None if x is None or (isinstance(x, float) and not math.isfinite(x)) else x


def _nan(x) -> float:
    return math.nan if x is None else float(x)


def _reach_note(r: dict) -> str:
    reached, runs = r["reached"], r["runs"]
    if reached == 0:
        text = f"reached 0/{runs}: none got there within the budget"
    elif reached == runs:
        text = f"reached {reached}/{runs}"
    else:
        text = (f"reached {reached}/{runs}; {runs - reached} censored (never got there "
                "within the budget, not in the mean)")
    if reached == 1:
        text += "; 1 search: no CI"
    elif r["ci_method"] == PERCENTILE and reached < 3:
        text += "; percentile CI (BCa needs 3)"
    return text


def reference_table(reference_sets, seeds) -> tuple[dict, dict]:
    """Mean reference scores over ``seeds`` (-> name: {...}) and the per-seed scores."""
    by_seed = {r.seed: r for r in reference_sets}
    chosen = [by_seed[s] for s in seeds if s in by_seed] or list(by_seed.values())
    table: dict = {}
    for refs in chosen:
        for name, score in refs.scores.items():
            entry = table.setdefault(name, {"rule": score.rule, "seeds": {}})
            entry["seeds"][refs.seed] = score.fitness
    for entry in table.values():
        entry["mean"], entry["std"] = _mean_std(list(entry["seeds"].values()))
    per_seed = {refs.seed: {n: s.fitness for n, s in refs.scores.items()} for refs in chosen}
    return table, per_seed


def summarise(curves: list[SearchCurve], reference_sets=(), *, experiment: str = DEFAULT_EXPERIMENT
              ) -> Report:
    """The report's numbers (no I/O): curves must be comparable (see check_comparable)."""
    if not curves:
        raise ValueError("no searches to compare")
    check_comparable(curves)
    seeds = sorted({c.seed for c in curves if c.seed is not None})
    references, per_seed = reference_table(list(reference_sets), seeds)
    notes = []
    if not references:
        notes.append("no reference runs for this preset: score them with python -m "
                     f"evo_nos.experiments.references --preset {curves[0].preset} --seeds "
                     + " ".join(map(str, seeds or [0])))
    else:
        missing = [s for s in seeds if s not in per_seed]
        if missing:
            notes.append(f"no reference scores for seed(s) {missing}: thresholds use the "
                         "mean over the seeds scored")
    unfinished = [c.label + f" {c.status}" for c in curves if c.status != "FINISHED"]
    if unfinished:
        notes.append("not finished (partial curves): " + "; ".join(unfinished))
    by_strategy: dict = defaultdict(list)
    for c in curves:
        by_strategy[c.strategy].append(c)
    summaries = {}
    for name, members in sorted(by_strategy.items()):
        seen_seeds = [c.seed for c in members]
        if len(set(seen_seeds)) < len(seen_seeds):
            notes.append(f"strategy {name} has several runs with the same seed: "
                         f"{sorted(s for s in seen_seeds if seen_seeds.count(s) > 1)}")
        finals = [c.final_best for c in members]
        mean, std = _mean_std(finals)
        best_ci = bootstrap_interval([finals])
        scored = best_ci.sizes[0]
        if scored < len(members):
            notes.append(f"{name}: {len(members) - scored} of {len(members)} searches scored "
                         "no rule: left out of its best fitness and probabilities")
        if best_ci.method == NO_CI and scored:
            notes.append(f"{name}: best fitness from {_seeds(scored)}: no 95% CI (a "
                         "bootstrap needs at least 2 seeds)")
        elif best_ci.method == PERCENTILE and scored < 3:
            notes.append(f"{name}: best fitness from {_seeds(scored)}: percentile CI (BCa "
                         "needs 3); with so few seeds it is rough")
        reach = {}
        for ref in THRESHOLDS:
            if ref not in references:
                continue
            steps = [c.compute_to_reach(per_seed.get(c.seed, {}).get(
                ref, references[ref]["mean"])) for c in members]
            reached = [s for s in steps if s is not None]
            interval = bootstrap_interval([reached])
            reach[ref] = {"mean": _finite(interval.estimate), "ci_low": _finite(interval.low),
                          "ci_high": _finite(interval.high), "ci_method": interval.method,
                          "reached": len(reached), "runs": len(members), "per_seed": steps}
        evaluations = sum(c.evaluations for c in members)
        rates = [c.evaluations / (c.seconds / 60.0) for c in members if c.seconds > 0]
        summaries[name] = StrategySummary(
            strategy=name, runs=[c.run_id for c in members], seeds=seen_seeds,
            best_mean=mean, best_std=std, best_per_seed=[_finite(f) for f in finals],
            best_ci=best_ci.as_dict(), reach=reach,
            cache_hit_rate=sum(c.cached for c in members) / evaluations if evaluations else 0.0,
            invalid_rate=sum(c.invalid for c in members) / evaluations if evaluations else 0.0,
            candidates_per_min=float(np.mean(rates)) if rates else math.nan,
            trainings_mean=float(np.mean([c.trainings for c in members])),
            top_rules=_top_rules(members))
    return Report(experiment, curves[0].preset, curves[0].budget, curves, references,
                  summaries, notes, improvement=improvement_rows(summaries))


def improvement_rows(summaries: dict) -> list[dict]:
    """The improvement table: every ordered pair of strategies (P(Y > X) is 1 - P(X > Y),
    its interval mirrored, so the two rows of a pair agree exactly)."""
    names = list(summaries)
    intervals = {}
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            ab = improvement_interval(
                [f for f in summaries[a].best_per_seed if f is not None],
                [f for f in summaries[b].best_per_seed if f is not None])
            intervals[a, b], intervals[b, a] = ab, ab.mirrored()
    rows = []
    for a in names:
        for b in names:
            if a == b:
                continue
            i = intervals[a, b]
            rows.append({"strategy": a, "versus": b, "probability": i.estimate,
                         "ci_low": i.low, "ci_high": i.high, "ci_method": i.method,
                         "n": i.sizes[0], "m": i.sizes[1]})
    return rows


def _top_rules(members: list[SearchCurve], k: int = TOP_RULES) -> list[dict]:
    best: dict = {}
    for c in members:
        for row in c.hall_of_fame:
            fitness = row.get("fitness")
            if fitness is None or not math.isfinite(float(fitness)):
                continue
            old = best.get(row["rule"])
            if old is None or float(fitness) > old["fitness"]:
                rule = Rule.parse(row["rule"])   # the canonical string is the identity
                se, n = row.get("fitness_se"), row.get("seeds")  # (older runs: absent)
                best[row["rule"]] = {
                    "fitness": float(fitness),
                    "fitness_se": float(se) if se is not None and math.isfinite(float(se))
                    else None,
                    "seeds": int(n) if n is not None and math.isfinite(float(n)) else None,
                    "rule": row["rule"], "math": rule.math, "name": name_of(rule) or "",
                    "seed": c.seed, "run_id": c.run_id}
    return sorted(best.values(), key=lambda r: -r["fitness"])[:k]


# -- the verdicts: the numbers in plain words -------------------------------------------------
def verdicts(report: Report) -> list[str]:
    """One sentence per pair of strategies on their best fitness (do the 95% CIs of the
    means overlap? is the probability of improvement's CI clear of ½?), and one on the
    compute to reach Adam where both reached it."""
    names = list(report.strategies)
    if len(names) < 2:
        return [f"only one strategy ({', '.join(names) or 'none'}): nothing to compare"]
    poi = {(r["strategy"], r["versus"]): r for r in report.improvement}
    out = []
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            sa, sb = report.strategies[a], report.strategies[b]
            out.append(_best_verdict(a, sa.best_interval, b, sb.best_interval)
                       + "; " + _improvement_verdict(a, b, poi.get((a, b))) + ".")
            ref = THRESHOLDS[0]
            if ref in sa.reach and ref in sb.reach:
                text = _reach_verdict(a, sa, b, sb, ref)
                if text:
                    out.append(text + ".")
    return out


def _best_verdict(a: str, ia: Interval, b: str, ib: Interval) -> str:
    if not (ia.defined and ib.defined):
        few = ", ".join(f"{n} has {i.sizes[0] if i.sizes else 0} scored "
                        f"seed{'' if i.sizes and i.sizes[0] == 1 else 's'}"
                        for n, i in ((a, ia), (b, ib)) if not i.defined)
        return (f"{a} vs {b}: too few seeds for a 95% CI of the mean best fitness ({few}): "
                "no conclusion at this budget")
    if ia.overlaps(ib):
        return (f"the 95% CIs of the mean best fitness of {a} {_ci_text(ia)} and {b} "
                f"{_ci_text(ib)} overlap: no separation at this budget")
    (hi, ihi), (lo, ilo) = ((a, ia), (b, ib)) if ia.low > ib.high else ((b, ib), (a, ia))
    return (f"the 95% CI of {hi}'s mean best fitness {_ci_text(ihi)} lies above {lo}'s "
            f"{_ci_text(ilo)}: {hi} is ahead at this budget")


def _improvement_verdict(a: str, b: str, row: dict | None) -> str:
    if row is None or not math.isfinite(row["probability"]):
        return f"no probability of improvement of {a} over {b} (a strategy without scores)"
    text = f"P({a} beats {b}) = {row['probability']:.2f}"
    low, high = row["ci_low"], row["ci_high"]
    if not (math.isfinite(low) and math.isfinite(high)):
        return text + " (no CI: too few seeds)"
    text += f", 95% CI [{low:.2f}, {high:.2f}]"
    if low <= 0.5 <= high:
        return text + ": within noise (the CI contains 0.5)"
    winner, loser = (a, b) if low > 0.5 else (b, a)
    text += f": {winner}'s searches beat {loser}'s more often than not"
    if low == high:
        text += (f" (every resample agrees: each of the {row['n']}×{row['m']} pairs of "
                 "seeds went the same way; with few seeds that is weak evidence)")
    return text


def _reach_verdict(a: str, sa: StrategySummary, b: str, sb: StrategySummary, ref: str) -> str:
    ra, rb = sa.reach[ref], sb.reach[ref]
    if not (ra["reached"] or rb["reached"]):
        return ""
    counts = (f"{a} reached {ref} in {ra['reached']}/{ra['runs']} searches, "
              f"{b} in {rb['reached']}/{rb['runs']}")
    ia, ib = sa.reach_interval(ref), sb.reach_interval(ref)
    if not (ia.defined and ib.defined):
        return counts + "; too few got there for 95% CIs of the compute it took"
    if ia.overlaps(ib):
        return (counts + f"; the 95% CIs of the child trainings it took ({a} "
                f"{_ci_text(ia, '.1f')}, {b} {_ci_text(ib, '.1f')}) overlap: no separation")
    fast, slow = (a, b) if ia.high < ib.low else (b, a)
    return (counts + f"; {fast} got there sooner ({a} {_ci_text(ia, '.1f')}, {b} "
            f"{_ci_text(ib, '.1f')} child trainings, 95% CIs apart)")


# -- rendering ------------------------------------------------------------------------------
def _short_id(run_id) -> str:
    return str(run_id)[:8]


def _pm(value) -> str:
    return f"± {value:.4f}"


def _count(value) -> str:
    return f"{value:.0f}"


# how each of Report.tables() is shown in markdown (headers, number formats, code columns)
SHOWN = {
    "strategies": {
        "headers": {"best_mean": "best fitness (mean)", "ci_low": "95% CI low",
                    "ci_high": "95% CI high", "ci_method": "CI", "best_std": "± std",
                    "cache_hit_rate": "cache hits", "invalid_rate": "invalid",
                    "candidates_per_min": "candidates/min", "trainings_mean": "trainings used",
                    "top_rule": "top rule"},
        "formats": {"best_mean": ".4f", "ci_low": ".4f", "ci_high": ".4f", "best_std": ".4f",
                    "cache_hit_rate": ".1%", "invalid_rate": ".1%",
                    "candidates_per_min": ".1f"},
        "code": ("top_rule",)},
    "improvement": {
        "headers": {"probability": "P(strategy beats versus)", "ci_low": "95% CI low",
                    "ci_high": "95% CI high", "ci_method": "CI", "n": "seeds (strategy)",
                    "m": "seeds (versus)"},
        "formats": {"probability": ".3f", "ci_low": ".3f", "ci_high": ".3f"}},
    "reach": {
        "headers": {"trainings_mean": "child trainings to reach (mean)",
                    "ci_low": "95% CI low", "ci_high": "95% CI high", "ci_method": "CI",
                    "runs": "searches"},
        "formats": {"trainings_mean": ".1f", "ci_low": ".1f", "ci_high": ".1f"}},
    "references": {
        "headers": {"fitness_mean": "fitness (mean)", "fitness_std": "± std"},
        "formats": {"fitness_mean": ".4f", "fitness_std": ".4f"}, "code": ("rule",)},
    "top_rules": {
        "headers": {"fitness": "fitness (mean)", "fitness_se": "± SE",
                    "seeds": "scored on (seeds)", "seed": "search seed", "run_id": "run"},
        "formats": {"fitness": ".4f", "fitness_se": _pm, "seeds": _count,
                    "run_id": _short_id},
        "code": ("rule",)},
    "runs": {
        "headers": {"run_id": "run", "evaluations": "candidates", "best_fitness": "best fitness",
                    "best_rule": "best rule"},
        "formats": {"run_id": _short_id, "seconds": ".1f", "best_fitness": ".4f"},
        "code": ("best_rule",)},
}


def markdown(report: Report) -> str:
    frames = report.tables()

    def table(name: str) -> str:
        return markdown_table(frames[name], **SHOWN[name]).rstrip("\n")

    budget = "?" if report.budget is None else report.budget
    level = f"{CONFIDENCE:.0%}"
    lines = [f"# Head-to-head: preset `{report.preset}`, budget {budget} child trainings", ""]
    counts = ", ".join(f"{name} ×{len(s.runs)}" for name, s in report.strategies.items())
    seeds = sorted({c.seed for c in report.runs if c.seed is not None})
    lines += [f"{len(report.runs)} searches in MLflow experiment `{report.experiment}` "
              f"({counts}; seeds {', '.join(map(str, seeds)) or '?'}).", ""]
    lines += ["## Strategies", "", table("strategies"), "",
              f"Best fitness: each search's best rule, mean over the strategy's seeds with a "
              f"bootstrap {level} CI (BCa; percentile with fewer than 3 seeds; none with "
              f"one), and the sample std. Rates are over all candidates, free ones "
              f"included.", ""]
    lines += ["## Is the difference real?", ""] + [f"- {v}" for v in verdicts(report)] + [""]
    if len(report.improvement):
        lines += ["### Probability of improvement", "", table("improvement"), "",
                  "The chance that a search of *strategy* ends with a better rule than a "
                  "search of *versus* (ties count half): over all n·m pairs of their seeds, "
                  f"the Mann-Whitney U / (n·m); {level} CI from a bootstrap resampling each "
                  "strategy's seeds on its own. 0.5: a coin flip.", ""]
    if len(frames["reach"]):
        lines += ["## Compute to reach the references", "", table("reach"), "",
                  "Child trainings spent when a search's best rule first scored at least the "
                  "reference's score for the same seed; mean and bootstrap "
                  f"{level} CI over the searches that got there. The others are censored "
                  "(they never did within the budget) and not in the mean.", ""]
    if report.references:
        lines += ["## References", "", table("references"), ""]
    lines += ["## Top rules found", "", table("top_rules"), "",
              "Fitness: the mean over the backend seeds the rule was scored on, ± its "
              "standard error (empty: a search that logged one score per rule).", ""]
    if report.files:
        lines += ["## Figures", ""]
        for key in ("best_vs_trainings", "best_vs_time"):
            if key in report.files:
                lines.append(f"![{key.replace('_', ' ')}]({Path(report.files[key]).name})")
        lines.append("")
    lines += ["## Runs", "", table("runs")]
    if report.notes:
        lines += ["", "Notes:", ""] + [f"- {n}" for n in report.notes]
    return "\n".join(lines) + "\n"


def _figure(report: Report, axis: str):
    fig = Figure(figsize=(8, 4.8), dpi=110)
    ax = fig.add_subplot(1, 1, 1)
    if axis == "steps":
        end = report.budget or max(c.trainings for c in report.runs) or 1
        xs = np.linspace(0, end, 401)
        scale = 1.0
        ax.set_xlabel("child trainings")
    else:
        end = max((c.seconds for c in report.runs), default=1.0) or 1.0
        xs = np.linspace(0, end, 401)
        scale = 1 / 60.0
        ax.set_xlabel("wall-clock time (minutes)")
    colors = {}
    cycle = ["C0", "C1", "C2", "C3", "C4", "C5"]
    for i, (name, s) in enumerate(report.strategies.items()):
        colors[name] = cycle[i % len(cycle)]
        members = [c for c in report.runs if c.strategy == name]
        # a search that ended keeps its final best (on the time axis, shorter runs end
        # earlier); before a search's first scored rule its curve is undefined (nan)
        stack = np.vstack([c.best_at(xs, axis) for c in members])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)      # all-nan columns
            mean = np.nanmean(stack, axis=0)
            low, high = np.nanmin(stack, axis=0), np.nanmax(stack, axis=0)
        ax.plot(xs * scale, mean, color=colors[name], lw=2,
                label=f"{name} (mean of {len(members)})")
        if len(members) > 1:
            ax.fill_between(xs * scale, low, high, color=colors[name], alpha=0.18, lw=0)
    lines = sorted((report.references[n]["mean"], n) for n in HEADLINE
                   if n in report.references and math.isfinite(report.references[n]["mean"]))
    for value, name in lines:
        strong = name in THRESHOLDS
        ax.axhline(value, color="black" if strong else "grey",
                   ls="--" if strong else ":", lw=1.2 if strong else 0.9)
    low, high = ax.get_ylim()
    gap, last = 0.045 * (high - low), -math.inf
    for value, name in lines:            # labels at the right edge, nudged apart
        last = max(value, last + gap)
        ax.annotate(name, xy=(1.0, last), xycoords=("axes fraction", "data"),
                    xytext=(3, 0), textcoords="offset points", va="center", fontsize=8,
                    color="black" if name in THRESHOLDS else "dimgrey")
    ax.set_ylim(low, high)
    ax.set_ylabel("best fitness so far")
    what = "child trainings" if axis == "steps" else "wall-clock time"
    ax.set_title(f"best fitness vs {what}: preset {report.preset}, budget {report.budget}\n"
                 f"line = mean over seeds, band = min–max, dashed/dotted = reference rules",
                 fontsize=9)
    ax.set_xlim(0, end * scale)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.subplots_adjust(right=0.86)
    return fig


def figures(report: Report) -> dict:
    """``{"best_vs_trainings": Figure, "best_vs_time": Figure}``."""
    return {"best_vs_trainings": _figure(report, "steps"), "best_vs_time": _figure(report, "time")}


# -- reading, writing, logging ----------------------------------------------------------------
def safe_name(text: str) -> str:
    """``text`` usable in a file name (runs of other characters become ``_``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(text)).strip("_") or "x"


def default_out(preset: str, budget) -> Path:
    return Path(DEFAULT_OUT) / f"compare-{safe_name(preset)}-budget{budget}"


def load_searches(experiment: str = DEFAULT_EXPERIMENT, tracking_uri: str | None = None, *,
                  preset: str | None = None, budget: int | None = None,
                  strategies=None, run_ids=None) -> list[SearchCurve]:
    """The search runs of ``experiment`` (filtered) as curves, oldest first."""
    if run_ids:
        runs = [get_run(r, tracking_uri) for r in run_ids]
        other = [r.run_id for r in runs if r.kind != "search"]
        if other:
            raise ValueError(f"not search runs: {other}")
    else:       # a search that scored nothing (stopped before its first batch) has no curve
        runs = [r for r in load_search_runs(experiment, tracking_uri)
                if r.metrics.get("evaluations", 0) > 0]
    if preset is not None:
        runs = [r for r in runs if (r.params.get("preset") or r.tags.get("preset")) == preset]
    if budget is not None:
        runs = [r for r in runs if search_budget(r) == budget]
    if strategies:
        runs = [r for r in runs if r.tags.get("strategy") in set(strategies)]
    if not runs:
        what = ", ".join(f"{k} {v}" for k, v in (("preset", preset), ("budget", budget),
                                                  ("strategies", strategies)) if v)
        raise ValueError(f"no search runs in experiment {experiment!r}"
                         + (f" with {what}" if what else "")
                         + ": run python -m evo_nos.run first (or check --experiment and "
                           "MLFLOW_TRACKING_URI)")
    return [load_curve(r, tracking_uri) for r in runs]


def compare(experiment: str = DEFAULT_EXPERIMENT, tracking_uri: str | None = None, *,
            out: str | Path | None = None, preset: str | None = None,
            budget: int | None = None, strategies=None, run_ids=None,
            log: bool = True) -> Report:
    """Build the report, write it to ``out``, log it to MLflow (``kind=compare``)."""
    curves = load_searches(experiment, tracking_uri, preset=preset, budget=budget,
                           strategies=strategies, run_ids=run_ids)
    check_comparable(curves)
    key = fitness_key(curves[0].settings)
    references = [r for r in load_references(experiment, tracking_uri, preset=curves[0].preset)
                  if r.key == key]
    report = summarise(curves, references, experiment=experiment)
    out = Path(out) if out is not None else default_out(report.preset, report.budget)
    out.mkdir(parents=True, exist_ok=True)
    figs = figures(report)
    for name, fig in figs.items():
        path = out / f"{name}.png"
        fig.savefig(path)
        report.files[name] = str(path)
    frames = report.tables()
    for name, frame in frames.items():
        paths = write_table(frame, out / name, **SHOWN[name])
        report.files.update({f"{name}_{kind}": str(path) for kind, path in paths.items()})
    report.files["markdown"] = str(out / "comparison.md")
    report.files["json"] = str(out / "comparison.json")
    text = markdown(report)
    if log:
        report.run_id = _log(report, figs, text, frames, experiment, tracking_uri)
    write_atomic(out / "comparison.md", text)
    write_atomic(out / "comparison.json", json.dumps(report.as_dict(), indent=2, default=str)
                 + "\n")
    return report


def _log(report: Report, figs: dict, text: str, frames: dict, experiment: str,
         tracking_uri: str | None) -> str:
    """Log the report (its markdown ``text``, its tables ``frames``) as a compare run."""
    tracker = ReportTracker(experiment=experiment, tracking_uri=tracking_uri)
    runs = [c.run_id for c in report.runs]
    run_id = tracker.start(
        run_name=f"compare {report.preset} budget {report.budget}",
        params={"preset": report.preset, "budget": report.budget, "n_runs": len(runs),
                "strategies": ",".join(report.strategies), "runs": ",".join(runs),
                "seeds": ",".join(sorted({str(c.seed) for c in report.runs}))},
        tags={KIND_TAG: "compare", "preset": report.preset, "budget": report.budget})
    report.run_id = run_id
    # no metrics: MLflow's chart view draws one chart per metric key of any run in the
    # experiment, and these numbers (one per strategy or pair, not a curve over
    # compute) would bury the searches' curves; the tables below hold them all
    for name, fig in figs.items():
        tracker.log_figure(fig, f"{name}.png")
    tracker.log_text(text, "comparison.md")
    tracker.log_dict(report.as_dict(), "comparison.json")
    tracker.log_table(frames["strategies"], "comparison_table.json")
    for name in ("improvement", "reach"):
        if len(frames[name]):                # (one strategy, or no references: no rows)
            tracker.log_table(frames[name], f"{name}_table.json")
    tracker.set_tags({NOTE_TAG: text})
    tracker.end("FINISHED")
    return run_id
