"""``python -m evo_nos.transfer``: do a search's winners hold up on held-out tasks?

::

    python -m evo_nos.transfer --run RUN_ID --top 3
    python -m evo_nos.transfer --run RUN_A RUN_B RUN_C --top 1 --preset cpu
    python -m evo_nos.transfer --quick --references adam,powersign     # seconds: smoke
    python -m evo_nos.transfer --run RUN_ID --task mypkg.tasks:make_task   # + your task
    python -m evo_nos.transfer --rules adam,powersign --tasks tabular --seeds 5
    python -m evo_nos.transfer --report DIR/comparison.json --top 1   # each strategy's winner

The suite (``--tasks``, default ``images,sequence,tabular``, plus every ``--task``) is
sized by ``--preset`` (quick | cpu | gpu; default gpu on a GPU, cpu otherwise; a
``.toml`` file sets the image task's Task keys, the other tasks at the default size).
Beside the rules, the baselines (``--baselines``: Adam, AdamW, SGD with momentum and
Nesterov momentum, Lion)
get the same lr sweep, and every run of every optimizer follows ``--schedule`` (default
cosine).  The image task trains on ``--data``, else the searches' data
source, else the preset's ``data``.  What is trained and scored:
:mod:`evo_nos.experiments.transfer` and :mod:`evo_nos.fitness.heldout`.
"""
from __future__ import annotations

import argparse
import sys

from evo_nos.cli.errors import EXIT_OK, Parser, describe, error, guarded
from evo_nos.cli.option_types import (data_spec, existing_file, folder_path, nonnegative_int,
                                      positive_float, positive_int, reference_names, rule_names,
                                      split_list)
from evo_nos.cli.options import add_baseline_option, add_device_option
from evo_nos.optim.schedules import SCHEDULES
from evo_nos.core.known import name_of, resolve
from evo_nos.experiments.transfer import (DEFAULT_REFERENCES, DEFAULT_TASKS, Candidate,
                                          baseline_candidates, candidates_from_runs,
                                          default_transfer_preset, load_suite,
                                          load_transfer_task, log_transfer, run_suite,
                                          search_data, table_text, transfer_presets, winners,
                                          write_report)
from evo_nos.fitness.data import DataError
from evo_nos.tracking import DEFAULT_EXPERIMENT, TrackingError, experiment_name, get_run


def transfer_preset(text: str) -> str:
    """The type of ``--preset``: a transfer preset name or a ``.toml`` file of image-task
    keys that loads (the value stays the text)."""
    try:
        load_transfer_task(text)
    except (ValueError, OSError) as err:
        raise argparse.ArgumentTypeError(describe(err)) from None
    return text


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="python -m evo_nos.transfer",
               description="Retrain search winners, references and torch's Adam / "
                           "SGD+momentum on held-out tasks.",
               formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", nargs="+", default=[], metavar="RUN_ID",
                   help="search runs whose hall of fame to check")
    p.add_argument("--report", metavar="comparison.json", type=existing_file,
                   help="a compare report: check the best search of each strategy in it")
    p.add_argument("--top", type=positive_int, default=3, metavar="K",
                   help="rules per run (default 3)")
    p.add_argument("--rule", "--rules", action="append", default=[], metavar="RULES",
                   type=rule_names,
                   help="other rules or known names to check (comma-separated; repeatable)")
    p.add_argument("--references", default=",".join(DEFAULT_REFERENCES), metavar="NAMES|none",
                   type=rule_names,
                   help="known rules trained beside them (comma-separated; none: skip)")
    add_baseline_option(p)
    p.add_argument("--tasks", default=",".join(DEFAULT_TASKS), metavar="NAMES|none",
                   help="held-out tasks: built-in names or MODULE:NAME (comma-separated; "
                        f"default {','.join(DEFAULT_TASKS)})")
    p.add_argument("--task", action="append", default=[], metavar="MODULE:NAME",
                   help="add a task of your own: MODULE:NAME or FILE.py:NAME, a HeldOutTask "
                        "or a function returning one (repeatable)")
    p.add_argument("--preset", metavar="NAME|FILE.toml", type=transfer_preset,
                   help=f"the suite's size ({', '.join(transfer_presets())}; default gpu on a "
                        "GPU, cpu otherwise), or a .toml file with the image task's keys")
    p.add_argument("--quick", action="store_true", help="same as --preset quick")
    p.add_argument("--seeds", type=positive_int, metavar="N",
                   help="seeds per (optimizer, lr, task): 0..N-1 (default: the preset's)")
    p.add_argument("--data", metavar="SPEC", type=data_spec,
                   help="the image task's cifar10 | imagefolder:DIR | synthetic (default: "
                        "the searches' source, else the preset's)")
    p.add_argument("--epochs", type=positive_float,
                   help="a final run of this many epochs at each chosen lr, on every task "
                        "(default: the preset's)")
    add_device_option(p)
    p.add_argument("--schedule", default="cosine", choices=SCHEDULES,
                   help="the lr schedule of every run, rules and baselines alike "
                        "(default cosine, what practitioners run)")
    p.add_argument("--warmup", type=nonnegative_int, default=0, metavar="STEPS",
                   help="linear lr warmup steps at the start of every run (default 0)")
    p.add_argument("--threads", type=nonnegative_int,
                   help="torch CPU threads (default: the preset's; 0: torch's own)")
    p.add_argument("--experiment", help="MLflow experiment (default: the first run's)")
    p.add_argument("--tracking-uri", help="default $MLFLOW_TRACKING_URI, else ./mlflow.db")
    p.add_argument("--out", type=folder_path, help="folder for transfer.md and transfer.json")
    p.add_argument("--no-log", action="store_true", help="do not log to MLflow")
    return p


@guarded
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    preset = "quick" if args.quick else args.preset or default_transfer_preset()
    try:
        if args.report:
            args.run = list(args.run) + [r for r in winners(args.report) if r not in args.run]
        candidates = candidates_from_runs(args.run, args.top, args.tracking_uri)
        given = [r for text in args.rule for r in split_list(text)]
        candidates += [Candidate(name_of(resolve(r)) or r, resolve(r).canonical, "given")
                       for r in given]
        candidates += [Candidate(n, resolve(n).canonical, "reference")
                       for n in reference_names(args.references)]
        candidates += baseline_candidates(list(reference_names(args.baselines)))
        if not candidates:
            raise ValueError("nothing to check: give --run RUN_ID, --rule, --references "
                             "or --baselines")
        data = args.data or (search_data(args.run, args.tracking_uri) if args.run else None)
        tasks = load_suite(preset, [*reference_names(args.tasks), *args.task], data=data,
                           final_epochs=args.epochs, threads=args.threads, seeds=args.seeds,
                           schedule=args.schedule, warmup=args.warmup)
    except (ValueError, FileNotFoundError, TrackingError) as err:
        return error(describe(err))
    try:
        rows = run_suite(candidates, tasks, device=args.device,
                         echo=lambda m: print(m, file=sys.stderr))
    except DataError as err:        # no rule can be trained: the message says what to do
        return error(describe(err))
    print(table_text(rows))
    if args.out:
        write_report(rows, tasks, args.run, args.out, preset=str(preset), data=data)
    if not args.no_log:
        experiment = args.experiment or (experiment_name(
            get_run(args.run[0], args.tracking_uri).experiment_id, args.tracking_uri)
            if args.run else DEFAULT_EXPERIMENT)
        run_id = log_transfer(rows, tasks, args.run, experiment=experiment,
                              tracking_uri=args.tracking_uri, data=data)
        print(f"\nMLflow run {run_id} (kind=transfer) in experiment {experiment!r}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
