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
Ctrl+C, SIGTERM or SIGHUP saves and exits (status 128 + the signal: 130, 143, 129) and
``--resume RUN_ID|last`` continues it in the same MLflow run.  Results are exactly reproducible from ``--seed`` when run serially
(``--n-jobs 1``) with the same ``--batch-size``; the backend seeds every training from
the rule itself, which is meant to make parallel workers agree too (see
:mod:`evo_nos.fitness.backend`).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import time
from pathlib import Path

from evo_nos.cli.campaign import add_campaign_options, main as campaign_main, wants_campaign
from evo_nos.cli.errors import (Parser, SEARCH_ERRORS, describe, describe_os_error,
                                quiet_mlflow_store)
from evo_nos.cli.options import (add_search_options, funnel_args_from, space_args_from,
                                 validate_search_args)
from evo_nos.cli.settings import (protocol_settings_from, rule_settings_from,
                                  strategy_settings_from)
from evo_nos.cli.option_types import nonnegative_int
from evo_nos.core import signals
from evo_nos.experiments.selection import select, selection_suite
from evo_nos.fitness.backend import FitnessBackend
from evo_nos.fitness.heldout import SIZES
from evo_nos.fitness.data import IMAGEFOLDER, SYNTHETIC, parse_data_spec
from evo_nos.fitness.factory import joblib_backend, make_backend
from evo_nos.fitness.tasks import default_preset, load_task, preset_key
from evo_nos.operators.space import SearchSpace
from evo_nos.search import (FINISHED, INTERRUPTED, SUMMARY_FILE, SaveError, Search,
                            load_checkpoint, new_search_dir, seed_everything)
from evo_nos.search.defaults import (DEFAULT_HALL_OF_FAME, DEFAULT_OUT, DEFAULT_SEED,
                                     DEFAULT_STRATEGY, default_batch_size, default_budget)
from evo_nos.strategies import make_strategy
from evo_nos.tracking import DEFAULT_EXPERIMENT, Tracker, TrackingError

# options that define a search: on --resume they come from the checkpoint, and are ignored
# here (but --budget, which may grow the search, and --data, which may point at the same
# images elsewhere)
RESUME_IGNORES = ("strategy", "preset", "fitness", "seed", "settings",
                  "max_binary", "root", "operands", "unaries", "binaries", "batch_size",
                  "hall_of_fame", "run_name", "population", "tournament", "mode", "offspring",
                  "crossover_prob", "seed_rules", "funnel_top", "funnel_seeds", "final_top",
                  "final_seeds", "hurdle")


def build_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="python -m evo_nos.run", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Open the results with: mlflow ui (in the same folder), or "
               "mlflow ui --backend-store-uri $MLFLOW_TRACKING_URI")
    add_search_options(p)
    sel = p.add_argument_group("program selection (a last stage, after the budget)")
    sel.add_argument("--select", type=nonnegative_int, default=0, metavar="K",
                     help="re-score the hall of fame's top K on the selection suite (the "
                          "held-out kinds on data no reported task uses) and crown the best "
                          "mean rank there (default 0: off)")
    sel.add_argument("--select-size", default="quick", choices=SIZES,
                     help="the selection suite's size (default quick)")
    add_campaign_options(p.add_argument_group(
        "head-to-head (these, several --strategy names or --seeds run a campaign: see "
        "python -m evo_nos.campaign --help)"))
    return p


def _select(args, result, backend, tracker) -> None:
    """Program selection: the top --select rules through the selection suite, on the
    search's schedule; the table is printed and logged (selection.json, tag
    selected_rule)."""
    task = backend.task
    suite = selection_suite(args.select_size, data=task.data if task.data != "synthetic"
                            else None, schedule=task.schedule, warmup=task.warmup)
    frame = select(result.hall_of_fame.frame, suite, top=args.select,
                   device=backend.device, echo=lambda line: print(line, file=sys.stderr))
    print(f"\nprogram selection on {', '.join(t.name for t in suite)} ({args.select_size}; "
          "mean rank of the validation scores, 1 = best):")
    print(frame.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    tracker.log_table(frame, "selection.json")
    tracker.set_tags({"selected_rule": frame["rule"].iloc[0]})
    print(f"selected: {frame['rule'].iloc[0]}")


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
    """The command; Ctrl+C, SIGTERM and SIGHUP are handled from its first import to its
    last write (:mod:`evo_nos.core.signals`): exit status 128 + the signal."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if wants_campaign(argv):               # several strategies or --seeds: a head-to-head
        return campaign_main(argv)
    with signals.handling():
        claimed: list[Path] = []           # folders this command made, innermost first
        try:
            signals.check()                # a stop signal that came during the imports
            quiet_mlflow_store()
            args = build_parser().parse_args(argv)
            validate_search_args(args)     # bad input: one line, before anything is made
            return _search(args, claimed)
        except KeyboardInterrupt:          # before the search started
            _remove_if_empty(claimed)
            print("interrupted before the search started: nothing was saved", file=sys.stderr)
            return signals.exit_status(signals.pending())
        except SEARCH_ERRORS as err:
            _remove_if_empty(claimed)
            raise SystemExit(f"error: {describe(err)}") from None


def _load_data(backend: FitnessBackend) -> str:
    """Load the backend's images in this process (with a line while it happens, unless
    they are generated); their content fingerprint."""
    task = backend.task
    kind = parse_data_spec(task.data).kind
    if kind == SYNTHETIC:                   # generated in memory: nothing to tell
        return backend.data_fingerprint()
    how = ("decoded the first time, then cached" if kind == IMAGEFOLDER
           else "downloaded the first time")
    print(f"loading {task.n_train + task.n_val} images of {task.data} at "
          f"{task.image_size} px ({how}) ...", file=sys.stderr, flush=True)
    start = time.perf_counter()
    fingerprint = backend.data_fingerprint()
    print(f"loaded in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    return fingerprint


def _repoint(backend: FitnessBackend, config: dict, old: str, fingerprint: str) -> None:
    """Let a resumed search train on ``config["data"]`` instead of ``old`` when the images
    are the same (equal content fingerprints); otherwise a ValueError saying so."""
    recorded = config.get("data_fingerprint")
    if recorded is None:
        raise ValueError(f"this search's checkpoint records no fingerprint of its images "
                         f"(it predates them), so --data cannot re-point it: resume with "
                         f"--data {old}")
    if fingerprint != recorded:
        raise ValueError(f"the images of --data {config['data']} are not the ones this search "
                         f"trained on ({old}; fingerprint {fingerprint} against {recorded}): "
                         f"resume with the same images")
    backend.same_data_as(old)
    print(f"note: --data {config['data']} holds the same images as {old} (fingerprint "
          f"{fingerprint}): the search goes on with them", file=sys.stderr)


def _remove_if_empty(folders: list[Path]) -> None:
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:                    # not empty: the search saved something there
            pass


def _search(args, claimed: list) -> int:
    out = Path(args.out or DEFAULT_OUT)
    if args.resume:
        directory = find_checkpoint(out, args.resume)
        state = load_checkpoint(directory)
        config = dict(state["config"])
        given = [k for k in RESUME_IGNORES if getattr(args, k, None) not in (None, [])]
        if given:
            print(f"note: --resume takes the search's settings from its checkpoint; "
                  f"ignoring {', '.join('--' + k.replace('_', '-') for k in given)}",
                  file=sys.stderr)
        for key in ("device", "n_jobs"):           # execution choices may change
            if getattr(args, key) is not None:
                config[key] = getattr(args, key)
        joblib_name = args.backend or config.get("joblib_backend")
        strategy_name = state["strategy"]
        old_data = config.get("data")
        if args.data is not None and args.data != old_data:
            config["data"] = args.data          # checked below: the same images, or refused
    else:
        preset = args.preset or (None if args.fitness else default_preset())
        seed = DEFAULT_SEED if args.seed is None else args.seed
        strategy_name = args.strategy or DEFAULT_STRATEGY
        n_jobs = args.n_jobs or 1
        # checked already (validate_search_args): these only read the values
        strategy_args = strategy_settings_from(args, [strategy_name])
        rule_settings = rule_settings_from(args)
        funnel = funnel_args_from(args)
        config = {
            "seed": seed, "preset": preset_key(preset) if preset else args.fitness,
            "preset_source": preset, "fitness": args.fitness, "data": args.data,
            "device": args.device or "auto", "n_jobs": n_jobs,
            "joblib_backend": args.backend or "loky",
            "strategy_args": strategy_args, "space_args": space_args_from(args),
            "experiment": args.experiment or DEFAULT_EXPERIMENT,
            "funnel": funnel, "hurdle": args.hurdle, "rule_settings": rule_settings,
            "task_settings": protocol_settings_from(args),
        }
        budget = args.budget or default_budget(config["preset"])
        joblib_name = config["joblib_backend"]

    try:
        space = SearchSpace(**config["space_args"])
        strategy = make_strategy(strategy_name, space, config["seed"], **config["strategy_args"])
        if config.get("fitness") is None and config.get("preset_source") is None:
            raise ValueError("give --preset or --fitness")
        backend = make_backend(dict(config, preset=config.get("preset_source")))
    except (ValueError, TypeError) as err:
        raise SystemExit(f"error: {err}") from None
    if isinstance(backend, FitnessBackend) and joblib_name in (None, "loky"):
        # load the images here, before anything is made: a source that cannot be read
        # (CIFAR-10 offline) ends in one line, and the checkpoint records what they are
        fingerprint = _load_data(backend)
        if not args.resume:
            config["data_fingerprint"] = fingerprint
        elif config["data"] != old_data:
            _repoint(backend, config, load_task(config["preset_source"], data=old_data).data,
                     fingerprint)
    elif args.resume and config["data"] != old_data:
        raise ValueError(f"--data can re-point a resumed search only when its images are "
                         f"loaded here (--backend loky): resume with --data {old_data}")

    tracker = Tracker(experiment=config["experiment"], tracking_uri=args.tracking_uri)
    if not args.resume:                     # a new folder, never one another search has
        stamp = time.strftime("%Y%m%d-%H%M%S")
        made_out = not out.exists()
        directory = new_search_dir(out, f"{strategy_name}-seed{config['seed']}-{stamp}")
        claimed.append(directory)
        if made_out:                        # removed too if the search leaves nothing
            claimed.append(out)
    if args.resume:
        search = Search.resume(directory, strategy, backend, tracker=tracker,
                               progress=not args.quiet, time_limit=args.time_limit,
                               budget=args.budget)
        search.config["data"] = config["data"]      # re-pointed, or as it was
        grown = (f" (budget grown from {search.grown_from})"
                 if search.grown_from is not None else "")
        print(f"resuming {directory.name}: {search.compute:.1f}/{search.budget} trainings "
              f"done{grown}", file=sys.stderr)
        if search.cut_batch:
            print("note: this search's last batch was cut short to fit its old budget; "
                  "from there on it differs from a search given the new budget from the "
                  "start", file=sys.stderr)
    else:
        seed_everything(config["seed"])
        search = Search(strategy, backend, budget=budget, time_limit=args.time_limit,
                        batch_size=args.batch_size or default_batch_size(n_jobs),
                        hall_of_fame_size=args.hall_of_fame or DEFAULT_HALL_OF_FAME,
                        checkpoint_dir=directory, tracker=tracker, progress=not args.quiet,
                        run_name=args.run_name, config=config,
                        export_settings=config["rule_settings"] or None, **config["funnel"])

    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(joblib_backend(joblib_name, config["n_jobs"], args.scheduler,
                                               config["device"]))
        except ValueError as err:
            raise SystemExit(f"error: {err}") from None
        def resume_command() -> str:        # the run's id once it has one
            return (f"python -m evo_nos.run --resume {search.run_id or directory.name}"
                    f"{'' if out == Path(DEFAULT_OUT) else f' --out {out}'}")
        try:
            result = search.run()   # a SEARCH_ERRORS failure is one line (see main)
        except TrackingError as err:
            raise TrackingError(f"{err}; the search is saved to its last batch: fix the "
                                f"store, then {resume_command()}") from None
        except SaveError as err:    # a full disk, a folder made read-only
            raise SystemExit(f"error: {describe_os_error(err, then=resume_command())} "
                             "(the search is saved to its last checkpoint)") from None

    with signals.held():            # the search is saved: its summary is printed whole
        _print_summary(strategy, result, budget=search.budget, unspent=search.unspent)
        print()
        print(f"MLflow run {result.run_id} in experiment {config['experiment']!r}; "
              "open it with:")
        print(f"    {tracker.ui_command}")
        print(f"and open {tracker.ui_url(result.run_id)}")
        print(f"checkpoint: {directory}")
    stop = signals.pending()        # came during the final writes, or the summary
    resume = resume_command()
    if args.select and result.status != INTERRUPTED and stop is None \
            and isinstance(backend, FitnessBackend):
        try:
            _select(args, result, backend, tracker)
        except KeyboardInterrupt:
            print(f"program selection interrupted; the search is finished and saved: "
                  f"select again with {resume} --select {args.select}", file=sys.stderr)
            return signals.exit_status(signals.pending())
    if result.status == INTERRUPTED:
        how = "" if stop in (None, signal.SIGINT) else f" by {signals.signal_name(stop)}"
        print(f"interrupted{how}; continue with: {resume}")
        return signals.exit_status(stop)
    if stop is not None:
        print(f"{signals.signal_name(stop)} came as the search ended: it is {result.status} "
              f"and saved whole", file=sys.stderr)
        return signals.exit_status(stop)
    return 0


def _print_summary(strategy, result, *, budget: int, unspent: float) -> None:
    """The search's summary line (with the budget left unspent, when a whole training
    did not fit in it) and its hall of fame."""
    print()
    left = ""
    if result.status == FINISHED and unspent > 1e-9:
        left = (f"; {unspent:.2f} of the budget of {budget} left unspent: less than one "
                "whole training")
    print(f"{strategy.name} search {result.status}: {result.compute:.1f} child trainings "
          f"of compute ({result.trainings} runs, {result.counts.get('rescored', 0)} "
          f"re-scorings), "
          f"{result.evaluations} candidates ({result.counts.get('cached', 0)} cache hits, "
          f"{result.counts.get('invalid', 0)} invalid){left}")
    print(result.hall_of_fame.table_text())
