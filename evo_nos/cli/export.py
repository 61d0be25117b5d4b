"""``python -m evo_nos.export``: write a rule as a standalone torch optimizer.

::

    python -m evo_nos.export --rule powersign --out PowerSign.py [--name PowerSign]
    python -m evo_nos.export --run RUN_ID [--rank K] --out Best.py   # from a search
"""
from __future__ import annotations

import argparse
import dataclasses
import sys

from evo_nos.cli.options import (EXIT_OK, Parser, describe, guarded, parse_settings,
                                 positive_int, py_file_path, rule_value)
from evo_nos.core.algebra import readable, simplify
from evo_nos.core.known import resolve
from evo_nos.core.primitives import RuleSettings
from evo_nos.core.rules import Rule
from evo_nos.optim.export import export
from evo_nos.tracking import TrackingError, hall_of_fame_rule

RULE_SETTING_DEFAULTS = {f.name: f.default for f in dataclasses.fields(RuleSettings)}


def _setting(text: str) -> tuple[str, object]:
    """``beta1=0.95`` -> ("beta1", 0.95), typed by the RuleSettings field and checked."""
    key, value = next(iter(parse_settings([text], RULE_SETTING_DEFAULTS, strict=True).items()))
    try:
        RuleSettings(**{key: value})
    except ValueError as err:
        raise argparse.ArgumentTypeError(describe(err)) from None
    return key, value


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="python -m evo_nos.export",
        description="Write a rule as a standalone torch optimizer (FILE.py) plus FILE.json.")
    source = parser.add_argument_group("which rule")
    source.add_argument("--rule", type=rule_value,
                        help="a rule string or a known name (e.g. powersign)")
    source.add_argument("--run", metavar="RUN_ID",
                        help="an MLflow search run: export a rule of its hall of fame")
    source.add_argument("--rank", type=positive_int, default=1, metavar="K",
                        help="with --run: the hall-of-fame rank to export (default 1, the best)")
    source.add_argument("--tracking-uri", help="with --run: the MLflow store (default "
                                               "$MLFLOW_TRACKING_URI, else ./mlflow.db)")
    parser.add_argument("--out", required=True, type=py_file_path,
                        help="output .py file; the .json goes beside it")
    parser.add_argument("--name", default=None,
                        help="class name (default: from the known name, else EvoNosRule)")
    parser.add_argument("--set", dest="settings", action="append", default=[],
                        type=_setting, metavar="KEY=VALUE",
                        help="override a rule setting, e.g. --set bias_correction=false")
    return parser


def rule_from_args(args: argparse.Namespace, parser: argparse.ArgumentParser) -> Rule:
    """The rule the command line names: ``--rule`` or a search run's hall of fame."""
    if args.rule and args.run:
        parser.error("give --rule or --run, not both")
    if args.run:
        try:
            return resolve(hall_of_fame_rule(args.run, args.rank, args.tracking_uri))
        except (ValueError, TrackingError) as err:
            parser.error(describe(err))
    if not args.rule:
        parser.error("--rule is required (or --run RUN_ID: a search run's hall of fame)")
    return resolve(args.rule)


@guarded
def main(argv: "list[str] | None" = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    rule = rule_from_args(args, parser)
    try:
        settings = RuleSettings(**dict(args.settings))
        py_path, json_path = export(rule, args.out, class_name=args.name, settings=settings)
    except (ValueError, OSError) as err:       # a bad --name; a folder it may not write
        parser.error(describe(err))
    print(f"wrote {py_path} and {json_path}: {rule.math}")
    simple = simplify(rule)
    if simple != rule:
        print(f"  simplified: {readable(rule)}  (the same rule as {simple})")
    return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
