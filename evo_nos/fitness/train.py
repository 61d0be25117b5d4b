"""Train a network with a rule and score it: the paper's protocol, the one training loop.

:func:`task_data` loads a task's images onto the device; :func:`train_run` trains one
fresh network (the task's ``model``: the child ConvNet, or the transfer check's ResNet)
with one (rule, learning rate) for a number of epochs through :func:`fit` and returns its
validation accuracy.  :func:`score_rule` runs the protocol:

1. the sweep: ``sweep_epochs`` at every learning rate of the grid;
2. the final run: ``final_epochs`` from scratch at the sweep's best learning rate
   (ties go to the smaller learning rate); fitness = its validation accuracy.

:func:`run_protocol` is the same protocol, also returning the final run: for a task with
``n_test > 0`` (the transfer check) that run is scored on the data's test sample too.
Accuracies are counted on the device and read back once per split (no host sync per
batch).

Every run of a candidate starts from the same initial weights, sees the same data
order and augmentation, and the same noise inside the rule (all derived from the
candidate's seed), so learning rates are compared on common random numbers.

Divergence: a run whose loss turns non-finite stops at once (checked every
``check_every`` steps; 1 = every step) and scores 0; weights and BN statistics are
checked once more before the validation pass.  Status of the Evaluation:

* ``ok``       -- at least one sweep learning rate trained without diverging and the
  final run finished; learning rates that diverged keep their 0 in ``lr_scores``;
* ``diverged`` -- every sweep learning rate diverged (no final run), or the final run
  diverged; fitness 0.

The optimizer is :class:`evo_nos.optim.RuleOptimizer`, which compiles the rule once;
``total_steps`` is the length of each run (decay operands need it).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from evo_nos.core.threads import torch_threads
from evo_nos.fitness.data import TEST, VAL, DeviceData, load_images
from evo_nos.fitness.evaluation import DIVERGED, HURDLED, OK, Evaluation
from evo_nos.fitness.models import make_child, make_resnet
from evo_nos.fitness.tasks import Task
from evo_nos.core.known import resolve
from evo_nos.optim.optimizer import RuleOptimizer
from evo_nos.core.rules import Rule


@dataclass
class RunResult:
    lr: float
    accuracy: float     # validation accuracy (0 when diverged)
    diverged: bool
    steps: int          # optimizer steps actually taken
    seconds: float
    reason: str = ""
    test_accuracy: float | None = None   # on the test sample, when asked (0 when diverged)


def task_data(task: Task, device: str | torch.device = "cpu") -> DeviceData:
    """The task's images (train, validation, and ``n_test`` test images) on ``device``."""
    splits = load_images(task.data, n_train=task.n_train, n_val=task.n_val,
                         image_size=task.image_size, seed=task.data_seed,
                         n_classes=task.n_classes, n_test=task.n_test)
    return DeviceData(splits, device, translate=task.translate, flip=task.flip,
                      channels_last=task.channels_last)


def new_model(task: Task, data: DeviceData, seed: int) -> torch.nn.Module:
    """A fresh network of the task's ``model``, initialised from ``seed`` alone."""
    if task.model == "resnet":
        return make_resnet(seed, n_classes=data.n_classes, width=task.width,
                           blocks=task.blocks, device=data.device,
                           channels_last=task.channels_last)
    return make_child(seed, image_size=data.image_size, n_classes=data.n_classes,
                      width=task.width, head=task.head, device=data.device,
                      channels_last=task.channels_last)


def epoch_steps(epochs: float, steps_per_epoch: int) -> int:
    """Optimizer steps of a run of ``epochs`` epochs (fractional epochs allowed)."""
    return max(1, int(round(epochs * steps_per_epoch)))


def run_steps(task: Task, data: DeviceData, epochs: float) -> int:
    """Optimizer steps of a run of ``epochs`` epochs of ``data``."""
    return epoch_steps(epochs, data.steps_per_epoch(task.batch_size))


def all_finite(model: torch.nn.Module) -> bool:
    """True when every weight and floating-point buffer of ``model`` is finite."""
    tensors = list(model.parameters()) + [b for b in model.buffers() if b.is_floating_point()]
    return all(bool(torch.isfinite(t).all()) for t in tensors)


@torch.no_grad()
def accuracy(model: torch.nn.Module, data: DeviceData, batch_size: int,
             split: str = VAL) -> float:
    """Accuracy of ``model`` on the data's ``split`` (val | test), one host sync."""
    model.eval()
    correct = torch.zeros((), dtype=torch.int64, device=data.device)
    for x, y in data.eval_batches(batch_size, split):
        correct += (model(x).argmax(dim=1) == y).sum()
    model.train()
    n = data.n_val if split == VAL else data.n_test
    if n < 1:
        raise ValueError(f"the data has no {split} images (a task with n_test > 0 loads "
                         "a test split)")
    return int(correct) / n


def fit(model: torch.nn.Module, rule: Rule | str | None, lr: float, data, *,
        total_steps: int, batch_size: int, seed: int, check_every: int = 1,
        settings=None, make_optimizer=None, loss=F.cross_entropy) -> tuple[int, str]:
    """Train ``model`` in place with ``rule`` at ``lr`` for ``total_steps`` steps.

    The one training loop (scoring, and every held-out task of the transfer check):
    ``loss`` (mean cross-entropy by default), batches from ``data.epoch`` in a seeded
    order, the optimizer's own randomness (ε, drop) drawn from torch's RNG forked and
    seeded with ``seed``.  The optimizer is a :class:`RuleOptimizer` of ``rule``, or
    ``make_optimizer(params, lr, total_steps)`` when given (e.g. torch's Adam as a
    baseline; ``rule`` is then unused).  Stops at once when the loss (checked every
    ``check_every`` steps) or the weights turn non-finite.  Returns (steps taken,
    reason it diverged or "").
    """
    device = data.device
    if make_optimizer is not None:
        opt = make_optimizer(model.parameters(), lr, total_steps)
    else:
        opt = RuleOptimizer(model.parameters(), rule, lr=lr, total_steps=total_steps,
                            settings=settings)
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


def train_run(rule: Rule | str, lr: float, data: DeviceData, task: Task, *, seed: int,
              epochs: float, settings=None, test: bool = False) -> RunResult:
    """Train a fresh network (``task.model``) with ``rule`` at ``lr`` for ``epochs``;
    validation accuracy, and with ``test`` the accuracy on the data's test sample."""
    start = time.perf_counter()
    model = new_model(task, data, seed)
    steps, reason = fit(model, rule, lr, data, total_steps=run_steps(task, data, epochs),
                        batch_size=task.batch_size, seed=seed,
                        check_every=task.check_every, settings=settings)
    val = 0.0 if reason else accuracy(model, data, task.eval_batch_size)
    tested = None
    if test:
        tested = 0.0 if reason else accuracy(model, data, task.eval_batch_size, TEST)
    return RunResult(lr=lr, accuracy=val, diverged=bool(reason), steps=steps,
                     seconds=time.perf_counter() - start, reason=reason,
                     test_accuracy=tested)


def protocol_steps(task: Task, steps_per_epoch: int) -> int:
    """Optimizer steps of one candidate's whole protocol (sweep and final run) when no
    run diverges: the compute a full candidate is charged."""
    return (len(task.lrs) * epoch_steps(task.sweep_epochs, steps_per_epoch)
            + epoch_steps(task.final_epochs, steps_per_epoch))


def score_rule(rule: Rule | str, data: DeviceData, task: Task, *, seed: int,
               settings=None, hurdle: float | None = None) -> Evaluation:
    """The paper's protocol for one rule: lr sweep, final run at the best lr."""
    return run_protocol(rule, data, task, seed=seed, settings=settings, hurdle=hurdle)[0]


def run_protocol(rule: Rule | str, data: DeviceData, task: Task, *, seed: int,
                 settings=None, hurdle: float | None = None
                 ) -> tuple[Evaluation, RunResult | None]:
    """:func:`score_rule`'s Evaluation and its final run (None when every lr of the
    sweep diverged, or the sweep fell below the hurdle); with ``task.n_test > 0`` the
    final run is scored on the test sample too (``RunResult.test_accuracy``).

    ``hurdle``: when the sweep's best validation accuracy is below it, the final run is
    skipped and the Evaluation is ``hurdled`` with that sweep score as its fitness
    (AutoML-Zero's hurdles: a weak candidate costs only its sweep)."""
    rule = resolve(rule)
    start = time.perf_counter()
    with torch_threads(task.threads):
        sweep = [train_run(rule, lr, data, task, seed=seed, epochs=task.sweep_epochs,
                           settings=settings) for lr in task.lrs]
        early, best = sweep_verdict(rule, sweep, hurdle, time.perf_counter() - start)
        if early is not None:
            return early, None
        final = train_run(rule, best.lr, data, task, seed=seed, epochs=task.final_epochs,
                          settings=settings, test=task.n_test > 0)
    return final_evaluation(rule, sweep, final, time.perf_counter() - start), final


def sweep_verdict(rule: Rule, sweep: list[RunResult], hurdle: float | None,
                  seconds: float) -> tuple[Evaluation | None, RunResult | None]:
    """What the sweep decides: ``(Evaluation, None)`` when no final run follows (every
    learning rate diverged, or the best sweep score is below ``hurdle``), else
    ``(None, best sweep run)`` (ties go to the smaller learning rate)."""
    steps = sum(r.steps for r in sweep)
    lr_scores = {r.lr: r.accuracy for r in sweep}
    usable = [r for r in sweep if not r.diverged]
    if not usable:
        return Evaluation(rule=rule.canonical, fitness=0.0, status=DIVERGED,
                          lr_scores=lr_scores, steps=steps, trainings=1, seconds=seconds,
                          reason="every learning rate diverged: " + sweep[-1].reason), None
    best = max(usable, key=lambda r: r.accuracy)  # max keeps the first (smallest lr) tie
    if hurdle is not None and best.accuracy < hurdle:
        return Evaluation(rule=rule.canonical, fitness=best.accuracy, status=HURDLED,
                          best_lr=best.lr, lr_scores=lr_scores, steps=steps, trainings=1,
                          seconds=seconds, reason=f"best sweep score {best.accuracy:.4f} "
                                                  f"below the hurdle {hurdle:.4f}"), None
    return None, best


def final_evaluation(rule: Rule, sweep: list[RunResult], final: RunResult,
                     seconds: float) -> Evaluation:
    """The Evaluation of a protocol whose final run (at ``final.lr``) has finished."""
    return Evaluation(rule=rule.canonical, fitness=final.accuracy,
                      status=DIVERGED if final.diverged else OK, best_lr=final.lr,
                      lr_scores={r.lr: r.accuracy for r in sweep},
                      steps=sum(r.steps for r in sweep) + final.steps, trainings=1,
                      seconds=seconds, reason=final.reason)
