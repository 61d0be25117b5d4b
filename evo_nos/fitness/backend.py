"""FitnessBackend: rules in, Evaluations out. Screen, cache, train in parallel.

The one backend every search strategy shares; it knows nothing about who asked::

    backend = FitnessBackend(load_task("cpu", data="imagefolder:/data/cifar10"), n_jobs=2)
    evaluations = backend.evaluate([Rule.parse("mul(exp(mul(sign_g, sign_m)), g)"), ...])

For each batch, in the calling process and in milliseconds per rule:

1. **screen** (:mod:`evo_nos.fitness.screen`): non-finite, all-zero or
   gradient-independent rules come back ``invalid`` (fitness 0, ``trainings=0``);
2. **cache**: a valid rule whose functional fingerprint was scored before comes back
   ``cached`` with the stored scores (``trainings=0``); so does the second of two rules
   with the same fingerprint in one batch (trained once);
3. the rest are **trained** (:func:`evo_nos.fitness.train.score_rule`), each charged
   ``trainings=1``, through ``joblib.Parallel(n_jobs=n_jobs)``.

Parallelism: the joblib backend is the caller's choice, e.g.::

    with joblib.parallel_config(backend="loky"):            # processes on this machine
        backend.evaluate(rules)
    with joblib.parallel_config(backend="dask"):            # a dask.distributed Client
        backend.evaluate(rules)                             # must exist in this process
    # ray: ray.util.joblib.register_ray(), then backend="ray"

Workers receive only plain data (rule strings, seeds, the :class:`Task` dataclass and a
device string), load the data once per worker process (:func:`worker_data`, a cache
keyed by the data settings and device, loaded by :func:`evo_nos.fitness.train.task_data`)
and return plain Evaluation dicts.  Only the calling process touches the fitness cache
and ``stats``.  A task is described (:meth:`FitnessBackend.describe`, checkpoints) by
:meth:`Task.described`, which leaves out the transfer check's fields at their defaults,
so child tasks keep the description (and fitness key) they had before those fields.

Reproducibility: each candidate's seed is derived from the backend seed and the
rule's *fingerprint* (sha256, not Python's salted ``hash``), so a rule scores the same
whichever batch it comes in, whichever behaviourally identical spelling is trained, and
whether it runs serially or in parallel.  Trainings on the CPU run with ``task.threads``
intra-op threads (1 by default) in every process: torch's CPU convolutions reduce in
an order that depends on the thread count, so a fixed count is what makes loky or dask
workers reproduce serial results bit for bit.  Use ``n_jobs`` for CPU parallelism.

CUDA: one worker per GPU.  In-process (``n_jobs=1``) the backend trains on ``device``
(``"auto"``: ``cuda`` when available).  For several GPUs, run one joblib worker per GPU
with ``CUDA_VISIBLE_DEVICES`` set per worker (dask-cuda's ``LocalCUDACluster`` does
that, or dask workers started with ``--resources GPU=1``); each worker then trains on
its own ``cuda`` device.  Never send CUDA tensors to workers: they get strings.
"""
from __future__ import annotations

import copy
import hashlib
import time
from dataclasses import dataclass

import joblib
import torch

from evo_nos.fitness.data import DeviceData
from evo_nos.fitness.evaluation import CACHED, DIVERGED, INVALID, Evaluation
from evo_nos.fitness.screen import ScreenResult, screen
from evo_nos.fitness.tasks import Task, load_task
from evo_nos.fitness.train import score_rule, task_data
from evo_nos.core.known import resolve
from evo_nos.core.rules import Rule

STATE_VERSION = 1
_DATA_KEYS = ("data", "n_train", "n_val", "n_test", "image_size", "n_classes", "data_seed",
              "translate", "flip", "channels_last")
# Task fields that do not change a score (a cache from a task differing only in these
# is still valid).
_NEUTRAL_KEYS = ("name", "threads", "eval_batch_size")


def resolve_device(device: str = "auto") -> str:
    """``"auto"`` -> ``"cuda"`` when a GPU is visible, else ``"cpu"``."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r} asked for, but torch sees no CUDA GPU; "
                           "use --device cpu (or auto)")
    if device != "cpu" and not device.startswith("cuda"):
        raise ValueError(f"device must be auto, cpu or cuda[:N], got {device!r}")
    return device


def candidate_seed(backend_seed: int, fingerprint: str) -> int:
    """The training seed of a candidate: from the backend seed and its fingerprint."""
    digest = hashlib.sha256(f"{backend_seed}|{fingerprint}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


# ---------------------------------------------------------------------------------------
# worker side: plain data in, plain data out
# ---------------------------------------------------------------------------------------
_WORKER_DATA: dict[tuple, DeviceData] = {}


def worker_data(task: Task, device: str) -> DeviceData:
    """The task's data on ``device``, loaded once per process (keyed by data settings)."""
    key = tuple(getattr(task, k) for k in _DATA_KEYS) + (device,)
    data = _WORKER_DATA.get(key)
    if data is None:
        data = task_data(task, device)
        _WORKER_DATA.clear()  # one dataset per process is enough; free the old one
        _WORKER_DATA[key] = data
    return data


def clear_worker_data() -> None:
    """Forget the loaded data of this process (tests, memory)."""
    _WORKER_DATA.clear()


def train_candidate(rule: str, seed: int, task: Task, device: str) -> dict:
    """Score one rule (runs in a joblib worker or in-process); returns Evaluation.to_dict().

    A failure inside training (a rule doing something torch refuses) does not take the
    search down: it comes back ``diverged`` with the error as the reason.  Data errors
    (:class:`~evo_nos.fitness.data.DataError`) do raise: no candidate can be scored.
    """
    device = resolve_device(device)
    data = worker_data(task, device)  # a missing dataset is the user's to fix: let it raise
    start = time.perf_counter()
    try:
        evaluation = score_rule(rule, data, task, seed=seed)
    except (RuntimeError, ValueError, ArithmeticError) as err:
        evaluation = Evaluation(rule=rule, fitness=0.0, status=DIVERGED, trainings=1,
                                seconds=time.perf_counter() - start,
                                reason=f"training failed: {type(err).__name__}: {err}")
    return evaluation.to_dict()


# ---------------------------------------------------------------------------------------
# the backend
# ---------------------------------------------------------------------------------------
@dataclass
class _Pending:
    index: int
    rule: Rule
    screen: ScreenResult


class FitnessBackend:
    """Scores rules by the task's child-training protocol; see the module docstring.

    Args:
        task: a :class:`Task`, or a preset name / TOML path for :func:`load_task`.
        seed: the backend seed; every candidate's training seed derives from it.
        n_jobs: joblib's ``n_jobs`` for the trainings of a batch (1: in-process,
            serial; -1: all workers of the active joblib backend).
        device: ``auto``, ``cpu`` or ``cuda[:N]`` (resolved in each worker).
    """

    def __init__(self, task: Task | str, *, seed: int = 0, n_jobs: int | None = 1,
                 device: str = "auto"):
        self.task = load_task(task) if isinstance(task, str) else task
        if not isinstance(self.task, Task):
            raise TypeError(f"task must be a Task or a preset name, got {type(task).__name__}")
        self.seed = int(seed)
        self.n_jobs = n_jobs
        self.device = device if device == "auto" else resolve_device(device)
        self.cache: dict[str, Evaluation] = {}
        self._screens: dict[str, ScreenResult] = {}
        self.stats = {"evaluated": 0, "trainings": 0, "cache_hits": 0, "invalid": 0,
                      "diverged": 0, "train_seconds": 0.0}

    # -- scoring ------------------------------------------------------------------------
    def screen(self, rule: Rule | str) -> ScreenResult:
        """Screen result of a rule (memoised by canonical string)."""
        rule = resolve(rule)
        result = self._screens.get(rule.canonical)
        if result is None:
            t = self.task
            result = screen(rule, steps=t.probe_steps, dim=t.probe_dim,
                            digits=t.fingerprint_digits)
            self._screens[rule.canonical] = result
        return result

    def evaluate(self, rules: list[Rule | str]) -> list[Evaluation]:
        """Evaluations of ``rules``, in order (see the module docstring)."""
        rules = [resolve(r) for r in rules]
        out: list[Evaluation | None] = [None] * len(rules)
        to_train: dict[str, _Pending] = {}       # fingerprint -> first rule with it
        duplicates: list[_Pending] = []          # same fingerprint as one in to_train
        for i, rule in enumerate(rules):
            result = self.screen(rule)
            if not result.valid:
                out[i] = Evaluation(rule=rule.canonical, fitness=0.0, status=INVALID,
                                    fingerprint=result.fingerprint, reason=result.reason)
            elif result.fingerprint in self.cache:
                out[i] = self._cached(rule, self.cache[result.fingerprint])
            elif result.fingerprint in to_train:
                duplicates.append(_Pending(i, rule, result))
            else:
                to_train[result.fingerprint] = _Pending(i, rule, result)

        for pending, evaluation in zip(to_train.values(), self._train(list(to_train.values()))):
            evaluation.fingerprint = pending.screen.fingerprint
            self.cache[evaluation.fingerprint] = evaluation
            out[pending.index] = evaluation
        for dup in duplicates:
            out[dup.index] = self._cached(dup.rule, self.cache[dup.screen.fingerprint])

        for evaluation in out:
            self._count(evaluation)
        return out

    def _train(self, pending: list[_Pending]) -> list[Evaluation]:
        if not pending:
            return []
        jobs = [joblib.delayed(train_candidate)(
            p.rule.canonical, candidate_seed(self.seed, p.screen.fingerprint), self.task,
            self.device) for p in pending]
        results = joblib.Parallel(n_jobs=self.n_jobs)(jobs)
        return [Evaluation.from_dict(r) for r in results]

    @staticmethod
    def _cached(rule: Rule, hit: Evaluation) -> Evaluation:
        return Evaluation(rule=rule.canonical, fitness=hit.fitness, status=CACHED,
                          best_lr=hit.best_lr, lr_scores=dict(hit.lr_scores), steps=0,
                          seconds=0.0, trainings=0, fingerprint=hit.fingerprint,
                          reason=f"behaves like {hit.rule} (status {hit.status})")

    def _count(self, evaluation: Evaluation) -> None:
        s = self.stats
        s["evaluated"] += 1
        s["trainings"] += evaluation.trainings
        s["cache_hits"] += evaluation.status == CACHED
        s["invalid"] += evaluation.status == INVALID
        s["diverged"] += evaluation.status == DIVERGED
        s["train_seconds"] += evaluation.seconds if evaluation.trainings else 0.0

    # -- checkpoints ------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """The fitness cache and counters as plain picklable data (for checkpoints)."""
        return {"version": STATE_VERSION, "seed": self.seed, "task": self.task.described(),
                "cache": {fp: ev.to_dict() for fp, ev in self.cache.items()},
                "stats": dict(self.stats)}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`; refuses a cache scored under another protocol."""
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"fitness state version {state.get('version')!r} is not "
                             f"{STATE_VERSION}: it was written by another evo_nos version")
        mine, theirs = self.task.described(), state["task"]
        differ = sorted(k for k in set(mine) | set(theirs)
                        if k not in _NEUTRAL_KEYS and mine.get(k) != theirs.get(k))
        if differ or state["seed"] != self.seed:
            what = differ + (["seed"] if state["seed"] != self.seed else [])
            raise ValueError(f"this fitness cache was scored with other settings ({what}); "
                             "resume with the same preset, data and seed")
        self.cache = {fp: Evaluation.from_dict(ev) for fp, ev in state["cache"].items()}
        self.stats = copy.deepcopy(state["stats"])

    # -- description --------------------------------------------------------------------
    def describe(self) -> dict:
        """Flat ``str -> scalar`` settings, for MLflow params (the task's
        :meth:`~evo_nos.fitness.tasks.Task.described` fields as ``task.<key>``)."""
        out: dict = {"fitness": "child-training", "fitness_seed": self.seed,
                     "device": self.device, "n_jobs": self.n_jobs if self.n_jobs else "config"}
        for key, value in self.task.described().items():
            if isinstance(value, (list, tuple)):
                value = ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value)
            out[f"task.{key}"] = value
        return out

    def __repr__(self) -> str:
        return (f"FitnessBackend(task={self.task.name!r}, seed={self.seed}, "
                f"n_jobs={self.n_jobs}, device={self.device!r}, cached={len(self.cache)})")


__all__ = ["FitnessBackend", "candidate_seed", "train_candidate", "worker_data",
           "clear_worker_data", "resolve_device", "load_task", "Task"]
