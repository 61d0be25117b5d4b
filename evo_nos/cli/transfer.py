"""``python -m evo_nos.transfer``: do a search's winners hold up outside the search?

::

    python -m evo_nos.transfer --run RUN_ID --top 3
    python -m evo_nos.transfer --run RUN_A RUN_B RUN_C --top 1 --preset cpu
    python -m evo_nos.transfer --run RUN_ID --quick          # seconds: smoke settings
    python -m evo_nos.transfer --run RUN_ID --preset my_transfer.toml --epochs 30
    python -m evo_nos.transfer --report DIR/comparison.json --top 1   # each strategy's winner

``--preset`` names a transfer preset (``evo_nos/fitness/presets/transfer/*.toml``: quick,
cpu, gpu; default gpu on a GPU, cpu otherwise) or a ``.toml`` file with Task keys.  The
rules train on ``--data``, else the searches' data source, else the preset's ``data``.
What is trained and scored: :mod:`evo_nos.experiments.transfer`.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from evo_nos.core.known import name_of, resolve
from evo_nos.experiments.transfer import (DEFAULT_REFERENCES, SEED, Candidate,
                                          candidates_from_runs, default_transfer_preset,
                                          load_transfer_task, log_transfer, markdown,
                                          run_transfer, search_data, table_text,
                                          transfer_presets, winners)
from evo_nos.fitness.data import DataError
from evo_nos.tracking import DEFAULT_EXPERIMENT, experiment_name, get_run


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m evo_nos.transfer",
                                description="Retrain search winners and references on held-out settings.",
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", nargs="+", default=[], metavar="RUN_ID",
                   help="search runs whose hall of fame to check")
    p.add_argument("--report", metavar="comparison.json",
                   help="a compare report: check the best search of each strategy in it")
    p.add_argument("--top", type=int, default=3, metavar="K", help="rules per run (default 3)")
    p.add_argument("--rule", action="append", default=[],
                   help="another rule or known name to check (repeatable)")
    p.add_argument("--references", default=",".join(DEFAULT_REFERENCES), metavar="NAMES|none",
                   help="known rules trained beside them (comma-separated; none: skip)")
    p.add_argument("--preset", metavar="NAME|FILE.toml",
                   help=f"held-out settings: a transfer preset ({', '.join(transfer_presets())}"
                        "; default gpu on a GPU, cpu otherwise) or a .toml file")
    p.add_argument("--quick", action="store_true", help="same as --preset quick")
    p.add_argument("--data", metavar="SPEC",
                   help="cifar10 | imagefolder:DIR | synthetic (default: the searches' "
                        "source, else the preset's)")
    p.add_argument("--epochs", type=float, help="override the final run's epochs "
                                                "(the preset's final_epochs)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--threads", type=int, help="torch CPU threads (default: the preset's)")
    p.add_argument("--experiment", help="MLflow experiment (default: the first run's)")
    p.add_argument("--tracking-uri", help="default $MLFLOW_TRACKING_URI, else ./mlflow.db")
    p.add_argument("--out", help="folder for transfer.md and transfer.json")
    p.add_argument("--no-log", action="store_true", help="do not log to MLflow")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.top < 1:
        raise SystemExit("error: --top must be >= 1")
    preset = "quick" if args.quick else args.preset or default_transfer_preset()
    refs = args.references.strip()
    names = [] if refs.lower() in ("", "none") else [n.strip() for n in refs.split(",")
                                                     if n.strip()]
    try:
        task = load_transfer_task(preset, final_epochs=args.epochs, threads=args.threads)
        if args.report:
            args.run = list(args.run) + [r for r in winners(args.report) if r not in args.run]
        candidates = candidates_from_runs(args.run, args.top, args.tracking_uri)
        candidates += [Candidate(name_of(resolve(r)) or r, resolve(r).canonical, "given")
                       for r in args.rule]
        candidates += [Candidate(n, resolve(n).canonical, "reference") for n in names]
        if not candidates:
            raise ValueError("nothing to check: give --run RUN_ID, --rule or --references")
        data = args.data or (search_data(args.run, args.tracking_uri) if args.run
                             else task.data)
        task = task.replace(data=data)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    try:
        rows = run_transfer(candidates, task, device=args.device,
                            echo=lambda m: print(m, file=sys.stderr))
    except DataError as err:        # no rule can be trained: the message says what to do
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(table_text(rows))
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "transfer.md").write_text(markdown(rows, task, args.run))
        (out / "transfer.json").write_text(json.dumps(
            {"settings": task.as_dict(), "seed": SEED, "data": data, "runs": args.run,
             "rows": [dataclasses.asdict(r) | {"lr_scores": {repr(k): v for k, v in
                                                             r.lr_scores.items()}}
                      for r in rows]}, indent=2) + "\n")
    if not args.no_log:
        experiment = args.experiment or (experiment_name(
            get_run(args.run[0], args.tracking_uri).experiment_id, args.tracking_uri)
            if args.run else DEFAULT_EXPERIMENT)
        run_id = log_transfer(rows, task, args.run, experiment=experiment,
                              tracking_uri=args.tracking_uri)
        print(f"\nMLflow run {run_id} (kind=transfer) in experiment {experiment!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
