"""The transfer check: do a search's winners hold up outside the search?

Search fitness can rise while quality elsewhere falls (the NOS paper's transfer
experiments, Lion's meta-validation funnel).  This trains the top rules of one or more
searches' halls of fame, and the reference rules beside them, on settings the search
never saw:

* **another network**: a small ResNet (:class:`evo_nos.fitness.models.SmallResNet`)
  instead of the two-layer child ConvNet;
* **longer training**: more images and more epochs than the child's final run;
* **the test split**: the learning rate is chosen on a validation part of the training
  split, and the score reported is the accuracy on the source's *test* split, which no
  search reads (CIFAR-10's 10,000 test images; ``DIR/test/<class>/`` for an image
  folder; a disjoint sample for synthetic data).

Those settings are a :class:`~evo_nos.fitness.tasks.Task` like any fitness preset:
``evo_nos/fitness/presets/transfer/{quick,cpu,gpu}.toml`` (:func:`load_transfer_task`
loads one by name, or a ``.toml`` path), with ``model = "resnet"`` and ``n_test > 0``.
Each rule is scored by the fitness protocol itself,
:func:`evo_nos.fitness.train.run_protocol` (the lr sweep, ``sweep_epochs`` at each lr of
the grid, best validation accuracy wins, ties to the smaller lr; then one run of
``final_epochs`` at that lr, scored on the validation part and on the test sample), with
one seed (:data:`SEED`) for every rule: the same initial weights and data order.  The
learning rate is constant (no schedule), as in the search, so differences are the rules'.

The table (one row per rule) is printed, written to ``--out`` (``transfer.md``,
``transfer.json``) and logged as an MLflow run tagged ``kind=transfer``.

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

from evo_nos.core.known import resolve
from evo_nos.core.tables import markdown as markdown_table
from evo_nos.experiments.references import HEADLINE
from evo_nos.fitness.backend import resolve_device
from evo_nos.fitness.data import DeviceData
from evo_nos.fitness.evaluation import OK
from evo_nos.fitness.tasks import Task, load_task, presets
from evo_nos.fitness.train import run_protocol, task_data
from evo_nos.tracking import KIND_TAG, NOTE_TAG, ReportTracker, get_run, load_hall_of_fame

# the known rules trained beside the winners: the ones reports draw as reference lines
DEFAULT_REFERENCES = HEADLINE
PRESET_GROUP = "transfer"        # the presets: evo_nos/fitness/presets/transfer/*.toml
SEED = 0                         # initial weights, data order, rule noise: shared by all rules


# -- settings --------------------------------------------------------------------------------
def transfer_presets() -> list[str]:
    """The transfer presets shipped with evo_nos (``quick``, ``cpu``, ``gpu``)."""
    return presets(PRESET_GROUP)


def default_transfer_preset() -> str:
    """``gpu`` when a GPU is visible, else ``cpu``."""
    return "gpu" if torch.cuda.is_available() else "cpu"


def load_transfer_task(preset: str | Path = "cpu", **overrides) -> Task:
    """A transfer preset by name (one of :func:`transfer_presets`) or a ``.toml`` path,
    with overrides (None: unchanged), as :func:`evo_nos.fitness.tasks.load_task`."""
    return _needs_test_split(load_task(preset, group=PRESET_GROUP, **overrides))


def _needs_test_split(task: Task) -> Task:
    if task.n_test < 1:
        raise ValueError(f"task {task.name!r} has n_test = {task.n_test}: the transfer "
                         "check scores the test split, set n_test > 0")
    return task


# -- training --------------------------------------------------------------------------------
@dataclass
class Candidate:
    label: str                       # "evo #1 (1a2b3c4d)" or a reference name
    rule: str
    source: str                      # the run id, or "reference"
    search_fitness: float | None = None


@dataclass
class TransferRow:
    label: str
    rule: str
    math: str
    source: str
    search_fitness: float | None
    best_lr: float | None
    val_accuracy: float
    test_accuracy: float
    status: str                      # ok | diverged
    lr_scores: dict = field(default_factory=dict)
    seconds: float = 0.0


def transfer_rule(candidate: Candidate, data: DeviceData, task: Task, *,
                  seed: int = SEED) -> TransferRow:
    """The fitness protocol on the transfer task; the final run scored on the test split."""
    rule = resolve(candidate.rule)
    evaluation, final = run_protocol(rule, data, task, seed=seed)
    ok = evaluation.status == OK
    return TransferRow(
        label=candidate.label, rule=rule.canonical, math=rule.math, source=candidate.source,
        search_fitness=candidate.search_fitness, best_lr=evaluation.best_lr,
        val_accuracy=evaluation.fitness if ok else 0.0,
        test_accuracy=final.test_accuracy if ok else 0.0, status=evaluation.status,
        lr_scores=dict(evaluation.lr_scores), seconds=evaluation.seconds)


def run_transfer(candidates: list, task: Task, *, device: str = "auto", seed: int = SEED,
                 echo=print) -> list:
    """Train every candidate on ``task`` (duplicate rules once); rows in candidate order."""
    loaded = task_data(_needs_test_split(task), resolve_device(device))
    done: dict = {}
    rows = []
    for i, cand in enumerate(candidates, 1):
        key = resolve(cand.rule).canonical
        if key not in done:
            echo(f"[{i}/{len(candidates)}] {cand.label}: {key}")
            done[key] = transfer_rule(cand, loaded, task, seed=seed)
        row = dataclasses.replace(done[key], label=cand.label, source=cand.source,
                                  search_fitness=cand.search_fitness)
        rows.append(row)
    return rows


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


# -- output --------------------------------------------------------------------------------
def _fmt(x, spec=".4f") -> str:
    return "" if x is None or (isinstance(x, float) and not math.isfinite(x)) else format(x, spec)


def table_text(rows: list) -> str:
    """The plain-text table printed at the end (one row per rule)."""
    width = max([len(r.label) for r in rows] + [5])
    lines = [f"{'rule':<{width}}  {'search':>7}  {'best lr':>8}  {'val':>6}  {'test':>6}  "
             f"{'status':<8}  update"]
    for r in rows:
        lr = "" if r.best_lr is None else f"{r.best_lr:g}"
        lines.append(f"{r.label:<{width}}  {_fmt(r.search_fitness):>7}  {lr:>8}  "
                     f"{r.val_accuracy:>6.4f}  {r.test_accuracy:>6.4f}  {r.status:<8}  {r.math}")
    return "\n".join(lines)


def network_text(task: Task) -> str:
    """The task's network in words (the markdown report's head)."""
    if task.model == "resnet":
        return f"ResNet width {task.width} blocks {list(task.blocks)}"
    return f"child ConvNet width {task.width} ({task.head} head)"


def table_frame(rows: list) -> pd.DataFrame:
    """The report's table: one row per rule, best test accuracy first."""
    columns = ["rule", "search fitness", "best lr", "val acc", "test acc", "status",
               "rule string"]
    frame = pd.DataFrame([[r.label, r.search_fitness, r.best_lr, r.val_accuracy,
                           r.test_accuracy, r.status, r.rule] for r in rows], columns=columns)
    return frame.sort_values("test acc", ascending=False, kind="stable")


def markdown(rows: list, task: Task, run_ids) -> str:
    """The report (``transfer.md``): the settings in words, then :func:`table_frame`."""
    t = task
    head = (f"# Transfer check (`{t.name}`): {network_text(t)}, {t.n_train} training images "
            f"of `{t.data}`, {t.final_epochs:g} epochs at each rule's best lr (sweep "
            f"{', '.join(f'{lr:g}' for lr in t.lrs)} × {t.sweep_epochs:g} epoch, chosen on "
            f"{t.n_val} validation images), accuracy on {t.n_test} images of the test "
            f"split.\n\nSearches: {', '.join(run_ids) or 'none'}.\n\n")
    return head + markdown_table(table_frame(rows), code=("rule string",), formats={
        "search fitness": _fmt, "val acc": ".4f", "test acc": ".4f"})


def _metric_name(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.\- ]+", "", label).replace(" ", "_")


def log_transfer(rows: list, task: Task, run_ids, *, experiment: str,
                 tracking_uri: str | None, seed: int = SEED) -> str:
    """One MLflow run tagged ``kind=transfer`` (params ``transfer.<task key>``, metrics
    per rule, ``transfer.json`` and ``transfer.md``); returns its id."""
    tracker = ReportTracker(experiment=experiment, tracking_uri=tracking_uri)
    text = markdown(rows, task, run_ids)
    params = {f"transfer.{k}": v for k, v in task.as_dict().items()}
    params.update({"transfer.seed": seed, "data": task.data, "runs": ",".join(run_ids),
                   "rules": len(rows)})
    run_id = tracker.start(run_name=f"transfer {task.name} ({len(rows)} rules)",
                           params=params,
                           tags={KIND_TAG: "transfer", "source_runs": ",".join(run_ids),
                                 NOTE_TAG: text})
    metrics = []
    for r in rows:
        name = _metric_name(r.label)
        metrics += [(f"test_accuracy.{name}", r.test_accuracy, 0),
                    (f"val_accuracy.{name}", r.val_accuracy, 0)]
    tracker.log_metrics(metrics)
    columns = ["label", "rule", "math", "source", "search_fitness", "best_lr", "val_accuracy",
               "test_accuracy", "status", "seconds", "lr_scores"]
    table = [dict(dataclasses.asdict(r), lr_scores=json.dumps(
        {repr(float(k)): v for k, v in r.lr_scores.items()})) for r in rows]
    tracker.log_table(table, "transfer.json", columns)
    tracker.log_text(text, "transfer.md")
    tracker.end("FINISHED")
    return run_id
