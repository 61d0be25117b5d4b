"""A cheap stand-in fitness: how closely a rule's updates match a hidden target rule.

It has the FitnessBackend interface (``evaluate``, ``state_dict``, ``describe``,
``stats``) and costs milliseconds per rule, so search strategies can be tested and
compared without training networks.  Its cache is keyed by rule structure by default;
``cache="behaviour"`` keys it by the functional fingerprint, as the real backend does,
so neutral variants such as ``keep(g, x)`` cost no training.  A rule whose probe updates match the target's
within 0.1% scores >= 0.999: "found".
"""
from __future__ import annotations

import math
import time

import torch

from evo_nos.fitness.evaluation import CACHED, INVALID, OK, Evaluation
from evo_nos.fitness.probe import probe_gradients, probe_updates
from evo_nos.fitness.screen import fingerprint_of
from evo_nos.core.known import resolve
from evo_nos.core.rules import Rule

FOUND = 0.999


def similarity(updates: torch.Tensor, target: torch.Tensor) -> float:
    """Mean over steps of max(0, cos) times the ratio of norms; 1 for identical updates.

    Each coordinate is divided by the target's typical size first, so small and large
    gradient coordinates count alike.
    """
    if not torch.isfinite(updates).all():
        return 0.0
    scale = target.abs().mean(dim=0).clamp_min(1e-12)
    a, b = updates / scale, target / scale
    na, nb = a.norm(dim=1), b.norm(dim=1)
    cos = (a * b).sum(dim=1) / (na * nb).clamp_min(1e-300)
    ratio = torch.minimum(na, nb) / torch.maximum(na, nb).clamp_min(1e-300)
    score = (cos.clamp_min(0.0) * ratio).mean().item()
    return 0.0 if math.isnan(score) else score


class StandInBackend:
    """Scores rules by :func:`similarity` to ``target`` on fixed probe gradients."""

    def __init__(self, target: "Rule | str", *, steps: int = 24, dim: int = 32, seed: int = 0,
                 cache: str = "structure"):
        if cache not in ("structure", "behaviour"):
            raise ValueError(f"cache must be 'structure' or 'behaviour', got {cache!r}")
        self.cache_by = cache
        self.target = resolve(target)
        self.steps, self.dim, self.seed = steps, dim, seed
        self._grads, self._weights = probe_gradients(steps, dim, seed, log10_range=(-1.0, 1.0))
        self._target_updates = self._probe(self.target)
        self.cache: dict[str, Evaluation] = {}
        self.stats = {"trainings": 0, "cache_hits": 0, "invalid": 0}

    def _probe(self, rule: Rule) -> torch.Tensor:
        return probe_updates(rule, grads=self._grads, weights=self._weights)

    def describe(self) -> dict:
        return {"fitness": "standin", "target": self.target.canonical,
                "probe_steps": self.steps, "probe_dim": self.dim, "probe_seed": self.seed}

    def evaluate(self, rules: list[Rule]) -> list[Evaluation]:
        if self.cache_by == "behaviour":
            return [self._evaluate_by_behaviour(rule) for rule in rules]
        out = []
        for rule in rules:
            key = rule.key
            if key in self.cache:
                self.stats["cache_hits"] += 1
                hit = self.cache[key]
                out.append(Evaluation(rule=rule.canonical, fitness=hit.fitness, status=CACHED,
                                      fingerprint=key, reason=f"same as {hit.rule}"))
                continue
            start = time.perf_counter()
            fitness = similarity(self._probe(rule), self._target_updates)
            if fitness == 0.0:
                self.stats["invalid"] += 1
                ev = Evaluation(rule=rule.canonical, fitness=0.0, status=INVALID,
                                fingerprint=key, reason="no resemblance to the target")
            else:
                self.stats["trainings"] += 1
                ev = Evaluation(rule=rule.canonical, fitness=fitness, status=OK, trainings=1,
                                steps=self.steps, seconds=time.perf_counter() - start,
                                fingerprint=key, best_lr=1.0, lr_scores={1.0: fitness})
            self.cache[key] = ev
            out.append(ev)
        return out

    def _evaluate_by_behaviour(self, rule: Rule) -> Evaluation:
        start = time.perf_counter()
        updates = self._probe(rule)
        fitness = similarity(updates, self._target_updates)
        if fitness == 0.0:
            self.stats["invalid"] += 1
            return Evaluation(rule=rule.canonical, fitness=0.0, status=INVALID,
                              reason="no resemblance to the target")
        key = fingerprint_of(updates)
        if key in self.cache:
            self.stats["cache_hits"] += 1
            return Evaluation(rule=rule.canonical, fitness=fitness, status=CACHED,
                              fingerprint=key, reason=f"same as {self.cache[key].rule}")
        self.stats["trainings"] += 1
        evaluation = Evaluation(rule=rule.canonical, fitness=fitness, status=OK, trainings=1,
                                steps=self.steps, seconds=time.perf_counter() - start,
                                fingerprint=key, best_lr=1.0, lr_scores={1.0: fitness})
        self.cache[key] = evaluation
        return evaluation

    def state_dict(self) -> dict:
        return {"cache": {k: e.to_dict() for k, e in self.cache.items()},
                "stats": dict(self.stats)}

    def load_state_dict(self, state: dict) -> None:
        self.cache = {k: Evaluation.from_dict(e) for k, e in state["cache"].items()}
        self.stats = dict(state["stats"])
