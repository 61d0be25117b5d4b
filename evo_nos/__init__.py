"""evo_nos: discover optimizers for neural networks.

The public API, for scripts::

    from evo_nos import (Rule, RuleOptimizer, SearchSpace, make_strategy, FitnessBackend,
                         StandInBackend, Search, load_task, export)

    opt = RuleOptimizer(model.parameters(), "powersign", lr=0.1)        # any rule, any model
    space = SearchSpace()
    search = Search(make_strategy("evo", space, seed=0), FitnessBackend(load_task("smoke")),
                    budget=20)
    best = search.run().best                                           # an Evaluation
    export(best.rule, "Best.py")                                       # a torch.optim class

The package is layered; each layer imports only the ones before it (checked by
``python tools/check_layers.py``, which CI runs)::

    core -> optim -> operators -> fitness -> strategies -> search -> tracking
         -> experiments -> cli (every ``python -m evo_nos.X``)
"""
from importlib.metadata import PackageNotFoundError, version

from evo_nos.core.known import KNOWN, REFERENCE_NAMES, name_of, resolve
from evo_nos.core.primitives import PRIMITIVES, RuleSettings
from evo_nos.core.rules import Rule, RuleSyntaxError
from evo_nos.experiments.campaign import CampaignPlan, run_campaign
from evo_nos.experiments.references import score_references
from evo_nos.fitness.backend import FitnessBackend
from evo_nos.fitness.evaluation import Evaluation
from evo_nos.fitness.factory import make_backend
from evo_nos.fitness.standin import StandInBackend
from evo_nos.fitness.tasks import Task, load_task, presets
from evo_nos.operators.space import SearchSpace
from evo_nos.optim.export import export, export_source, export_spec
from evo_nos.optim.optimizer import RuleOptimizer
from evo_nos.optim.schedules import LinearCosineDecay, NoisyLinearCosineDecay
from evo_nos.search import HallOfFame, Search, SearchResult, load_checkpoint, seed_everything
from evo_nos.strategies import make_strategy, strategy_names
from evo_nos.tracking import Tracker, load_hall_of_fame, load_search_runs

try:
    __version__ = version("evo_nos")
except PackageNotFoundError:          # a source tree that was never installed
    __version__ = "unknown"

__all__ = [
    # rules
    "Rule", "RuleSyntaxError", "RuleSettings", "PRIMITIVES", "KNOWN", "REFERENCE_NAMES",
    "resolve", "name_of",
    # optimizers
    "RuleOptimizer", "LinearCosineDecay", "NoisyLinearCosineDecay", "export", "export_source",
    "export_spec",
    # searching
    "SearchSpace", "make_strategy", "strategy_names", "Task", "load_task", "presets",
    "FitnessBackend", "StandInBackend", "make_backend", "Evaluation", "Search",
    "SearchResult", "HallOfFame", "load_checkpoint", "seed_everything",
    # results
    "Tracker", "load_hall_of_fame", "load_search_runs", "CampaignPlan", "run_campaign",
    "score_references", "__version__",
]
