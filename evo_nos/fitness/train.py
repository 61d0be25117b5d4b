"""The child task: a :class:`~evo_nos.fitness.tasks.Task` made concrete, scored by the one
protocol (:mod:`evo_nos.fitness.protocol`) one training at a time.

:func:`task_data` loads a task's images onto the device; :func:`child_setup` is the
task's :class:`~evo_nos.fitness.protocol.TaskSetup` (its network, ``task.model``: the child
ConvNet or the transfer check's ResNet; cross-entropy; accuracy); :func:`train_run`
trains one fresh network with one (rule, lr) and scores it; :func:`score_rule` is the
protocol for one rule on one seed, its Evaluation the search's fitness:

1. the sweep: ``sweep_epochs`` at every learning rate of the grid;
2. the final run: ``final_epochs`` from scratch at the sweep's best learning rate
   (ties go to the smaller learning rate); fitness = its validation accuracy.

Divergence: a run whose loss turns non-finite stops at once (checked every
``check_every`` steps) and scores 0.  Status of the Evaluation: ``ok`` -- at least one
sweep learning rate trained and the final run finished; ``diverged`` -- every sweep
learning rate diverged (no final run), or the final run diverged; ``hurdled`` -- the
sweep's best fell below the hurdle (no final run).

The optimizer is :class:`evo_nos.optim.RuleOptimizer` (``foreach=False``: the per-tensor
path, which the packed trainer's exactness rests on); ``total_steps`` is the length of
each run (decay operands need it).  The packed trainer
(:func:`evo_nos.fitness.packed.score_rules`) gives the very same Evaluations.
"""
from __future__ import annotations

import torch

from evo_nos.core.known import resolve
from evo_nos.core.rules import Rule
from evo_nos.core.threads import torch_threads
from evo_nos.fitness.baselines import baseline_factory, is_baseline
from evo_nos.fitness.data import DeviceData, load_images
from evo_nos.fitness.evaluation import Evaluation
from evo_nos.fitness.models import make_child, make_resnet
from evo_nos.fitness.protocol import (Candidate, Child, Run, TaskSetup, epoch_steps,
                                      lone_trainer, score)
from evo_nos.fitness.tasks import Task
from evo_nos.optim.optimizer import RuleOptimizer


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


def child_setup(task: Task, data: DeviceData) -> TaskSetup:
    """The task on ``data``: its network, cross-entropy, accuracy."""
    return TaskSetup(data, model=lambda seed: new_model(task, data, seed))


def rule_factory(rule: Rule, settings=None):
    """``(params, lr, total_steps) -> RuleOptimizer`` on the per-tensor path."""
    return lambda params, lr, total_steps: RuleOptimizer(
        params, rule, lr=lr, total_steps=total_steps, settings=settings, foreach=False)


def run_steps(task: Task, data: DeviceData, epochs: float) -> int:
    """Optimizer steps of a run of ``epochs`` epochs of ``data``."""
    return epoch_steps(epochs, data.steps_per_epoch(task.batch_size))


def optimizer_factory(optimizer, settings=None):
    """``(params, lr, total_steps) -> Optimizer`` of a Rule (on the per-tensor path, with
    ``settings``) or of a baseline's name (:mod:`evo_nos.fitness.baselines`)."""
    if is_baseline(optimizer):
        return baseline_factory(optimizer)
    return rule_factory(optimizer, settings)


def rule_trainer(task: Task, data: DeviceData, settings=None):
    """The lone trainer of the task's optimizers: children whose optimizer is a Rule or a
    baseline's name."""
    return lone_trainer(task, child_setup(task, data),
                        lambda child: optimizer_factory(child.optimizer, settings))


def train_run(rule: Rule | str, lr: float, data: DeviceData, task: Task, *, seed: int,
              epochs: float, settings=None, test: bool = False) -> Run:
    """Train a fresh network (``task.model``) with ``rule`` at ``lr`` for ``epochs``;
    validation accuracy, and with ``test`` the accuracy on the data's test sample."""
    [run] = rule_trainer(task, data, settings)([Child(resolve(rule), lr, seed)], epochs, test)
    return run


def score_rule(rule: Rule | str, data: DeviceData, task: Task, *, seed: int,
               settings=None, hurdle: float | None = None) -> Evaluation:
    """The protocol for one rule on one seed, trained alone: the search's fitness."""
    rule = resolve(rule)
    with torch_threads(task.threads):
        [result] = score([Candidate(rule, rule.canonical, (seed,))], task,
                         rule_trainer(task, data, settings), test=task.n_test > 0,
                         hurdle=hurdle)
    return result.evaluation()


def score_baseline(name: str, data: DeviceData, task: Task, *, seed: int) -> Evaluation:
    """The protocol for a baseline (:data:`~evo_nos.fitness.baselines.BASELINES`) on one
    seed, exactly as a rule is scored: its Evaluation names the baseline as its rule."""
    baseline_factory(name)                       # an unknown name fails here
    with torch_threads(task.threads):
        [result] = score([Candidate(name, name, (seed,))], task, rule_trainer(task, data),
                         test=task.n_test > 0)
    return result.evaluation()
