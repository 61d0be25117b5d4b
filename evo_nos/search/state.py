"""What a search is, as plain data: :class:`SearchState` (what a checkpoint holds) and
:class:`SearchResult` (what a finished, stopped or interrupted search returns).

A checkpoint's pickle is :meth:`SearchState.as_dict`, a dict of plain values (keys
listed below, in the order they are written), so the file does not depend on this
class: :func:`~evo_nos.search.checkpoint.load_checkpoint` reads it back as that dict
and :meth:`SearchState.from_dict` makes the state again.  Checkpoints written before a
key existed lack it; :data:`ADDED_KEYS` says what each one meant then.
"""
from __future__ import annotations

import dataclasses
import math
import pickle
from dataclasses import dataclass, field
from pathlib import Path

from evo_nos.fitness.evaluation import Evaluation
from evo_nos.search.checkpoint import CHECKPOINT_VERSION, CheckpointError, load_checkpoint
from evo_nos.search.defaults import FINAL_SEEDS, FINAL_TOP, FUNNEL_SEEDS, FUNNEL_TOP
from evo_nos.search.hall_of_fame import HallOfFame


@dataclass(frozen=True)
class FunnelSettings:
    """The re-evaluation funnel of a search (see :mod:`evo_nos.search.driver`)."""

    funnel_top: int = FUNNEL_TOP
    funnel_seeds: int = FUNNEL_SEEDS
    final_top: int = FINAL_TOP
    final_seeds: int = FINAL_SEEDS

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(kw_only=True)
class SearchState:
    """Everything a search needs to resume exactly where it stopped."""

    status: str                     # running | finished | interrupted | time_limit | stalled
    strategy: str                   # the strategy's name
    strategy_state: dict
    backend_state: dict             # its fitness cache
    hall_of_fame: dict              # HallOfFame.state_dict()
    rng: dict                       # checkpoint.rng_states()
    budget: int                     # child trainings
    time_limit: float | None        # seconds, summed over resumes
    batch_size: int
    free_limit: int
    trainings: int
    spent: int | None               # the budget spent, in units (None: trainings x units)
    compute: float | None           # the budget spent, in child trainings
    final_trainings: int
    counts: dict
    funnel: FunnelSettings
    free_streak: int
    elapsed: float                  # seconds, summed over resumes
    history: list
    run_id: str | None
    run_name: str | None
    config: dict
    export_settings: object
    search_id: str | None           # names the MLflow run before its id is saved
    last_batch: int | None          # rules asked in the last batch
    saved_at: float | None

    def as_dict(self) -> dict:
        """The checkpoint's pickle: plain values, ``funnel`` a dict, ``version`` first."""
        data = {"version": CHECKPOINT_VERSION}
        data.update((f.name, getattr(self, f.name)) for f in dataclasses.fields(self))
        data["funnel"] = self.funnel.as_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "SearchState":
        """The state in a checkpoint's dict (see :data:`ADDED_KEYS`); a
        :class:`~evo_nos.search.checkpoint.CheckpointError` names the keys it lacks."""
        names = [f.name for f in dataclasses.fields(cls)]
        missing = [name for name in names if name not in data and name not in ADDED_KEYS]
        if missing:
            raise CheckpointError(f"the checkpoint is not a complete evo_nos checkpoint "
                                  f"(no {', '.join(missing)})")
        values = {name: data[name] if name in data else ADDED_KEYS[name] for name in names}
        values["funnel"] = FunnelSettings(**values["funnel"])
        return cls(**values)

    def dumps(self) -> bytes:
        return pickle.dumps(self.as_dict())

    @classmethod
    def loads(cls, payload: bytes) -> "SearchState":
        return cls.from_dict(pickle.loads(payload))

    @classmethod
    def load(cls, path: str | Path) -> "SearchState":
        """The state saved in checkpoint directory or file ``path`` (see
        :func:`~evo_nos.search.checkpoint.load_checkpoint`)."""
        return cls.from_dict(load_checkpoint(path))


# the keys checkpoints of earlier versions may lack, and what their absence means
ADDED_KEYS = {
    "spent": None,                  # before compute was counted in optimizer steps
    "compute": None,
    "final_trainings": 0,           # before the funnel: no re-scoring at all
    "funnel": {"funnel_seeds": 1, "final_seeds": 0},
    "export_settings": None,
    "search_id": None,
    "last_batch": None,
    "saved_at": None,
}


@dataclass
class SearchResult:
    status: str                     # finished | interrupted | time_limit | stalled
    trainings: int                  # protocol runs trained (re-scorings included)
    evaluations: int                # all candidates, free ones included
    counts: dict
    hall_of_fame: HallOfFame
    history: list = field(repr=False)
    run_id: str | None = None
    checkpoint_dir: Path | None = None
    compute: float = 0.0            # the budget spent, in child trainings
    budget: int = 0                 # the budget, in child trainings
    strategy: str = ""              # the strategy's name
    export_settings: object = None  # how the best rule is exported (RuleSettings)

    @property
    def best(self) -> Evaluation | None:
        return self.hall_of_fame.best

    @property
    def best_curve(self) -> list:
        """``[(compute, best fitness so far)]`` at every evaluation (-inf before the
        first score)."""
        return [(record["compute"], record["best"] if record["best"] is not None
                 else -math.inf) for record in self.history if "compute" in record]
