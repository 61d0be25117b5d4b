"""``python -m evo_nos.run``: search the NOS space for optimizers, tracked in MLflow.

Examples::

    python -m evo_nos.run                                   # evo, `cpu` preset (`nos` on a GPU)
    python -m evo_nos.run --strategy random --preset smoke --budget 20
    python -m evo_nos.run --preset cpu --data imagefolder:/data/cifar10 --budget 60 --n-jobs 2
    python -m evo_nos.run --fitness standin:powersign --budget 500     # no training: a demo
    python -m evo_nos.run --resume last                     # continue an interrupted search
    python -m evo_nos.run --strategy evo rl random --seeds 0 1 2   # head-to-head (campaign)

Strategies come from :data:`evo_nos.strategies.STRATEGIES` (``--strategy``); their
settings are the ``--population``-style options below or ``--set KEY=VALUE``.  Each
search writes its checkpoint to ``--out/<strategy>-seed<S>-<time>/`` after every batch;
Ctrl+C saves and exits (status 130) and ``--resume RUN_ID|last`` continues it in the same
MLflow run.  Results are exactly reproducible from ``--seed`` when run serially
(``--n-jobs 1``) with the same ``--batch-size``; the backend seeds every training from
the rule itself, which is meant to make parallel workers agree too (see
:mod:`evo_nos.fitness.backend`).
"""
from __future__ import annotations

import argparse
import ast
import contextlib
import json
import os
import sys
import time
from pathlib import Path

from evo_nos.operators.space import SearchSpace
from evo_nos.search import SUMMARY_FILE, INTERRUPTED, Search, load_checkpoint, seed_everything
from evo_nos.strategies import make_strategy, strategy_names

DEFAULT_OUT = "evo_nos_runs"
# Budgets (child trainings) that finish well under an hour with the preset's hardware:
# cpu ~20 s per candidate on 2 cores; nos (full CIFAR-10, 11 epochs) on one GPU.
DEFAULT_BUDGETS = {"smoke": 30, "cpu": 60, "nos": 40}
FALLBACK_BUDGET = 50
EXIT_INTERRUPTED = 130

# options that define a search (taken from the checkpoint on --resume)
_DEFINING = ("strategy", "preset", "fitness", "budget", "seed", "data", "population",
             "tournament", "mode", "offspring", "crossover_prob", "seed_rules", "settings",
             "max_binary", "operands", "unaries", "binaries", "batch_size", "hall_of_fame",
             "run_name")
# strategy settings with their own option (others: --set KEY=VALUE)
_STRATEGY_OPTIONS = ("population", "tournament", "mode", "offspring", "crossover_prob",
                     "seed_rules")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m evo_nos.run", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Open the results with: mlflow ui (in the same folder), or "
               "mlflow ui --backend-store-uri $MLFLOW_TRACKING_URI")
    s = p.add_argument_group("search")
    s.add_argument("--strategy", choices=strategy_names(), help="search strategy (default evo)")
    s.add_argument("--budget", type=int,
                   help=f"child trainings to spend (default per preset: {DEFAULT_BUDGETS}, "
                        f"else {FALLBACK_BUDGET})")
    s.add_argument("--seed", type=int, help="seed of everything (default 0)")
    s.add_argument("--seeds", type=int, nargs="+", metavar="S",
                   help="several seeds and/or several --strategy names run a head-to-head "
                        "campaign, then the references and the report (evo_nos.campaign)")
    s.add_argument("--time-limit", type=float, metavar="SECONDS",
                   help="stop between batches after this long (summed over resumes)")
    s.add_argument("--batch-size", type=int,
                   help="rules per ask/evaluate round (default: --n-jobs, at least 1)")
    s.add_argument("--hall-of-fame", type=int, metavar="K", help="hall-of-fame size (default 10)")
    f = p.add_argument_group("fitness")
    f.add_argument("--preset", metavar="NAME|FILE.toml",
                   help="fitness preset (smoke, cpu, nos; default nos on a GPU, cpu otherwise)")
    f.add_argument("--fitness", metavar="standin:TARGET",
                   help="score by resemblance to TARGET's updates instead of training "
                        "(a seconds-long demo; TARGET is a rule or a known name)")
    f.add_argument("--data", metavar="SPEC",
                   help="dataset: cifar10 | imagefolder:DIR | synthetic (overrides the preset)")
    f.add_argument("--device", choices=("auto", "cpu", "cuda"), help="training device (auto)")
    f.add_argument("--n-jobs", type=int, help="parallel trainings (joblib n_jobs; default 1)")
    f.add_argument("--backend", choices=("loky", "threading", "dask", "ray"),
                   help="joblib backend for the trainings (default loky)")
    f.add_argument("--scheduler", metavar="ADDRESS",
                   help="dask scheduler address for --backend dask (default: a local cluster)")
    g = p.add_argument_group("space")
    g.add_argument("--max-binary", type=int, help="bound on binary functions per rule (3)")
    g.add_argument("--operands", help="comma-separated operands allowed (default all)")
    g.add_argument("--unaries", help="comma-separated unary functions allowed (default all)")
    g.add_argument("--binaries", help="comma-separated binary functions allowed (default all)")
    e = p.add_argument_group("evo strategy")
    e.add_argument("--population", type=int, help="population size (evo default 20)")
    e.add_argument("--tournament", type=int, help="tournament size (evo default 5)")
    e.add_argument("--mode", choices=("aging", "mu_plus_lambda"), help="evo selection (aging)")
    e.add_argument("--offspring", type=int, help="mu_plus_lambda: children per generation")
    e.add_argument("--crossover-prob", type=float, help="probability of crossover (evo)")
    e.add_argument("--seed-rules", metavar="NAMES",
                   help="warm start, e.g. adam,sgd,powersign (evo; off by default)")
    e.add_argument("--set", dest="settings", action="append", metavar="KEY=VALUE",
                   help="any strategy setting (repeatable), e.g. --set population=50")
    o = p.add_argument_group("output")
    o.add_argument("--experiment", help="MLflow experiment (default evo_nos)")
    o.add_argument("--tracking-uri", help="MLflow tracking URI (default $MLFLOW_TRACKING_URI, "
                                          "else sqlite mlflow.db here)")
    o.add_argument("--run-name", help="MLflow run name")
    o.add_argument("--out", help=f"checkpoint folder (default ./{DEFAULT_OUT})")
    o.add_argument("--resume", metavar="RUN_ID|last",
                   help="continue an interrupted search (its settings come from the checkpoint)")
    o.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


# -- helpers ----------------------------------------------------------------------------
def _literal(text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _strategy_settings(args) -> dict:
    settings = {k: getattr(args, k) for k in _STRATEGY_OPTIONS if getattr(args, k) is not None}
    for item in args.settings or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise SystemExit(f"--set expects KEY=VALUE, got {item!r}")
        settings[key.strip()] = _literal(value.strip())
    return settings


def _space_args(args) -> dict:
    out = {}
    if args.max_binary is not None:
        out["max_binary"] = args.max_binary
    for name in ("operands", "unaries", "binaries"):
        value = getattr(args, name)
        if value:
            out[name] = [v.strip() for v in value.split(",") if v.strip()]
    return out


def _default_preset() -> str:
    import torch

    return "nos" if torch.cuda.is_available() else "cpu"


def _preset_key(preset: str) -> str:
    return Path(preset).stem if preset.endswith(".toml") else preset


def make_backend(config: dict):
    """The fitness backend a config describes (a stand-in or the real one)."""
    fitness = config.get("fitness")
    if fitness:
        kind, _, target = fitness.partition(":")
        if kind != "standin" or not target:
            raise SystemExit(f"--fitness expects standin:TARGET, got {fitness!r}")
        from evo_nos.fitness.standin import StandInBackend

        return StandInBackend(target)
    from evo_nos.fitness.backend import FitnessBackend
    from evo_nos.fitness.tasks import load_task

    task = load_task(config["preset"], data=config.get("data"))
    return FitnessBackend(task, seed=config["seed"], n_jobs=config["n_jobs"],
                          device=config["device"])


@contextlib.contextmanager
def joblib_backend(name: str | None, n_jobs: int, scheduler: str | None):
    """Run the trainings on the chosen joblib backend (dask: a client; ray: registered)."""
    if not name or name == "loky":
        yield
        return
    import joblib

    if name == "dask":
        try:
            from dask.distributed import Client, LocalCluster
        except ImportError as err:
            raise SystemExit("--backend dask needs dask.distributed: pip install "
                             "'evo_nos[dask]'") from err
        if scheduler:
            client = Client(scheduler)
            cluster = None
        else:
            cluster = LocalCluster(n_workers=max(1, n_jobs), threads_per_worker=1,
                                   processes=True, dashboard_address=None)
            client = Client(cluster)
        try:
            with joblib.parallel_config(backend="dask"):
                yield
        finally:
            client.close()
            if cluster is not None:
                cluster.close()
        return
    if name == "ray":
        try:
            from ray.util.joblib import register_ray
        except ImportError as err:
            raise SystemExit("--backend ray needs ray: pip install 'evo_nos[ray]'") from err
        register_ray()
    with joblib.parallel_config(backend=name):
        yield


def find_checkpoint(out: Path, which: str) -> Path:
    """The checkpoint folder of run ``which`` (an MLflow run id, a folder name, or last)."""
    summaries = sorted(out.glob(f"*/{SUMMARY_FILE}"), key=lambda p: p.stat().st_mtime)
    if not summaries:
        raise SystemExit(f"no searches to resume in {out} (give the --out used by the search)")
    if which == "last":
        return summaries[-1].parent
    for path in summaries:
        if path.parent.name == which:
            return path.parent
        try:
            if json.loads(path.read_text()).get("run_id") == which:
                return path.parent
        except (OSError, json.JSONDecodeError):
            continue
    raise SystemExit(f"no search with run id or folder {which!r} in {out}; "
                     f"found: {[p.parent.name for p in summaries]}")


# -- main ---------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    from evo_nos.campaign import main as campaign_main, wants_campaign

    argv = sys.argv[1:] if argv is None else list(argv)
    if wants_campaign(argv):               # several strategies or --seeds: a head-to-head
        return campaign_main(argv)
    args = build_parser().parse_args(argv)
    out = Path(args.out or DEFAULT_OUT)

    if args.resume:
        directory = find_checkpoint(out, args.resume)
        state = load_checkpoint(directory)
        config = dict(state["config"])
        given = [k for k in _DEFINING if getattr(args, k, None) not in (None, [])]
        if given:
            print(f"note: --resume takes the search's settings from its checkpoint; "
                  f"ignoring {', '.join('--' + k.replace('_', '-') for k in given)}",
                  file=sys.stderr)
        for key in ("device", "n_jobs"):           # execution choices may change
            if getattr(args, key) is not None:
                config[key] = getattr(args, key)
        joblib_name = args.backend or config.get("joblib_backend")
    else:
        preset = args.preset or (None if args.fitness else _default_preset())
        seed = 0 if args.seed is None else args.seed
        strategy_name = args.strategy or "evo"
        n_jobs = args.n_jobs or 1
        config = {
            "seed": seed, "preset": _preset_key(preset) if preset else args.fitness,
            "preset_source": preset, "fitness": args.fitness, "data": args.data,
            "device": args.device or "auto", "n_jobs": n_jobs,
            "joblib_backend": args.backend or "loky",
            "strategy_args": _strategy_settings(args), "space_args": _space_args(args),
            "experiment": args.experiment or "evo_nos",
        }
        budget = args.budget or DEFAULT_BUDGETS.get(config["preset"], FALLBACK_BUDGET)
        joblib_name = config["joblib_backend"]
        stamp = time.strftime("%Y%m%d-%H%M%S")
        directory = out / f"{strategy_name}-seed{seed}-{stamp}"
        while directory.exists():
            directory = directory.with_name(directory.name + "x")

    space = SearchSpace(**config["space_args"])
    strategy_name = state["strategy"] if args.resume else strategy_name
    try:
        strategy = make_strategy(strategy_name, space, config["seed"], **config["strategy_args"])
    except (ValueError, TypeError) as err:
        raise SystemExit(f"error: {err}") from None
    if config.get("fitness") is None and config.get("preset_source") is None:
        raise SystemExit("error: give --preset or --fitness")
    backend = make_backend(dict(config, preset=config.get("preset_source")))

    from evo_nos.tracking import Tracker

    tracker = Tracker(experiment=config["experiment"], tracking_uri=args.tracking_uri)
    if args.resume:
        search = Search.resume(directory, strategy, backend, tracker=tracker,
                               progress=not args.quiet, time_limit=args.time_limit)
        print(f"resuming {directory.name}: {search.trainings}/{search.budget} trainings done",
              file=sys.stderr)
    else:
        seed_everything(config["seed"])
        batch = args.batch_size or max(1, n_jobs if n_jobs > 0 else (os.cpu_count() or 1))
        search = Search(strategy, backend, budget=budget, time_limit=args.time_limit,
                        batch_size=batch, hall_of_fame_size=args.hall_of_fame or 10,
                        checkpoint_dir=directory, tracker=tracker, progress=not args.quiet,
                        run_name=args.run_name, config=config)

    with joblib_backend(joblib_name, config["n_jobs"], args.scheduler):
        result = search.run()

    print()
    print(f"{strategy.name} search {result.status}: {result.trainings} child trainings, "
          f"{result.evaluations} candidates ({result.counts.get('cached', 0)} cache hits, "
          f"{result.counts.get('invalid', 0)} invalid)")
    print(result.hall_of_fame.table_text())
    print()
    print(f"MLflow run {result.run_id} in experiment {config['experiment']!r}; open it with:")
    print(f"    {tracker.ui_command}")
    print(f"checkpoint: {directory}")
    if result.status == INTERRUPTED:
        print(f"interrupted; continue with: python -m evo_nos.run --resume {result.run_id}"
              f"{'' if out == Path(DEFAULT_OUT) else f' --out {out}'}")
        return EXIT_INTERRUPTED
    return 0


if __name__ == "__main__":
    sys.exit(main())
