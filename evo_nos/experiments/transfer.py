"""``python -m evo_nos.transfer``: do a search's winners hold up outside the search?

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

Every rule gets its own learning-rate sweep (``sweep_epochs`` at each lr of the grid,
best validation accuracy wins, ties to the smaller lr), then one run of ``epochs`` at that
lr from the same initial weights and data order as every other rule.  The learning rate
is constant (no schedule), as in the search, so differences are the rules'.

The table (one row per rule) is printed, written to ``--out`` (``transfer.md``,
``transfer.json``) and logged as an MLflow run tagged ``kind=transfer``.

    python -m evo_nos.transfer --run RUN_ID --top 3            (evo_nos.cli.transfer)
"""
from __future__ import annotations

import dataclasses
import json
import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torchvision.datasets import CIFAR10 as TorchvisionCIFAR10

from evo_nos.core.known import name_of, resolve
from evo_nos.core.threads import torch_threads
from evo_nos.fitness.backend import resolve_device
from evo_nos.fitness.data import (CIFAR10, IMAGEFOLDER, SYNTHETIC, DataError, DeviceData,
                                  ImageSplits, data_dir, decode_images, load_images,
                                  parse_data_spec, resize, synthetic_images)
from evo_nos.fitness.models import make_resnet
from evo_nos.fitness.train import fit
from evo_nos.tracking import KIND_TAG, NOTE_TAG, ReportTracker, get_run, load_hall_of_fame

DEFAULT_REFERENCES = ("sgd", "momentum", "adam", "rmsprop", "signsgd", "powersign", "addsign")
PAPER_LRS = (1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0)


@dataclass(frozen=True)
class TransferSettings:
    """The held-out training setting (``--preset``); ``data`` None: the search's source."""

    name: str = "cpu"
    data: str | None = None
    n_train: int = 5000             # training images (from the source's training split)
    n_val: int = 1000               # validation images for the lr sweep (same split)
    n_test: int = 2000              # images of the test split scored at the end
    image_size: int = 32
    width: int = 16                 # ResNet width of the first stage
    blocks: tuple = (1, 1, 1)       # residual blocks per stage
    lrs: tuple = PAPER_LRS
    sweep_epochs: float = 1.0
    epochs: float = 10.0            # the final run (the child's is 5 on 2,000 images)
    batch_size: int = 100
    translate: int = 2
    flip: bool = True
    data_seed: int = 1              # which images (another subset than the search's 0)
    seed: int = 0                   # initial weights and data order, shared by all rules
    threads: int = 0                # torch CPU threads (0: torch's default, all cores)

    def as_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out["lrs"], out["blocks"] = list(self.lrs), list(self.blocks)
        return out


PRESETS = {
    # seconds per rule on a CPU: for tests and a first look (not a judgement)
    "quick": TransferSettings(name="quick", n_train=600, n_val=200, n_test=300, image_size=16,
                              width=8, lrs=(1e-3, 1e-2, 1e-1), sweep_epochs=1, epochs=2,
                              threads=1),
    # a few minutes per rule on two CPU cores
    "cpu": TransferSettings(name="cpu"),
    # a GPU: full CIFAR-10, ResNet-20, 20 epochs
    "gpu": TransferSettings(name="gpu", n_train=45000, n_val=5000, n_test=10000, width=16,
                            blocks=(3, 3, 3), epochs=20, batch_size=128),
}


# -- data ----------------------------------------------------------------------------------
@dataclass
class TransferData:
    train: object                    # evo_nos.fitness.data.DeviceData (train + validation)
    test_x: torch.Tensor             # uint8 [N, 3, S, S] on the device
    test_y: torch.Tensor
    source: str


def _test_split(spec, n_test: int, image_size: int, seed: int):
    """A seeded sample of ``n_test`` images of a source's test split (uint8, labels)."""

    gen = torch.Generator().manual_seed(seed)
    if spec.kind == CIFAR10:
        try:
            dataset = TorchvisionCIFAR10(str(data_dir() / "cifar10"), train=False, download=True)
        except Exception as err:
            raise DataError(f"could not get the CIFAR-10 test split ({err}); offline, use "
                            "--data imagefolder:DIR with DIR/test/<class>/*.jpg") from err
        index = torch.randperm(len(dataset.data), generator=gen)[:n_test]
        x = torch.from_numpy(dataset.data[index.numpy()]).permute(0, 3, 1, 2).contiguous()
        return resize(x, image_size), torch.as_tensor(dataset.targets)[index]
    if spec.kind == IMAGEFOLDER:
        test = Path(spec.path) / "test"
        if not test.is_dir():
            raise DataError(f"{spec.path} has no test/ folder: the transfer check scores "
                            "the test split (DIR/test/<class>/*.jpg)")
        classes = sorted(p.name for p in test.iterdir() if p.is_dir())
        files, labels = [], []
        for label, name in enumerate(classes):
            found = sorted(p for p in (test / name).iterdir() if p.is_file())
            files += found
            labels += [label] * len(found)
        if n_test > len(files):
            raise DataError(f"{test} has {len(files)} images, the transfer asks for {n_test}")
        index = torch.randperm(len(files), generator=gen)[:n_test].tolist()
        return (decode_images([files[i] for i in index], image_size),
                torch.tensor([labels[i] for i in index], dtype=torch.int64))
    raise DataError(f"no test split for data source {spec}")


def load_transfer_data(settings: TransferSettings, data: str, device: str) -> TransferData:
    """Train/validation images from the training split, test images from the test split."""
    spec = parse_data_spec(data)
    s = settings
    if spec.kind == SYNTHETIC:       # one generated set, split three ways (disjoint samples)
        x, y = synthetic_images(s.n_train + s.n_val + s.n_test, image_size=s.image_size,
                                seed=s.data_seed)
        a, b = s.n_val, s.n_val + s.n_train
        splits = ImageSplits(train_x=x[a:b], train_y=y[a:b], val_x=x[:a], val_y=y[:a],
                             n_classes=10)
        test_x, test_y = x[b:], y[b:]
    else:
        splits = load_images(spec, n_train=s.n_train, n_val=s.n_val, image_size=s.image_size,
                             seed=s.data_seed)
        test_x, test_y = _test_split(spec, s.n_test, s.image_size, s.data_seed)
    train = DeviceData(splits, device, translate=s.translate, flip=s.flip)
    return TransferData(train, test_x.to(device), test_y.to(device), str(spec))


# -- training ------------------------------------------------------------------------------
@torch.no_grad()
def _accuracy(model, data, x_all, y_all, batch: int = 1000) -> float:
    model.eval()
    correct = 0
    for i in range(0, len(x_all), batch):
        x = data.normalise(x_all[i:i + batch])
        correct += int((model(x).argmax(1) == y_all[i:i + batch]).sum())
    model.train()
    return correct / max(1, len(x_all))


@dataclass
class Fit:
    lr: float
    val: float
    test: float | None
    diverged: bool
    steps: int
    seconds: float


def train_once(rule, lr: float, data: TransferData, settings: TransferSettings, *,
               epochs: float, test: bool) -> Fit:
    """Train a fresh ResNet with ``rule`` at ``lr``; validation (and test) accuracy."""
    start = time.perf_counter()
    d = data.train
    total = max(1, int(round(epochs * d.steps_per_epoch(settings.batch_size))))
    model = make_resnet(settings.seed, n_classes=d.n_classes, width=settings.width,
                        blocks=settings.blocks, device=d.device)
    steps, reason = fit(model, rule, lr, d, total_steps=total, batch_size=settings.batch_size,
                        seed=settings.seed)
    diverged = bool(reason)
    if diverged:
        return Fit(lr, 0.0, 0.0 if test else None, True, steps, time.perf_counter() - start)
    val = _accuracy(model, d, d.val_x, d.val_y)
    score = _accuracy(model, d, data.test_x, data.test_y) if test else None
    return Fit(lr, val, score, False, steps, time.perf_counter() - start)


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


def transfer_rule(candidate: Candidate, data: TransferData,
                  settings: TransferSettings) -> TransferRow:
    """The lr sweep, then the long run at the best lr, scored on the test split."""
    rule = resolve(candidate.rule)
    start = time.perf_counter()
    with torch_threads(settings.threads):
        sweep = [train_once(rule, lr, data, settings, epochs=settings.sweep_epochs, test=False)
                 for lr in settings.lrs]
        usable = [f for f in sweep if not f.diverged]
        final = None
        if usable:
            best = max(usable, key=lambda f: f.val)           # first (smallest lr) on ties
            final = train_once(rule, best.lr, data, settings, epochs=settings.epochs,
                               test=True)
    ok = final is not None and not final.diverged
    return TransferRow(
        label=candidate.label, rule=rule.canonical, math=rule.math, source=candidate.source,
        search_fitness=candidate.search_fitness, best_lr=final.lr if final else None,
        val_accuracy=final.val if ok else 0.0, test_accuracy=final.test if ok else 0.0,
        status="ok" if ok else "diverged", lr_scores={f.lr: f.val for f in sweep},
        seconds=time.perf_counter() - start)


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


def run_transfer(candidates: list, settings: TransferSettings, data: str, *,
                 device: str = "auto", echo=print) -> list:
    """Train every candidate (duplicate rules once); rows in candidate order."""
    loaded = load_transfer_data(settings, data, resolve_device(device))
    done: dict = {}
    rows = []
    for i, cand in enumerate(candidates, 1):
        key = resolve(cand.rule).canonical
        if key not in done:
            echo(f"[{i}/{len(candidates)}] {cand.label}: {key}")
            done[key] = transfer_rule(cand, loaded, settings)
        row = dataclasses.replace(done[key], label=cand.label, source=cand.source,
                                  search_fitness=cand.search_fitness)
        rows.append(row)
    return rows


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


def markdown(rows: list, settings: TransferSettings, data: str, run_ids) -> str:
    s = settings
    head = (f"# Transfer check (`{s.name}`): ResNet width {s.width} blocks {list(s.blocks)}, "
            f"{s.n_train} training images of `{data}`, {s.epochs:g} epochs at each rule's "
            f"best lr (sweep {', '.join(f'{lr:g}' for lr in s.lrs)} × {s.sweep_epochs:g} "
            f"epoch, chosen on {s.n_val} validation images), accuracy on {s.n_test} images "
            f"of the test split.\n\nSearches: {', '.join(run_ids) or 'none'}.\n\n")
    lines = ["| rule | search fitness | best lr | val acc | test acc | status | rule string |",
             "|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: -r.test_accuracy):
        lr = "" if r.best_lr is None else f"{r.best_lr:g}"
        lines.append(f"| {r.label} | {_fmt(r.search_fitness)} | {lr} | {r.val_accuracy:.4f} | "
                     f"{r.test_accuracy:.4f} | {r.status} | `{r.rule.replace('|', '/')}` |")
    return head + "\n".join(lines) + "\n"


def _metric_name(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.\- ]+", "", label).replace(" ", "_")


def log_transfer(rows: list, settings: TransferSettings, data: str, run_ids, *,
                 experiment: str, tracking_uri: str | None) -> str:
    tracker = ReportTracker(experiment=experiment, tracking_uri=tracking_uri)
    text = markdown(rows, settings, data, run_ids)
    params = {f"transfer.{k}": v for k, v in settings.as_dict().items()}
    params.update({"data": data, "runs": ",".join(run_ids), "rules": len(rows)})
    run_id = tracker.start(run_name=f"transfer {settings.name} ({len(rows)} rules)",
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
