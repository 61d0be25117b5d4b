"""``python -m evo_nos.references``: score the known rules once per preset and seed.

::

    python -m evo_nos.references --preset cpu --data imagefolder:/data/cifar10 --seeds 0 1 2

Each (preset, seed) becomes one MLflow run tagged ``kind=reference``; a later call reuses
it (see :mod:`evo_nos.experiments.references`).
"""
from __future__ import annotations

import argparse
import sys

from evo_nos.cli.errors import EXIT_OK, Parser, bad_input, describe, error, guarded
from evo_nos.cli.option_types import nonnegative_int, reference_names, rule_names
from evo_nos.cli.options import (add_baseline_option, add_fitness_options, add_reference_option,
                                 add_tracking_options)
from evo_nos.experiments.references import score_references
from evo_nos.fitness.data import DataError
from evo_nos.fitness.factory import make_backend
from evo_nos.fitness.tasks import preset_key
from evo_nos.tracking import DEFAULT_EXPERIMENT, TrackingError


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="python -m evo_nos.references",
               description="Score the known reference rules once per preset and seed, logged "
                           "as MLflow runs kind=reference.")
    add_fitness_options(p)
    p.add_argument("--seeds", type=nonnegative_int, nargs="+", default=[0],
                   help="backend seeds (0)")
    add_reference_option(p)
    p.add_argument("--names", dest="references", type=rule_names, metavar="NAMES",
                   help="the same as --references (its older spelling)")
    add_baseline_option(p)
    add_tracking_options(p)
    p.add_argument("--force", action="store_true", help="score again even if logged before")
    return p


@guarded
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.preset and not args.fitness:
        bad_input("give --preset NAME or --fitness standin:TARGET")
    names = reference_names(args.references)
    preset = preset_key(args.preset) if args.preset else args.fitness
    try:
        for seed in args.seeds:
            backend = make_backend({"preset": args.preset, "fitness": args.fitness,
                                    "data": args.data, "seed": seed, "n_jobs": args.n_jobs or 1,
                                    "device": args.device or "auto"})
            baselines = reference_names(args.baselines) if args.preset else ()
            refs = score_references(backend, preset=preset, seed=seed, names=names,
                                    baselines=baselines,
                                    experiment=args.experiment or DEFAULT_EXPERIMENT,
                                    tracking_uri=args.tracking_uri, force=args.force)
            how = f"scored {len(refs.scored)}" if refs.scored else "all reused"
            print(f"\nreferences, preset {preset}, seed {seed} ({how}; MLflow run "
                  f"{refs.run_id}):")
            print(refs.table_text())
    except (ValueError, DataError, TrackingError) as err:
        return error(describe(err))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
