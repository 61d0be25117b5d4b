"""The transfer check: do a search's winners hold up outside the search?

Search fitness can rise while quality elsewhere falls (the NOS paper's transfer
experiments, Lion's meta-validation funnel).  This trains the top rules of one or more
searches' halls of fame, the reference rules, and torch's own ``torch.optim.Adam`` and
``torch.optim.SGD(momentum=0.9)`` on a **suite of held-out tasks** from other model
families than the search's child ConvNet (:mod:`evo_nos.fitness.heldout`):

* ``images``   -- a ResNet on images (the transfer preset's data: CIFAR-10, an image
  folder, or generated images), scored on the source's *test* split, which no search reads;
* ``sequence`` -- an LSTM on generated token sequences (name the majority vote token);
* ``tabular``  -- an MLP on generated raw tabular features labelled by a random teacher;
* and tasks of your own (``MODULE:NAME``: a :class:`~evo_nos.fitness.heldout.HeldOutTask`
  or a function returning one; the interface is in :mod:`evo_nos.fitness.heldout`).

Every optimizer gets the same protocol on each task
(:func:`evo_nos.fitness.heldout.score_optimizer`): the task's lr grid, each lr trained
once per seed (seeds fix initial weights and data order, shared by all optimizers), the
lr with the best mean validation score chosen, and each seed's run at that lr scored on
the task's test split.  A rule runs on :class:`evo_nos.optim.RuleOptimizer`, a baseline
is the torch optimizer itself; the learning rate is constant, as in the search.

The suite's size is a preset (:func:`load_suite`): ``quick`` (the whole suite in seconds
on a CPU: a smoke test, not a judgement), ``cpu``, ``gpu``; the image task's settings are
the transfer presets ``evo_nos/fitness/presets/transfer/{quick,cpu,gpu}.toml`` (Task keys,
:func:`load_transfer_task`), or a ``.toml`` file of yours.

The result, per task: each optimizer's test score, mean ± standard error over the seeds,
and its rank among the optimizers on that task (1 = best; ties share the mean of their
ranks); over the tasks, the mean rank (:func:`summary_frame`).  It is printed, written to
``--out`` (``transfer.md``, ``transfer.json``) and logged as an MLflow run tagged
``kind=transfer`` (tables and per-task metrics: :func:`log_transfer`).

    python -m evo_nos.transfer --run RUN_ID --top 3            (evo_nos.cli.transfer)
"""
from __future__ import annotations

import dataclasses
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch

from evo_nos.core.files import write_atomic
from evo_nos.core.tables import markdown as markdown_table
from evo_nos.core.tables import records
from evo_nos.experiments.references import HEADLINE
from evo_nos.fitness.backend import resolve_device
from evo_nos.fitness.baselines import BASELINES, DEFAULT_BASELINES, LABELS
from evo_nos.fitness.heldout import (BUILTIN, SIZES, describe_optimizer, load_heldout_task,
                                     optimizer_key, score_optimizer)
from evo_nos.fitness.tasks import Task, load_task, presets
from evo_nos.tracking import KIND_TAG, NOTE_TAG, ReportTracker, get_run, load_hall_of_fame

# the known rules trained beside the winners: the ones reports draw as reference lines
DEFAULT_REFERENCES = HEADLINE
DEFAULT_TASKS = BUILTIN          # images, sequence, tabular
PRESET_GROUP = "transfer"        # the image task's presets: presets/transfer/*.toml


# -- settings --------------------------------------------------------------------------------
def transfer_presets() -> list[str]:
    """The transfer presets shipped with evo_nos (``quick``, ``cpu``, ``gpu``)."""
    return presets(PRESET_GROUP)


def default_transfer_preset() -> str:
    """``gpu`` when a GPU is visible, else ``cpu``."""
    return "gpu" if torch.cuda.is_available() else "cpu"


def load_transfer_task(preset: str | Path = "cpu", **overrides) -> Task:
    """The image task's settings: a transfer preset by name (one of
    :func:`transfer_presets`) or a ``.toml`` path, with overrides (None: unchanged), as
    :func:`evo_nos.fitness.tasks.load_task`."""
    task = load_task(preset, group=PRESET_GROUP, **overrides)
    if task.n_test < 1:
        raise ValueError(f"task {task.name!r} has n_test = {task.n_test}: the transfer "
                         "check scores the test split, set n_test > 0")
    return task


def suite_size(preset: str | Path) -> str:
    """The size of the built-in tasks for ``preset``: its name (quick | cpu | gpu), or
    for a ``.toml`` file (which sets only the image task) :func:`default_transfer_preset`."""
    return str(preset) if str(preset) in SIZES else default_transfer_preset()


def load_suite(preset: str | Path = "cpu", tasks=DEFAULT_TASKS, *, data: str | None = None,
               final_epochs: float | None = None, threads: int | None = None,
               seeds: int | None = None, schedule: str | None = None,
               warmup: int | None = None) -> list:
    """The held-out tasks: ``tasks`` (built-in names, ``MODULE:NAME`` / ``FILE.py:NAME``
    specs or :class:`HeldOutTask` objects) at the size of ``preset``, the image task's
    settings from the transfer preset (or ``.toml``) ``preset`` with ``data`` as its
    source.  Overrides (None: the task's own) apply to every task: ``final_epochs`` (a
    final run of that length at the chosen lr), ``threads``, ``seeds`` (seeds 0..N-1),
    ``schedule`` and ``warmup`` (the lr schedule of every run, every optimizer's)."""
    size = suite_size(preset)
    images = None
    if "images" in tasks:
        images = load_transfer_task(preset, data=data)
    suite = [load_heldout_task(spec, size, images=images) for spec in tasks]
    if not suite:
        raise ValueError("no held-out task: give at least one (built-in: "
                         f"{', '.join(BUILTIN)}; or MODULE:NAME)")
    names = [t.name for t in suite]
    if len(set(names)) != len(names):
        raise ValueError(f"two held-out tasks share a name: {names}")
    if seeds is not None and seeds < 1:
        raise ValueError(f"seeds must be >= 1, got {seeds}")
    changes = {k: v for k, v in (("final_epochs", final_epochs), ("threads", threads),
                                 ("seeds", None if seeds is None else tuple(range(seeds))),
                                 ("schedule", schedule), ("warmup", warmup))
               if v is not None}
    return [t.replace(**changes) for t in suite]


# -- training --------------------------------------------------------------------------------
@dataclass
class Candidate:
    label: str                       # "evo s0 #1", a reference name, "torch Adam"
    rule: str                        # a rule (string or known name), or a torch baseline
    source: str                      # the run id, "reference", "given" or "baseline"
    search_fitness: float | None = None


def baseline_candidates(names=DEFAULT_BASELINES) -> list:
    """The baselines (:data:`~evo_nos.fitness.baselines.BASELINES`: Adam, AdamW, SGD with
    momentum, SGD with Nesterov momentum, Lion) as candidates."""
    unknown = [n for n in names if n not in BASELINES]
    if unknown:
        raise ValueError(f"unknown baseline(s) {unknown}; baselines: {list(BASELINES)}")
    return [Candidate(LABELS[n], n, "baseline") for n in names]


@dataclass
class TransferRow:
    """One optimizer on one task."""

    label: str
    rule: str                        # the canonical rule string, or the baseline's name
    math: str
    source: str
    search_fitness: float | None
    task: str
    family: str
    best_lr: float | None
    seeds: list
    val: list                        # per seed, the final runs' validation scores
    test: list                       # per seed, their test scores
    test_mean: float
    test_se: float | None            # None with one seed
    status: str                      # ok | diverged
    lr_scores: dict = field(default_factory=dict)   # lr -> mean validation score
    seconds: float = 0.0
    reason: str = ""


def mean_se(values) -> tuple[float, float | None]:
    """The mean and its standard error (sample std / sqrt(n); None for one value)."""
    values = [float(v) for v in values]
    n = len(values)
    if n == 0:
        raise ValueError("no values")
    mean = sum(values) / n
    if n < 2:
        return mean, None
    var = sum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, math.sqrt(var / n)


def distinct(candidates: list) -> list:
    """The candidates less repeats (same label, same optimizer: the first is kept); a
    label used by two different optimizers gets `` (2)``, `` (3)`` ... after the first."""
    out, seen = [], {}
    for cand in candidates:
        key = optimizer_key(cand.rule)
        label, n = cand.label, 1
        while label in seen and seen[label] != key:
            n += 1
            label = f"{cand.label} ({n})"
        if label not in seen:
            seen[label] = key
            out.append(dataclasses.replace(cand, label=label))
    return out


def run_suite(candidates: list, tasks: list, *, device: str = "auto", echo=print) -> list:
    """Every candidate (:func:`distinct`) on every task (an optimizer given twice, e.g. a
    winner that is also a reference, is trained once per task); rows task by task,
    candidates in order."""
    device = torch.device(resolve_device(device))
    candidates = distinct(candidates)
    rows = []
    for task in tasks:
        setup = task.build(task.data_seed, device)
        done: dict = {}
        for i, cand in enumerate(candidates, 1):
            key = optimizer_key(cand.rule)
            if key not in done:
                echo(f"[{task.name} {i}/{len(candidates)}] {cand.label}: {key}")
                done[key] = score_optimizer(task, setup, cand.rule)
            score = done[key]
            mean, se = mean_se(score.test)
            rows.append(TransferRow(
                label=cand.label, rule=key, math=describe_optimizer(cand.rule),
                source=cand.source, search_fitness=cand.search_fitness, task=task.name,
                family=task.family, best_lr=score.best_lr, seeds=list(score.seeds),
                val=list(score.val), test=list(score.test), test_mean=mean, test_se=se,
                status=score.status, lr_scores=dict(score.lr_scores),
                seconds=score.seconds, reason=score.reason))
    return rows


# -- the tables ---------------------------------------------------------------------------------
def scores_frame(rows: list) -> pd.DataFrame:
    """One row per (optimizer, task): test mean, SE, and ``rank`` among the optimizers on
    that task (1 = the highest mean; tied means share the mean of their ranks)."""
    frame = pd.DataFrame([{
        "optimizer": r.label, "task": r.task, "family": r.family, "test": r.test_mean,
        "se": r.test_se, "seeds": len(r.seeds), "best lr": r.best_lr,
        "val": sum(r.val) / len(r.val) if r.val else None, "status": r.status,
        "source": r.source, "search fitness": r.search_fitness, "rule": r.rule}
        for r in rows])
    if frame.empty:
        return frame
    frame["rank"] = frame.groupby("task", sort=False)["test"].rank(
        ascending=False, method="average")
    return frame


def summary_frame(rows: list) -> pd.DataFrame:
    """One row per optimizer: per task ``<task>`` (test mean), ``<task> se`` and ``<task>
    rank``; then ``mean rank`` over the tasks; best mean rank first (ties: given order)."""
    scores = scores_frame(rows)
    tasks = list(dict.fromkeys(scores["task"]))
    labels = list(dict.fromkeys(scores["optimizer"]))
    first = scores.drop_duplicates("optimizer").set_index("optimizer")
    out = pd.DataFrame({"optimizer": labels})
    out["source"] = [first.at[label, "source"] for label in labels]
    out["search fitness"] = [first.at[label, "search fitness"] for label in labels]
    for task in tasks:
        part = scores[scores["task"] == task].set_index("optimizer")
        out[task] = [part.at[label, "test"] for label in labels]
        out[f"{task} se"] = [part.at[label, "se"] for label in labels]
        out[f"{task} rank"] = [part.at[label, "rank"] for label in labels]
    out["mean rank"] = out[[f"{t} rank" for t in tasks]].mean(axis=1)
    out["rule"] = [first.at[label, "rule"] for label in labels]
    return out.sort_values("mean rank", kind="stable").reset_index(drop=True)


def _fmt(x, spec=".4f") -> str:
    return "" if x is None or (isinstance(x, float) and not math.isfinite(x)) else format(x, spec)


def score_text(mean: float, se: float | None) -> str:
    """``0.4321 ± 0.0123`` (the mean alone for one seed)."""
    return f"{mean:.4f}" + ("" if se is None or not math.isfinite(se) else f" ± {se:.4f}")


def table_text(rows: list) -> str:
    """The plain-text table printed at the end: one row per optimizer, per task its test
    score (mean ± SE over seeds) and rank, then the mean rank."""
    summary = summary_frame(rows)
    tasks = list(dict.fromkeys(r.task for r in rows))
    width = max([len(x) for x in summary["optimizer"]] + [9])
    cells = {t: [f"{score_text(m, None if pd.isna(s) else s)} ({k:g})" for m, s, k in zip(
        summary[t], summary[f"{t} se"], summary[f"{t} rank"])] for t in tasks}
    widths = {t: max([len(c) for c in cells[t]] + [len(t)]) for t in tasks}
    lines = [f"{'optimizer':<{width}}  {'search':>7}  "
             + "  ".join(f"{t:<{widths[t]}}" for t in tasks) + "  mean rank"]
    for i, label in enumerate(summary["optimizer"]):
        fit = summary["search fitness"][i]
        lines.append(f"{label:<{width}}  {_fmt(None if pd.isna(fit) else fit):>7}  "
                     + "  ".join(f"{cells[t][i]:<{widths[t]}}" for t in tasks)
                     + f"  {summary['mean rank'][i]:9.2f}")
    return "\n".join(lines)


def epochs(n: float) -> str:
    return f"{n:g} epoch" + ("" if n == 1 else "s")


def tasks_text(tasks: list) -> str:
    """The suite in words (markdown bullets): each task's network, data and protocol."""
    lines = []
    for t in tasks:
        final = ("the sweep's run at the best lr is final" if t.final_epochs is None
                 else f"then {epochs(t.final_epochs)} at the best lr")
        lines.append(f"* **{t.name}** ({t.family}): {t.description or 'your task'}. "
                     f"lr grid {', '.join(f'{lr:g}' for lr in t.lrs)} × {t.sweep_epochs:g} "
                     f"epochs, {final}; batch {t.batch_size}; seeds "
                     f"{', '.join(map(str, t.seeds))}.")
    return "\n".join(lines)


def markdown(rows: list, tasks: list, run_ids) -> str:
    """The report (``transfer.md``): the suite in words, the summary (per task test
    mean ± SE and rank, mean rank), then every (optimizer, task) in detail."""
    tasks_seen = list(dict.fromkeys(r.task for r in rows))
    summary = summary_frame(rows)
    shown = summary[["optimizer", "search fitness"]].copy()
    for t in tasks_seen:
        shown[f"{t} test"] = [score_text(m, None if pd.isna(s) else s)
                              for m, s in zip(summary[t], summary[f"{t} se"])]
        shown[f"{t} rank"] = summary[f"{t} rank"]
    shown["mean rank"] = summary["mean rank"]
    shown["rule string"] = summary["rule"]
    detail = scores_frame(rows)
    detail["test per seed"] = [", ".join(f"{x:.4f}" for x in r.test) for r in rows]
    detail = detail[["task", "optimizer", "best lr", "val", "test", "se", "test per seed",
                     "rank", "status"]]
    head = (f"# Transfer check: {len(tasks_seen)} held-out tasks × {len(summary)} "
            "optimizers\n\nEvery optimizer (rules on RuleOptimizer, torch's Adam and "
            "SGD+momentum as they are) gets each task's lr sweep: each lr once per seed, "
            "the lr with the best mean validation score chosen, its runs scored on the "
            "task's test split. Scores: test accuracy, mean ± standard error over the "
            "seeds; rank 1 = best on that task.\n\n"
            f"{tasks_text(tasks)}\n\nSearches: {', '.join(run_ids) or 'none'}.\n\n")
    return (head + markdown_table(shown, code=("rule string",), formats={
        "search fitness": _fmt, "mean rank": ".2f", **{f"{t} rank": "g" for t in tasks_seen}})
        + "\n## Per task\n\n"
        + markdown_table(detail, formats={"val": ".4f", "test": ".4f", "se": _fmt,
                                          "rank": "g"}))


def report(rows: list, tasks: list, run_ids, **extra) -> dict:
    """The whole result as plain data (``transfer.json``): the tasks' settings, one row
    per (optimizer, task), and the summary."""
    return {"tasks": [dict(name=t.name, **t.described()) for t in tasks],
            "runs": list(run_ids), **extra,
            "rows": [row_record(r) for r in rows],
            "summary": records(summary_frame(rows))}


def row_record(row: TransferRow) -> dict:
    return dict(dataclasses.asdict(row),
                lr_scores={repr(float(k)): v for k, v in row.lr_scores.items()})


def write_report(rows: list, tasks: list, run_ids, out: str | Path, **extra) -> dict:
    """``out/transfer.md`` and ``out/transfer.json``; returns their paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"markdown": out / "transfer.md", "json": out / "transfer.json"}
    write_atomic(paths["markdown"], markdown(rows, tasks, run_ids))
    write_atomic(paths["json"], json.dumps(report(rows, tasks, run_ids, **extra), indent=2,
                                           default=str) + "\n")
    return paths


# -- which rules ---------------------------------------------------------------------------
def candidates_from_runs(run_ids, top: int, tracking_uri: str | None = None) -> list:
    """The ``top`` best rules of each search run's hall of fame."""
    out = []
    for run_id in run_ids:
        run = get_run(run_id, tracking_uri)
        strategy = run.tags.get("strategy") or "search"
        seed = run.params.get("seed")
        for row in load_hall_of_fame(run_id, tracking_uri)[:top]:
            label = f"{strategy}{'' if seed is None else f' s{seed}'} #{row.get('rank', 1)}"
            out.append(Candidate(label, row["rule"], run_id, row.get("fitness")))
    return out


def winners(report_file: str | Path) -> list:
    """The run id of each strategy's best search in a compare report (comparison.json)."""
    try:
        runs = json.loads(Path(report_file).read_text())["runs"]
    except (OSError, KeyError, json.JSONDecodeError) as err:
        raise ValueError(f"{report_file} is not a compare report (comparison.json written "
                         f"by python -m evo_nos.compare): {err}") from err
    best: dict = {}
    for run in runs:
        fitness = run.get("best_fitness")
        if fitness is None:
            continue
        if run["strategy"] not in best or fitness > best[run["strategy"]]["best_fitness"]:
            best[run["strategy"]] = run
    return [run["run_id"] for _, run in sorted(best.items())]


def search_data(run_ids, tracking_uri: str | None) -> str:
    """The data source the searches trained on (their --data, else their task's)."""
    sources = set()
    for run_id in run_ids:
        params = get_run(run_id, tracking_uri).params
        sources.add(params.get("data") or params.get("task.data")
                    or params.get("fitness.task.data") or "synthetic")
    if len(sources) > 1:
        raise ValueError(f"the runs trained on different data {sorted(sources)}: give --data")
    return sources.pop() if sources else "synthetic"


# -- MLflow ------------------------------------------------------------------------------------
def metric_name(text: str) -> str:
    """``text`` as part of an MLflow metric name (letters, digits, ``_ . -``)."""
    return re.sub(r"[^A-Za-z0-9_.\- ]+", "", text).replace(" ", "_")


def log_transfer(rows: list, tasks: list, run_ids, *, experiment: str,
                 tracking_uri: str | None, data: str | None = None) -> str:
    """One MLflow run tagged ``kind=transfer``: params per task (``<task>.<key>``),
    metrics per optimizer and task (``test.<task>.<optimizer>``, ``test_se...``,
    ``rank...``, and ``mean_rank.<optimizer>``), the tables ``transfer.json`` (one row
    per optimizer and task) and ``transfer_summary.json``, and ``transfer.md``; returns
    its id."""
    tracker = ReportTracker(experiment=experiment, tracking_uri=tracking_uri)
    text = markdown(rows, tasks, run_ids)
    params = {f"{t.name}.{k}": v for t in tasks for k, v in t.described().items()}
    params.update({"tasks": ",".join(t.name for t in tasks), "runs": ",".join(run_ids),
                   "optimizers": len(dict.fromkeys(r.label for r in rows))})
    if data:
        params["data"] = data
    run_id = tracker.start(run_name=f"transfer {len(tasks)} tasks "
                                    f"({params['optimizers']} optimizers)",
                           params=params,
                           tags={KIND_TAG: "transfer", "source_runs": ",".join(run_ids),
                                 NOTE_TAG: text})
    scores = scores_frame(rows)
    metrics = []
    for r in scores.itertuples(index=False):
        name = f"{metric_name(r.task)}.{metric_name(r.optimizer)}"
        metrics += [(f"test.{name}", r.test, 0), (f"rank.{name}", r.rank, 0)]
        if r.se is not None and not pd.isna(r.se):
            metrics.append((f"test_se.{name}", r.se, 0))
    summary = summary_frame(rows)
    metrics += [(f"mean_rank.{metric_name(o)}", k, 0)
                for o, k in zip(summary["optimizer"], summary["mean rank"])]
    tracker.log_metrics(metrics)
    table = [dict(row_record(r), seeds=json.dumps(r.seeds), val=json.dumps(r.val),
                  test=json.dumps(r.test), lr_scores=json.dumps(row_record(r)["lr_scores"]))
             for r in rows]
    tracker.log_table(table, "transfer.json", [f.name for f in dataclasses.fields(TransferRow)])
    tracker.log_table(summary, "transfer_summary.json")
    tracker.log_text(text, "transfer.md")
    tracker.end("FINISHED")
    return run_id
