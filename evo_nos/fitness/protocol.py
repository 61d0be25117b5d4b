"""The one scoring protocol: how any optimizer is scored on any task.

Everything that scores an optimizer goes through :func:`score`: the search's fitness (one
seed per candidate, :func:`evo_nos.fitness.train.score_rule`), the packed trainer (which
changes only *how* the children train, :func:`evo_nos.fitness.packed.score_rules`) and the
held-out suite (several seeds, :func:`evo_nos.fitness.heldout.score_optimizer`).  For each
candidate -- an optimizer and its seeds:

1. **the sweep**: every learning rate of ``task.lrs``, once per seed, ``task.sweep_epochs``
   each, scored on the validation split.  A learning rate's score is the mean over the
   seeds (a run that diverged scores the metric's worst value);
2. **the choice**: the best learning rate among those where at least one seed trained
   (the highest mean, or the lowest for a metric where lower is better; ties go to the
   first of the grid, the smaller lr).  Every lr diverged: status ``diverged``, no final
   run.  Below ``hurdle``: status ``hurdled``, the sweep score is the fitness, no final run
   (AutoML-Zero's hurdles);
3. **the final runs**: at the chosen lr, each seed trained from scratch for
   ``task.final_epochs`` (None: the sweep's run at that lr is the final one), scored on
   the validation split and, when the task has one, the test split (no choice ever reads
   the test scores).  Status ``diverged`` when every final run diverged.

A *trainer* turns children -- ``(optimizer, lr, seed)`` trainings -- into :class:`Run` s:
:func:`lone_trainer` trains one after the other through :func:`fit`, the packed trainer
many in one pass; both give the same runs (on the CPU bit for bit).  Every run of a
candidate starts from its seed's initial weights, data order and optimizer noise: learning
rates and optimizers are compared on common random numbers.

The learning rate of every run follows the task's ``schedule`` (:mod:`evo_nos.optim.schedules`:
``constant``, ``cosine`` or ``linear``, after ``warmup`` steps): the same for every optimizer,
rule or baseline, through ``torch.optim.lr_scheduler``.  A rule's direction is multiplied by
the scheduled learning rate; its own decay operands compose with it.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F

from evo_nos.fitness.data import TEST, VAL
from evo_nos.fitness.evaluation import DIVERGED, HURDLED, OK, Evaluation
from evo_nos.optim.schedules import scheduler

MAX, MIN = "max", "min"          # the direction of a metric: higher or lower is better


def correct(outputs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The default metric: how many argmax predictions are right (score: accuracy)."""
    return (outputs.argmax(dim=1) == y).sum()


@dataclass
class TaskSetup:
    """A task made concrete on a device: its data, network, loss and metric.

    ``data``: train / validation / test splits with ``device``, ``n_train``, ``n_val``,
    ``n_test``, ``steps_per_epoch(batch)``, ``epoch(batch, generator)`` and
    ``eval_batches(batch, split)`` (:class:`~evo_nos.fitness.data.TensorData` or
    :class:`~evo_nos.fitness.data.DeviceData`); ``model(seed)``: a fresh network whose
    initial weights depend on ``seed`` alone; ``loss(outputs, y)``: the mean training
    loss; ``metric(outputs, y)``: the batch's *sum* of a score; ``direction``: ``max``
    (higher is better, as accuracy) or ``min`` (as an error)."""

    data: object
    model: Callable
    loss: Callable = F.cross_entropy
    metric: Callable = correct
    direction: str = MAX

    def __post_init__(self) -> None:
        if self.direction not in (MAX, MIN):
            raise ValueError(f"direction must be {MAX!r} or {MIN!r}, got {self.direction!r}")

    @property
    def worst(self) -> float:
        """The score of a run that diverged."""
        return 0.0 if self.direction == MAX else math.inf


@dataclass
class Child:
    """One training of a candidate: its optimizer (a Rule, or a baseline's factory
    ``(params, lr, total_steps) -> Optimizer``), learning rate and seed."""

    optimizer: object
    lr: float
    seed: int


@dataclass
class Run:
    """One training of one (optimizer, lr, seed): its validation (and test) score, the
    metric's worst value when it diverged."""

    lr: float
    seed: int
    val: float
    diverged: bool
    steps: int                       # optimizer steps taken (charged)
    seconds: float = 0.0
    reason: str = ""                 # why it diverged
    test: float | None = None        # on the test split, when asked


@dataclass
class Score:
    """One candidate through the protocol: the chosen lr and each seed's final scores."""

    optimizer: str                   # its key: a baseline's name or a rule's canonical string
    status: str                      # ok | diverged | hurdled
    best_lr: float | None
    lr_scores: dict                  # lr -> mean validation score over the seeds (sweep)
    seeds: tuple
    val: tuple                       # the final runs' validation scores, one per seed
    test: tuple                      # ... and test scores (None without a test split)
    steps: int
    seconds: float
    reason: str = ""
    sweep_best: float | None = None  # the chosen lr's sweep score
    task: str = ""

    @property
    def fitness(self) -> float:
        """The mean final validation score (hurdled: the sweep's best; diverged with no
        final run: 0)."""
        if self.status == HURDLED:
            return self.sweep_best
        return sum(self.val) / len(self.val) if self.val else 0.0

    def evaluation(self) -> Evaluation:
        """The search's form of a one-seed score."""
        return Evaluation(rule=self.optimizer, fitness=self.fitness, status=self.status,
                          best_lr=self.best_lr, lr_scores=dict(self.lr_scores),
                          steps=self.steps, trainings=1, seconds=self.seconds,
                          reason=self.reason)


# -- the training loop -----------------------------------------------------------------------
def epoch_steps(epochs: float, steps_per_epoch: int) -> int:
    """Optimizer steps of a run of ``epochs`` epochs (fractional epochs allowed)."""
    return max(1, int(round(epochs * steps_per_epoch)))


def all_finite(model: torch.nn.Module) -> bool:
    """True when every weight and floating-point buffer of ``model`` is finite."""
    tensors = list(model.parameters()) + [b for b in model.buffers() if b.is_floating_point()]
    return all(bool(torch.isfinite(t).all()) for t in tensors)


def fit(model: torch.nn.Module, make_optimizer: Callable, lr: float, data, *,
        total_steps: int, batch_size: int, seed: int, check_every: int = 1,
        loss: Callable = F.cross_entropy, schedule: str = "constant",
        warmup: int = 0) -> tuple[int, str]:
    """Train ``model`` in place with ``make_optimizer(params, lr, total_steps)`` for
    ``total_steps`` steps: the one training loop.

    Batches come from ``data.epoch`` in an order drawn from a generator seeded with
    ``seed``; the optimizer's own randomness (ε, drop) from torch's RNG forked and seeded
    with ``seed``; the learning rate follows ``schedule`` after ``warmup`` steps.  Stops
    at once when the loss (checked every ``check_every`` steps) or the weights turn
    non-finite.  Returns (steps taken, reason it diverged or "")."""
    device = data.device
    opt = make_optimizer(model.parameters(), lr, total_steps)
    lr_schedule = scheduler(opt, schedule, total_steps, warmup)
    order = torch.Generator(device=device).manual_seed(seed)
    steps, reason = 0, ""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        while steps < total_steps and not reason:
            for x, y in data.epoch(batch_size, order):
                value = loss(model(x), y)
                opt.zero_grad(set_to_none=True)
                value.backward()
                opt.step()
                if lr_schedule is not None:
                    lr_schedule.step()
                steps += 1
                if (steps % check_every == 0 or steps == total_steps) and \
                        not math.isfinite(value.item()):
                    reason = f"loss became non-finite at step {steps} (lr {lr:g})"
                    break
                if steps >= total_steps:
                    break
    if not reason and not all_finite(model):
        reason = f"weights became non-finite within {steps} steps (lr {lr:g})"
    return steps, reason


@torch.no_grad()
def evaluate(model: torch.nn.Module, setup: TaskSetup, split: str = VAL,
             batch_size: int = 1000) -> float:
    """The mean of ``setup.metric`` over ``split`` (val | test), one host sync."""
    data = setup.data
    n = data.n_val if split == VAL else data.n_test
    if n < 1:
        raise ValueError(f"the data has no {split} examples (a task with n_test > 0 loads "
                         "a test split)")
    model.eval()
    total = torch.zeros((), dtype=torch.float64, device=data.device)
    for x, y in data.eval_batches(batch_size, split):
        total += setup.metric(model(x), y)
    model.train()
    return float(total) / n


def lone_trainer(task, setup: TaskSetup, make_optimizer: Callable) -> Callable:
    """A trainer that trains each child alone through :func:`fit`: a fresh
    ``setup.model(seed)``, the task's batch size, schedule and checks.
    ``make_optimizer(child)`` gives the child's ``(params, lr, total_steps) -> Optimizer``."""

    def train(children: list[Child], epochs: float, test: bool) -> list[Run]:
        runs = []
        for child in children:
            start = time.perf_counter()
            model = setup.model(child.seed)
            steps, reason = fit(
                model, make_optimizer(child), child.lr, setup.data,
                total_steps=epoch_steps(epochs, setup.data.steps_per_epoch(task.batch_size)),
                batch_size=task.batch_size, seed=child.seed, check_every=task.check_every,
                loss=setup.loss, schedule=task.schedule, warmup=task.warmup)
            val = setup.worst if reason else evaluate(model, setup, VAL, task.eval_batch_size)
            tested = None
            if test:
                tested = setup.worst if reason else evaluate(model, setup, TEST,
                                                             task.eval_batch_size)
            runs.append(Run(child.lr, child.seed, val, bool(reason), steps,
                            time.perf_counter() - start, reason, tested))
        return runs

    return train


# -- the protocol ----------------------------------------------------------------------------
@dataclass
class Candidate:
    """What :func:`score` scores: an optimizer (``key`` names it in the Score) on seeds."""

    optimizer: object
    key: str
    seeds: tuple = field(default=(0,))


def score(candidates: list[Candidate], task, train: Callable, *, test: bool = False,
          hurdle: float | None = None, direction: str = MAX) -> list[Score]:
    """The protocol (module docstring) for every candidate at once: all their sweep
    children go to ``train(children, epochs, test)`` together, then all their final
    runs.  ``task`` gives ``lrs``, ``sweep_epochs``, ``final_epochs`` (None: reuse the
    sweep's runs) and ``name``."""
    better = max if direction == MAX else min
    reuse = task.final_epochs is None
    lrs = task.lrs
    sweep_children = [Child(c.optimizer, lr, s) for c in candidates for lr in lrs
                      for s in c.seeds]
    runs = iter(train(sweep_children, task.sweep_epochs, test and reuse))
    sweeps = [{(lr, s): next(runs) for lr in lrs for s in c.seeds} for c in candidates]
    out: list[Score | None] = [None] * len(candidates)
    chosen = []                                  # (candidate index, best lr)
    for i, (c, sweep) in enumerate(zip(candidates, sweeps)):
        steps = sum(r.steps for r in sweep.values())
        seconds = sum(r.seconds for r in sweep.values())
        lr_scores = {lr: sum(sweep[lr, s].val for s in c.seeds) / len(c.seeds) for lr in lrs}
        usable = [lr for lr in lrs if not all(sweep[lr, s].diverged for s in c.seeds)]
        base = dict(optimizer=c.key, lr_scores=lr_scores, seeds=tuple(c.seeds), steps=steps,
                    seconds=seconds, task=getattr(task, "name", ""))
        if not usable:
            last = sweep[lrs[-1], c.seeds[-1]]
            worst = tuple(last.val for _ in c.seeds)       # the metric's worst, per seed
            out[i] = Score(status=DIVERGED, best_lr=None, val=worst,
                           test=worst if test else (),
                           reason="every learning rate diverged: " + last.reason, **base)
            continue
        best = better(usable, key=lambda lr: lr_scores[lr])   # the first of ties
        if hurdle is not None and lr_scores[best] < hurdle:
            out[i] = Score(status=HURDLED, best_lr=best, val=(), test=(),
                           sweep_best=lr_scores[best],
                           reason=f"best sweep score {lr_scores[best]:.4f} below the "
                                  f"hurdle {hurdle:.4f}", **base)
            continue
        out[i] = base
        chosen.append((i, best))
    if reuse:
        finals = iter(run for i, best in chosen for run in
                      (sweeps[i][best, s] for s in candidates[i].seeds))
    else:
        finals = iter(train([Child(candidates[i].optimizer, best, s) for i, best in chosen
                             for s in candidates[i].seeds], task.final_epochs, test))
    for i, best in chosen:
        base = out[i]
        final = [next(finals) for _ in candidates[i].seeds]
        failed = [r for r in final if r.diverged]
        if not reuse:
            base["steps"] += sum(r.steps for r in final)
            base["seconds"] += sum(r.seconds for r in final)
        out[i] = Score(status=DIVERGED if len(failed) == len(final) else OK, best_lr=best,
                       val=tuple(r.val for r in final),
                       test=tuple(r.test for r in final) if test else (),
                       reason="; ".join(r.reason for r in failed),
                       sweep_best=base["lr_scores"][best], **base)
    return out


def protocol_steps(task, steps_per_epoch: int) -> int:
    """Optimizer steps of one candidate's whole protocol (sweep and final run) on one
    seed when no run diverges: the compute a full candidate is charged."""
    final = 0 if task.final_epochs is None else epoch_steps(task.final_epochs,
                                                            steps_per_epoch)
    return len(task.lrs) * epoch_steps(task.sweep_epochs, steps_per_epoch) + final
