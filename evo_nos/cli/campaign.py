"""``python -m evo_nos.campaign``: a head-to-head, every strategy with every seed.

::

    python -m evo_nos.campaign --strategy evo rl random --seeds 0 1 2 \\
        --preset cpu --data imagefolder:/data/cifar10 --budget 40
    python -m evo_nos.campaign --config runs/head-to-head-cpu.toml     # the same, from a file
    # the same, through the search command:
    python -m evo_nos.run --strategy evo rl random --seeds 0 1 2 --preset cpu --budget 40

A ``--config`` file holds :class:`~evo_nos.experiments.campaign.CampaignPlan` fields
(``strategies``, ``seeds``, ``preset``, ``budget``, ``strategy_args``, ...); options given
on the command line override it.  Run the same command again to continue an
interrupted campaign (see :mod:`evo_nos.experiments.campaign`).
"""
from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from evo_nos.cli.errors import (EXIT_OK, Parser, SEARCH_ERRORS, describe, error,
                                quiet_mlflow_store)
from evo_nos.cli.option_types import baseline_names, reference_names
from evo_nos.cli.options import (add_search_options, funnel_args_from, space_args_from,
                                 validate_search_args)
from evo_nos.cli.settings import rule_settings_from, strategy_settings_from
from evo_nos.core import signals
from evo_nos.experiments.campaign import CampaignPlan, load_plan_file, run_campaign
from evo_nos.experiments.rendering import markdown
from evo_nos.fitness.baselines import BASELINES
from evo_nos.strategies import strategy_names


def build_parser() -> argparse.ArgumentParser:
    """``python -m evo_nos.run``'s options, with several strategies and seeds."""
    p = Parser(
        prog="python -m evo_nos.campaign", conflict_handler="resolve",
        description="Run every strategy with every seed on one preset and budget, then the "
                    "reference rules and the head-to-head report.",
        epilog="Run the same command again to continue an interrupted campaign.")
    add_search_options(p)
    c = p.add_argument_group("campaign")
    c.add_argument("--strategy", "--strategies", dest="strategy", nargs="+",
                   choices=strategy_names(), metavar="NAME",
                   help=f"strategies to compare (default all: {' '.join(strategy_names())})")
    c.add_argument("--seeds", type=int, nargs="+", metavar="S", help="seeds (default 0)")
    add_campaign_options(c)
    for action in p._actions:          # single-search options a campaign refuses
        if action.dest in ("resume", "run_name"):
            action.help = argparse.SUPPRESS
    return p


# the options only a campaign takes: any of them makes a ``run`` command line a campaign
CAMPAIGN_OPTIONS = ("--config", "--references", "--baselines", "--report-out", "--no-report")


def add_campaign_options(group) -> None:
    """The options of a head-to-head beyond the strategies and seeds (shared by ``run``,
    where any of them makes the command a campaign, and ``campaign``)."""
    group.add_argument("--config", metavar="FILE.toml",
                       help="a campaign file (e.g. runs/head-to-head-cpu.toml); options given "
                            "here override it")
    group.add_argument("--references", metavar="NAMES|none",
                       help="known rules to score as references (comma-separated; none: "
                            "skip; default: the standard set)")
    group.add_argument("--baselines", metavar="NAMES|none", type=baseline_names,
                       help="torch optimizers scored beside the references by the same "
                            f"protocol ({', '.join(BASELINES)}; comma-separated; default none)")
    group.add_argument("--report-out", metavar="DIR",
                       help="report folder (default <out>/campaign-<preset>-budget<B>/report)")
    group.add_argument("--no-report", action="store_true", help="skip the report")


def plan_from_args(args: argparse.Namespace) -> CampaignPlan:
    """The plan of a campaign command line (over its ``--config`` file, if any)."""
    if getattr(args, "resume", None):
        raise ValueError("a campaign continues when its command is run again; "
                         "--resume is for single searches")
    values = load_plan_file(args.config) if args.config else {}
    if args.seeds:
        values["seeds"] = tuple(args.seeds)
    elif args.seed is not None:
        values["seeds"] = (args.seed,)
    if args.strategy:
        values["strategies"] = tuple(args.strategy if isinstance(args.strategy, list)
                                     else [args.strategy])
    values.setdefault("strategies", tuple(strategy_names()))
    if args.references is not None:
        values["references"] = reference_names(args.references)
    if getattr(args, "baselines", None) is not None:
        values["baselines"] = reference_names(args.baselines)
    given = {
        "preset": args.preset, "fitness": args.fitness, "budget": args.budget,
        "data": args.data, "device": args.device, "n_jobs": args.n_jobs,
        "joblib_backend": args.backend, "scheduler": args.scheduler,
        "batch_size": args.batch_size, "hall_of_fame": args.hall_of_fame,
        "time_limit": args.time_limit, "experiment": args.experiment,
        "tracking_uri": args.tracking_uri, "out": args.out,
        "report_out": args.report_out,
    }
    values.update({k: v for k, v in given.items() if v is not None})
    if args.fitness:                 # the command line's choice of scoring replaces the file's
        values.pop("preset", None)
    elif args.preset:
        values.pop("fitness", None)
    try:
        rule_settings = rule_settings_from(args)
    except (argparse.ArgumentTypeError, ValueError) as err:
        raise SystemExit(f"error: {err}") from None
    if rule_settings:
        values["rule_settings"] = {**values.get("rule_settings", {}), **rule_settings}
    settings = strategy_settings_from(args, values["strategies"])
    if settings:
        values["strategy_args"] = {**values.get("strategy_args", {}), **settings}
    funnel = {k: v for k, v in funnel_args_from(args).items() if getattr(args, k, None)
              is not None}
    if funnel:
        values["funnel"] = {**values.get("funnel", {}), **funnel}
    if args.hurdle is not None:
        values["hurdle"] = args.hurdle
    space = space_args_from(args)
    if space:
        values["space_args"] = {**values.get("space_args", {}), **space}
    if args.no_report:
        values["report"] = False
    if args.quiet:
        values["progress"] = False
    for key in ("out", "report_out"):
        if values.get(key) is not None:
            values[key] = Path(values[key])
    return CampaignPlan(**values)


def wants_campaign(argv: list[str]) -> bool:
    """True when a ``python -m evo_nos.run`` command line names several strategies,
    gives ``--seeds`` or one of :data:`CAMPAIGN_OPTIONS`: then it is a campaign."""
    pre = Parser(add_help=False, allow_abbrev=False)
    pre.add_argument("--strategy", "--strategies", dest="strategy", nargs="+")
    pre.add_argument("--seeds", nargs="+")
    known, _ = pre.parse_known_args(argv)
    given = any(a.split("=")[0] in CAMPAIGN_OPTIONS for a in argv)
    return bool(known.seeds) or given or len(known.strategy or []) > 1


def main(argv: list[str] | None = None) -> int:
    """The command; Ctrl+C, SIGTERM and SIGHUP stop it as they stop a search (see
    :mod:`evo_nos.core.signals`): exit status 128 + the signal."""
    with signals.handling():
        try:
            signals.check()                # a stop signal that came during the imports
            quiet_mlflow_store()
            args = build_parser().parse_args(argv)
            validate_search_args(args, campaign=True)
            plan = plan_from_args(args)
            result = run_campaign(plan)
        except (*SEARCH_ERRORS, argparse.ArgumentTypeError) as err:
            return error(describe(err))
        except KeyboardInterrupt:       # between searches, or while one was being set up
            result = None
        stop = signals.pending()
        if result is None or result.status == "interrupted":
            how = "" if stop in (None, signal.SIGINT) else f" by {signals.signal_name(stop)}"
            print(f"\ncampaign interrupted{how}; run the same command again to continue "
                  "where it stopped", file=sys.stderr)
            return signals.exit_status(stop)
        if result.report is not None:
            print()
            print(markdown(result.report))
            print(f"report: {Path(result.report.files['markdown']).parent}; MLflow compare "
                  f"run {result.report.run_id}")
        if stop is not None:
            print(f"{signals.signal_name(stop)} came as the campaign ended: it is finished "
                  "and saved whole", file=sys.stderr)
            return signals.exit_status(stop)
    return EXIT_OK
