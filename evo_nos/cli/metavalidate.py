"""``python -m evo_nos.metavalidate``: which proxy preset predicts held-out quality?

::

    python -m evo_nos.metavalidate --presets fast fast-cosine mix --seeds 0 1 \\
        --suite quick --data imagefolder:/data/cifar10 --out metaval/

Scores a panel of rules (every known rule, past winners, ``--random`` valid random rules)
through the held-out suite (every task on ``--schedule``) and under each preset and seed,
then prints and writes (``metavalidation.md|csv|json``, ``ranks.*``) the rank
correlations of :mod:`evo_nos.experiments.metavalidation`.  Run the same command again
to continue: scores already in ``--out`` are kept.
"""
from __future__ import annotations

import argparse
import sys

from evo_nos.cli.errors import EXIT_OK, Parser, describe, error, guarded
from evo_nos.cli.option_types import data_spec, nonnegative_int, split_list
from evo_nos.cli.options import add_device_option, add_output_folder_option
from evo_nos.core.tables import write_table
from evo_nos.experiments.metavalidation import (N_RANDOM, meta_validate, panel_rules,
                                                report_text)
from evo_nos.experiments.transfer import DEFAULT_TASKS, load_suite, transfer_presets
from evo_nos.fitness.data import DataError
from evo_nos.optim.schedules import SCHEDULES

DEFAULT_OUT = "metavalidation"


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="python -m evo_nos.metavalidate",
               description="Rank correlation between each preset's fitness and the rules' "
                           "mean rank on the held-out suite, over a panel of rules")
    p.add_argument("--presets", nargs="+", required=True, metavar="NAME|FILE.toml",
                   help="the proxy presets to validate")
    p.add_argument("--seeds", type=nonnegative_int, nargs="+", default=[0, 1],
                   help="backend seeds per preset (default 0 1)")
    p.add_argument("--suite", default="quick", choices=transfer_presets(),
                   help="the held-out suite's size (default quick)")
    p.add_argument("--tasks", default=",".join(DEFAULT_TASKS), metavar="NAMES",
                   help=f"held-out tasks (default {','.join(DEFAULT_TASKS)})")
    p.add_argument("--schedule", default="cosine", choices=SCHEDULES,
                   help="the lr schedule of every held-out run (default cosine)")
    p.add_argument("--random", type=nonnegative_int, default=N_RANDOM,
                   help=f"valid random rules in the panel (default {N_RANDOM})")
    p.add_argument("--data", metavar="SPEC", type=data_spec,
                   help="image source of the presets and the image task "
                        "(cifar10 | imagefolder:DIR)")
    add_device_option(p)
    add_output_folder_option(p, DEFAULT_OUT)
    return p


@guarded
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        rules = panel_rules(args.random)
        tasks = load_suite(args.suite, split_list(args.tasks), data=args.data,
                           schedule=args.schedule)
        result = meta_validate(args.presets, args.seeds, tasks, args.out, rules=rules,
                               data=args.data, device=args.device)
    except (ValueError, KeyError, DataError) as err:
        return error(describe(err))
    paths = write_table(result["correlations"], f"{args.out}/metavalidation")
    write_table(result["ranks"], f"{args.out}/ranks")
    print(f"\n{len(rules)} rules, held-out suite {args.suite} ({args.schedule}): "
          "correlation of each preset's fitness with minus the held-out mean rank\n")
    print(report_text(result))
    print(f"written: {paths['markdown']} (and .csv, .json; ranks.*)")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
