"""``python -m evo_nos.fidelity``: cost, noise and rank agreement of scoring presets.

::

    python -m evo_nos.fidelity --presets cpu fast --seeds 0 1 2 \\
        --data imagefolder:/data/cifar10 --n-jobs 2 --out fidelity/

Scores a fixed panel of rules (the reference rules and ``--random`` valid random rules)
under each preset and seed, then prints and writes (``fidelity.md|csv|json``,
``rule_means.*``) the figures of :mod:`evo_nos.experiments.fidelity`.  Run the same
command again to continue an interrupted measurement: scores already in
``<out>/scores.json`` are kept.
"""
from __future__ import annotations

import argparse
import sys

from evo_nos.cli.errors import EXIT_OK, Parser, bad_input, describe, error, guarded
from evo_nos.cli.option_types import (data_spec, job_count, nonnegative_int,
                                      preset_option, reference_names, rule_names)
from evo_nos.cli.options import add_device_option, add_output_folder_option
from evo_nos.core.known import REFERENCE_NAMES
from evo_nos.experiments.fidelity import N_RANDOM, PANEL_SEED, measure, panel, summarize
from evo_nos.fitness.data import DataError
from evo_nos.fitness.tasks import preset_key

DEFAULT_OUT = "fidelity"
DEFAULT_KNOWN = "default"        # --known: the reference rules


def known_option(text: str) -> str:
    """The type of ``--known``: ``default`` or comma-separated known rules (or ``none``)."""
    return text if text == DEFAULT_KNOWN else rule_names(text)


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="python -m evo_nos.fidelity",
               description="Measure scoring presets on one panel of rules: seconds per "
                           "candidate, seed-to-seed SD, signal to noise, rank correlation "
                           "with a reference.")
    p.add_argument("--presets", nargs="+", required=True, metavar="NAME|FILE.toml",
                   type=preset_option(),
                   help="the presets to measure (two or more to compare rankings)")
    p.add_argument("--seeds", type=nonnegative_int, nargs="+", default=[0, 1, 2],
                   help="backend seeds per preset (0 1 2)")
    p.add_argument("--reference", metavar="PRESET",
                   help="the preset the rankings are compared with (default: the one "
                        "with the most seconds per candidate)")
    p.add_argument("--random", type=nonnegative_int, default=N_RANDOM,
                   help=f"valid random rules in the panel ({N_RANDOM})")
    p.add_argument("--panel-seed", type=nonnegative_int, default=PANEL_SEED,
                   help=f"seed of the random rules ({PANEL_SEED})")
    p.add_argument("--known", default=DEFAULT_KNOWN, metavar="NAMES",
                   type=known_option,
                   help="known rules in the panel (comma-separated; default the "
                        "reference rules; none: only random rules)")
    p.add_argument("--data", metavar="SPEC", type=data_spec,
                   help="dataset for the presets that read real images "
                        "(cifar10 | imagefolder:DIR)")
    add_device_option(p)
    p.add_argument("--n-jobs", type=job_count, default=1, help="parallel trainings (1)")
    add_output_folder_option(p, DEFAULT_OUT)
    return p


@guarded
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    measured = [preset_key(p) for p in args.presets]
    if args.reference is not None and args.reference not in measured:
        bad_input(f"--reference {args.reference!r} is not one of the --presets measured: "
                  f"{', '.join(measured)}")
    try:
        known = REFERENCE_NAMES if args.known == DEFAULT_KNOWN else reference_names(args.known)
        rules = panel(args.random, seed=args.panel_seed, known=known)
        scores = measure(args.presets, args.seeds, args.out, rules=rules, data=args.data,
                         n_jobs=args.n_jobs, device=args.device)
        fidelity = summarize(scores, reference=args.reference)
    except (ValueError, KeyError, DataError) as err:
        return error(describe(err))
    paths = fidelity.write(args.out)
    print(f"\nfidelity of {len(rules)} rules x {len(args.seeds)} seeds, reference preset "
          f"{fidelity.reference}:\n")
    print(fidelity.markdown())
    print(f"written: {paths['markdown']} (and .csv, .json; rule_means.*)")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
