"""Read a search's results back from MLflow: runs, hall of fame, curves, the optimizer.

::

    python examples/read_hall_of_fame.py               # the newest search in evo_nos
    python examples/read_hall_of_fame.py RUN_ID
    EVO_NOS_EXPERIMENT=evo_nos_examples python examples/read_hall_of_fame.py

Everything goes through ``evo_nos.tracking``'s readers, which return plain data
(``RunRecord`` dataclasses, lists of dicts), so nothing here imports mlflow.  The store is
``$MLFLOW_TRACKING_URI``, else ``mlflow.db`` in the working directory.
"""
import os
import sys

import torch

from evo_nos import Rule, RuleOptimizer, load_hall_of_fame, load_search_runs
from evo_nos.tracking import DEFAULT_EXPERIMENT, metric_history

EXPERIMENT = os.environ.get("EVO_NOS_EXPERIMENT", DEFAULT_EXPERIMENT)


def main(argv: list[str]) -> None:
    # 1. the searches of the experiment (parent runs; reports and references excluded)
    runs = load_search_runs(EXPERIMENT)
    print(f"{len(runs)} search run(s) in experiment {EXPERIMENT!r}:")
    for run in runs:
        print(f"  {run.run_id}  {run.tags.get('strategy', '?'):<7} seed {run.params.get('seed')}"
              f"  preset {run.params.get('preset')}  {run.status:<9} "
              f"best {run.tags.get('best_fitness', '-')}")
    if not runs:
        sys.exit("no searches yet: run python -m evo_nos.run (or examples/search_api.py)")
    run_id = argv[0] if argv else runs[-1].run_id

    # 2. its hall of fame: rank, rule, readable form, fitness (mean over seeds ± SE), best lr
    rows = load_hall_of_fame(run_id)
    print(f"\nhall of fame of {run_id}:")
    for row in rows:
        se = f" ± {row['fitness_se']:.4f}" if row.get("fitness_se") is not None else ""
        shown = row.get("readable") or row.get("math", "")    # simplified; older tables: math
        print(f"  #{row['rank']:<2} {row['fitness']:.4f}{se} ({row.get('seeds', 1)} seeds)  "
              f"lr {row.get('best_lr')!s:<6} {row['rule']}   = {shown}")

    # 3. the best-fitness curve against compute: metrics are stepped by optimizer steps
    # of child training; the param steps_per_training turns them into child trainings
    # (free candidates -- cache hits, invalid rules -- log again at the same step)
    run = next(r for r in runs if r.run_id == run_id)
    unit = float(run.params.get("steps_per_training", 1))
    curve = {step / unit: value for step, value, _ in metric_history(run_id, "best_fitness")}
    print("\nbest fitness after child trainings: "
          + ", ".join(f"{x:g}: {value:.3f}" for x, value in list(curve.items())[-8:]))

    # 4. the best rule, as an optimizer again (no export needed inside evo_nos)
    best = Rule.parse(rows[0]["rule"])
    weights = torch.nn.Parameter(torch.tensor([2.0, -3.0, 0.5]))
    opt = RuleOptimizer([weights], best, lr=0.01, total_steps=100)
    start = (weights ** 2).sum().item()
    for _ in range(100):
        opt.zero_grad()
        loss = (weights ** 2).sum()
        loss.backward()
        opt.step()
    print(f"\n{best.math} minimising |w|²: {start:.4f} -> {(weights ** 2).sum().item():.4f}"
          " after 100 steps")


if __name__ == "__main__":
    main(sys.argv[1:])
