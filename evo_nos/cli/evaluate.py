"""Score one rule by hand: ``python -m evo_nos.evaluate --rule RULE``.

Prints the rule's :class:`~evo_nos.fitness.evaluation.Evaluation` as JSON (fitness,
status, best learning rate, per-lr validation accuracies, steps, seconds, fingerprint).
RULE is a rule string (``"mul(exp(mul(sign_g, sign_m)), g)"``) or a known name
(``powersign``).  The preset defaults to ``nos`` on a GPU and ``cpu`` otherwise.

Examples::

    python -m evo_nos.evaluate --rule powersign --preset smoke
    python -m evo_nos.evaluate --rule adam --preset cpu --data imagefolder:/data/cifar10
"""
from __future__ import annotations

import argparse
import json
import sys

from evo_nos.cli.errors import EXIT_OK, Parser, describe, error, guarded
from evo_nos.cli.option_types import data_spec, nonnegative_int, preset_option, rule_value
from evo_nos.cli.options import add_device_option
from evo_nos.fitness.backend import FitnessBackend, resolve_device
from evo_nos.fitness.data import DataError
from evo_nos.fitness.tasks import load_task


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="python -m evo_nos.evaluate",
        description="Score one update rule with the fitness backend; prints JSON.")
    parser.add_argument("--rule", required=True, type=rule_value,
                        help="rule string or known name (sgd, adam, powersign, ...)")
    parser.add_argument("--preset", default=None, type=preset_option(),
                        help="preset name (smoke, cpu, nos) or a .toml file; "
                             "default: nos on a GPU, cpu otherwise")
    parser.add_argument("--data", default=None, type=data_spec,
                        help="cifar10 | imagefolder:DIR | synthetic (overrides the preset)")
    parser.add_argument("--seed", type=nonnegative_int, default=0,
                        help="backend seed (default 0)")
    add_device_option(parser)
    return parser


@guarded
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    rule = args.rule                      # already a Rule: --rule is checked where parsed
    try:
        device = resolve_device(args.device)
        preset = args.preset or ("nos" if device.startswith("cuda") else "cpu")
        task = load_task(preset, data=args.data)
        backend = FitnessBackend(task, seed=args.seed, device=device)
        evaluation = backend.evaluate([rule])[0]
    except (DataError, ValueError, RuntimeError, FileNotFoundError) as err:
        return error(describe(err))
    # stdout: exactly the Evaluation (Evaluation.from_dict reads it back); stderr: context
    print(f"{rule.math}  [{task.name}, {task.data}, seed {args.seed}, {device}]: "
          f"{evaluation.status}, fitness {evaluation.fitness:.4f}", file=sys.stderr)
    print(json.dumps(evaluation.to_dict(), indent=2))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
