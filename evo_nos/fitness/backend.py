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
3. the rest are **trained**, each charged ``trainings=1`` and the optimizer ``steps`` it
   ran, on ``n_jobs`` joblib workers (:func:`evo_nos.fitness.workers.run_jobs`: one
   contiguous chunk per worker, a lost worker's chunks submitted again): each worker
   trains its chunk packed (:func:`train_candidates`), which gives the same Evaluations
   as training each rule alone (:func:`~evo_nos.fitness.train.score_rule`).  A chunk
   lost on every attempt gives its candidates ``lost`` Evaluations (fitness 0, free:
   no trainings, no steps; never cached, so the rule is trained again if it comes back).

Compute.  A candidate is charged the optimizer steps it actually ran; a full protocol
with no divergence costs :attr:`FitnessBackend.steps_per_training`, so a search's budget
(in child trainings) is ``budget * steps_per_training`` steps, and a candidate that
stopped early (diverged, hurdled) costs only what it used.

Hurdle (optional, AutoML-Zero's hurdles).  With ``hurdle=q``, once ``hurdle_warmup``
sweeps have been seen, a candidate whose best sweep score falls below the ``q``-quantile
of all best sweep scores seen before its batch skips its final run: it comes back
``hurdled``, with that sweep score as its fitness, charged the sweep's steps.

Seeds.  Each candidate's seed derives from the backend seed and the rule's fingerprint
(:func:`candidate_seed`: sha256, not Python's salted ``hash``), so a rule scores the
same whichever batch it comes in, whichever behaviourally identical spelling is trained,
and whether it runs serially or in parallel.  :meth:`FitnessBackend.rescore` trains a
scored rule's whole protocol again on further seeds (replicates ``1, 2, ...``) and keeps
the mean: the cached Evaluation then carries ``seeds``, ``fitness_se`` (the standard
error over seeds) and ``seed_fitness``, and every later cache hit returns the mean; a
re-scoring seed whose worker was lost is not kept.

Only the calling process touches the fitness cache and ``stats``.  A task is described
(:meth:`FitnessBackend.describe`, checkpoints) by :meth:`Task.described`; a checkpoint
loads into a backend whose task differs from its own only in the fields that do not
change a score (:data:`~evo_nos.fitness.tasks.NEUTRAL_KEYS`).  Which joblib backend to
choose (loky, dask, ray), GPUs, and what each does when a worker dies: docs/usage.md,
"Scaling out with Dask or Ray" and "What survives what".
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import itertools
import math
import statistics
import time
from dataclasses import dataclass

import numpy as np

from evo_nos.fitness.evaluation import (CACHED, DIVERGED, HURDLED, INVALID, LOST, OK,
                                        Evaluation)
from evo_nos.fitness.screen import ScreenResult, screen
from evo_nos.fitness.tasks import NEUTRAL_KEYS, Task, load_task
from evo_nos.fitness.packed import TRAINING_ERRORS, score_rules
from evo_nos.fitness.protocol import protocol_steps
from evo_nos.fitness.proxies import proxy_steps, with_proxies
from evo_nos.fitness.train import score_baseline, score_rule, task_data
from evo_nos.fitness.workers import resolve_device, run_jobs, worker_data
from evo_nos.core.known import resolve
from evo_nos.core.primitives import RuleSettings
from evo_nos.core.rules import Rule

STATE_VERSION = 1


def candidate_seed(backend_seed: int, fingerprint: str, replicate: int = 0) -> int:
    """The training seed of a candidate: from the backend seed and its fingerprint
    (``replicate`` k > 0: the seed of its k-th re-scoring)."""
    text = f"{backend_seed}|{fingerprint}" + (f"|{replicate}" if replicate else "")
    digest = hashlib.sha256(text.encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


# ---------------------------------------------------------------------------------------
# worker side: plain data in, plain data out
# ---------------------------------------------------------------------------------------
def train_candidates(jobs: list[tuple[str, int]], task: Task, device: str,
                     hurdle: float | None = None, settings: dict | None = None) -> list[dict]:
    """Score ``(rule, seed)`` jobs (in a joblib worker or in-process); returns their
    Evaluation.to_dict(), in order.

    Child-network tasks train packed (:func:`evo_nos.fitness.packed.score_rules`: the
    sweeps of all jobs in packs of ``task.pack`` children, then their final runs);
    other models (the transfer check's ResNet) one protocol at a time.  A failure inside
    training (a rule doing something torch refuses) does not take the search down: that
    training comes back diverged with the error as its reason.  Data errors
    (:class:`~evo_nos.fitness.data.DataError`) do raise: no candidate can be scored.
    """
    device = resolve_device(device)
    data = worker_data(task, device)  # a missing dataset is the user's to fix: let it raise
    settings = RuleSettings.from_dict(settings or {})
    if task.model == "child":
        evaluations = score_rules(jobs, data, task, hurdle=hurdle, settings=settings)
        if task.proxies:
            evaluations = with_proxies(evaluations, jobs, task, device, settings,
                                       lambda main: score_rules(main, data, task,
                                                                settings=settings))
        return [e.to_dict() for e in evaluations]
    out = []
    for rule, seed in jobs:
        start = time.perf_counter()
        try:
            evaluation = score_rule(rule, data, task, seed=seed, hurdle=hurdle,
                                    settings=settings)
        except TRAINING_ERRORS as err:
            evaluation = Evaluation(rule=rule, fitness=0.0, status=DIVERGED, trainings=1,
                                    seconds=time.perf_counter() - start,
                                    reason=f"training failed: {type(err).__name__}: {err}")
        out.append(evaluation.to_dict())
    return out


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
        hurdle: a quantile in (0, 1): skip the final run of candidates whose sweep falls
            below it (None: no hurdle, the paper's protocol).
        hurdle_warmup: best sweep scores to see before the hurdle applies.
        settings: the primitive set's settings (:class:`RuleSettings` or its dict; the
            changed ones are logged as ``rule.<key>`` and are part of the fitness key).
    """

    def __init__(self, task: Task | str, *, seed: int = 0, n_jobs: int | None = 1,
                 device: str = "auto", hurdle: float | None = None,
                 hurdle_warmup: int = 10, settings: RuleSettings | dict | None = None):
        self.task = load_task(task) if isinstance(task, str) else task
        if not isinstance(self.task, Task):
            raise TypeError(f"task must be a Task or a preset name, got {type(task).__name__}")
        self.seed = int(seed)
        self.n_jobs = n_jobs
        self.device = device if device == "auto" else resolve_device(device)
        if hurdle is not None and not 0.0 < hurdle < 1.0:
            raise ValueError(f"hurdle must be a quantile in (0, 1) (e.g. 0.5: the median "
                             f"sweep), got {hurdle!r}")
        if hurdle_warmup < 1:
            raise ValueError(f"hurdle_warmup must be >= 1 sweep, got {hurdle_warmup}")
        self.hurdle, self.hurdle_warmup = hurdle, int(hurdle_warmup)
        if isinstance(settings, RuleSettings):
            settings = settings.as_dict()
        self.settings = RuleSettings.from_dict(settings or {})
        defaults = RuleSettings().as_dict()
        # the settings that differ from the defaults: what is logged and checkpointed
        self.changed_settings = {k: v for k, v in self.settings.as_dict().items()
                                 if v != defaults[k]}
        self.steps_per_training = protocol_steps(
            self.task, max(1, self.task.n_train // self.task.batch_size)) + proxy_steps(self.task)
        self.cache: dict[str, Evaluation] = {}
        self.sweeps: list[float] = []        # best sweep score of every trained candidate
        self._screens: dict[str, ScreenResult] = {}
        self._data_aliases: set[str] = set()    # data specs holding the same images
        self.stats = {"evaluated": 0, "trainings": 0, "cache_hits": 0, "invalid": 0,
                      "diverged": 0, "hurdled": 0, "rescored": 0, "lost": 0,
                      "train_seconds": 0.0}

    # -- scoring ------------------------------------------------------------------------
    def screen(self, rule: Rule | str) -> ScreenResult:
        """Screen result of a rule (memoised by canonical string)."""
        rule = resolve(rule)
        result = self._screens.get(rule.canonical)
        if result is None:
            t = self.task
            result = screen(rule, steps=t.probe_steps, dim=t.probe_dim,
                            digits=t.fingerprint_digits, settings=self.settings)
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

        lost: dict[str, Evaluation] = {}         # fingerprint -> its lost Evaluation
        for pending, evaluation in zip(to_train.values(), self._train(list(to_train.values()))):
            evaluation.fingerprint = pending.screen.fingerprint
            if evaluation.status == LOST:        # not scored: never cached, so a later
                lost[evaluation.fingerprint] = evaluation    # batch trains it again
            else:
                self.cache[evaluation.fingerprint] = evaluation
            out[pending.index] = evaluation
        for dup in duplicates:
            fingerprint = dup.screen.fingerprint
            out[dup.index] = (dataclasses.replace(lost[fingerprint], rule=dup.rule.canonical)
                              if fingerprint in lost
                              else self._cached(dup.rule, self.cache[fingerprint]))

        for evaluation in out:
            self._count(evaluation)
        return out

    def score_baselines(self, names) -> list[Evaluation]:
        """Evaluations of the baselines ``names`` (:mod:`evo_nos.fitness.baselines`:
        torch optimizers, lr tuned by the same sweep, on the task's schedule, and on its
        proxies when it has some), in this process; each trained on a seed derived from
        the backend seed and its name, as a rule's is from its fingerprint."""
        device = resolve_device(self.device)
        data = worker_data(self.task, device)
        jobs = [(name, candidate_seed(self.seed, f"baseline:{name}")) for name in names]
        out = [score_baseline(name, data, self.task, seed=seed) for name, seed in jobs]
        if self.task.proxies:
            out = with_proxies(out, jobs, self.task, device, self.settings,
                               lambda main: score_rules(main, data, self.task,
                                                        settings=self.settings))
        return out

    def threshold(self) -> float | None:
        """The hurdle a candidate's best sweep score must reach now (None: no hurdle)."""
        if self.hurdle is None or len(self.sweeps) < self.hurdle_warmup:
            return None
        return float(np.quantile(self.sweeps, self.hurdle))

    def _train(self, pending: list[_Pending]) -> list[Evaluation]:
        if not pending:
            return []
        jobs = [(p.rule.canonical, candidate_seed(self.seed, p.screen.fingerprint))
                for p in pending]
        out = run_jobs(train_candidates, jobs, (self.task, self.device, self.threshold(),
                                                self.changed_settings), self.n_jobs)
        for evaluation in out:
            if evaluation.status == LOST:
                continue
            finite = [v for v in evaluation.lr_scores.values() if math.isfinite(v)]
            if finite:
                self.sweeps.append(max(finite))
            evaluation.seed_fitness = [evaluation.fitness]
        return out

    def rescore(self, evaluations: list[Evaluation], seeds: int) -> list[Evaluation]:
        """Score each evaluation's rule on further seeds until it has ``seeds`` in all.

        Returns, per evaluation, the rule's combined score (``fitness``: the mean over
        its seeds, ``fitness_se``, ``seed_fitness``) charged only with the new trainings
        (``trainings``, ``steps``, ``seconds``); the cache keeps the combined score.
        Rules not scored (not ok / cached, or unknown to the cache) come back as they
        are, charged nothing; so do rules that already have ``seeds`` seeds.  A seed
        whose worker was lost (:data:`LOST`) is not kept, nor are the seeds after it (a
        rule's k-th seed is always replicate k): the rule keeps fewer seeds, and a later
        call asks for the missing ones again."""
        jobs, owners = [], []
        for i, evaluation in enumerate(evaluations):
            known = self.cache.get(evaluation.fingerprint)
            if known is None or known.status != OK:
                continue
            for replicate in range(len(known.seed_fitness or [known.fitness]), seeds):
                jobs.append((known.rule, candidate_seed(self.seed, known.fingerprint,
                                                        replicate)))
                owners.append(i)
        results = run_jobs(train_candidates, jobs, (self.task, self.device, None,
                                                    self.changed_settings), self.n_jobs)
        out = [dataclasses.replace(e, trainings=0, steps=0, seconds=0.0) for e in evaluations]
        self.stats["lost"] += sum(r.status == LOST for r in results)
        for i, evaluation in enumerate(evaluations):
            asked = [r for r, owner in zip(results, owners) if owner == i]
            new = list(itertools.takewhile(lambda r: r.status != LOST, asked))
            if not new:
                continue
            known = self.cache[evaluation.fingerprint]
            values = list(known.seed_fitness or [known.fitness]) + [r.fitness for r in new]
            combined = dataclasses.replace(
                known, fitness=statistics.fmean(values), seeds=len(values),
                fitness_se=statistics.stdev(values) / math.sqrt(len(values)),
                seed_fitness=values, trainings=known.trainings + len(new),
                steps=known.steps + sum(r.steps for r in new),
                seconds=known.seconds + sum(r.seconds for r in new))
            self.cache[known.fingerprint] = combined
            out[i] = dataclasses.replace(
                combined, rule=evaluation.rule, status=OK, trainings=len(new),
                steps=sum(r.steps for r in new), seconds=sum(r.seconds for r in new),
                reason=f"re-scored on {len(new)} more seed(s)" + (
                    f"; {len(asked) - len(new)} more not kept: a worker was lost"
                    if len(new) < len(asked) else ""))
            self.stats["trainings"] += len(new)
            self.stats["rescored"] += 1
            self.stats["train_seconds"] += out[i].seconds
        return out

    @staticmethod
    def _cached(rule: Rule, hit: Evaluation) -> Evaluation:
        return dataclasses.replace(
            hit, rule=rule.canonical, status=HURDLED if hit.status == HURDLED else CACHED,
            lr_scores=dict(hit.lr_scores), seed_fitness=list(hit.seed_fitness), steps=0,
            seconds=0.0, trainings=0, reason=f"behaves like {hit.rule} (status {hit.status})")

    def _count(self, evaluation: Evaluation) -> None:
        s = self.stats
        s["evaluated"] += 1
        s["trainings"] += evaluation.trainings
        s["cache_hits"] += evaluation.status == CACHED
        s["invalid"] += evaluation.status == INVALID
        s["diverged"] += evaluation.status == DIVERGED
        s["hurdled"] += evaluation.status == HURDLED and evaluation.trainings > 0
        s["lost"] += evaluation.status == LOST
        s["train_seconds"] += evaluation.seconds if evaluation.trainings else 0.0

    # -- the data -----------------------------------------------------------------------------
    def data_fingerprint(self) -> str:
        """Load the task's data in this process and return its content fingerprint
        (:meth:`~evo_nos.fitness.data.DeviceData.fingerprint`).  Run serially, the
        trainings then use these very tensors; with workers, a CPU copy is loaded once
        and dropped.  A data source that cannot be loaded raises its DataError here."""
        if self.n_jobs in (None, 1):
            return worker_data(self.task, resolve_device(self.device)).fingerprint()
        return task_data(self.task, "cpu").fingerprint()

    def same_data_as(self, spec: str) -> None:
        """Declare that ``spec`` holds the very images of this backend's data source
        (checked by the caller, e.g. with :meth:`data_fingerprint`): a checkpoint scored
        on ``spec`` then loads into this backend (:meth:`load_state_dict`)."""
        self._data_aliases.add(spec)

    # -- checkpoints ------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """The fitness cache and counters as plain picklable data (for checkpoints)."""
        return {"version": STATE_VERSION, "seed": self.seed, "task": self.task.described(),
                "hurdle": [self.hurdle, self.hurdle_warmup], "sweeps": list(self.sweeps),
                "settings": dict(self.changed_settings),
                "cache": {fp: ev.to_dict() for fp, ev in self.cache.items()},
                "stats": dict(self.stats)}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`; refuses a cache scored under another protocol."""
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"fitness state version {state.get('version')!r} is not "
                             f"{STATE_VERSION}: it was written by another evo_nos version")
        mine, theirs = self.task.described(), dict(state["task"])
        if theirs.get("data") in self._data_aliases:     # the same images, elsewhere
            theirs["data"] = mine.get("data")
        differ = sorted(k for k in set(mine) | set(theirs)
                        if k not in NEUTRAL_KEYS and mine.get(k) != theirs.get(k))
        hurdle = state.get("hurdle", [None, self.hurdle_warmup])
        if hurdle[0] is None:
            hurdle = [None, self.hurdle_warmup]      # no hurdle: the warm-up is moot
        mine_hurdle = [self.hurdle, self.hurdle_warmup if self.hurdle is not None
                       else hurdle[1]]
        settings_differ = state.get("settings", {}) != self.changed_settings
        if differ or state["seed"] != self.seed or list(hurdle) != mine_hurdle or \
                settings_differ:
            what = differ + (["seed"] if state["seed"] != self.seed else []) + \
                (["hurdle"] if list(hurdle) != mine_hurdle else []) + \
                (["rule settings"] if settings_differ else [])
            raise ValueError(f"this fitness cache was scored with other settings ({what}); "
                             "resume with the same preset, data and seed")
        self.cache = {fp: Evaluation.from_dict(ev) for fp, ev in state["cache"].items()}
        self.sweeps = list(state.get("sweeps", []))
        self.stats = {**self.stats, **copy.deepcopy(state["stats"])}

    # -- description --------------------------------------------------------------------
    def describe(self) -> dict:
        """Flat ``str -> scalar`` settings, for MLflow params (the task's
        :meth:`~evo_nos.fitness.tasks.Task.described` fields as ``task.<key>``)."""
        out: dict = {"fitness": "child-training", "fitness_seed": self.seed,
                     "device": self.device, "n_jobs": self.n_jobs if self.n_jobs else "config",
                     "steps_per_training": self.steps_per_training}
        if self.hurdle is not None:
            out.update(hurdle=self.hurdle, hurdle_warmup=self.hurdle_warmup)
        out.update({f"rule.{k}": v for k, v in self.changed_settings.items()})
        for key, value in self.task.described().items():
            if isinstance(value, (list, tuple)):
                value = ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value)
            out[f"task.{key}"] = value
        return out

    def __repr__(self) -> str:
        return (f"FitnessBackend(task={self.task.name!r}, seed={self.seed}, "
                f"n_jobs={self.n_jobs}, device={self.device!r}, cached={len(self.cache)})")


__all__ = ["FitnessBackend", "candidate_seed", "train_candidates", "worker_data",
           "resolve_device", "load_task", "Task"]
