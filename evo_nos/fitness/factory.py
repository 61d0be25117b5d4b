"""A fitness backend from a plain config, and the joblib backend its trainings run on.

Searches, campaigns and the reference scores build their backend here, from the config
a search saves in its checkpoint, so a resumed search scores exactly as it started.
"""
from __future__ import annotations

import contextlib

import joblib

from evo_nos.fitness.backend import FitnessBackend
from evo_nos.fitness.standin import StandInBackend
from evo_nos.fitness.tasks import load_task

JOBLIB_BACKENDS = ("loky", "threading", "dask", "ray")


def make_backend(config: dict):
    """The backend a config describes: ``fitness="standin:TARGET"`` for the stand-in,
    else the real one on ``preset`` (a name or a .toml path) with ``data``, ``seed``,
    ``n_jobs``, ``device``, ``hurdle`` and ``rule_settings`` (a :class:`RuleSettings`
    dict).  Raises ValueError naming what is wrong."""
    fitness = config.get("fitness")
    if fitness:
        kind, _, target = fitness.partition(":")
        if kind != "standin" or not target:
            raise ValueError(f"--fitness expects standin:TARGET, got {fitness!r}")
        return StandInBackend(target)
    if not config.get("preset"):
        raise ValueError("give --preset or --fitness")
    task = load_task(config["preset"], data=config.get("data"))
    return FitnessBackend(task, seed=config.get("seed", 0), n_jobs=config.get("n_jobs", 1),
                          device=config.get("device", "auto"), hurdle=config.get("hurdle"),
                          settings=config.get("rule_settings"))


@contextlib.contextmanager
def joblib_backend(name: str | None, n_jobs: int, scheduler: str | None = None):
    """Run the trainings on the chosen joblib backend (loky: joblib's default; dask: a
    client to ``scheduler`` or a local cluster of ``n_jobs`` workers; ray: registered).
    Dask and ray are optional: their import errors say how to install them."""
    if not name or name == "loky":
        yield
        return
    if name not in JOBLIB_BACKENDS:
        raise ValueError(f"unknown joblib backend {name!r}; choose from {JOBLIB_BACKENDS}")
    if name == "dask":
        try:
            from dask.distributed import Client, LocalCluster   # optional dependency
        except ImportError as err:
            raise ValueError("--backend dask needs dask.distributed: pip install "
                             "'evo_nos[dask]'") from err
        if scheduler:
            client, cluster = Client(scheduler), None
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
            from ray.util.joblib import register_ray                # optional dependency
        except ImportError as err:
            raise ValueError("--backend ray needs ray: pip install 'evo_nos[ray]'") from err
        register_ray()
    with joblib.parallel_config(backend=name):
        yield
