"""Fidelity: what a scoring preset costs, how noisy it is, and whether it ranks like another.

A search can only be as good as the score it selects on.  :func:`measure` scores one
fixed *panel* of rules (:func:`panel`: the reference rules and ``n_random`` valid rules
drawn from the search space with a fixed seed) under several presets and several
backend seeds, and :func:`summarize` reports, per preset:

* ``seconds``   -- mean wall-clock seconds per trained candidate;
* ``images``    -- training images one candidate's protocol processes (exact, from the
  task: ``n_train * (len(lrs) * sweep_epochs + final_epochs)``);
* ``cost_ratio`` -- the reference preset's seconds over this preset's (5 = 5x cheaper);
* ``seed_sd``   -- the pooled seed-to-seed standard deviation of a rule's fitness
  (square root of the mean over rules of the sample variance over seeds);
* ``snr``       -- signal to noise: the SD of the panel's mean fitnesses over the mean
  standard error of those means (large: the preset tells the rules apart);
* ``spearman``, ``kendall`` -- rank correlation of the panel's mean fitnesses with the
  reference preset's (by default the most expensive one), each with a 95% percentile
  bootstrap CI over rules (pairs resampled with a fixed seed).

Measuring is long (tens of seconds per candidate for ``cpu``: docs/benchmarks.md), so every
score is written to ``<out>/scores.json`` as it arrives (atomically); running the same
command again skips what is there and goes on.

    python -m evo_nos.fidelity --presets cpu fast --seeds 0 1 2 --data imagefolder:DIR
"""
from __future__ import annotations

import json
import math
import random
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from evo_nos.core.files import write_atomic
from evo_nos.core.known import REFERENCE_NAMES, resolve
from evo_nos.core.tables import markdown, write_table
from evo_nos.experiments.statistics import bootstrap_interval
from evo_nos.fitness.backend import FitnessBackend
from evo_nos.fitness.screen import screen
from evo_nos.fitness.tasks import Task, load_task, preset_key
from evo_nos.operators.space import SearchSpace

SCORES_FILE = "scores.json"
N_RANDOM = 20
PANEL_SEED = 0
BOOTSTRAP_RESAMPLES = 2000
SUMMARY_COLUMNS = ("preset", "rules", "seeds", "seconds", "images", "cost_ratio", "seed_sd",
                   "snr", "spearman", "spearman_low", "spearman_high", "kendall",
                   "kendall_low", "kendall_high", "spearman_top", "top_rules")


# -- the panel --------------------------------------------------------------------------------
def panel(n_random: int = N_RANDOM, *, seed: int = PANEL_SEED,
          space: SearchSpace | None = None, known=REFERENCE_NAMES,
          max_draws: int = 10_000) -> list[str]:
    """The panel's canonical rule strings: the ``known`` rules, then ``n_random`` rules
    drawn from ``space`` with ``seed`` that pass the screen and behave unlike every rule
    before them (distinct fingerprints).  The same arguments give the same panel."""
    space = space or SearchSpace()
    probe = Task()                       # the screen's default probe settings

    def fingerprint(rule):
        result = screen(rule, steps=probe.probe_steps, dim=probe.probe_dim,
                        digits=probe.fingerprint_digits)
        return result.fingerprint if result.valid else None

    rules, seen = [], set()
    for name in known:
        rule = resolve(name)
        rules.append(rule.canonical)
        seen.add(fingerprint(rule))
    rng = random.Random(seed)
    drawn = 0
    for _ in range(max_draws):
        if drawn == n_random:
            break
        rule = space.sample(rng)
        fp = fingerprint(rule)
        if fp is None or fp in seen:
            continue
        seen.add(fp)
        rules.append(rule.canonical)
        drawn += 1
    if drawn < n_random:
        raise ValueError(f"only {drawn} valid distinct rules in {max_draws} draws; "
                         "ask for fewer random rules or a larger space")
    return rules


def task_images(task: Task) -> float:
    """Training images one candidate's protocol processes (sweep and final run)."""
    return task.n_train * (len(task.lrs) * task.sweep_epochs + task.final_epochs)


# -- measuring --------------------------------------------------------------------------------
def load_scores(out: str | Path) -> list[dict]:
    path = Path(out) / SCORES_FILE
    return json.loads(path.read_text()) if path.is_file() else []


def measure(presets, seeds, out: str | Path, *, rules: list[str] | None = None,
            data: str | None = None, n_jobs: int = 1, device: str = "auto",
            progress=print) -> pd.DataFrame:
    """Score ``rules`` (default :func:`panel`) under every preset and backend seed;
    returns the scores (one row per preset, seed and rule), resuming from ``out``.

    ``data`` overrides the data of the presets that read real images (a synthetic
    preset stays synthetic).  Scores are written to ``out/scores.json`` after every
    batch of ``n_jobs`` trainings."""
    rules = [resolve(r).canonical for r in (rules or panel())]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    scores = load_scores(out)
    done = {(s["preset"], s["seed"], s["rule"]) for s in scores}
    for preset in presets:
        name = preset_key(preset)
        task = load_task(preset)
        if data and task.data != "synthetic":
            task = task.replace(data=data)
        for seed in seeds:
            todo = [r for r in rules if (name, seed, r) not in done]
            if not todo:
                continue
            backend = FitnessBackend(task, seed=seed, n_jobs=n_jobs, device=device)
            step = max(1, n_jobs if n_jobs and n_jobs > 0 else 1)
            for start in range(0, len(todo), step):
                chunk = todo[start:start + step]
                for evaluation in backend.evaluate(chunk):
                    scores.append({"preset": name, "seed": seed, "rule": evaluation.rule,
                                   "fitness": evaluation.fitness,
                                   "status": evaluation.status,
                                   "best_lr": evaluation.best_lr,
                                   "seconds": evaluation.seconds,
                                   "images": task_images(task)})
                write_atomic(out / SCORES_FILE, json.dumps(scores, indent=1) + "\n")
                if progress:
                    progress(f"{name} seed {seed}: {start + len(chunk)}/{len(todo)} "
                             f"rules scored")
    wanted = {preset_key(p) for p in presets}
    frame = pd.DataFrame(scores)
    return frame[frame["preset"].isin(wanted) & frame["seed"].isin(list(seeds))
                 & frame["rule"].isin(rules)].reset_index(drop=True)


# -- the statistics -----------------------------------------------------------------------------
def correlation_ci(x: np.ndarray, y: np.ndarray, kind: str, seed: int) -> tuple:
    """(value, low, high) of Spearman's rho or Kendall's tau between x and y, with a
    95% paired percentile bootstrap over the pairs (:func:`bootstrap_interval`,
    ``paired``: resamples whose values are all equal have no correlation and are left
    out); no interval with fewer than 3 pairs."""
    def statistic(a, b):
        value = (stats.spearmanr(a, b) if kind == "spearman" else stats.kendalltau(a, b))
        return float(value.statistic)

    with warnings.catch_warnings():      # a resample of equal values has no correlation
        warnings.simplefilter("ignore")
        interval = bootstrap_interval((x, y), statistic, paired=True, min_size=3,
                                      resamples=BOOTSTRAP_RESAMPLES, seed=seed)
    return interval.estimate, interval.low, interval.high


def rule_means(scores: pd.DataFrame) -> pd.DataFrame:
    """Per preset and rule: the mean fitness over seeds, its SD, SE and seed count."""
    grouped = scores.groupby(["preset", "rule"])["fitness"]
    frame = grouped.agg(mean="mean", sd=lambda s: s.std(ddof=1), seeds="count")
    frame["se"] = frame["sd"] / np.sqrt(frame["seeds"])
    return frame.reset_index()


@dataclass
class Fidelity:
    """The measured presets: the summary (one row per preset) and the rule means."""

    summary: pd.DataFrame
    means: pd.DataFrame
    reference: str

    @staticmethod
    def formats() -> dict:
        formats = {"seconds": ".2f", "images": ".0f", "cost_ratio": ".2f", "seed_sd": ".4f",
                   "snr": ".2f"}
        formats.update({c: ".3f" for c in SUMMARY_COLUMNS if c.startswith(("spear", "kend"))
                        and c != "top_rules"})
        return formats

    def markdown(self) -> str:
        return markdown(self.summary, formats=self.formats())

    def write(self, out: str | Path) -> dict:
        out = Path(out)
        paths = write_table(self.summary, out / "fidelity", formats=self.formats(),
                            title=f"# Fidelity (reference preset: {self.reference})")
        write_table(self.means.pivot(index="rule", columns="preset", values="mean")
                    .reset_index(), out / "rule_means", code=("rule",))
        return paths


def summarize(scores: pd.DataFrame, *, reference: str | None = None,
              seed: int = 0) -> Fidelity:
    """The per-preset figures of the module docstring from :func:`measure`'s scores.
    ``reference``: the preset the others' rankings are compared with (default: the one
    with the most seconds per candidate).  Only rules scored under every preset count."""
    if scores.empty:
        raise ValueError("no scores to summarize: run measure() first")
    means = rule_means(scores)
    common = set.intersection(*(set(g["rule"]) for _, g in means.groupby("preset")))
    means = means[means["rule"].isin(common)]
    seconds = scores.groupby("preset")["seconds"].mean()
    reference = reference or str(seconds.idxmax())
    if reference not in seconds.index:
        raise ValueError(f"reference preset {reference!r} was not measured; measured: "
                         f"{sorted(seconds.index)}")
    table = means.pivot(index="rule", columns="preset", values="mean").sort_index()
    top = table[table[reference] > table[reference].median()]
    rows = []
    for preset, group in means.groupby("preset"):
        sd = math.sqrt(float(np.nanmean(group["sd"] ** 2))) if (group["seeds"] > 1).any() \
            else math.nan
        se = float(np.nanmean(group["se"])) if (group["seeds"] > 1).any() else math.nan
        spread = float(group["mean"].std(ddof=1))
        rho = correlation_ci(table[reference].to_numpy(), table[preset].to_numpy(),
                              "spearman", seed)
        tau = correlation_ci(table[reference].to_numpy(), table[preset].to_numpy(),
                              "kendall", seed)
        rows.append({"preset": preset, "rules": len(group),
                     "seeds": int(group["seeds"].min()),
                     "seconds": float(seconds[preset]),
                     "images": float(scores[scores["preset"] == preset]["images"].iloc[0]),
                     "cost_ratio": float(seconds[reference] / seconds[preset]),
                     "seed_sd": sd, "snr": spread / se if se and se > 0 else math.nan,
                     "spearman": rho[0], "spearman_low": rho[1], "spearman_high": rho[2],
                     "kendall": tau[0], "kendall_low": tau[1], "kendall_high": tau[2],
                     "spearman_top": correlation_ci(top[reference].to_numpy(),
                                                     top[preset].to_numpy(), "spearman",
                                                     seed)[0],
                     "top_rules": len(top)})
    summary = pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))
    summary = summary.sort_values("seconds", ascending=False).reset_index(drop=True)
    return Fidelity(summary=summary, means=means.reset_index(drop=True), reference=reference)
