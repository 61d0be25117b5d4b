"""Evaluation: the score of one rule, as plain data that crosses processes as-is."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

OK, DIVERGED, INVALID, CACHED, HURDLED = "ok", "diverged", "invalid", "cached", "hurdled"
LOST = "lost"       # not scored: the worker process training it died, on every attempt
STATUSES = (OK, DIVERGED, INVALID, CACHED, HURDLED, LOST)


@dataclass
class Evaluation:
    rule: str                       # canonical rule string
    fitness: float                  # validation accuracy of the final run (0 when failed)
    status: str                     # ok | diverged | invalid | cached | hurdled (the sweep
                                    # fell below the hurdle: fitness is its best sweep score)
                                    # | lost (its worker died every time: fitness 0, free,
                                    # never cached, so the rule can be scored later)
    best_lr: float | None = None
    lr_scores: dict = field(default_factory=dict)   # {lr: validation accuracy} of the sweep
    steps: int = 0                  # optimizer steps taken (all runs of this evaluation)
    seconds: float = 0.0            # wall-clock time spent
    trainings: int = 0              # protocol runs trained for this evaluation (one per
                                    # seed; 0: free -- cached, invalid, lost)
    fingerprint: str | None = None  # functional fingerprint (behaviourally equal rules share it)
    reason: str = ""                # why invalid / diverged / hurdled / lost
    seeds: int = 1                  # backend seeds the fitness is the mean of
    fitness_se: float | None = None  # standard error of that mean (None below 2 seeds)
    seed_fitness: list = field(default_factory=list)  # the fitness of each seed, in order
    task_fitness: dict = field(default_factory=dict)  # a multi-task proxy: each task's own
                                                      # fitness (evo_nos.fitness.proxies)

    @property
    def scored(self) -> bool:
        """True when the fitness is a validation accuracy of a finished final run."""
        return self.status in (OK, CACHED)

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
