"""``python -m evo_nos.transfer``: do a search's winners hold up outside the search?

::

    python -m evo_nos.transfer --run RUN_ID --top 3
    python -m evo_nos.transfer --run RUN_A RUN_B RUN_C --top 1 --preset cpu
    python -m evo_nos.transfer --run RUN_ID --quick          # seconds: smoke settings
    python -m evo_nos.transfer --report DIR/comparison.json --top 1   # each strategy's winner

What is trained and scored: :mod:`evo_nos.experiments.transfer`.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import torch

from evo_nos.core.known import name_of, resolve
from evo_nos.experiments.transfer import (DEFAULT_REFERENCES, PRESETS, Candidate,
                                          candidates_from_runs, log_transfer, markdown,
                                          run_transfer, search_data, table_text, winners)
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
    p.add_argument("--preset", choices=sorted(PRESETS),
                   help="held-out settings (default gpu on a GPU, cpu otherwise)")
    p.add_argument("--quick", action="store_true", help="same as --preset quick")
    p.add_argument("--data", metavar="SPEC",
                   help="cifar10 | imagefolder:DIR | synthetic (default: the searches' source)")
    p.add_argument("--epochs", type=float, help="override the final run's epochs")
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
    name = "quick" if args.quick else args.preset or (
        "gpu" if torch.cuda.is_available() else "cpu")
    settings = PRESETS[name]
    changes = {k: v for k, v in (("epochs", args.epochs), ("threads", args.threads))
               if v is not None}
    settings = dataclasses.replace(settings, **changes)
    refs = args.references.strip()
    names = [] if refs.lower() in ("", "none") else [n.strip() for n in refs.split(",")
                                                     if n.strip()]
    try:
        if args.report:
            args.run = list(args.run) + [r for r in winners(args.report) if r not in args.run]
        candidates = candidates_from_runs(args.run, args.top, args.tracking_uri)
        candidates += [Candidate(name_of(resolve(r)) or r, resolve(r).canonical, "given")
                       for r in args.rule]
        candidates += [Candidate(n, resolve(n).canonical, "reference") for n in names]
        if not candidates:
            raise ValueError("nothing to check: give --run RUN_ID, --rule or --references")
        data = args.data or settings.data or (search_data(args.run, args.tracking_uri)
                                              if args.run else "synthetic")
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    rows = run_transfer(candidates, settings, data, device=args.device,
                        echo=lambda m: print(m, file=sys.stderr))
    print(table_text(rows))
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "transfer.md").write_text(markdown(rows, settings, data, args.run))
        (out / "transfer.json").write_text(json.dumps(
            {"settings": settings.as_dict(), "data": data, "runs": args.run,
             "rows": [dataclasses.asdict(r) | {"lr_scores": {repr(k): v for k, v in
                                                             r.lr_scores.items()}}
                      for r in rows]}, indent=2) + "\n")
    if not args.no_log:
        experiment = args.experiment or (experiment_name(
            get_run(args.run[0], args.tracking_uri).experiment_id, args.tracking_uri)
            if args.run else DEFAULT_EXPERIMENT)
        run_id = log_transfer(rows, settings, data, args.run, experiment=experiment,
                              tracking_uri=args.tracking_uri)
        print(f"\nMLflow run {run_id} (kind=transfer) in experiment {experiment!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
