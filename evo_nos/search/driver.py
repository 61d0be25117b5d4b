"""The search driver every strategy shares: loop, budget, hall of fame, checkpoints.

::

    strategy.ask(n) -> [Rule] -> backend.evaluate -> [Evaluation] -> strategy.tell
                                        |
          budget, hall of fame, MLflow metrics, checkpoint (every batch)

Budget.  The budget counts child trainings actually run (``Evaluation.trainings``).
Cache hits and screened-out (invalid) rules cost nothing but are counted and logged.
A strategy that only proposes such free rules would loop for ever, so the search stops
("stalled") after ``free_limit`` free evaluations in a row (default 1000).  An optional
``time_limit`` (seconds, summed over resumes) stops it between batches.  A batch never
asks for more rules than the budget has trainings left, so the budget is never exceeded.

Checkpoints.  After every batch the whole state is pickled to
``<checkpoint_dir>/checkpoint.pkl`` atomically (written to a temporary file, then
``os.replace``): the strategy's state, the backend's (its fitness cache), the hall of
fame, the python/numpy/torch RNG states, the counts, the MLflow run id and the full
evaluation history.  A human-readable summary goes to ``run.json`` beside it.
:meth:`Search.resume` continues exactly where the last checkpoint stopped: nothing
scored is trained again, and with a serial backend the resumed search makes the same
choices as an uninterrupted one with the same seed.

Ctrl+C.  A ``KeyboardInterrupt`` (during a batch or between batches) rewrites the last
complete checkpoint marked "interrupted" (the batch in flight is dropped: its state is
inconsistent, and a training cut short cannot be kept), logs the hall of fame, marks
the MLflow run KILLED and returns a result with ``status == "interrupted"``.  Metrics of
a batch that was logged but not checkpointed are logged again, at the same steps, when
it is re-run after a resume.
"""
from __future__ import annotations

import json
import math
import pickle
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from evo_nos.core.files import write_atomic
from evo_nos.fitness.evaluation import CACHED, DIVERGED, INVALID, OK, Evaluation
from evo_nos.search.checkpoint import (CHECKPOINT_FILE, CHECKPOINT_VERSION, SUMMARY_FILE,
                                       load_checkpoint, rng_states, set_rng_states)
from evo_nos.search.hall_of_fame import HallOfFame

FINISHED, INTERRUPTED, TIME_LIMIT, STALLED, RUNNING = (
    "finished", "interrupted", "time_limit", "stalled", "running")
DONE = (FINISHED, STALLED, TIME_LIMIT)      # statuses of a search that needs no resume

@dataclass
class SearchResult:
    status: str                     # finished | interrupted | time_limit | stalled
    trainings: int                  # child trainings charged
    evaluations: int                # all candidates, free ones included
    counts: dict
    hall_of_fame: HallOfFame
    history: list = field(repr=False)
    run_id: str | None = None
    checkpoint_dir: Path | None = None

    @property
    def best(self) -> Evaluation | None:
        return self.hall_of_fame.best



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
                 config: dict | None = None, export_settings=None):
        if budget < 1:
            raise ValueError(f"budget must be >= 1 child training, got {budget}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if free_limit < 1:
            raise ValueError(f"free_limit must be >= 1, got {free_limit}")
        if time_limit is not None and time_limit <= 0:
            raise ValueError(f"time_limit must be > 0 seconds, got {time_limit}")
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
        self.counts = {"evaluations": 0, OK: 0, CACHED: 0, INVALID: 0, DIVERGED: 0}
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

    # -- resume -----------------------------------------------------------------------
    @classmethod
    def resume(cls, checkpoint_dir: str | Path, strategy, backend, *, tracker=None,
               progress: bool = True, budget: int | None = None,
               time_limit: float | None = None) -> "Search":
        """A search restored from ``checkpoint_dir``, ready to :meth:`run` on.

        ``strategy`` and ``backend`` must be built as the original ones were (same
        settings); their state is loaded from the checkpoint.  The budget is the
        original one: MLflow params cannot change, so a larger search is a new search.
        """
        state = load_checkpoint(checkpoint_dir)
        if strategy.name != state["strategy"]:
            raise ValueError(f"the checkpoint is a {state['strategy']!r} search, not "
                             f"{strategy.name!r}")
        if budget is not None and budget != state["budget"]:
            raise ValueError(f"this search's budget is {state['budget']}; a resumed search "
                             "keeps it (start a new search for another budget)")
        search = cls(strategy, backend, budget=state["budget"],
                     time_limit=time_limit if time_limit is not None else state["time_limit"],
                     batch_size=state["batch_size"],
                     hall_of_fame_size=state["hall_of_fame"]["size"],
                     checkpoint_dir=checkpoint_dir, tracker=tracker, progress=progress,
                     free_limit=state["free_limit"], run_name=state["run_name"],
                     config=state["config"], export_settings=state.get("export_settings"))
        search._load(state)
        return search

    def _load(self, state: dict) -> None:
        self.strategy.load_state_dict(state["strategy_state"])
        self.backend.load_state_dict(state["backend_state"])
        self.hall_of_fame.load_state_dict(state["hall_of_fame"])
        set_rng_states(state["rng"])
        self._rng_to_restore = state["rng"]
        self.history = list(state["history"])
        self.trainings = state["trainings"]
        self.counts = dict(state["counts"])
        self.free_streak = state["free_streak"]
        self.elapsed = state["elapsed"]
        self.run_id = state["run_id"]
        self._resumed = True

    # -- the loop -----------------------------------------------------------------------
    def run(self) -> SearchResult:
        self._started = time.perf_counter()
        self._elapsed_at_start = self.elapsed
        self.status = RUNNING
        if self.checkpoint_dir is not None:
            self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        if self.tracker is not None:
            if self._resumed and self.run_id:
                self.tracker.resume(self.run_id)
                set_rng_states(self._rng_to_restore)   # whatever the tracker drew, undo it
            else:
                self.run_id = self.tracker.start(run_name=self.run_name, params=self._params(),
                                                 tags=self._tags())
        self._last_payload = pickle.dumps(self._snapshot())
        bar = self._progress_bar()
        try:
            while True:
                reason = self._stop_reason()
                if reason:
                    break
                self._batch()
                self._update_bar(bar)
                self._checkpoint()
        except KeyboardInterrupt:
            self._interrupted()
            return self._result()
        except BaseException:
            if self.tracker is not None:
                self.tracker.end("FAILED")
            raise
        finally:
            if bar is not None:
                bar.close()
        self.status = reason
        self._checkpoint()
        if self.tracker is not None:
            self.tracker.finish(self._artifacts(), status="FINISHED")
        return self._result()

    def _stop_reason(self) -> str | None:
        if self.trainings >= self.budget:
            return FINISHED
        if self.free_streak >= self.free_limit:
            return STALLED
        if self.time_limit is not None and self._now_elapsed() >= self.time_limit:
            return TIME_LIMIT
        return None

    def _now_elapsed(self) -> float:
        return self._elapsed_at_start + (time.perf_counter() - self._started)

    def _batch(self) -> None:
        n = min(self.batch_size, self.budget - self.trainings)
        rules = self.strategy.ask(n)
        evaluations = self.backend.evaluate(rules)
        if len(evaluations) != len(rules):
            raise RuntimeError(f"the backend returned {len(evaluations)} evaluations for "
                               f"{len(rules)} rules")
        self.strategy.tell(rules, evaluations)
        metrics = []
        elapsed = self._now_elapsed()
        for evaluation in evaluations:
            self.trainings += evaluation.trainings
            self.counts["evaluations"] += 1
            self.counts[evaluation.status] = self.counts.get(evaluation.status, 0) + 1
            self.free_streak = 0 if evaluation.trainings else self.free_streak + 1
            self.hall_of_fame.update(evaluation)
            record = evaluation.to_dict()
            record.update(index=len(self.history), step=self.trainings, elapsed=elapsed)
            self.history.append(record)
            if math.isfinite(evaluation.fitness):
                metrics.append(("fitness", float(evaluation.fitness), self.trainings))
        self.elapsed = elapsed
        if self.tracker is not None:
            best = self.hall_of_fame.best
            minutes = max(elapsed, 1e-9) / 60.0
            if best is not None:       # nothing scored yet: no best to plot
                metrics.append(("best_fitness", best.fitness, self.trainings))
            metrics += [
                ("evaluations", self.counts["evaluations"], self.trainings),
                ("cache_hits", self.counts[CACHED], self.trainings),
                ("invalid", self.counts[INVALID], self.trainings),
                ("diverged", self.counts[DIVERGED], self.trainings),
                ("candidates_per_min", self.counts["evaluations"] / minutes, self.trainings),
            ]
            self.tracker.log_metrics(metrics)
            if best is not None and best.rule != self._tagged_best:
                self.tracker.set_tags({"best_rule": best.rule,
                                       "best_fitness": f"{best.fitness:.6g}"})
                self._tagged_best = best.rule

    # -- checkpoints ----------------------------------------------------------------------
    def _snapshot(self) -> dict:
        return {
            "version": CHECKPOINT_VERSION, "status": self.status,
            "strategy": self.strategy.name, "strategy_state": self.strategy.state_dict(),
            "backend_state": self.backend.state_dict(),
            "hall_of_fame": self.hall_of_fame.state_dict(), "rng": rng_states(),
            "budget": self.budget, "time_limit": self.time_limit,
            "batch_size": self.batch_size, "free_limit": self.free_limit,
            "trainings": self.trainings, "counts": dict(self.counts),
            "free_streak": self.free_streak, "elapsed": self.elapsed,
            "history": list(self.history), "run_id": self.run_id, "run_name": self.run_name,
            "config": self.config, "export_settings": self.export_settings,
            "saved_at": time.time(),
        }

    def _checkpoint(self) -> None:
        self._last_payload = pickle.dumps(self._snapshot())
        self._write(self._last_payload)

    def _write(self, payload: bytes) -> None:
        if self.checkpoint_dir is None:
            return
        write_atomic(self.checkpoint_dir / CHECKPOINT_FILE, payload)
        best = self.hall_of_fame.best
        summary = {
            "run_id": self.run_id, "run_name": self.run_name, "status": self.status,
            "strategy": self.strategy.name, "budget": self.budget, "trainings": self.trainings,
            "counts": self.counts, "best_rule": best.rule if best else None,
            "best_fitness": best.fitness if best else None, "config": self.config,
            "saved_at": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
        write_atomic(self.checkpoint_dir / SUMMARY_FILE,
                      json.dumps(summary, indent=2, default=str).encode())

    def _interrupted(self) -> None:
        """Go back to the last complete batch, save it marked interrupted, tell MLflow."""
        state = pickle.loads(self._last_payload)
        self.hall_of_fame.load_state_dict(state["hall_of_fame"])
        self.history = state["history"]
        self.trainings, self.counts = state["trainings"], state["counts"]
        self.free_streak = state["free_streak"]
        self.status = INTERRUPTED
        state["status"] = INTERRUPTED
        self._write(pickle.dumps(state))
        if self.tracker is not None:
            try:
                self.tracker.finish(self._artifacts(), status="KILLED", children=False)
            except Exception as err:   # the checkpoint is safe; MLflow may be mid-request
                warnings.warn(f"could not log the interrupted search to MLflow ({err}); "
                              "resume it to log everything")

    # -- tracking -----------------------------------------------------------------------
    def _params(self) -> dict:
        params = {"strategy": self.strategy.name, "budget": self.budget,
                  "batch_size": self.batch_size, "time_limit": self.time_limit,
                  "hall_of_fame_size": self.hall_of_fame.size, "free_limit": self.free_limit}
        for key, value in getattr(self.strategy, "settings", {}).items():
            params[f"strategy.{key}"] = value
        space = getattr(self.strategy, "space", None)
        if space is not None:
            for key, value in space.as_dict().items():
                params[f"space.{key}"] = ",".join(value) if isinstance(value, list) else value
        for key, value in self.backend.describe().items():
            params[key] = value
        params.update(self.config)
        return {k: v for k, v in params.items() if v is not None}

    def _tags(self) -> dict:
        tags = {"strategy": self.strategy.name}
        if "preset" in self.config:
            tags["preset"] = self.config["preset"]
        return tags

    def _artifacts(self) -> dict:
        """What the tracker logs at the end of a search (plain data)."""
        best_curve, best = [], -math.inf
        for record in self.history:
            if record["status"] in (OK, CACHED) and record["fitness"] > best:
                best = record["fitness"]
            best_curve.append((record["step"], best))
        return {"hall_of_fame": self.hall_of_fame, "history": self.history,
                "best_curve": best_curve, "status": self.status, "counts": self.counts,
                "trainings": self.trainings, "budget": self.budget,
                "export_settings": self.export_settings, "strategy": self.strategy.name}

    # -- progress -------------------------------------------------------------------------
    def _progress_bar(self):
        if not self.progress:
            return None
        return tqdm(total=self.budget, initial=self.trainings, unit="training",
                    desc=f"{self.strategy.name}", dynamic_ncols=True)

    def _update_bar(self, bar) -> None:
        if bar is None:
            return
        bar.n = self.trainings
        best = self.hall_of_fame.best
        if best is not None:
            rule = best.rule if len(best.rule) <= 48 else best.rule[:47] + "…"
            bar.set_postfix_str(f"best {best.fitness:.4f} {rule}", refresh=False)
        bar.refresh()

    def _result(self) -> SearchResult:
        return SearchResult(self.status, self.trainings, self.counts["evaluations"],
                            dict(self.counts), self.hall_of_fame, self.history, self.run_id,
                            self.checkpoint_dir)
