"""A search from the Python API: strategy, fitness backend, driver, MLflow tracking.

The same pieces ``python -m evo_nos.run`` puts together, spelled out::

    python examples/search_api.py                  # evo on the `cpu` preset, 20 trainings
    EVO_NOS_PRESET=smoke EVO_NOS_BUDGET=3 python examples/search_api.py    # seconds

Settings come from the environment so the file runs as is: ``EVO_NOS_PRESET`` (smoke,
cpu, nos), ``EVO_NOS_BUDGET`` (child trainings), ``EVO_NOS_STRATEGY`` (evo, rl, random),
``EVO_NOS_DATA_SPEC`` (e.g. ``imagefolder:/data/cifar10``; default: the preset's source) and
``MLFLOW_TRACKING_URI`` (default: ``mlflow.db`` in this folder).
"""
import os

import torch

from evo_nos import (FitnessBackend, Search, SearchSpace, Tracker, load_task, make_strategy,
                     seed_everything)

PRESET = os.environ.get("EVO_NOS_PRESET", "cpu")
BUDGET = int(os.environ.get("EVO_NOS_BUDGET", "20"))
STRATEGY = os.environ.get("EVO_NOS_STRATEGY", "evo")
DATA = os.environ.get("EVO_NOS_DATA_SPEC")          # None: the preset's own data source
SEED = 0


def main() -> None:
    torch.set_num_threads(1)           # the backend trains with one thread per training
    seed_everything(SEED)

    # 1. the space every strategy searches: the paper's grammar, at most 3 binary nodes
    space = SearchSpace(max_binary=3)
    # 2. a strategy proposes rules (ask) and learns from their scores (tell)
    settings = {"population": 8, "tournament": 3} if STRATEGY == "evo" else {}
    strategy = make_strategy(STRATEGY, space, SEED, **settings)
    # 3. the fitness backend trains the child network with each rule (lr sweep + final run)
    backend = FitnessBackend(load_task(PRESET, data=DATA), seed=SEED, n_jobs=1)
    # 4. the driver: budget in child trainings, hall of fame, checkpoints, MLflow
    tracker = Tracker(experiment="evo_nos_examples")
    search = Search(strategy, backend, budget=BUDGET, batch_size=1, hall_of_fame_size=5,
                    checkpoint_dir=f"evo_nos_runs/example-{STRATEGY}-seed{SEED}",
                    tracker=tracker, run_name=f"example {STRATEGY}",
                    config={"seed": SEED, "preset": PRESET})
    result = search.run()

    print(f"\n{result.status}: {result.trainings} child trainings, "
          f"{result.evaluations} candidates")
    print(result.hall_of_fame.table_text())
    best = result.best
    if best is not None:
        print(f"\nbest rule: {best.rule}  (fitness {best.fitness:.4f} at lr {best.best_lr:g})")
    print(f"MLflow run {result.run_id}; open with: {tracker.ui_command}")


if __name__ == "__main__":
    main()
