"""Meta-validation: does a proxy's fitness predict quality on tasks no search sees?

A search can only find optimizers that transfer if its fitness ranks rules the way the
held-out tasks do.  :func:`meta_validate` measures that, on a *panel* of rules
(:func:`panel_rules`: every known rule, the winners of past searches
(:data:`PAST_WINNERS`) and valid random rules drawn from the search space):

1. each rule through the held-out suite (:mod:`evo_nos.fitness.heldout`, by the one
   protocol, every task on the same ``schedule``): its mean test score per task, its rank
   among the panel on each task (1 = best; ties share the mean rank), and its **mean rank**
   over the tasks -- the rule's held-out quality;
2. each rule's fitness under every proxy preset (:func:`evo_nos.experiments.fidelity.measure`,
   mean over the backend seeds);
3. per preset, Spearman's rho and Kendall's tau between the fitness and minus the mean
   rank (positive: the proxy ranks rules as the held-out tasks do), each with a 95% paired
   percentile bootstrap CI over rules.

Both measurements are long and resumable: every score is written to ``out`` as it
arrives (``scores.json`` for the presets, ``heldout.json`` for the suite) and running the
same command again goes on from there.
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import torch

from evo_nos.core.files import write_atomic
from evo_nos.core.known import KNOWN, resolve
from evo_nos.core.tables import markdown
from evo_nos.experiments.fidelity import correlation_ci, measure, panel, rule_means
from evo_nos.fitness.backend import resolve_device
from evo_nos.fitness.heldout import score_optimizer

HELDOUT_FILE = "heldout.json"
N_RANDOM = 12
# The best rules of the searches in docs/results.md (fast head-to-head, 5 seeds per
# strategy, and the cpu campaign): meta-validation asks how they fare as well.
PAST_WINNERS = (
    "add(sign(adam), sign_g)",
    "mul(drop3(ld), add(sign_g, drop1(sign_m)))",
    "add(drop3(sign_g), sign_m)",
    "div(sqrt(cd), sign_m)",
    "add(drop3(rmsprop), drop1(sign_m))",
    "add(sign(m), clip5(ld))",
    "add(drop3(adam), clip4(g3))",
    "drop3(add(rmsprop, sign(sign_m)))",
    "add(clip5(rmsprop), drop3(adam))",
)
CORRELATION_COLUMNS = ("preset", "rules", "spearman", "spearman_low", "spearman_high",
                       "kendall", "kendall_low", "kendall_high")


def panel_rules(n_random: int = N_RANDOM, *, seed: int = 0) -> list[str]:
    """The panel: every known rule and past winner (as canonical strings, each once),
    then ``n_random`` valid random rules unlike all of them."""
    known = list(dict.fromkeys(resolve(r).canonical for r in (*KNOWN, *PAST_WINNERS)))
    return panel(n_random, seed=seed, known=known)


def load_heldout(out: str | Path) -> list[dict]:
    path = Path(out) / HELDOUT_FILE
    return json.loads(path.read_text()) if path.is_file() else []


def heldout_scores(rules: list[str], tasks: list, out: str | Path, *, device: str = "auto",
                   progress=print) -> pd.DataFrame:
    """Every rule through every held-out task (one row per rule and task: the mean test
    score over the task's seeds and its status), resuming from ``out/heldout.json``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = load_heldout(out)
    done = {(r["task"], r["rule"]) for r in rows}
    device = torch.device(resolve_device(device))
    for task in tasks:
        todo = [r for r in rules if (task.name, r) not in done]
        if not todo:
            continue
        setup = task.build(task.data_seed, device)
        for i, rule in enumerate(todo, 1):
            score = score_optimizer(task, setup, rule)
            rows.append({"task": task.name, "rule": rule, "status": score.status,
                         "best_lr": score.best_lr,
                         "test": sum(score.test) / len(score.test), "seconds": score.seconds})
            write_atomic(out / HELDOUT_FILE, json.dumps(rows, indent=1) + "\n")
            if progress:
                progress(f"held-out {task.name}: {i}/{len(todo)} rules scored")
    frame = pd.DataFrame(rows)
    names = {t.name for t in tasks}
    return frame[frame["task"].isin(names) & frame["rule"].isin(rules)].reset_index(drop=True)


def mean_ranks(heldout: pd.DataFrame) -> pd.Series:
    """Per rule, its mean over the tasks of its rank among the panel by test score (1: the
    best; ties share the mean rank)."""
    ranks = heldout.pivot(index="rule", columns="task", values="test").rank(
        ascending=False, method="average")
    return ranks.mean(axis=1).rename("mean_rank")


def correlations(means: pd.DataFrame, ranks: pd.Series, *, seed: int = 0) -> pd.DataFrame:
    """Per preset of ``means`` (:func:`~evo_nos.experiments.fidelity.rule_means`), the rank
    correlations of its mean fitness with minus the held-out mean rank, with CIs."""
    out = []
    for preset, group in means.groupby("preset", sort=False):
        joined = group.set_index("rule")["mean"].to_frame().join(ranks, how="inner")
        x, y = joined["mean"].to_numpy(), -joined["mean_rank"].to_numpy()
        row = {"preset": preset, "rules": len(joined)}
        for kind in ("spearman", "kendall"):
            row[kind], row[f"{kind}_low"], row[f"{kind}_high"] = correlation_ci(x, y, kind,
                                                                                seed)
        out.append(row)
    return pd.DataFrame(out, columns=list(CORRELATION_COLUMNS))


def meta_validate(presets, seeds, tasks: list, out: str | Path, *,
                  rules: list[str] | None = None, data: str | None = None,
                  device: str = "auto", progress=print) -> dict:
    """The whole measurement (module docstring); returns the frames ``correlations``,
    ``ranks`` (per rule: mean rank and each preset's mean fitness) and ``heldout``."""
    rules = [resolve(r).canonical for r in (rules or panel_rules())]
    heldout = heldout_scores(rules, tasks, out, device=device, progress=progress)
    ranks = mean_ranks(heldout)
    scores = measure(presets, seeds, out, rules=rules, data=data, device=device,
                     progress=progress)
    means = rule_means(scores)
    table = correlations(means, ranks)
    wide = ranks.to_frame().join(means.pivot(index="rule", columns="preset", values="mean"))
    return {"correlations": table, "ranks": wide.sort_values("mean_rank").reset_index(),
            "heldout": heldout}


def report_text(result: dict) -> str:
    """The correlations as a markdown table (three decimals)."""
    table = result["correlations"]
    formats = {c: ".3f" for c in CORRELATION_COLUMNS[2:]}
    return markdown(table, formats=formats)
