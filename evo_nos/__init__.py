"""evo_nos: discover optimizers for neural networks.

The public API, for scripts: the names a search and its results need::

    from evo_nos import (Rule, RuleOptimizer, SearchSpace, make_strategy, FitnessBackend,
                         StandInBackend, Search, load_task, export_optimizer)

    opt = RuleOptimizer(model.parameters(), "powersign", lr=0.1)        # any rule, any model
    space = SearchSpace()
    search = Search(make_strategy("evo", space, seed=0), FitnessBackend(load_task("smoke")),
                    budget=20)
    best = search.run().best                                           # an Evaluation
    export_optimizer(best.rule, "Best.py")                             # a torch.optim class

Also here: ``seed_everything``, ``Tracker`` (MLflow), ``load_search_runs`` and
``load_hall_of_fame``.  Everything else is imported from the module that defines it; each
layer's package docstring lists what its modules offer (``help(evo_nos.core)``: ``KNOWN``
and ``resolve`` in ``evo_nos.core.known``, ``RuleSettings`` in ``evo_nos.core.primitives``,
...).

``export_optimizer`` is :func:`evo_nos.optim.export.export` (a rule as a standalone
``.py`` file and its JSON spec).  ``evo_nos.export``, like ``evo_nos.run`` and every
other top-level module, is a command line (``python -m evo_nos.export``), not a function.

``import evo_nos`` is cheap: the names are PEP 562 lazy attributes, so torch, mlflow and
the rest are imported when a name is first used, not before.

The package is layered; each layer imports only the ones before it (checked by
``python tests/import_layers.py``, which CI runs)::

    0 core -> 1 optim -> 2 operators -> 3 fitness -> 4 strategies -> 5 search
      -> 6 tracking -> 7 experiments -> 8 cli (every ``python -m evo_nos.X``)
"""
from importlib import import_module

# the module that defines each public name; imported when the name is first used
_MODULES = {
    "evo_nos.core.rules": ("Rule",),
    "evo_nos.optim.optimizer": ("RuleOptimizer",),
    "evo_nos.optim.export": ("export_optimizer",),
    "evo_nos.operators.space": ("SearchSpace",),
    "evo_nos.strategies": ("make_strategy",),
    "evo_nos.fitness.tasks": ("load_task",),
    "evo_nos.fitness.backend": ("FitnessBackend",),
    "evo_nos.fitness.standin": ("StandInBackend",),
    "evo_nos.search.driver": ("Search",),
    "evo_nos.search.checkpoint": ("seed_everything",),
    "evo_nos.tracking.writer": ("Tracker",),
    "evo_nos.tracking.reader": ("load_search_runs", "load_hall_of_fame"),
}
_LAZY = {name: module for module, names in _MODULES.items() for name in names}
_NAME_THERE = {"export_optimizer": "export"}     # a public name its module spells otherwise

__all__ = [*_LAZY, "__version__"]


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("evo_nos")
    except PackageNotFoundError:      # a source tree that was never installed
        return "unknown"


def __getattr__(name: str):
    """PEP 562: import a public name's module on first use, then keep the name here."""
    if name == "__version__":
        value = _version()
    elif name in _LAZY:
        value = getattr(import_module(_LAZY[name]), _NAME_THERE.get(name, name))
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list:
    return sorted(set(globals()) | set(__all__))
