"""Search strategies, by name: ``make_strategy("evo", space, seed, population=50)``.

A strategy is registered as ``"module:Class"`` and imported on first use, so adding one
(``rl``) is one entry in :data:`STRATEGIES` and the command line (``--strategy``) picks
it up.  A strategy class takes ``(space, seed, **settings)`` and exposes a ``settings``
dict (logged as MLflow params).
"""
from __future__ import annotations

import importlib
import inspect

from evo_nos.operators.space import SearchSpace

STRATEGIES: dict[str, str] = {
    "evo": "evo_nos.strategies.evo:EvoStrategy",
    "random": "evo_nos.strategies.random:RandomStrategy",
    "rl": "evo_nos.strategies.rl:RLStrategy",
}


def strategy_names() -> list[str]:
    return list(STRATEGIES)


def strategy_class(name: str):
    try:
        target = STRATEGIES[name]
    except KeyError:
        raise ValueError(f"unknown strategy {name!r}; choose from {strategy_names()}") from None
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def strategy_settings(name: str) -> list[str]:
    """The keyword settings a strategy accepts (beyond space and seed)."""
    params = inspect.signature(strategy_class(name).__init__).parameters
    return [p.name for p in params.values() if p.kind is inspect.Parameter.KEYWORD_ONLY]


def make_strategy(name: str, space: SearchSpace | None = None, seed: int = 0, **settings):
    """A strategy by name; settings it does not take are refused, naming the ones it does."""
    known = strategy_settings(name)
    unknown = sorted(set(settings) - set(known))
    if unknown:
        raise ValueError(f"strategy {name!r} has no setting(s) {unknown}; its settings: "
                         f"{known or 'none'}")
    return strategy_class(name)(space or SearchSpace(), seed, **settings)
