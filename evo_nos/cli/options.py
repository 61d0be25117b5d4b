"""What the command lines share: exit codes, option groups, the one typed ``--set`` parser.

Every ``python -m evo_nos.X`` builds its parser from these groups, so an option means
the same thing (and has the same default) in every command.
"""
from __future__ import annotations

import argparse
import ast
import sys

from evo_nos.core.known import REFERENCE_NAMES
from evo_nos.core.primitives import RuleSettings
from evo_nos.fitness.factory import JOBLIB_BACKENDS
from evo_nos.operators.space import ROOTS, SearchSpace
from evo_nos.search.defaults import (DEFAULT_BUDGETS, DEFAULT_HALL_OF_FAME, DEFAULT_OUT,
                                     FALLBACK_BUDGET, FUNNEL, funnel_settings)
from evo_nos.strategies import STRATEGIES, strategy_defaults, strategy_names
from evo_nos.tracking.store import DEFAULT_EXPERIMENT

EXIT_OK = 0
EXIT_ERROR = 2            # bad input: the message says what and how to fix it
EXIT_INTERRUPTED = 130    # Ctrl+C: the checkpoint is saved, the command says how to resume

_TRUE, _FALSE = ("true", "1", "on", "yes"), ("false", "0", "off", "no")


# -- the one --set parser -------------------------------------------------------------------
def split_setting(text: str) -> tuple[str, str]:
    """``"key=value"`` -> ("key", "value"); refuses anything else."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"--set expects KEY=VALUE, got {text!r}")
    return key.strip(), value.strip()


def typed_value(key: str, text: str, default=None):
    """``text`` as the type of ``default``: true/false for a bool, int, float or str; a
    Python literal (a number, a list, a dict) otherwise, else the text itself."""
    if isinstance(default, bool):
        if text.lower() not in _TRUE + _FALSE:
            raise argparse.ArgumentTypeError(f"{key} expects true or false, got {text!r}")
        return text.lower() in _TRUE
    if isinstance(default, (int, float)):
        try:
            return type(default)(text) if not isinstance(default, int) else int(text)
        except ValueError:
            kind = "an integer" if isinstance(default, int) else "a number"
            raise argparse.ArgumentTypeError(f"{key} expects {kind}, got {text!r}") from None
    if isinstance(default, str):
        return text
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def parse_settings(items, defaults: dict, *, strict: bool = False) -> dict:
    """``["key=value", ...]`` -> {key: typed value}, typed by ``defaults[key]``.  With
    ``strict`` a key missing from ``defaults`` is refused, naming the known keys."""
    out = {}
    for item in items or []:
        key, text = split_setting(item)
        if strict and key not in defaults:
            raise argparse.ArgumentTypeError(f"unknown setting {key!r}; known: "
                                             f"{sorted(defaults)}")
        out[key] = typed_value(key, text, defaults.get(key))
    return out


def all_strategy_defaults(names=None) -> dict:
    """Every setting of the given strategies (all by default) with its default; a name
    two strategies share takes the first one's default."""
    out: dict = {}
    for name in names or strategy_names():
        for key, value in strategy_defaults(name).items():
            out.setdefault(key, value)
    return out


def _named_strategy_options() -> dict:
    """dest -> help of the strategy settings that have an option of their own."""
    out: dict = {}
    for cls in STRATEGIES.values():
        for key, text in getattr(cls, "OPTIONS", {}).items():
            out.setdefault(key, f"{text} ({cls.name})")
    return out


def strategy_settings_from(args, strategies=None) -> dict:
    """The strategy settings a command line gives: named options, then ``--set``."""
    defaults = all_strategy_defaults(strategies)
    settings = {}
    for key in _named_strategy_options():
        value = getattr(args, key, None)
        if value is not None:
            settings[key] = typed_value(key, value, defaults.get(key)) \
                if isinstance(value, str) else value
    items = [i for i in getattr(args, "settings", None) or []
             if split_setting(i)[0] not in RULE_SETTINGS]
    settings.update(parse_settings(items, defaults))
    return settings


RULE_SETTINGS = RuleSettings().as_dict()     # the primitive set's settings and defaults


def rule_settings_from(args) -> dict:
    """The primitive-set settings (:class:`RuleSettings`: bias correction, the betas, ε's
    noise, drop rescaling, ...) a command line's ``--set`` gives, checked; {} for none."""
    items = [i for i in getattr(args, "settings", None) or []
             if split_setting(i)[0] in RULE_SETTINGS]
    out = parse_settings(items, RULE_SETTINGS)
    RuleSettings.from_dict(out)                 # a bad value is refused here, by name
    return out


def space_args_from(args) -> dict:
    """The SearchSpace keyword arguments a command line gives."""
    out = {}
    if getattr(args, "max_binary", None) is not None:
        out["max_binary"] = args.max_binary
    if getattr(args, "root", None) is not None:
        out["root"] = args.root
    for name in ("operands", "unaries", "binaries"):
        value = getattr(args, name, None)
        if value:
            out[name] = [v.strip() for v in value.split(",") if v.strip()]
    return out


def funnel_args_from(args) -> dict:
    """The re-evaluation funnel's settings a command line gives, defaults filled in."""
    return funnel_settings({k: getattr(args, k, None) for k in FUNNEL})


def reference_names(text: str | None) -> tuple:
    """``"sgd,adam"`` -> ("sgd", "adam"); ``none`` or empty -> ()."""
    text = (text or "").strip()
    if text.lower() in ("", "none"):
        return ()
    return tuple(n.strip() for n in text.split(",") if n.strip())


# -- option groups ----------------------------------------------------------------------------
def add_fitness_options(p: argparse.ArgumentParser, *, n_jobs: bool = True) -> None:
    f = p.add_argument_group("fitness")
    f.add_argument("--preset", metavar="NAME|FILE.toml",
                   help="fitness preset (smoke, cpu, nos; default nos on a GPU, cpu otherwise)")
    f.add_argument("--fitness", metavar="standin:TARGET",
                   help="score by resemblance to TARGET's updates instead of training "
                        "(a seconds-long demo; TARGET is a rule or a known name)")
    f.add_argument("--data", metavar="SPEC",
                   help="dataset: cifar10 | imagefolder:DIR | synthetic (overrides the preset)")
    f.add_argument("--device", choices=("auto", "cpu", "cuda"), help="training device (auto)")
    if n_jobs:
        f.add_argument("--n-jobs", type=int, help="parallel trainings (joblib n_jobs; default 1)")
        f.add_argument("--backend", choices=JOBLIB_BACKENDS,
                       help="joblib backend for the trainings (default loky)")
        f.add_argument("--scheduler", metavar="ADDRESS",
                       help="dask scheduler address for --backend dask (default: a local "
                            "cluster)")


def add_tracking_options(p: argparse.ArgumentParser) -> None:
    o = p.add_argument_group("MLflow")
    o.add_argument("--experiment", help=f"MLflow experiment (default {DEFAULT_EXPERIMENT})")
    o.add_argument("--tracking-uri", help="MLflow tracking URI (default $MLFLOW_TRACKING_URI, "
                                          "else sqlite mlflow.db here)")


def add_search_options(p: argparse.ArgumentParser) -> None:
    """Everything that defines and runs a search (``run`` and ``campaign``)."""
    s = p.add_argument_group("search")
    s.add_argument("--strategy", choices=strategy_names(), help="search strategy (default evo)")
    s.add_argument("--budget", type=int,
                   help=f"child trainings to spend (default per preset: {DEFAULT_BUDGETS}, "
                        f"else {FALLBACK_BUDGET})")
    s.add_argument("--seed", type=int, help="seed of everything (default 0)")
    s.add_argument("--seeds", type=int, nargs="+", metavar="S",
                   help="several seeds and/or several --strategy names run a head-to-head "
                        "campaign, then the references and the report (evo_nos.campaign)")
    s.add_argument("--time-limit", type=float, metavar="SECONDS",
                   help="stop between batches after this long (summed over resumes)")
    s.add_argument("--batch-size", type=int,
                   help="rules per ask/evaluate round (default: --n-jobs, at least 1)")
    s.add_argument("--hall-of-fame", type=int, metavar="K",
                   help=f"hall-of-fame size (default {DEFAULT_HALL_OF_FAME})")
    add_fitness_options(p)
    r = p.add_argument_group("noise: re-scoring and hurdles")
    r.add_argument("--funnel-top", type=int, metavar="K",
                   help=f"re-score every rule that enters the top K of the hall of fame "
                        f"(default {FUNNEL['funnel_top']})")
    r.add_argument("--funnel-seeds", type=int, metavar="N",
                   help=f"... until it has N backend seeds in all, charged to the budget "
                        f"(default {FUNNEL['funnel_seeds']}; 1: off)")
    r.add_argument("--final-top", type=int, metavar="K",
                   help=f"after the budget, re-score the top K ... (default "
                        f"{FUNNEL['final_top']})")
    r.add_argument("--final-seeds", type=int, metavar="N",
                   help=f"... on N seeds, outside the budget (default "
                        f"{FUNNEL['final_seeds']}: no final stage)")
    r.add_argument("--hurdle", type=float, metavar="Q",
                   help="skip the final run of a candidate whose lr sweep falls below the "
                        "Q-quantile of the sweeps seen so far (e.g. 0.5; default: none)")
    g = p.add_argument_group("space")
    g.add_argument("--max-binary", type=int, help="bound on binary functions per rule "
                                                   f"({SearchSpace().max_binary})")
    g.add_argument("--root", choices=ROOTS,
                   help="what a rule's root may be: binary (default, the paper's grammar) or "
                        "slot (also an operand or a unary function; docs/rules.md)")
    g.add_argument("--operands", help="comma-separated operands allowed (default all)")
    g.add_argument("--unaries", help="comma-separated unary functions allowed (default all)")
    g.add_argument("--binaries", help="comma-separated binary functions allowed (default all)")
    st = p.add_argument_group("strategy settings")
    for key, text in _named_strategy_options().items():
        st.add_argument("--" + key.replace("_", "-"), dest=key, metavar="VALUE", help=text)
    st.add_argument("--set", dest="settings", action="append", metavar="KEY=VALUE",
                    help="any strategy setting (repeatable), e.g. --set population=50, or a "
                         "setting of the primitive set, e.g. --set bias_correction=false "
                         f"(one of {', '.join(RULE_SETTINGS)}): it applies to every "
                         "training of the search and to its exported optimizer")
    add_tracking_options(p)
    o = p.add_argument_group("output")
    o.add_argument("--run-name", help="MLflow run name")
    o.add_argument("--out", help=f"checkpoint folder (default ./{DEFAULT_OUT})")
    o.add_argument("--resume", metavar="RUN_ID|last",
                   help="continue an interrupted search (its settings come from the checkpoint)")
    o.add_argument("--quiet", action="store_true", help="no progress bar")


def add_reference_option(p: argparse.ArgumentParser, default=REFERENCE_NAMES) -> None:
    p.add_argument("--references", default=",".join(default), metavar="NAMES|none",
                   help="known rules to score as references (comma-separated; none: skip)")


def error(message: str) -> int:
    """Print ``error: message`` to stderr; the exit status of bad input."""
    print(f"error: {message}", file=sys.stderr)
    return EXIT_ERROR
