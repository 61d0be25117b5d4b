"""Genetic programming over the NOS space: aging ("regularized") evolution on DEAP trees.

Aging evolution (Real et al. 2019; Lion's search): keep the last ``population`` rules
scored; each child comes from a tournament (``tournament`` members drawn without
replacement, the fittest wins), is a crossover of two winners (probability
``crossover_prob``) or a mutation of one, and joins the population as the oldest member
leaves.  Old members leave whatever their fitness, which keeps the search from
settling on one early lucky rule.  ``mode="mu_plus_lambda"`` is the generational
alternative: ``offspring`` children are bred from the current parents, then the best
``population`` rules of distinct behaviour (functional fingerprint) survive.

Until the population is full, :meth:`EvoStrategy.ask` proposes uniform random rules of
the space (after the optional warm-start ``seed_rules``, off by default so that all
strategies start equal).  A seed rule whose root the space does not allow (``sgd = g``
or ``adam`` when roots are binary functions, the default) is proposed as its in-space
spelling, :meth:`SearchSpace.spelling` (``keep(g, g)``, ``keep(adam, adam)``), which
behaves identically; ``settings["seed_rules"]`` records the rules as given.  Children
are drawn by :class:`~evo_nos.operators.deap_ops.Variation`: always inside the space,
different from their parents and, when it can, different from every rule proposed
before (a repeat costs no training but wastes a slot).  All randomness comes from one ``random.Random(seed)``.
"""
from __future__ import annotations

import math
import random
from collections import deque
from dataclasses import dataclass

from evo_nos.fitness.evaluation import Evaluation
from evo_nos.core.known import resolve
from evo_nos.operators.deap_ops import MUTATIONS, Variation
from evo_nos.operators.space import SearchSpace
from evo_nos.core.rules import Rule

MODES = ("aging", "mu_plus_lambda")


@dataclass
class Member:
    rule: Rule
    fitness: float
    born: int          # order in which members were told (0, 1, 2, ...)
    behaviour: str     # the backend's functional fingerprint, else the structural key


def _score(evaluation: Evaluation) -> float:
    value = float(evaluation.fitness)
    return value if math.isfinite(value) else -math.inf


class EvoStrategy:
    """GP strategy implementing the :class:`~evo_nos.strategies.base.Strategy` protocol."""

    name = "evo"
    # settings with an option of their own on the command line (others: --set KEY=VALUE)
    OPTIONS = {
        "population": "population size (default 20)",
        "tournament": "tournament size (default 5)",
        "mode": "selection: aging | mu_plus_lambda (default aging)",
        "offspring": "mu_plus_lambda: children per generation",
        "crossover_prob": "probability of crossover (default 0.3)",
        "seed_rules": "warm start, e.g. adam,sgd,powersign (off by default)",
    }

    def __init__(self, space: SearchSpace | None = None, seed: int = 0, *,
                 population: int = 20, tournament: int = 5, mode: str = "aging",
                 offspring: int | None = None, crossover_prob: float = 0.3,
                 mutation_weights: dict | None = None, seed_rules=(), max_tries: int = 20):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if population < 2:
            raise ValueError(f"population must be >= 2, got {population}")
        if not 1 <= tournament <= population:
            raise ValueError(f"tournament must be in 1..population ({population}), got {tournament}")
        if not 0.0 <= crossover_prob <= 1.0:
            raise ValueError(f"crossover_prob must be in [0, 1], got {crossover_prob}")
        if offspring is not None and offspring < 1:
            raise ValueError(f"offspring must be >= 1, got {offspring}")
        self.space = space or SearchSpace()
        self.seed = seed
        self.population_size = population
        self.tournament = tournament
        self.mode = mode
        self.offspring_size = offspring or population
        self.crossover_prob = crossover_prob
        weights = dict(mutation_weights or {name: 1.0 for name in MUTATIONS})
        self.variation = Variation(self.space, max_tries=max_tries, weights=weights)
        if isinstance(seed_rules, str):
            seed_rules = [s for s in seed_rules.split(",") if s.strip()]
        self.seed_rules = tuple(resolve(r) for r in seed_rules)
        spelled = []
        for rule in self.seed_rules:
            try:
                inside = self.space.spelling(rule)
            except ValueError as err:
                raise ValueError(f"seed rule {rule} is outside the search space: {err}") from None
            why = self.space.violation(inside)
            if why:
                raise ValueError(f"seed rule {rule} is outside the search space: {why}")
            spelled.append(inside)

        self.rng = random.Random(seed)
        self.population: deque[Member] = deque()
        self.offspring: list[Member] = []          # mu+lambda: children of this generation
        self.seen: dict[str, None] = {}            # keys of every rule proposed (ordered)
        self.pending_seeds: list[Rule] = spelled             # in-space spellings, in order
        self.told = 0
        self.generation = 0

    # -- settings (MLflow params) ---------------------------------------------------------
    @property
    def settings(self) -> dict:
        return {
            "population": self.population_size, "tournament": self.tournament,
            "mode": self.mode, "offspring": self.offspring_size,
            "crossover_prob": self.crossover_prob,
            "mutation_weights": ",".join(f"{k}:{v:g}" for k, v in self.variation.weights.items()),
            "seed_rules": ",".join(r.canonical for r in self.seed_rules),
            "max_tries": self.variation.max_tries,
        }

    # -- ask / tell ---------------------------------------------------------------------
    def ask(self, n: int) -> list[Rule]:
        out: list[Rule] = []
        for _ in range(n):
            if self.pending_seeds:
                rule = self.pending_seeds.pop(0)
            elif len(self.population) + len(out) < self.population_size or not self.population:
                rule = self._fresh()
            else:
                rule = self._breed()
            self.seen.setdefault(rule.key, None)
            out.append(rule)
        return out

    def tell(self, rules: list[Rule], evaluations: list[Evaluation]) -> None:
        """Every scored rule joins the population, as in regularized evolution.

        Screened-out rules join with fitness 0 (they lose every tournament but age
        out like the rest), and cache hits join like any rule: behaviourally neutral
        variants of good rules are free with a fitness cache and let the search drift
        across them.  On the stand-in fitness (tests/test_evo.py's setting, 600
        trainings) this found the target in 8 of 8 seeds; leaving screened-out rules
        out, in 5 of 8; leaving out behavioural duplicates as well, in 1 of 4.
        """
        if len(rules) != len(evaluations):
            raise ValueError(f"told {len(rules)} rules but {len(evaluations)} evaluations")
        for rule, evaluation in zip(rules, evaluations):
            behaviour = evaluation.fingerprint or rule.key
            member = Member(rule, _score(evaluation), self.told, behaviour)
            self.told += 1
            if self.mode == "aging" or len(self.population) < self.population_size:
                self.population.append(member)
                while len(self.population) > self.population_size:
                    self.population.popleft()           # the oldest leaves
            else:
                self.offspring.append(member)
                if len(self.offspring) >= self.offspring_size:
                    self._next_generation()

    def _next_generation(self) -> None:
        pool = sorted(list(self.population) + self.offspring,
                      key=lambda m: (-m.fitness, m.born))
        survivors, behaviours = [], set()
        for member in pool:
            if member.behaviour not in behaviours:
                behaviours.add(member.behaviour)
                survivors.append(member)
            if len(survivors) == self.population_size:
                break
        self.population = deque(sorted(survivors, key=lambda m: m.born))
        self.offspring = []
        self.generation += 1

    # -- breeding -------------------------------------------------------------------------
    def _fresh(self) -> Rule:
        """A uniform random rule, re-drawn (a few times) if it was proposed before."""
        rule = self.space.sample(self.rng)
        for _ in range(self.variation.max_tries - 1):
            if rule.key not in self.seen:
                break
            rule = self.space.sample(self.rng)
        return rule

    def _select(self) -> Member:
        members = list(self.population)
        contenders = self.rng.sample(members, min(self.tournament, len(members)))
        return max(contenders, key=lambda m: m.fitness)   # first of equals wins

    def _breed(self) -> Rule:
        if len(self.population) >= 2 and self.rng.random() < self.crossover_prob:
            child = self.variation.crossover(self._select().rule, self._select().rule,
                                             self.rng, avoid=self.seen)
        else:
            child = self.variation.mutate(self._select().rule, self.rng, avoid=self.seen)
        return child if child is not None else self._fresh()

    # -- checkpoints ----------------------------------------------------------------------
    def state_dict(self) -> dict:
        def rows(members):
            return [(m.rule.canonical, m.fitness, m.born, m.behaviour) for m in members]

        return {
            "name": self.name, "settings": self.settings, "rng": self.rng.getstate(),
            "population": rows(self.population), "offspring": rows(self.offspring),
            "seen": list(self.seen), "pending_seeds": [r.canonical for r in self.pending_seeds],
            "told": self.told, "generation": self.generation,
        }

    def load_state_dict(self, state: dict) -> None:
        if state.get("name") != self.name:
            raise ValueError(f"this checkpoint belongs to strategy {state.get('name')!r}, "
                             f"not {self.name!r}")
        if state["settings"] != self.settings:
            raise ValueError(f"checkpoint settings {state['settings']} differ from this "
                             f"strategy's {self.settings}; build it with the same settings")

        def members(rows):
            return [Member(Rule.parse(text), fitness, born, behaviour)
                    for text, fitness, born, behaviour in rows]

        self.rng.setstate(state["rng"])
        self.population = deque(members(state["population"]))
        self.offspring = members(state["offspring"])
        self.seen = dict.fromkeys(state["seen"])
        # spelling() leaves in-space rules alone; it maps seeds that checkpoints from before
        # the space decided the root kept as given (e.g. g) to their in-space spelling
        self.pending_seeds = [self.space.spelling(Rule.parse(t)) for t in state["pending_seeds"]]
        self.told = state["told"]
        self.generation = state["generation"]
