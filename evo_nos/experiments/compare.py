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

Confidence intervals are percentile or BCa bootstraps
(:func:`evo_nos.experiments.statistics.bootstrap_interval`, ``scipy.stats.bootstrap``)
from a fixed seed (:data:`~evo_nos.experiments.statistics.BOOTSTRAP_SEED`), so the same runs
give the same report.  BCa needs at least 3 values per sample and a bootstrap
distribution that is not degenerate; otherwise the percentile interval is used, and with
fewer than 2 values there is none (NaN, and a note says so).

Only like can be compared with like: searches on different presets, budgets or scoring
settings are refused, naming which runs differ and how, with the filter that picks one
group (``--preset``, ``--budget``, ``--runs``).

The report's tables are DataFrames (:meth:`~evo_nos.experiments.report.Report.tables`:
``strategies``, ``improvement``, ``reach``, ``references``, ``top_rules``, ``runs``). The
report is printed (markdown), written to ``--out`` (``comparison.md``,
``comparison.json``, ``best_vs_trainings.png``, ``best_vs_time.png``, and each table as
``<table>.md``, ``<table>.csv`` and ``<table>.json``) and logged as its own MLflow run
tagged ``kind=compare`` in the same experiment (the strategies table as
``comparison_table.json``, the probabilities of improvement as ``improvement_table.json``,
the compute to reach the references as ``reach_table.json``; the report as its
description). That run logs its numbers as these tables, not as metrics: MLflow's chart
view draws one chart per metric key of every run in the experiment, and a metric per
strategy (or pair) and statistic would add a score of single-point charts beside the
searches' curves.

This module is the orchestration (find the searches, build, write and log the report);
the pieces, one subject each: :mod:`~evo_nos.experiments.curves` (a search run as a curve,
like with like), :mod:`~evo_nos.experiments.statistics` (the intervals),
:mod:`~evo_nos.experiments.report` (the numbers and verdicts) and
:mod:`~evo_nos.experiments.rendering` (markdown and figures).

    python -m evo_nos.compare                                  # every search in evo_nos
    python -m evo_nos.compare --preset cpu --budget 40 --out results/
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from evo_nos.core.files import write_atomic
from evo_nos.core.tables import write_table
from evo_nos.experiments.curves import SearchCurve, check_comparable, load_curve, search_budget
from evo_nos.experiments.references import fitness_key, load_references
from evo_nos.experiments.rendering import SHOWN, figures, markdown
from evo_nos.experiments.report import Report, summarise
from evo_nos.search.defaults import DEFAULT_OUT
from evo_nos.tracking import (DEFAULT_EXPERIMENT, KIND_TAG, NOTE_TAG, ReportTracker, get_run,
                              load_search_runs)


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
