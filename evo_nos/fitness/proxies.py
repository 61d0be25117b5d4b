"""A proxy of more than one task: the child ConvNet plus cheap tasks of other families.

A :class:`~evo_nos.fitness.tasks.Task` whose ``proxies`` names tasks of :data:`PROXY_TASKS`
is scored on each of them too, by the one protocol (:mod:`evo_nos.fitness.protocol`), on
the candidate's seed and under the task's own schedule, and its fitness is the
**normalized aggregate**: each task's fitness divided by tuned Adam's on that task, then
the mean over the tasks (1.0: as good as Adam on average).  Dividing by Adam puts tasks
whose accuracies live on different scales on one, so no task dominates the mean by its
spread alone, and it reads as "better or worse than the optimizer people start from".

Adam's reference is measured once per process and task (the protocol on
:data:`REFERENCE_SEEDS`, mean fitness), the same for every candidate and every strategy;
it is not charged to the budget, since it is a fixed cost of the preset and not a
choice of the search.  A candidate is charged every task's compute: one full candidate
on all tasks is one child training (:func:`proxy_steps` adds the proxies' steps).

Statuses: a candidate that diverged or fell at the hurdle on the image task is not
trained on the proxies (its fitness: 0, or its normalized sweep score when hurdled);
a proxy on which it diverged contributes 0.

Proxy tasks are disjoint from the held-out reporting suite (:mod:`evo_nos.fitness.heldout`:
a ResNet on images, an LSTM counting votes, an MLP on a teacher's table), in model family
and data: ``pointer`` is a one-block transformer (:class:`~evo_nos.fitness.models.TinyAttention`)
reading the class of the token a pointer at position 0 names.
"""
from __future__ import annotations

import dataclasses

import torch

from evo_nos.core.known import resolve
from evo_nos.fitness.data import TensorData
from evo_nos.fitness.evaluation import OK, HURDLED, Evaluation
from evo_nos.fitness.heldout import HeldOutTask, split3
from evo_nos.fitness.models import TinyAttention, seeded
from evo_nos.fitness.protocol import Candidate, TaskSetup, lone_trainer, protocol_steps, score
from evo_nos.fitness.baselines import is_baseline
from evo_nos.fitness.train import optimizer_factory

REFERENCE = "adam"                  # the rule every task's fitness is divided by
REFERENCE_SEEDS = (0, 1)            # the seeds of its reference scores
DATA_SEED = 11                      # the proxies' data (any fixed number)

POINTER = dict(n_train=2000, n_val=1000, length=20, n_classes=8, dim=32, heads=2,
               lrs=(1e-4, 1e-3, 1e-2, 1e-1), sweep_epochs=2, final_epochs=4, batch_size=50)


def pointer_sequences(n: int, *, length: int = 20, n_classes: int = 8,
                      seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` token sequences [n, length] and labels [n], from ``seed`` alone: positions
    1.. hold content tokens ``0 .. n_classes-1``; position 0 holds a pointer token
    ``n_classes + p`` (p in 1 .. length-1); the label is the content at position p."""
    gen = torch.Generator().manual_seed(40_011 + seed)
    x = torch.randint(0, n_classes, (n, length), generator=gen)
    pointer = torch.randint(1, length, (n,), generator=gen)
    y = x[torch.arange(n), pointer].clone()
    x[:, 0] = n_classes + pointer
    return x.contiguous(), y


def pointer_task() -> HeldOutTask:
    """The attention proxy: :func:`pointer_sequences` read by a one-block transformer."""
    c = POINTER

    def build(seed: int, device) -> TaskSetup:
        x, y = pointer_sequences(c["n_train"] + c["n_val"], length=c["length"],
                                 n_classes=c["n_classes"], seed=seed)
        train, val, _ = split3(x, y, c["n_train"], c["n_val"])
        data = TensorData(train, val, (x[:0], y[:0]), device)
        return TaskSetup(data, model=lambda s: seeded(s, lambda: TinyAttention(
            c["n_classes"] + c["length"], c["n_classes"], c["length"], c["dim"],
            c["heads"]), device))

    return HeldOutTask(
        "pointer", "attention", build, lrs=c["lrs"], sweep_epochs=c["sweep_epochs"],
        final_epochs=c["final_epochs"], batch_size=c["batch_size"], seeds=REFERENCE_SEEDS,
        data_seed=DATA_SEED, threads=1,
        description=(f"one-block transformer (dim {c['dim']}, {c['heads']} heads) names the "
                     f"class of the token a pointer selects among {c['length']} "
                     f"({c['n_classes']} classes); {c['n_train']} train, {c['n_val']} "
                     "validation"))


PROXY_TASKS = {"pointer": pointer_task}


def proxy_tasks(task) -> list[HeldOutTask]:
    """The task's proxies, each on the task's own schedule."""
    unknown = [name for name in task.proxies if name not in PROXY_TASKS]
    if unknown:
        raise ValueError(f"unknown proxy task(s) {unknown}; proxy tasks: {list(PROXY_TASKS)}")
    return [PROXY_TASKS[name]().replace(schedule=task.schedule, warmup=task.warmup)
            for name in task.proxies]


_SETUPS: dict = {}            # (proxy, schedule, device) -> (HeldOutTask, TaskSetup)
_REFERENCES: dict = {}        # (task key, device, settings) -> Adam's mean fitness


def _setups(task, device: str) -> list[tuple[HeldOutTask, TaskSetup]]:
    out = []
    for proxy in proxy_tasks(task):
        key = (proxy.name, proxy.schedule, proxy.warmup, device)
        if key not in _SETUPS:
            _SETUPS[key] = (proxy, proxy.build(proxy.data_seed, torch.device(device)))
        out.append(_SETUPS[key])
    return out


def proxy_steps(task) -> int:
    """Optimizer steps of one candidate's protocol on all the task's proxies."""
    return sum(protocol_steps(proxy, setup.data.steps_per_epoch(proxy.batch_size))
               for proxy, setup in _setups(task, "cpu"))


def optimizer_of(key: str):
    """A job's optimizer: a baseline's name as it is, else the rule."""
    return key if is_baseline(key) else resolve(key)


def _score_on(proxy: HeldOutTask, setup: TaskSetup, optimizers, seeds, settings) -> list:
    train = lone_trainer(proxy, setup,
                         lambda child: optimizer_factory(child.optimizer, settings))
    return score([Candidate(opt, opt if is_baseline(opt) else opt.canonical, seeds_of)
                  for opt, seeds_of in zip(optimizers, seeds)], proxy, train)


def references(task, device: str, settings, score_main) -> list[float]:
    """Adam's mean fitness on the image task (``score_main(jobs)``: the worker's scoring
    of ``(rule, seed)`` jobs) and on each proxy, on :data:`REFERENCE_SEEDS`; measured once
    per process."""
    key = (repr(sorted(task.described().items())), device, settings)
    if key not in _REFERENCES:
        adam = resolve(REFERENCE)
        main = score_main([(adam.canonical, s) for s in REFERENCE_SEEDS])
        values = [sum(e.fitness for e in main) / len(main)]
        for proxy, setup in _setups(task, device):
            [result] = _score_on(proxy, setup, [adam], [REFERENCE_SEEDS], settings)
            values.append(result.fitness)
        _REFERENCES[key] = values
    return _REFERENCES[key]


def with_proxies(evaluations: list[Evaluation], jobs: list, task, device: str, settings,
                 score_main) -> list[Evaluation]:
    """The image task's Evaluations of ``jobs`` made multi-task (module docstring)."""
    refs = references(task, device, settings, score_main)
    going = [i for i, e in enumerate(evaluations) if e.status == OK]
    per_proxy = [_score_on(proxy, setup, [optimizer_of(jobs[i][0]) for i in going],
                           [(int(jobs[i][1]),) for i in going], settings)
                 for proxy, setup in _setups(task, device)]
    names = [task.name] + list(task.proxies)
    out = []
    for i, evaluation in enumerate(evaluations):
        if evaluation.status == HURDLED:
            out.append(dataclasses.replace(evaluation, fitness=evaluation.fitness / refs[0]))
            continue
        if i not in going:
            out.append(evaluation)
            continue
        k = going.index(i)
        scores = [per_proxy[p][k] for p in range(len(per_proxy))]
        raw = [evaluation.fitness] + [s.fitness if s.status == OK else 0.0 for s in scores]
        out.append(dataclasses.replace(
            evaluation, fitness=sum(r / ref for r, ref in zip(raw, refs)) / len(raw),
            steps=evaluation.steps + sum(s.steps for s in scores),
            seconds=evaluation.seconds + sum(s.seconds for s in scores),
            task_fitness=dict(zip(names, raw))))
    return out
