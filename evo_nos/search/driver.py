"""The search driver every strategy shares: loop, budget, hall of fame, checkpoints.

::

    strategy.ask(n) -> [Rule] -> backend.evaluate -> [Evaluation] -> strategy.tell
                                        |
          budget, hall of fame, MLflow metrics, checkpoint (every batch)

Budget.  The budget is given in child trainings and counts compute: with a backend
that reports ``steps_per_training`` (the real one: the optimizer steps of one whole
protocol), every evaluation is charged the optimizer steps it actually ran
(``Evaluation.steps``), so a candidate that diverged or fell at the hurdle costs what it
used and strategies compare on equal compute; with another backend every evaluation is
charged its ``trainings``.  ``compute`` is the spend in child trainings (a float);
MLflow metrics use the integer spend (``step``: optimizer steps, or trainings) as their
x-axis, with the param ``steps_per_training`` to convert.  Cache hits and screened-out
(invalid) rules cost nothing but are counted and logged.  A strategy that only proposes
such free rules would loop for ever, so the search stops ("stalled") after
``free_limit`` free evaluations in a row (default 1000).  An optional ``time_limit``
(seconds, summed over resumes) stops it between batches.  The budget is a cap, never
passed: a candidate is started only when a whole training (its most) still fits, so a
batch asks for at most as many rules as the budget has whole trainings left, and the
search finishes when less than one whole training is left; candidates that stopped early
(diverged, hurdled) can leave that fraction unspent (``unspent``), which the command's
summary line says.  (A training cut at the budget would leave a score no other candidate
is compared on, and a budget grown by a resume would re-train it.)

The re-evaluation funnel (Lion's funnel; AutoML-Zero re-measures noisy fitness).  With
a backend that can ``rescore`` (the real one), every rule in the top ``funnel_top`` of
the hall of fame is re-scored on further backend seeds until it has ``funnel_seeds`` in
all, before the next batch; the hall of fame ranks by the mean over seeds, and shows its
standard error.  A rule that falls on re-scoring lets the next one up, which is re-scored
in turn.  The extra trainings are charged to the budget (when it still has them) and
logged (``rescored`` metric; history records of ``kind`` "rescore").  The strategy is
told each candidate's first score, as a search without the funnel would.  When the
budget is spent, the final stage (``final_seeds`` > 0) re-scores the top ``final_top``
on ``final_seeds`` seeds, outside the budget (``final_trainings``; ``kind`` "final").

Checkpoints.  After every batch the whole state, a
:class:`~evo_nos.search.state.SearchState` (pickled as a dict of plain values), goes to
``<checkpoint_dir>/checkpoint.pkl`` atomically (written to a temporary file, then
``os.replace``): the strategy's state, the backend's (its fitness cache), the hall of
fame, the python/numpy/torch RNG states, the counts, the MLflow run id and the full
evaluation history.  A human-readable summary goes to ``run.json`` beside it.
:meth:`Search.resume` continues exactly where the last checkpoint stopped: nothing
scored is trained again, and with a serial backend the resumed search makes the same
choices as an uninterrupted one with the same seed.

Ctrl+C.  A ``KeyboardInterrupt`` (during a batch or between batches; with the command
line's handler, :mod:`evo_nos.core.signals`, SIGTERM and SIGHUP too, and a request that
library code swallowed is raised at the next check: between batches, after a batch's
trainings) rewrites the last
complete checkpoint marked "interrupted" (the batch in flight is dropped: its state is
inconsistent, and a training cut short cannot be kept), logs the hall of fame, marks
the MLflow run KILLED and returns a result with ``status == "interrupted"``.  Metrics of
a batch that was logged but not checkpointed are logged again, at the same steps, when
it is re-run after a resume.  Checkpoint and MLflow writes, the roll-back and the final
writes hold a stop signal until they are done.

A checkpoint that cannot be written (an OSError: a full disk, a folder made read-only)
raises :class:`SaveError` after rolling back to the last checkpoint written, marked
interrupted where the disk still takes that, and marking the run KILLED: the search
resumes, the same, once the cause is fixed.
"""
from __future__ import annotations

import hashlib
import json
import math
import time
import uuid
import warnings
from pathlib import Path

from tqdm.auto import tqdm

from evo_nos.core import signals
from evo_nos.core.files import FileLock, LockedError, write_atomic
from evo_nos.fitness.evaluation import CACHED, DIVERGED, HURDLED, INVALID, OK, Evaluation
from evo_nos.search.checkpoint import (CHECKPOINT_FILE, LOCK_FILE, PREVIOUS_FILE,
                                       SUMMARY_FILE, rng_states, set_rng_states,
                                       write_checkpoint)
from evo_nos.search.defaults import FINAL_SEEDS, FINAL_TOP, FUNNEL_SEEDS, FUNNEL_TOP
from evo_nos.search.hall_of_fame import HallOfFame
from evo_nos.search.state import FunnelSettings, SearchResult, SearchState

FINISHED, INTERRUPTED, TIME_LIMIT, STALLED, RUNNING = (
    "finished", "interrupted", "time_limit", "stalled", "running")
DONE = (FINISHED, STALLED, TIME_LIMIT)      # statuses of a search that needs no resume
CANDIDATE, RESCORE, FINAL = "candidate", "rescore", "final"   # kinds of history records


class SearchInUse(RuntimeError):
    """Another live process is running this search (or ran it since it was loaded)."""


class SaveError(OSError):
    """A checkpoint (or its run.json) could not be written: a full disk, a folder made
    read-only, ... (``errno`` and ``filename`` are the OSError's).  The search is rolled
    back to the last checkpoint written, which resumes once the cause is fixed."""

    @classmethod
    def of(cls, err: OSError, path: Path) -> "SaveError":
        return cls(err.errno, err.strerror or str(err), err.filename or str(path))



# -- the driver ---------------------------------------------------------------------------
class Search:
    """Runs ``strategy`` against ``backend`` until ``budget`` child trainings are spent.

    ``config`` is plain data describing how the search was set up (seed, preset, the
    command line's options); it is logged as MLflow params and saved in the checkpoint
    so that a resume can rebuild the same strategy and backend.
    """

    def __init__(self, strategy, backend, *, budget: int, time_limit: float | None = None,
                 batch_size: int = 1, hall_of_fame_size: int = 10,
                 checkpoint_dir: str | Path | None = None, tracker=None, progress: bool = True,
                 free_limit: int = 1000, run_name: str | None = None,
                 config: dict | None = None, export_settings=None,
                 funnel_top: int = FUNNEL_TOP, funnel_seeds: int = FUNNEL_SEEDS,
                 final_top: int = FINAL_TOP, final_seeds: int = FINAL_SEEDS):
        if budget < 1:
            raise ValueError(f"budget must be >= 1 child training, got {budget}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if free_limit < 1:
            raise ValueError(f"free_limit must be >= 1, got {free_limit}")
        if time_limit is not None and time_limit <= 0:
            raise ValueError(f"time_limit must be > 0 seconds, got {time_limit}")
        for name, value in (("funnel_top", funnel_top), ("funnel_seeds", funnel_seeds),
                            ("final_top", final_top), ("final_seeds", final_seeds)):
            if value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
        self.funnel_top, self.funnel_seeds = funnel_top, funnel_seeds
        self.final_top, self.final_seeds = final_top, final_seeds
        self.rescorable = callable(getattr(backend, "rescore", None))
        self.unit = int(getattr(backend, "steps_per_training", None) or 1)
        self.strategy, self.backend = strategy, backend
        self.budget, self.time_limit, self.batch_size = budget, time_limit, batch_size
        self.free_limit = free_limit
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
        self.tracker, self.progress = tracker, progress
        self.run_name = run_name
        self.config = dict(config or {})
        self.export_settings = export_settings

        self.hall_of_fame = HallOfFame(hall_of_fame_size)
        self.history: list[dict] = []
        self.trainings = 0
        self.spent = 0              # compute charged to the budget, in units (see above)
        self.final_trainings = 0
        self.counts = {"evaluations": 0, OK: 0, CACHED: 0, INVALID: 0, DIVERGED: 0,
                       HURDLED: 0, "rescored": 0}
        self.free_streak = 0
        self.elapsed = 0.0          # seconds spent in run(), summed over resumes
        self.run_id: str | None = None
        self.status = RUNNING
        self._resumed = False
        self._rng_to_restore = None
        self._tagged_best: str | None = None
        self._last_payload: bytes | None = None
        self._started = 0.0
        self._elapsed_at_start = 0.0
        self.search_id = uuid.uuid4().hex    # names the search's MLflow run before its id
        self._lock: FileLock | None = None
        self._loaded_digest: str | None = None
        self._tracker_failed = False
        self.last_batch: int | None = None    # rules asked in the last batch
        self.grown_from: int | None = None    # the budget before a resume grew it
        self.cut_batch = False                # see resume()

    # -- resume -----------------------------------------------------------------------
    @classmethod
    def resume(cls, checkpoint_dir: str | Path, strategy, backend, *, tracker=None,
               progress: bool = True, budget: int | None = None,
               time_limit: float | None = None) -> "Search":
        """A search restored from ``checkpoint_dir``, ready to :meth:`run` on.

        ``strategy`` and ``backend`` must be built as the original ones were (same
        settings); their state is loaded from the checkpoint.  ``budget`` (child
        trainings in all) may grow the search's budget, a finished search's too: it
        then goes on in the same MLflow run, on the same step axis, and ends as a
        search given that budget from the start would have (:meth:`_run` first
        catches up the re-scorings the old budget had no room for).  Two limits: a
        budget cannot shrink, and a search whose final stage has run cannot grow (its
        finalists were re-scored outside the budget: start a new search).  When the
        first leg's last batch was cut short to fit its budget, :attr:`cut_batch` is
        True: from that batch on the search differs from a one-go one (still a valid
        search of the larger budget).
        """
        state = SearchState.load(checkpoint_dir)
        if strategy.name != state.strategy:
            raise ValueError(f"the checkpoint is a {state.strategy!r} search, not "
                             f"{strategy.name!r}")
        old = state.budget
        if budget is not None and budget < old:
            raise ValueError(f"--budget {budget} is below this search's budget of {old} "
                             f"child trainings: a budget can grow, not shrink")
        if budget is not None and budget > old and state.final_trainings:
            raise ValueError(f"this search's final stage has run (its finalists were "
                             f"re-scored after its budget of {old}): it cannot grow to "
                             f"{budget}; start a new search")
        search = cls(strategy, backend, budget=max(old, budget or old),
                     time_limit=time_limit if time_limit is not None else state.time_limit,
                     batch_size=state.batch_size,
                     hall_of_fame_size=state.hall_of_fame["size"],
                     checkpoint_dir=checkpoint_dir, tracker=tracker, progress=progress,
                     free_limit=state.free_limit, run_name=state.run_name,
                     config=state.config, export_settings=state.export_settings,
                     **state.funnel.as_dict())
        search._load(state)
        search._loaded_digest = _digest(Path(checkpoint_dir) / CHECKPOINT_FILE)
        search.grown_from = old if search.budget > old else None
        last = state.last_batch
        search.cut_batch = bool(search.grown_from and last is not None
                                and last < search.batch_size)
        return search

    def _load(self, state: SearchState) -> None:
        self.strategy.load_state_dict(state.strategy_state)
        self.backend.load_state_dict(state.backend_state)
        self.hall_of_fame.load_state_dict(state.hall_of_fame)
        set_rng_states(state.rng)
        self._rng_to_restore = state.rng
        self.history = list(state.history)
        self.trainings = state.trainings
        self.spent = state.spent if state.spent is not None else state.trainings * self.unit
        self.final_trainings = state.final_trainings
        self.counts = {**self.counts, **state.counts}
        self.free_streak = state.free_streak
        self.elapsed = state.elapsed
        self.last_batch = state.last_batch
        self.run_id = state.run_id
        self.search_id = state.search_id or self.search_id
        self._resumed = True

    # -- the loop -----------------------------------------------------------------------
    def run(self) -> SearchResult:
        """Run to the budget; a KeyboardInterrupt saves and returns "interrupted".

        Before the first training the search holds its folder (a second process is
        refused with :class:`SearchInUse`) and has a checkpoint, so it can be resumed from
        its first moment.  A failure of the tracker rolls back to the last checkpoint,
        marked interrupted, and re-raises; any other failure of a fresh search that
        trained nothing removes its MLflow run and checkpoint, of a search that did marks
        the run FAILED, keeping the last checkpoint."""
        self._started = time.perf_counter()
        self._elapsed_at_start = self.elapsed
        self.status = RUNNING
        self._hold_folder()
        try:
            return self._run()
        finally:
            if self._lock is not None:
                self._lock.release()

    def _run(self) -> SearchResult:
        rng = self._rng_to_restore if self._resumed else rng_states()
        self._last_payload = self._snapshot().dumps()
        bar = None
        try:
            if not self._resumed:
                self._write(self._last_payload)     # resumable from here on
            if self.tracker is not None:
                self._open_run()
                if self.grown_from is not None:
                    self._tracked(self.tracker.set_tags, {"budget": self.budget})
                set_rng_states(rng)             # whatever the tracker drew, undo it
                self._checkpoint()
            bar = self._progress_bar()
            if self._resumed and self._stop_reason() is None:
                # re-scorings that the last batch's budget had no room for (a grown
                # budget has): where a one-go search would have done them
                metrics = self._funnel(self._now_elapsed())
                if metrics:
                    self._log_progress(metrics, self._now_elapsed())
                    self._checkpoint()
            while True:
                signals.check()                 # a stop request swallowed on its way
                reason = self._stop_reason()
                if reason:
                    break
                self._batch()
                self._update_bar(bar)
                self._checkpoint()
            if reason == FINISHED:
                self._final_stage(bar)
            signals.check()
        except KeyboardInterrupt:
            self._interrupted()
            return self._result()
        except BaseException as err:
            self._failed(err)
            raise
        finally:
            if bar is not None:
                bar.close()
        # the final writes: a stop signal now is held until they are done (the command
        # sees it after; the search is complete)
        with signals.held():
            try:
                self.status = reason
                self._checkpoint()
                result = self._result()
                if self.tracker is not None:
                    self._tracked(self.tracker.finish, result, status="FINISHED")
            except BaseException as err:
                self._failed(err)
                raise
        return result

    def _hold_folder(self) -> None:
        """Lock the checkpoint folder for this process; refuse a second writer."""
        if self.checkpoint_dir is None:
            return
        try:
            self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise SaveError.of(err, self.checkpoint_dir) from err
        if not self._resumed and (self.checkpoint_dir / CHECKPOINT_FILE).is_file():
            raise ValueError(f"{self.checkpoint_dir} already holds a search: resume it "
                             "(Search.resume, or --resume) or choose another folder")
        self._lock = FileLock(self.checkpoint_dir / LOCK_FILE, blocking=False)
        try:
            self._lock.acquire()
        except OSError as err:          # a read-only folder, no permission
            self._lock = None
            raise SaveError.of(err, self.checkpoint_dir / LOCK_FILE) from err
        except LockedError as err:
            self._lock = None
            holder = str(err).rpartition(" is held by ")[2]
            raise SearchInUse(f"the search in {self.checkpoint_dir} is running in another "
                              f"process ({holder}): wait for it to end, or stop it "
                              "first") from None
        if self._resumed and _digest(self.checkpoint_dir / CHECKPOINT_FILE) \
                != self._loaded_digest:
            self._lock.release()
            self._lock = None
            raise SearchInUse(f"the search in {self.checkpoint_dir} was run by another "
                              "process after this one loaded it: resume it again")

    def _open_run(self) -> None:
        """Reopen the search's MLflow run, or start it (adopting a run started for this
        search by a process that died before it could checkpoint the run's id)."""
        if self.run_id is None and self._resumed:
            self.run_id = self._tracked(self.tracker.find_search, self.search_id)
        if self.run_id is not None:
            self._tracked(self.tracker.resume, self.run_id)
        else:
            self.run_id = self._tracked(self.tracker.start, run_name=self.run_name,
                                        params=self.tracker.search_params(self),
                                        tags=self.tracker.search_tags(self),
                                        search_id=self.search_id)

    def _tracked(self, method, *args, **kwargs):
        """Call the tracker, remembering whether it failed (see :meth:`_failed`); a stop
        signal is held until the call is done."""
        try:
            with signals.held():
                return method(*args, **kwargs)
        except Exception:
            self._tracker_failed = True
            raise

    def _failed(self, err: BaseException | None = None) -> None:
        """After an exception: save what can be saved, then tell MLflow if it listens.

        The store failed: back to the last checkpoint, marked interrupted.  A checkpoint
        that could not be written (:class:`SaveError`: a full disk, a folder turned
        read-only): back to the last one written, the run marked KILLED, as Ctrl+C does
        -- the search resumes once the disk has room."""
        with signals.held():
            if self._tracker_failed or self.tracker is None:
                self._roll_back(INTERRUPTED, tolerant=True)   # the store is down
                return
            fresh = not self._resumed and not self.history
            if isinstance(err, SaveError) and not fresh:
                self._interrupted(tolerant=True)
                return
            if fresh:
                self._discard()                     # nothing trained: leave nothing behind
                return
            try:
                self.tracker.end("FAILED")
            except Exception as err:
                warnings.warn(f"could not mark the MLflow run FAILED ({err})")

    def _discard(self) -> None:
        try:
            if self.run_id is not None:
                self.tracker.discard()
        except Exception as err:
            warnings.warn(f"could not delete the MLflow run {self.run_id} ({err})")
        if self.checkpoint_dir is not None:
            for name in (CHECKPOINT_FILE, PREVIOUS_FILE, SUMMARY_FILE, LOCK_FILE):
                (self.checkpoint_dir / name).unlink(missing_ok=True)
            try:
                self.checkpoint_dir.rmdir()      # only if nothing else is in it
            except OSError:
                pass

    @property
    def compute(self) -> float:
        """The budget spent so far, in child trainings."""
        return self.spent / self.unit

    def _cost(self, evaluation: Evaluation) -> int:
        return int(evaluation.steps) if self.unit > 1 else int(evaluation.trainings)

    @property
    def unspent(self) -> float:
        """The budget left, in child trainings."""
        return (self.budget * self.unit - self.spent) / self.unit

    def _stop_reason(self) -> str | None:
        if self.budget * self.unit - self.spent < self.unit:   # no whole training left
            return FINISHED
        if self.free_streak >= self.free_limit:
            return STALLED
        if self.time_limit is not None and self._now_elapsed() >= self.time_limit:
            return TIME_LIMIT
        return None

    def _now_elapsed(self) -> float:
        return self._elapsed_at_start + (time.perf_counter() - self._started)

    def _batch(self) -> None:
        left = self.budget * self.unit - self.spent
        n = min(self.batch_size, max(1, left // self.unit))   # each may cost a whole one
        self.last_batch = n
        rules = self.strategy.ask(n)
        evaluations = self.backend.evaluate(rules)
        signals.check()                     # a stop request the trainings swallowed
        if len(evaluations) != len(rules):
            raise RuntimeError(f"the backend returned {len(evaluations)} evaluations for "
                               f"{len(rules)} rules")
        self.strategy.tell(rules, evaluations)
        metrics = []
        elapsed = self._now_elapsed()
        for evaluation in evaluations:
            self.counts["evaluations"] += 1
            self.counts[evaluation.status] = self.counts.get(evaluation.status, 0) + 1
            self.free_streak = 0 if evaluation.trainings else self.free_streak + 1
            metrics += self._record(evaluation, CANDIDATE, elapsed)
        metrics += self._funnel(elapsed)
        self.elapsed = elapsed
        self._log_progress(metrics, elapsed)

    def _record(self, evaluation: Evaluation, kind: str, elapsed: float) -> list:
        """Charge, rank and keep one evaluation; its metrics."""
        self.trainings += evaluation.trainings
        if kind == FINAL:
            self.final_trainings += evaluation.trainings
        else:
            self.spent += self._cost(evaluation)
        self.hall_of_fame.update(evaluation)
        best = self.hall_of_fame.best
        record = evaluation.to_dict()
        record.update(index=len(self.history), kind=kind, step=self.spent,
                      compute=self.compute, elapsed=elapsed,
                      best=best.fitness if best is not None else None)
        self.history.append(record)
        if kind == CANDIDATE and math.isfinite(evaluation.fitness):
            return [("candidate_fitness", float(evaluation.fitness), self.spent)]
        return []

    def _funnel(self, elapsed: float) -> list:
        """Re-score the top ``funnel_top`` until each has ``funnel_seeds`` seeds."""
        if not self.rescorable or self.funnel_seeds < 2 or self.funnel_top < 1:
            return []
        metrics = []
        for _ in range(self.funnel_top + 1):     # each round settles at least one rule
            due = [e for e in self.hall_of_fame.top[:self.funnel_top]
                   if e.seeds < self.funnel_seeds]
            left = self.budget * self.unit - self.spent
            fitting = []                 # in rank order, as many as the budget holds
            for evaluation in due:
                cost = (self.funnel_seeds - evaluation.seeds) * self.unit
                if cost <= left:
                    fitting.append(evaluation)
                    left -= cost
            due = fitting
            if not due:
                break
            rescored = self.backend.rescore(due, self.funnel_seeds)
            signals.check()
            for evaluation in rescored:
                if evaluation.trainings:
                    self.counts["rescored"] += 1
                    metrics += self._record(evaluation, RESCORE, elapsed)
        return metrics

    def _final_stage(self, bar) -> None:
        """After the budget: the top ``final_top`` on ``final_seeds`` seeds (checkpointed
        after each batch, so an interrupted final stage resumes where it stopped)."""
        if not self.rescorable or self.final_seeds < 2 or self.final_top < 1:
            return
        while True:
            due = [e for e in self.hall_of_fame.top[:self.final_top]
                   if e.seeds < self.final_seeds][:self.batch_size]
            elapsed = self._now_elapsed()
            rescored = [e for e in (self.backend.rescore(due, self.final_seeds) if due else [])
                        if e.trainings]
            signals.check()
            if not rescored:           # nothing left that can be re-scored
                return
            metrics = []
            for evaluation in rescored:
                metrics += self._record(evaluation, FINAL, elapsed)
            self.elapsed = elapsed
            self._log_progress(metrics + [("final_trainings", self.final_trainings,
                                           self.spent)], elapsed)
            self._update_bar(bar)
            self._checkpoint()

    def _log_progress(self, metrics: list, elapsed: float) -> None:
        if self.tracker is not None:
            best = self.hall_of_fame.best
            minutes = max(elapsed, 1e-9) / 60.0
            step = self.spent
            if best is not None:       # nothing scored yet: no best to plot
                metrics.append(("best_fitness", best.fitness, step))
            metrics += [
                ("compute", self.compute, step),
                ("evaluations", self.counts["evaluations"], step),
                ("cache_hits", self.counts[CACHED], step),
                ("invalid", self.counts[INVALID], step),
                ("diverged", self.counts[DIVERGED], step),
                ("hurdled", self.counts[HURDLED], step),
                ("rescored", self.counts["rescored"], step),
                ("candidates_per_min", self.counts["evaluations"] / minutes, step),
            ]
            self._tracked(self.tracker.log_metrics, metrics)
            if best is not None and best.rule != self._tagged_best:
                self._tracked(self.tracker.set_tags, {"best_rule": best.rule,
                                                      "best_fitness": f"{best.fitness:.6g}"})
                self._tagged_best = best.rule

    # -- checkpoints ----------------------------------------------------------------------
    def _snapshot(self) -> SearchState:
        return SearchState(
            status=self.status, strategy=self.strategy.name,
            strategy_state=self.strategy.state_dict(), backend_state=self.backend.state_dict(),
            hall_of_fame=self.hall_of_fame.state_dict(), rng=rng_states(),
            budget=self.budget, time_limit=self.time_limit, batch_size=self.batch_size,
            free_limit=self.free_limit, trainings=self.trainings, spent=self.spent,
            compute=self.compute, final_trainings=self.final_trainings,
            counts=dict(self.counts),
            funnel=FunnelSettings(self.funnel_top, self.funnel_seeds, self.final_top,
                                  self.final_seeds),
            free_streak=self.free_streak, elapsed=self.elapsed, history=list(self.history),
            run_id=self.run_id, run_name=self.run_name, config=self.config,
            export_settings=self.export_settings, search_id=self.search_id,
            last_batch=self.last_batch, saved_at=time.time())

    def _checkpoint(self) -> None:
        self._write(self._snapshot().dumps())

    def _write(self, payload: bytes) -> None:
        """Save ``payload`` (the checkpoint, then run.json), a stop signal held meanwhile;
        it is the last good state once the checkpoint is written.  An OSError of either
        write is a :class:`SaveError`."""
        if self.checkpoint_dir is None:
            self._last_payload = payload
            return
        with signals.held():
            target = self.checkpoint_dir / CHECKPOINT_FILE
            try:
                write_checkpoint(self.checkpoint_dir, payload)
                self._last_payload = payload
                target = self.checkpoint_dir / SUMMARY_FILE
                self._write_summary()
            except OSError as err:
                raise SaveError.of(err, target) from err

    def _write_summary(self) -> None:
        best = self.hall_of_fame.best
        summary = {
            "run_id": self.run_id, "run_name": self.run_name, "status": self.status,
            "strategy": self.strategy.name, "budget": self.budget, "trainings": self.trainings,
            "compute": self.compute, "final_trainings": self.final_trainings,
            "counts": self.counts, "best_rule": best.rule if best else None,
            "best_fitness": best.fitness if best else None,
            "best_fitness_se": best.fitness_se if best else None,
            "best_seeds": best.seeds if best else None, "config": self.config,
            "saved_at": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
        write_atomic(self.checkpoint_dir / SUMMARY_FILE,
                      json.dumps(summary, indent=2, default=str).encode())

    def _interrupted(self, *, tolerant: bool = False) -> None:
        """Go back to the last complete batch, save it marked interrupted, tell MLflow
        (a stop signal held meanwhile)."""
        with signals.held():
            self._roll_back(INTERRUPTED, tolerant=tolerant)
            if self.tracker is not None and not self._tracker_failed:
                try:
                    self.tracker.finish(self._result(), status="KILLED", children=False)
                except Exception as err:   # the checkpoint is safe; MLflow may be mid-request
                    warnings.warn(f"could not log the interrupted search to MLflow ({err}); "
                                  "resume it to log everything")

    def _roll_back(self, status: str, *, tolerant: bool = False) -> None:
        """Restore the last complete checkpoint's state and save it with ``status``
        (``tolerant``: a save that fails leaves the files as they are -- the last good
        checkpoint, which resumes -- and is not raised)."""
        state = SearchState.loads(self._last_payload)
        self.hall_of_fame.load_state_dict(state.hall_of_fame)
        self.history = state.history
        self.trainings, self.counts = state.trainings, state.counts
        self.spent, self.final_trainings = state.spent, state.final_trainings
        self.free_streak = state.free_streak
        self.last_batch = state.last_batch
        self.status = status
        state.status = status
        state.run_id = self.run_id          # a run started since is still this search's
        try:
            self._write(state.dumps())
        except SaveError:
            if not tolerant:
                raise

    # -- progress -------------------------------------------------------------------------
    def _progress_bar(self):
        if not self.progress:
            return None
        return tqdm(total=self.budget, initial=round(self.compute, 2), unit="training",
                    desc=f"{self.strategy.name}", dynamic_ncols=True)

    def _update_bar(self, bar) -> None:
        if bar is None:
            return
        bar.n = round(self.compute, 2)
        best = self.hall_of_fame.best
        if best is not None:
            rule = best.rule if len(best.rule) <= 48 else best.rule[:47] + "…"
            se = f"±{best.fitness_se:.4f} ({best.seeds} seeds) " if best.fitness_se else ""
            bar.set_postfix_str(f"best {best.fitness:.4f}{se} {rule}", refresh=False)
        bar.refresh()

    def _result(self) -> SearchResult:
        return SearchResult(self.status, self.trainings, self.counts["evaluations"],
                            dict(self.counts), self.hall_of_fame, self.history, self.run_id,
                            self.checkpoint_dir, self.compute, budget=self.budget,
                            strategy=self.strategy.name,
                            export_settings=self.export_settings)


def _digest(path: Path) -> str | None:
    """sha256 of a file's bytes (None if it is missing)."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except FileNotFoundError:
        return None
