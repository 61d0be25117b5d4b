"""``python -m evo_nos.export``: write a rule as a standalone torch optimizer.

::

    python -m evo_nos.export --rule powersign            # writes PowerSign.py + .json here
    python -m evo_nos.export --rule powersign --out opt/PowerSign.py [--name PowerSign]
    python -m evo_nos.export --run RUN_ID [--rank K] [--out Best.py]   # from a search

Without ``--out`` the file is ``<ClassName>.py`` in the current folder.  A rule from a
search (``--run``) defaults to the search's best lr and records the run, its preset, its
rank and its fitness ± SE in its docstring and JSON spec.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys

from evo_nos.cli.errors import EXIT_OK, Parser, describe, guarded
from evo_nos.cli.option_types import positive_int, py_file_path, rule_value
from evo_nos.cli.settings import parse_settings
from evo_nos.core.algebra import readable, simplify
from evo_nos.core.known import resolve
from evo_nos.core.primitives import RuleSettings
from evo_nos.core.rules import Rule
from evo_nos.optim.export import SearchOrigin, export, export_spec, update_line
from evo_nos.tracking import TrackingError, export_origin

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
    parser.add_argument("--out", type=py_file_path,
                        help="output .py file; the .json goes beside it (default: "
                             "<ClassName>.py in the current folder)")
    parser.add_argument("--name", default=None,
                        help="class name (default: from the known name, else EvoNosRule)")
    parser.add_argument("--set", dest="settings", action="append", default=[],
                        type=_setting, metavar="KEY=VALUE",
                        help="override a rule setting, e.g. --set bias_correction=false")
    return parser


def rule_from_args(args: argparse.Namespace,
                   parser: argparse.ArgumentParser) -> "tuple[Rule, SearchOrigin | None]":
    """The rule the command line names, ``--rule`` or an entry of a search run's hall of
    fame, and where that search found it (None for ``--rule``)."""
    if args.rule and args.run:
        parser.error("give --rule or --run, not both")
    if args.run:
        try:
            origin = export_origin(args.run, args.rank, args.tracking_uri)
            return resolve(origin.rule), origin
        except (ValueError, TrackingError) as err:
            parser.error(describe(err))
    if not args.rule:
        parser.error("--rule is required (or --run RUN_ID: a search run's hall of fame)")
    return resolve(args.rule), None


@guarded
def main(argv: "list[str] | None" = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    rule, origin = rule_from_args(args, parser)
    try:
        settings = RuleSettings(**dict(args.settings))
        spec = export_spec(rule, class_name=args.name, settings=settings, origin=origin)
        name = spec["class_name"]
        out = args.out if args.out is not None else py_file_path(f"{name}.py")
        py_path, json_path = export(rule, out, class_name=name, settings=settings,
                                    origin=origin)
    except (ValueError, OSError, argparse.ArgumentTypeError) as err:
        parser.error(describe(err))   # a bad --name; a folder in the way or unwritable
    print(f"wrote class {name} to {py_path} (spec: {json_path})")
    print(f"  {update_line(rule)}")
    simple = simplify(rule)
    if simple != rule:
        print(f"  simplified: {readable(rule)}  (the same rule as {simple})")
    if origin is not None:
        print("  " + " ".join(origin.lines()))
    total = ", total_steps=N" if spec["requires_total_steps"] else ""
    print(f"  use: opt = {name}(model.parameters(){total})  "
          f"# lr={spec['defaults']['lr']!r} by default")
    return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
