"""Evaluation: the score of one rule, as plain data that crosses processes as-is."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

OK, DIVERGED, INVALID, CACHED = "ok", "diverged", "invalid", "cached"
STATUSES = (OK, DIVERGED, INVALID, CACHED)


@dataclass
class Evaluation:
    rule: str                       # canonical rule string
    fitness: float                  # validation accuracy of the final run (0 when failed)
    status: str                     # ok | diverged | invalid | cached
    best_lr: float | None = None
    lr_scores: dict = field(default_factory=dict)   # {lr: validation accuracy} of the sweep
    steps: int = 0                  # optimizer steps taken (all runs of this evaluation)
    seconds: float = 0.0            # wall-clock time spent
    trainings: int = 0              # child trainings charged to the budget (0 or 1)
    fingerprint: str | None = None  # functional fingerprint (behaviourally equal rules share it)
    reason: str = ""                # why invalid / diverged

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}")

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data["lr_scores"] = {repr(float(k)): v for k, v in self.lr_scores.items()}
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "Evaluation":
        data = dict(data)
        data["lr_scores"] = {float(k): v for k, v in data.get("lr_scores", {}).items()}
        return cls(**data)
