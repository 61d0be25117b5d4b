"""Random search: uniform samples of the search space, the control every search must beat.

It learns nothing (``tell`` is a no-op) and draws every rule with
:meth:`SearchSpace.sample` from one ``random.Random(seed)`` (so its roots are the
space's: binary functions by default, any slot with ``root="slot"``); repeats are
allowed (they are cache hits, free in the budget) so it samples the space exactly as
it is.
"""
from __future__ import annotations

import random

from evo_nos.fitness.evaluation import Evaluation
from evo_nos.operators.space import SearchSpace
from evo_nos.core.rules import Rule


class RandomStrategy:
    """Uniform sampling of ``space``; implements the Strategy protocol."""

    name = "random"

    def __init__(self, space: SearchSpace | None = None, seed: int = 0):
        self.space = space or SearchSpace()
        self.seed = seed
        self.rng = random.Random(seed)

    @property
    def settings(self) -> dict:
        return {}

    def ask(self, n: int) -> list[Rule]:
        return [self.space.sample(self.rng) for _ in range(n)]

    def tell(self, rules: list[Rule], evaluations: list[Evaluation]) -> None:
        if len(rules) != len(evaluations):
            raise ValueError(f"told {len(rules)} rules but {len(evaluations)} evaluations")

    def state_dict(self) -> dict:
        return {"name": self.name, "rng": self.rng.getstate()}

    def load_state_dict(self, state: dict) -> None:
        if state.get("name") != self.name:
            raise ValueError(f"this checkpoint belongs to strategy {state.get('name')!r}, "
                             f"not {self.name!r}")
        self.rng.setstate(state["rng"])
