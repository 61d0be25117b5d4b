"""``python -m evo_nos.compare``: the head-to-head report of the searches in an experiment.

::

    python -m evo_nos.compare                                  # every search in evo_nos
    python -m evo_nos.compare --preset cpu --budget 40 --out results/

What the report holds, and how it refuses to compare unlike searches:
:mod:`evo_nos.experiments.compare`.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from evo_nos.cli.errors import EXIT_OK, Parser, describe, error, guarded
from evo_nos.cli.option_types import folder_path, positive_int, strategy_list
from evo_nos.experiments.compare import compare
from evo_nos.experiments.rendering import markdown
from evo_nos.search.defaults import DEFAULT_OUT
from evo_nos.tracking import DEFAULT_EXPERIMENT, TrackingError


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="python -m evo_nos.compare",
               description="The head-to-head report of the searches in an MLflow experiment.")
    p.add_argument("--experiment", default=DEFAULT_EXPERIMENT,
                   help=f"MLflow experiment ({DEFAULT_EXPERIMENT})")
    p.add_argument("--tracking-uri", help="default $MLFLOW_TRACKING_URI, else ./mlflow.db")
    p.add_argument("--out", type=folder_path,
                   help=f"folder for the report (default ./{DEFAULT_OUT}/compare-<preset>-"
                        "budget<B>)")
    p.add_argument("--preset", help="only searches on this preset")
    p.add_argument("--budget", type=positive_int, help="only searches with this budget")
    p.add_argument("--strategies", type=strategy_list,
                   help="only these strategies (comma-separated)")
    p.add_argument("--runs", nargs="+", metavar="RUN_ID", help="exactly these search runs")
    p.add_argument("--no-log", action="store_true", help="do not log the report to MLflow")
    return p


@guarded
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    strategies = [s.strip() for s in args.strategies.split(",")] if args.strategies else None
    try:
        report = compare(args.experiment, args.tracking_uri, out=args.out, preset=args.preset,
                         budget=args.budget, strategies=strategies, run_ids=args.runs,
                         log=not args.no_log)
    except (ValueError, TrackingError) as err:
        return error(describe(err))
    print(markdown(report))
    print(f"written to {Path(report.files['markdown']).parent}"
          + (f"; MLflow run {report.run_id} (kind=compare)" if report.run_id else ""))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
