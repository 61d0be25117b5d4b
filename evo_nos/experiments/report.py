"""The head-to-head report's numbers: per strategy over its seeds, and in plain words.

:func:`summarise` turns comparable search curves
(:class:`~evo_nos.experiments.curves.SearchCurve`) and the reference scores into a
:class:`Report` (no I/O): per strategy a :class:`StrategySummary` (best fitness with its
bootstrap interval, the compute to reach each of :data:`THRESHOLDS`, rates, the top rules
of its seeds' halls of fame merged), and the probability of improvement of every ordered
pair of strategies. The intervals come from :mod:`evo_nos.experiments.statistics`.

Contract:

* :meth:`Report.tables` gives the report's tables as DataFrames with fixed columns
  (``strategies``, ``improvement``, ``reach``, ``references``, ``top_rules``,
  ``runs``); :meth:`Report.as_dict` is the whole report as plain data;
* :func:`verdicts` says the numbers in sentences: whether the 95% CIs of two
  strategies overlap, whether a probability of improvement is within noise (its CI
  holds 1/2), who reached Adam's level sooner;
* the two rows of a pair in the improvement table agree exactly (P(Y > X) is
  1 - P(X > Y), its interval mirrored).

How the tables are shown (markdown, figures) is :mod:`evo_nos.experiments.rendering`.
"""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from evo_nos.core.known import name_of
from evo_nos.core.rules import Rule
from evo_nos.core.tables import records
from evo_nos.experiments.curves import SearchCurve, check_comparable
from evo_nos.experiments.statistics import (NO_CI, PERCENTILE, Interval, bootstrap_interval,
                                            finite_or_none, improvement_interval, mean_std)
from evo_nos.tracking import DEFAULT_EXPERIMENT

THRESHOLDS = ("adam", "powersign")     # "compute to reach ...": the reach table
TOP_RULES = 5


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
        entry["mean"], entry["std"] = mean_std(list(entry["seeds"].values()))
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
        mean, std = mean_std(finals)
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
            reach[ref] = {"mean": finite_or_none(interval.estimate),
                          "ci_low": finite_or_none(interval.low),
                          "ci_high": finite_or_none(interval.high),
                          "ci_method": interval.method,
                          "reached": len(reached), "runs": len(members), "per_seed": steps}
        evaluations = sum(c.evaluations for c in members)
        rates = [c.evaluations / (c.seconds / 60.0) for c in members if c.seconds > 0]
        summaries[name] = StrategySummary(
            strategy=name, runs=[c.run_id for c in members], seeds=seen_seeds,
            best_mean=mean, best_std=std,
            best_per_seed=[finite_or_none(f) for f in finals],
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
