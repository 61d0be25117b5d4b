"""Layer 4, strategies, by name: ``make_strategy("evo", space, seed, population=50)``.

Adding a strategy is one entry in :data:`STRATEGIES`; the command line (``--strategy``,
``--set KEY=VALUE`` and each strategy's ``OPTIONS``) picks it up.  A strategy class
takes ``(space, seed, **settings)``, its settings are its keyword-only parameters, and
it exposes a ``settings`` dict (logged as MLflow params).
"""
from __future__ import annotations

import inspect

from evo_nos.operators.space import SearchSpace
from evo_nos.strategies.evo import EvoStrategy
from evo_nos.strategies.random import RandomStrategy
from evo_nos.strategies.rl import RLStrategy

STRATEGIES: dict[str, type] = {
    "evo": EvoStrategy,
    "random": RandomStrategy,
    "rl": RLStrategy,
}


def strategy_names() -> list[str]:
    return list(STRATEGIES)


def strategy_class(name: str) -> type:
    try:
        return STRATEGIES[name]
    except KeyError:
        raise ValueError(f"unknown strategy {name!r}; choose from {strategy_names()}") from None


def strategy_defaults(name: str) -> dict:
    """The keyword settings a strategy accepts (beyond space and seed), with defaults."""
    params = inspect.signature(strategy_class(name).__init__).parameters
    return {p.name: p.default for p in params.values()
            if p.kind is inspect.Parameter.KEYWORD_ONLY}


def strategy_settings(name: str) -> list[str]:
    """The names of the keyword settings a strategy accepts."""
    return list(strategy_defaults(name))


def make_strategy(name: str, space: SearchSpace | None = None, seed: int = 0, **settings):
    """A strategy by name; settings it does not take are refused, naming the ones it does."""
    known = strategy_settings(name)
    unknown = sorted(set(settings) - set(known))
    if unknown:
        raise ValueError(f"strategy {name!r} has no setting(s) {unknown}; its settings: "
                         f"{known or 'none'}")
    return strategy_class(name)(space or SearchSpace(), seed, **settings)


__all__ = ["STRATEGIES", "make_strategy", "strategy_class", "strategy_defaults",
           "strategy_names", "strategy_settings", "EvoStrategy", "RandomStrategy", "RLStrategy"]
