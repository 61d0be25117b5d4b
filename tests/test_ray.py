"""Ray: a search whose trainings run on a local Ray cluster is the serial search, exactly.

One cluster for the module (``ray.init(num_cpus=2)``: starting one takes seconds).  The
trainings go through :func:`evo_nos.fitness.factory.joblib_backend`, as
``python -m evo_nos.run --backend ray`` does.  Each joblib call on ray starts fresh worker
processes (ray's joblib backend keeps no pool between calls), so every batch of a search
pays for starting them: the searches here are short.
"""
import math
import os
import subprocess
import sys

import joblib
from joblib.pool import PicklingPool
import pytest

import evo_nos.fitness.backend as backend_module
from evo_nos.fitness.backend import FitnessBackend
from evo_nos.fitness.factory import joblib_backend, ray_worker_resources
from evo_nos.operators.space import SearchSpace
from evo_nos.search import Search, seed_everything
from evo_nos.strategies import make_strategy

RAY_MISSING = "ray is not installed (pip install 'evo_nos[ray]'; .ci/run installs it)"
QUIET = {"RAY_USAGE_STATS_ENABLED": "0"}     # no usage-stats upload attempt
TIMES = ("seconds", "elapsed")               # wall-clock fields of a history record


@pytest.fixture(scope="module")
def cluster():
    """A local two-CPU Ray cluster, shut down after the module; its address."""
    ray = pytest.importorskip("ray", reason=RAY_MISSING)
    auth_mode = os.environ.get("RAY_AUTH_MODE")
    with pytest.MonkeyPatch.context() as patch:
        for key, value in QUIET.items():
            patch.setenv(key, value)
        # address="local": a new cluster even where RAY_ADDRESS names another one; with
        # token authentication, ray's default for a new cluster
        context = ray.init(address="local", num_cpus=2, include_dashboard=False,
                           log_to_driver=False)
        try:
            yield context.address_info["gcs_address"]
        finally:
            ray.shutdown()
            restore_env("RAY_AUTH_MODE", auth_mode)     # ray.init set it to "token"


def restore_env(key: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(key, None)
    else:
        os.environ[key] = value


def search(n_jobs: int):
    """A short smoke search, trained with ``n_jobs`` workers of whichever joblib backend
    is active; its result.  Two batches, the second bred from the first's scores and cut
    to the one whole training the budget has left (the budget is a cap), and the best rule
    re-scored on a second seed between them: three joblib calls (a batch's valid rules, the
    re-scoring, the next batch's valid rule)."""
    seed_everything(0)
    strategy = make_strategy("evo", SearchSpace(), 0, population=4, tournament=2)
    backend = FitnessBackend("smoke", seed=0, n_jobs=n_jobs, device="cpu")
    return Search(strategy, backend, budget=5, batch_size=4, funnel_top=1, funnel_seeds=2,
                  progress=False).run()


def outcome(result) -> dict:
    """What a search found and scored, less wall-clock times, compared exactly."""
    return plain({"status": result.status, "trainings": result.trainings,
                  "counts": result.counts, "compute": result.compute,
                  "hall_of_fame": result.hall_of_fame.rows(),
                  "history": [{k: v for k, v in record.items() if k not in TIMES}
                              for record in result.history]})


def plain(value):
    """``value`` with every float NaN (a diverged learning rate) as the string "nan",
    which, unlike NaN, equals itself."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return "nan" if isinstance(value, float) and math.isnan(value) else value


def refuse_to_train_here(task, device):
    raise AssertionError("a training ran in the test process, not on a ray worker")


@pytest.mark.slow
def test_a_search_on_a_ray_cluster_is_the_serial_search(cluster, monkeypatch):
    serial = outcome(search(n_jobs=1))
    assert serial["status"] == "finished" and serial["hall_of_fame"]
    assert [(r["kind"], r["status"]) for r in serial["history"]] == [
        ("candidate", "ok"), ("candidate", "ok"), ("candidate", "invalid"),
        ("candidate", "ok"), ("rescore", "ok"),
        ("candidate", "invalid"), ("candidate", "invalid"), ("candidate", "ok")]

    # the workers load their data themselves: the test process must not train at all
    monkeypatch.setattr(backend_module, "worker_data", refuse_to_train_here)
    with joblib_backend("ray", 2):
        active, _ = joblib.parallel.get_active_backend()
        assert type(active).__name__ == "RayBackend"
        on_ray = outcome(search(n_jobs=2))
    assert on_ray == serial


def test_ray_workers_reserve_one_gpu_each_or_one_cpu():
    assert ray_worker_resources({"CPU": 64.0, "GPU": 8.0}, 8) == {"num_gpus": 1}
    assert ray_worker_resources({"CPU": 64.0, "GPU": 8.0}, 1) == {"num_gpus": 1}
    assert ray_worker_resources({"CPU": 2.0}, 2) == {"num_cpus": 1}
    assert ray_worker_resources({"CPU": 2.0}, -1) == {"num_cpus": 1}    # every CPU
    for n_jobs in (9, -1, None):          # one worker per GPU: no more than the GPUs
        with pytest.raises(ValueError, match="one worker per GPU.*has 8: give --n-jobs "
                                             "from 1 to 8"):
            ray_worker_resources({"CPU": 64.0, "GPU": 8.0}, n_jobs)
    with pytest.raises(ValueError, match="--n-jobs 3 is more than the 2 CPUs"):
        ray_worker_resources({"CPU": 2.0}, 3)
    # --device cpu on a GPU cluster: CPU workers, as many as its CPUs
    assert ray_worker_resources({"CPU": 64.0, "GPU": 8.0}, 16, "cpu") == {"num_cpus": 1}
    assert ray_worker_resources({"CPU": 64.0, "GPU": 8.0}, 8, "cuda") == {"num_gpus": 1}


CONNECT = '''\
import joblib
import ray
from evo_nos.fitness.factory import joblib_backend

with joblib_backend("ray", -1):
    print(ray.get_runtime_context().gcs_address)
    print(joblib.effective_n_jobs(-1))
    print(joblib.Parallel(n_jobs=-1)(joblib.delayed(abs)(-i) for i in range(3)))
print(ray.is_initialized())
'''


def test_a_search_process_joins_the_cluster_named_by_ray_address(cluster, tmp_path):
    # what the driver of a multi-machine search does: RAY_ADDRESS names the head node,
    # RAY_AUTH_MODE=token and the token in ~/.ray/auth_token, as docs/usage.md says
    env = dict(os.environ, RAY_ADDRESS=cluster, RAY_AUTH_MODE="token", **QUIET)
    done = subprocess.run([sys.executable, "-c", CONNECT], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    # it joined this cluster (started none), ran as many workers as it has CPUs (-1),
    # and left it when the search was over
    assert done.stdout.splitlines() == [cluster, "2", "[0, 1, 2]", "False"], \
        done.stderr[-4000:]


def test_the_ray_backend_leaves_joblibs_multiprocessing_pool_as_it_was(cluster):
    from_joblib = PicklingPool.__bases__
    with joblib_backend("ray", 2):
        assert joblib.Parallel(n_jobs=2)(joblib.delayed(abs)(i) for i in (-1, -2)) == [1, 2]
        assert PicklingPool.__bases__ != from_joblib        # ray re-parented it
    assert PicklingPool.__bases__ == from_joblib
