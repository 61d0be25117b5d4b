"""What a search strategy is: it proposes rules and learns from their scores.

A strategy knows nothing of budgets, MLflow, checkpoints or the fitness backend; the
driver (:mod:`evo_nos.search`) owns those.  Same space, same backend, same budget: that
is what makes comparing strategies honest.
"""
from __future__ import annotations

from typing import Protocol, runtime_checkable

from evo_nos.fitness.evaluation import Evaluation
from evo_nos.core.rules import Rule


@runtime_checkable
class Strategy(Protocol):
    name: str

    def ask(self, n: int) -> list[Rule]:
        """Propose n rules (inside the shared SearchSpace)."""

    def tell(self, rules: list[Rule], evaluations: list[Evaluation]) -> None:
        """Learn from the scores of rules it proposed (same order as asked)."""

    def state_dict(self) -> dict:
        """Everything needed to continue exactly, RNG states included (picklable)."""

    def load_state_dict(self, state: dict) -> None:
        """Restore what state_dict returned."""
