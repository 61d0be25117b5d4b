"""The option groups the commands share, and the checks that need several options.

Every ``python -m evo_nos.X`` builds its parser with :class:`~evo_nos.cli.errors.Parser`
from these groups (``add_*_option(s)``), so an option means the same thing (and has the
same default) in every command.  Option values are checked where they are parsed (the
``type=`` functions of :mod:`evo_nos.cli.option_types` and :mod:`evo_nos.cli.settings`);
what needs several options at once is checked by :func:`validate_search_args` right
after ``parse_args``, before anything is created.  A bad value ends the command with one
line, ``error: <what is wrong and how to fix it> (see --help)``, and exit status 2.
:func:`space_args_from` and :func:`funnel_args_from` turn parsed arguments into the
search space's and the funnel's settings.
"""
from __future__ import annotations

import argparse

from evo_nos.cli.errors import bad_input, describe
from evo_nos.cli.option_types import (MAX_SPACE_BINARY, baseline_names, data_spec, device_name, fitness_spec,
                                      folder_path, job_count, max_binary, nonnegative_int,
                                      positive_float, positive_int, preset_option, quantile,
                                      rule_names, space_names)
from evo_nos.cli.settings import (RULE_SETTINGS, named_strategy_options, rule_settings_from,
                                  setting_item, strategy_setting, strategy_settings_from)
from evo_nos.core.known import REFERENCE_NAMES
from evo_nos.fitness.baselines import BASELINES, DEFAULT_BASELINES
from evo_nos.fitness.factory import JOBLIB_BACKENDS
from evo_nos.operators.space import ROOTS, SearchSpace
from evo_nos.search.defaults import (DEFAULT_BUDGETS, DEFAULT_HALL_OF_FAME, DEFAULT_OUT,
                                     DEFAULT_SEED, DEFAULT_STRATEGY, FALLBACK_BUDGET, FUNNEL,
                                     funnel_settings)
from evo_nos.strategies import make_strategy, strategy_names, strategy_settings
from evo_nos.tracking.store import DEFAULT_EXPERIMENT


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


# -- option groups ----------------------------------------------------------------------------
def add_device_option(group, default: str | None = "auto") -> None:
    """``--device auto|cpu|cuda[:N]``, the same in every command."""
    group.add_argument("--device", type=device_name, default=default,
                       metavar="auto|cpu|cuda[:N]",
                       help="training device: auto (the GPU when there is one, else the "
                            "CPU), cpu, cuda or cuda:N (default auto)")


def add_fitness_options(p: argparse.ArgumentParser, *, n_jobs: bool = True) -> None:
    f = p.add_argument_group("fitness")
    f.add_argument("--preset", metavar="NAME|FILE.toml", type=preset_option(),
                   help="fitness preset (smoke, cpu, nos; default nos on a GPU, cpu otherwise)")
    f.add_argument("--fitness", metavar="standin:TARGET", type=fitness_spec,
                   help="score by resemblance to TARGET's updates instead of training "
                        "(a seconds-long demo; TARGET is a rule or a known name)")
    f.add_argument("--data", metavar="SPEC", type=data_spec,
                   help="dataset: cifar10 | imagefolder:DIR | synthetic (overrides the preset)")
    add_device_option(f, default=None)      # None: keep a resumed search's device
    if n_jobs:
        f.add_argument("--n-jobs", type=job_count,
                       help="parallel trainings (joblib n_jobs; -1: every core; default 1)")
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
    s.add_argument("--strategy", choices=strategy_names(),
                   help=f"search strategy (default {DEFAULT_STRATEGY})")
    s.add_argument("--budget", type=positive_int,
                   help=f"child trainings to spend (default per preset: {DEFAULT_BUDGETS}, "
                        f"else {FALLBACK_BUDGET})")
    s.add_argument("--seed", type=nonnegative_int,
                   help=f"seed of everything (default {DEFAULT_SEED})")
    s.add_argument("--seeds", type=nonnegative_int, nargs="+", metavar="S",
                   help="several seeds and/or several --strategy names run a head-to-head "
                        "campaign, then the references and the report (evo_nos.campaign)")
    s.add_argument("--time-limit", type=positive_float, metavar="SECONDS",
                   help="stop between batches after this long (summed over resumes)")
    s.add_argument("--batch-size", type=positive_int,
                   help="rules per ask/evaluate round (default: --n-jobs, at least 1)")
    s.add_argument("--hall-of-fame", type=positive_int, metavar="K",
                   help=f"hall-of-fame size (default {DEFAULT_HALL_OF_FAME})")
    add_fitness_options(p)
    r = p.add_argument_group("noise: re-scoring and hurdles")
    r.add_argument("--funnel-top", type=nonnegative_int, metavar="K",
                   help=f"re-score every rule that enters the top K of the hall of fame "
                        f"(default {FUNNEL['funnel_top']})")
    r.add_argument("--funnel-seeds", type=nonnegative_int, metavar="N",
                   help=f"... until it has N backend seeds in all, charged to the budget "
                        f"(default {FUNNEL['funnel_seeds']}; 1: off)")
    r.add_argument("--final-top", type=nonnegative_int, metavar="K",
                   help=f"after the budget, re-score the top K ... (default "
                        f"{FUNNEL['final_top']})")
    r.add_argument("--final-seeds", type=nonnegative_int, metavar="N",
                   help=f"... on N seeds, outside the budget (default "
                        f"{FUNNEL['final_seeds']}: no final stage)")
    r.add_argument("--hurdle", type=quantile, metavar="Q",
                   help="skip the final run of a candidate whose lr sweep falls below the "
                        "Q-quantile of the sweeps seen so far (e.g. 0.5; default: none)")
    g = p.add_argument_group("space")
    g.add_argument("--max-binary", type=max_binary,
                   help=f"bound on binary functions per rule ({SearchSpace().max_binary}; "
                        f"at most {MAX_SPACE_BINARY})")
    g.add_argument("--root", choices=ROOTS,
                   help="what a rule's root may be: binary (default, the paper's grammar) or "
                        "slot (also an operand or a unary function; docs/rules.md)")
    g.add_argument("--operands", type=space_names("operands"),
                   help="comma-separated operands allowed (default all)")
    g.add_argument("--unaries", type=space_names("unaries"),
                   help="comma-separated unary functions allowed (default all)")
    g.add_argument("--binaries", type=space_names("binaries"),
                   help="comma-separated binary functions allowed (default all)")
    st = p.add_argument_group("strategy settings")
    for key, text in named_strategy_options().items():
        st.add_argument("--" + key.replace("_", "-"), dest=key, metavar="VALUE", help=text,
                        type=strategy_setting(key))
    st.add_argument("--set", dest="settings", action="append", metavar="KEY=VALUE",
                    type=setting_item,
                    help="any strategy setting (repeatable), e.g. --set population=50, or a "
                         "setting of the primitive set, e.g. --set bias_correction=false "
                         f"(one of {', '.join(RULE_SETTINGS)}): it applies to every "
                         "training of the search and to its exported optimizer; or the "
                         "protocol's lr schedule, e.g. --set schedule=cosine --set warmup=20 "
                         "(schedule: constant | cosine | linear)")
    add_tracking_options(p)
    o = p.add_argument_group("output")
    o.add_argument("--run-name", help="MLflow run name")
    o.add_argument("--out", type=folder_path, help=f"checkpoint folder (default ./{DEFAULT_OUT})")
    o.add_argument("--resume", metavar="RUN_ID|last",
                   help="continue an interrupted search (its settings come from the checkpoint)")
    o.add_argument("--quiet", action="store_true", help="no progress bar")


def add_reference_option(p: argparse.ArgumentParser, default=REFERENCE_NAMES) -> None:
    p.add_argument("--references", default=",".join(default), metavar="NAMES|none",
                   type=rule_names,
                   help="known rules to score as references (comma-separated; none: skip)")


def add_output_folder_option(p: argparse.ArgumentParser, default: str) -> None:
    """``--out``: the folder a measurement writes to (and resumes from)."""
    p.add_argument("--out", default=default, type=folder_path,
                   help=f"output folder, resumed when it holds scores (./{default})")


def add_baseline_option(p: argparse.ArgumentParser, default=DEFAULT_BASELINES) -> None:
    p.add_argument("--baselines", default=",".join(default) or "none", metavar="NAMES|none",
                   type=baseline_names,
                   help="torch optimizers scored by the same protocol (lr sweep, schedule): "
                        f"{', '.join(BASELINES)} (comma-separated; default "
                        f"{','.join(default) or 'none'}; none: skip)")


# -- checks that need several options: right after parse_args, before any work --------------
def validate_search_args(args: argparse.Namespace, *, campaign: bool = False) -> None:
    """Check what one option's type cannot: the search space the space options build
    together, the strategy settings (named options and ``--set``) against the strategies
    they go to (each is built once, which runs its own checks), the primitive set's
    settings, the funnel, a campaign's seeds and references.  Creates nothing; on bad
    input prints one line and exits with :data:`EXIT_ERROR` (:func:`bad_input`).

    ``python -m evo_nos.run`` calls it with the parsed arguments (the strategy is
    ``--strategy``, else the default); a campaign with ``campaign=True`` (the strategies
    are ``--strategy``'s, else all, and each gets the settings it takes).  On
    ``--resume`` the search's settings come from its checkpoint: nothing to check."""
    if getattr(args, "resume", None):
        return
    try:
        space = SearchSpace(**space_args_from(args))
    except ValueError as err:
        bad_input(f"search space: {describe(err)}")
    given = getattr(args, "strategy", None)
    if isinstance(given, str):
        names = [given]
    elif given:
        names = list(given)
    else:
        names = strategy_names() if campaign else [DEFAULT_STRATEGY]
    try:
        settings = strategy_settings_from(args, names)
        rule_settings_from(args)
        funnel_args_from(args)
    except (argparse.ArgumentTypeError, ValueError) as err:
        bad_input(describe(err))
    if campaign:
        taken = set().union(*(strategy_settings(n) for n in names))
        unused = sorted(set(settings) - taken)
        if unused:
            bad_input(f"no strategy of this campaign ({', '.join(names)}) takes the "
                      f"setting(s) {unused}")
    seed = getattr(args, "seed", None)
    for name in names:
        own = {k: v for k, v in settings.items() if k in strategy_settings(name)} \
            if campaign else settings
        try:
            make_strategy(name, space, DEFAULT_SEED if seed is None else seed, **own)
        except (ValueError, TypeError) as err:
            message = describe(err)
            bad_input(message if message.startswith("strategy ")
                      else f"strategy {name}: {message}")
    for value in getattr(args, "seeds", None) or []:
        if value < 0:
            bad_input(f"--seeds expects integers >= 0, got {value}")
    references = getattr(args, "references", None)
    if campaign and references is not None:
        try:
            rule_names(references)
        except argparse.ArgumentTypeError as err:
            bad_input(f"--references: {err}")
