"""How the head-to-head report is shown: its markdown and its two figures.

Rendering only: every number comes from the :class:`~evo_nos.experiments.report.Report`
(its :meth:`~evo_nos.experiments.report.Report.tables` and
:func:`~evo_nos.experiments.report.verdicts`); nothing here computes a statistic, reads
MLflow or writes a file.

Contract:

* :data:`SHOWN` says, per table of ``Report.tables()``, its headers, number formats and
  code columns, for :func:`evo_nos.core.tables.markdown` and
  :func:`evo_nos.core.tables.write_table` alike, so a table reads the same in the
  report and in its own files;
* :func:`markdown` is the report as one markdown text (tables, verdicts, notes, links
  to the figures written);
* :func:`figures` draws best fitness so far per strategy (the mean over seeds as a
  line, min to max as a band) against child trainings and against wall-clock time, the
  reference rules as horizontal lines; matplotlib ``Figure`` objects, no pyplot.
"""
from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure        # no pyplot: no GUI, no global state

from evo_nos.core.tables import markdown as markdown_table
from evo_nos.experiments.references import HEADLINE
from evo_nos.experiments.report import THRESHOLDS, Report, verdicts
from evo_nos.experiments.statistics import CONFIDENCE


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
