"""A fitness backend from a plain config, and the joblib backend its trainings run on.

Searches, campaigns and the reference scores build their backend here, from the config
a search saves in its checkpoint, so a resumed search scores exactly as it started.
"""
from __future__ import annotations

import contextlib

import joblib
from joblib.pool import PicklingPool

from evo_nos.fitness.backend import FitnessBackend
from evo_nos.fitness.standin import StandInBackend
from evo_nos.fitness.tasks import load_task

JOBLIB_BACKENDS = ("loky", "threading", "dask", "ray")


def make_backend(config: dict):
    """The backend a config describes: ``fitness="standin:TARGET"`` for the stand-in,
    else the real one on ``preset`` (a name or a .toml path) with ``data``, ``seed``,
    ``n_jobs``, ``device``, ``hurdle``, ``rule_settings`` (a :class:`RuleSettings`
    dict) and ``task_settings`` (Task fields over the preset's, e.g. ``schedule``).
    Raises ValueError naming what is wrong."""
    fitness = config.get("fitness")
    if fitness:
        kind, _, target = fitness.partition(":")
        if kind != "standin" or not target:
            raise ValueError(f"--fitness expects standin:TARGET, got {fitness!r}")
        return StandInBackend(target)
    if not config.get("preset"):
        raise ValueError("give --preset or --fitness")
    task = load_task(config["preset"], data=config.get("data"),
                     **(config.get("task_settings") or {}))
    return FitnessBackend(task, seed=config.get("seed", 0), n_jobs=config.get("n_jobs", 1),
                          device=config.get("device", "auto"), hurdle=config.get("hurdle"),
                          settings=config.get("rule_settings"))


@contextlib.contextmanager
def joblib_backend(name: str | None, n_jobs: int, scheduler: str | None = None,
                   device: str = "auto"):
    """Run the trainings on the chosen joblib backend (loky: joblib's default; dask: a
    client to ``scheduler`` or a local cluster of ``n_jobs`` workers; ray: the cluster at
    ``RAY_ADDRESS``, else one ``ray start`` began on this machine, else a new local one,
    with one worker per GPU, or per CPU for ``device="cpu"`` or a cluster without GPUs:
    :func:`ray_worker_resources`).  Dask and ray are optional: their import errors say how
    to install them."""
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
            import ray                                              # optional dependency
            from ray.util.joblib import register_ray
        except ImportError as err:
            raise ValueError("--backend ray needs ray: pip install 'evo_nos[ray]'") from err
        register_ray()
        started = not ray.is_initialized()
        if started:     # RAY_ADDRESS, else a cluster `ray start` began here, else a new one
            ray.init()
        # ray's joblib backend re-parents joblib's PicklingPool onto ray's Pool for good,
        # which turns joblib's own multiprocessing backend into ray's: undone on the way out
        pool_bases = PicklingPool.__bases__
        try:
            resources = ray_worker_resources(ray.cluster_resources(), n_jobs, device)
            with joblib.parallel_config(backend="ray", ray_remote_args=resources):
                yield
        finally:
            PicklingPool.__bases__ = pool_bases
            if started:
                ray.shutdown()
        return
    with joblib.parallel_config(backend=name):
        yield


def ray_worker_resources(cluster: dict, n_jobs: int | None, device: str = "auto") -> dict:
    """What each of the ``n_jobs`` ray workers of a search reserves, given the cluster's
    resources (``ray.cluster_resources()``): one GPU where the cluster has GPUs and
    ``device`` is not ``"cpu"`` (ray then shows each worker only its own GPU, through
    ``CUDA_VISIBLE_DEVICES``), else one CPU.
    Ray's joblib workers reserve nothing by default: ray may then start them all on one
    machine, each seeing all its GPUs.  Raises ValueError when the cluster cannot hold
    ``n_jobs`` such workers at once."""
    gpus, cpus = int(cluster.get("GPU", 0)), int(cluster.get("CPU", 0))
    if device == "cpu":
        gpus = 0
    if gpus:
        if n_jobs is None or not 1 <= n_jobs <= gpus:
            raise ValueError(f"--backend ray runs one worker per GPU and the ray cluster "
                             f"has {gpus}: give --n-jobs from 1 to {gpus}, not {n_jobs}")
        return {"num_gpus": 1}
    if n_jobs is not None and n_jobs > cpus:
        raise ValueError(f"--n-jobs {n_jobs} is more than the {cpus} CPUs of the ray "
                         f"cluster (one worker per CPU)")
    return {"num_cpus": 1}
