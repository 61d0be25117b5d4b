"""Program selection (Lion's): crown a search's winner on tasks it never saw, but not on
the tasks its results are reported on.

:func:`select` takes the top ``k`` rules of a search's hall of fame through the
*selection suite* (:func:`selection_suite`) by the one protocol, every task on the
search's schedule, ranks them on each task by the mean *validation* score over the task's
seeds
(1 = best; ties share the mean rank), and crowns the one with the best mean rank (ties: the
better search fitness).  The table it returns holds both scores, the search's fitness
(± SE) and the selection's, per rule.

The selection suite is disjoint from the reporting suite (the transfer check's
``python -m evo_nos.transfer``, :mod:`evo_nos.experiments.transfer`): the same kinds of
model, on other data -- other images of the training split (``data_seed``
:data:`SELECTION_IMAGE_SEED`; the reporting suite's is 1) and other generated sequences
and tables (``data_seed`` :data:`SELECTION_DATA_SEED`; the reporting suite's is 7) -- so
the choice never reads a score that is reported.  It reads validation scores, which come
from the training split; the reported scores are on the test split (the image tasks'
test samples of seeds 1 and 2 may share images, their training-split subsets too: they
are drawn independently, not partitioned).
"""
from __future__ import annotations

import pandas as pd
import torch

from evo_nos.core.known import resolve
from evo_nos.fitness.heldout import BUILTIN, builtin_task, score_optimizer
from evo_nos.fitness.tasks import load_task
from evo_nos.fitness.workers import resolve_device

SELECTION_IMAGE_SEED = 2       # the image task's subset (reporting: 1, searches: 0)
SELECTION_DATA_SEED = 8        # the generated tasks' data (reporting: 7)
SELECTION_COLUMNS = ("selection_rank", "rule", "fitness", "fitness_se", "mean_rank")


def selection_suite(size: str = "quick", *, data: str | None = None,
                    schedule: str = "constant", warmup: int = 0) -> list:
    """The built-in task kinds at ``size`` on data no reporting task uses."""
    images = load_task(size, group="transfer", data=data, data_seed=SELECTION_IMAGE_SEED)
    suite = []
    for name in BUILTIN:
        task = builtin_task(name, size, images=images)
        if name != "images":
            task = task.replace(data_seed=SELECTION_DATA_SEED)
        suite.append(task.replace(name=f"select-{name}", schedule=schedule, warmup=warmup))
    return suite


def select(hall_of_fame: pd.DataFrame, tasks: list, *, top: int = 3, device: str = "auto",
           echo=print) -> pd.DataFrame:
    """The top ``top`` rules of ``hall_of_fame`` (a :meth:`HallOfFame.frame`: rank,
    rule, fitness, fitness_se ...) through ``tasks``; one row per rule, the crowned one
    first (``selection_rank`` 1), with each task's validation score and the mean rank."""
    if top < 1:
        raise ValueError(f"top must be >= 1, got {top}")
    chosen = hall_of_fame.sort_values("rank").head(top)
    rules = [resolve(r).canonical for r in chosen["rule"]]
    if not rules:
        raise ValueError("the hall of fame is empty: nothing to select from")
    scores = {}
    device = torch.device(resolve_device(device))
    for task in tasks:
        setup = task.build(task.data_seed, device)
        for i, rule in enumerate(rules, 1):
            echo(f"[select {task.name} {i}/{len(rules)}] {rule}")
            result = score_optimizer(task, setup, rule)
            scores[rule, task.name] = sum(result.val) / len(result.val)
    frame = pd.DataFrame({"rule": rules, "fitness": list(chosen["fitness"]),
                          "fitness_se": list(chosen.get("fitness_se",
                                                        [None] * len(rules)))})
    for task in tasks:
        frame[task.name] = [scores[rule, task.name] for rule in rules]
    names = [t.name for t in tasks]
    frame["mean_rank"] = frame[names].rank(ascending=False, method="average").mean(axis=1)
    frame = frame.sort_values(["mean_rank", "fitness"], ascending=[True, False],
                              kind="stable").reset_index(drop=True)
    frame.insert(0, "selection_rank", range(1, len(frame) + 1))
    return frame[list(SELECTION_COLUMNS[:4]) + names + ["mean_rank"]]
