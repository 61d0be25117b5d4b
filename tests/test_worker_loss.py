"""A joblib worker that dies mid-batch: the lost chunks are trained again, the search goes on.

Every worker here dies by a real signal: the function it runs kills its own process
(``SIGKILL``).  Nothing waits on a clock (an alarm only guards against a deadlock).
Which chunk dies and how often is fixed by files: each attempt of a killing chunk
appends a line to a file, so "die on the first attempt only" and "die on every attempt"
are exact.  Where a test needs the other chunks of the batch to have come back before a
worker dies (loky shuts the whole pool down when one worker dies, losing whatever is in
flight), a *gate* makes it so: the test holds a file lock, the killing chunk blocks on
it, and the lock is released in the test process when the other chunks' results are
unpickled there (:class:`Receipt`).  The end-to-end test runs two real smoke searches
side by side, one with its first training killing its worker, and compares them.
"""
import contextlib
import fcntl
import json
import logging
import math
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import joblib
import pytest

import evo_nos.fitness.backend as backend_module
import evo_nos.fitness.workers as workers_module
from evo_nos.fitness.backend import FitnessBackend, candidate_seed
from evo_nos.fitness.workers import WORKER_RETRIES, LostChunk, run_chunks, worker_lost
from evo_nos.fitness.data import DataError
from evo_nos.fitness.evaluation import CACHED, LOST, OK, STATUSES, Evaluation
from evo_nos.fitness.factory import joblib_backend
from evo_nos.core.rules import Rule
from evo_nos.search.checkpoint import load_checkpoint
from evo_nos.search.hall_of_fame import HallOfFame

CHUNKS = [[1, 2], [3, 4], [5], [6, 7]]
LOG_NAME = "evo_nos.fitness.backend"
DEADLOCK_GUARD_S = 120   # a gated worker that waits this long dies (the test then fails)


# -- helpers: attempts, gates, killers ------------------------------------------------------
def _count_attempt(folder, key) -> int:
    """Record one more attempt of ``key``; how many there were before it."""
    path = Path(folder) / (re.sub(r"\W", "_", str(key)) + ".attempts")
    before = len(path.read_text().splitlines()) if path.exists() else 0
    with open(path, "a") as f:
        f.write("attempt\n")
    return before


def _attempts(folder, key) -> int:
    path = Path(folder) / (re.sub(r"\W", "_", str(key)) + ".attempts")
    return len(path.read_text().splitlines()) if path.exists() else 0


_GATES: dict[str, dict] = {}     # in the test process: gate file -> lock and keys awaited


@contextlib.contextmanager
def gate(path: Path, awaited):
    """Hold a lock on ``path`` until the results of the chunks ``awaited`` are back."""
    lock = open(path, "w")
    fcntl.flock(lock, fcntl.LOCK_EX)
    _GATES[str(path)] = {"lock": lock, "awaited": set(awaited)}
    try:
        yield str(path)
    finally:
        del _GATES[str(path)]
        lock.close()


def _arrived(path, key, value):
    # unpickled in the test process, as a result comes back: the last awaited one opens
    state = _GATES.get(path)
    if state is not None:
        state["awaited"].discard(key)
        if not state["awaited"]:
            fcntl.flock(state["lock"], fcntl.LOCK_UN)
    return value


class Receipt:
    """A result that, unpickled in the test process, is the plain ``value`` and tells
    the gate it came back."""

    def __init__(self, path, key, value):
        self.path, self.key, self.value = path, key, value

    def __reduce__(self):
        return _arrived, (self.path, self.key, self.value)


def _die(gate_path=None):
    if gate_path is not None:            # wait until the rest of the batch is back
        signal.alarm(DEADLOCK_GUARD_S)
        with open(gate_path) as f:
            fcntl.flock(f, fcntl.LOCK_EX)
    os.kill(os.getpid(), signal.SIGKILL)


def squares(chunk, folder, die_on=(), kills=1, gate_path=None):
    """The chunk's squares.  A chunk whose first item is in ``die_on`` kills its worker
    on its first ``kills`` attempts (after the gate opens, with ``gate_path``); the
    others' results pass the gate."""
    if chunk[0] in die_on and _count_attempt(folder, chunk[0]) < kills:
        _die(gate_path)
    value = [x * x for x in chunk]
    return value if gate_path is None else Receipt(gate_path, chunk[0], value)


def refuse_data(chunk, folder):
    """A worker whose data is missing: must raise, never be retried."""
    _count_attempt(folder, "data")
    raise DataError("no such dataset (a test)")


EXPECTED = [[x * x for x in chunk] for chunk in CHUNKS]


# -- which errors mean a lost worker ------------------------------------------------------
def _named(name: str, module: str, base=Exception):
    return type(name, (base,), {"__module__": module})


def test_lost_worker_errors_are_told_from_real_failures():
    from concurrent.futures.process import BrokenProcessPool
    from joblib.externals.loky.process_executor import TerminatedWorkerError
    from distributed.scheduler import KilledWorker            # dask is a test dependency
    from distributed.comm.core import CommClosedError

    ray_actor = _named("RayActorError", "ray.exceptions")
    assert worker_lost(TerminatedWorkerError("exit code -9"))
    assert worker_lost(BrokenProcessPool("a child process terminated abruptly"))
    assert worker_lost(KilledWorker("task", "tcp://127.0.0.1:1", 3))
    for name in ("WorkerCrashedError", "NodeDiedError"):     # ray, matched by name only
        assert worker_lost(_named(name, "ray.exceptions")())
    assert worker_lost(_named("ActorDiedError", "ray.exceptions", ray_actor)())  # subclass
    try:
        try:
            raise TerminatedWorkerError("gone")
        except TerminatedWorkerError as inner:
            raise RuntimeError("wrapped") from inner
    except RuntimeError as outer:
        assert worker_lost(outer)                             # raised from a lost worker

    assert not worker_lost(DataError("no data"))
    assert not worker_lost(RuntimeError("a training failed"))
    assert not worker_lost(CommClosedError("the scheduler is gone"))
    assert not worker_lost(_named("WorkerCrashedError", "mylib.errors")())  # not ray's


def test_lost_is_a_status_that_is_not_scored():
    assert LOST in STATUSES
    ev = Evaluation(rule="g", fitness=0.0, status=LOST)
    assert not ev.scored and Evaluation.from_dict(ev.to_dict()) == ev


# -- run_chunks: the retry ---------------------------------------------------------------
# (ordered so that few tests start a fresh loky pool: each start imports evo_nos, torch
# and mlflow in both workers, about 8 s here; a lost worker breaks the pool it was in)
def test_undisturbed_chunks_come_back_in_order():
    assert run_chunks(squares, CHUNKS, ("unused",), n_jobs=1) == EXPECTED   # in-process
    with joblib.parallel_config(backend="loky"):
        assert run_chunks(squares, CHUNKS, ("unused",), n_jobs=2) == EXPECTED
    assert run_chunks(squares, [], ("unused",), n_jobs=2) == []
    with pytest.raises(ValueError, match="retries"):
        run_chunks(squares, CHUNKS, ("unused",), retries=-1)


def test_data_errors_raise_and_are_not_retried(tmp_path):
    with joblib.parallel_config(backend="loky"), pytest.raises(DataError, match="no such"):
        run_chunks(refuse_data, [[1]], (str(tmp_path),), n_jobs=2)
    assert _attempts(tmp_path, "data") == 1


def test_a_worker_killed_once_is_retried_and_gives_the_same_results(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger=LOG_NAME), \
            joblib.parallel_config(backend="loky"):
        got = run_chunks(squares, CHUNKS, (str(tmp_path), (3,)), n_jobs=2)
    assert got == EXPECTED
    assert _attempts(tmp_path, 3) == 2                        # killed, then trained
    lost = [r.getMessage() for r in caplog.records if "worker was lost" in r.getMessage()]
    assert len(lost) == 1 and "TerminatedWorkerError" in lost[0], lost
    assert f"retry 1 of {WORKER_RETRIES}" in lost[0]


def test_a_chunk_that_always_kills_comes_back_lost_and_the_rest_is_kept(tmp_path, caplog):
    others = [chunk[0] for chunk in CHUNKS if chunk[0] != 5]
    with caplog.at_level(logging.WARNING, logger=LOG_NAME), \
            joblib.parallel_config(backend="loky"), \
            gate(tmp_path / "gate", others) as gate_path:
        got = run_chunks(squares, CHUNKS, (str(tmp_path), (5,), 99, gate_path), n_jobs=2,
                         retries=1)            # one retry: each one starts a fresh pool
    assert [got[i] for i in (0, 1, 3)] == [EXPECTED[i] for i in (0, 1, 3)]
    assert isinstance(got[2], LostChunk)
    assert got[2].attempts == 2 == _attempts(tmp_path, 5)
    assert "TerminatedWorkerError" in got[2].error
    lost = [r.getMessage() for r in caplog.records if "worker was lost" in r.getMessage()]
    assert len(lost) == 2, lost
    assert "1 of 4 chunk(s) unfinished" in lost[0] and "giving up" in lost[-1], lost


def test_a_backend_without_generators_still_runs(tmp_path):
    # joblib's multiprocessing backend (like ray's) cannot return generators: one list
    with joblib.parallel_config(backend="multiprocessing"):
        assert run_chunks(squares, CHUNKS, (str(tmp_path),), n_jobs=2) == EXPECTED


def test_a_dask_worker_that_dies_once_does_not_change_the_results(tmp_path):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  host="127.0.0.1", dashboard_address=None) as cluster, \
            distributed.Client(cluster), joblib.parallel_config(backend="dask"):
        got = run_chunks(squares, CHUNKS, (str(tmp_path), (6,)), n_jobs=2)
    # dask's scheduler re-runs the task of a dead worker by itself; whoever retried, the
    # batch is whole and the killed chunk really ran twice
    assert got == EXPECTED
    assert _attempts(tmp_path, 6) == 2


def test_a_ray_worker_killed_once_costs_the_whole_attempt_not_the_results(tmp_path, caplog,
                                                                          monkeypatch):
    ray = pytest.importorskip("ray", reason="ray is not installed (pip install "
                                            "'evo_nos[ray]'; .ci/run installs it)")
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    # ray's workers unpickle squares by name: they must find this module, which joblib's
    # own backends pass on with sys.path and ray does not
    search_path = [str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(path for path in search_path if path))
    auth_mode = os.environ.get("RAY_AUTH_MODE")             # ray.init sets it to "token"
    if ray.is_initialized():            # a cluster another test left: its workers lack the path
        ray.shutdown()
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        with caplog.at_level(logging.WARNING, logger=LOG_NAME), joblib_backend("ray", 2):
            got = run_chunks(squares, CHUNKS, (str(tmp_path), (3,)), n_jobs=2)
    finally:
        ray.shutdown()
        if auth_mode is None:
            os.environ.pop("RAY_AUTH_MODE", None)
        else:
            os.environ["RAY_AUTH_MODE"] = auth_mode
    assert got == EXPECTED
    assert _attempts(tmp_path, 3) == 2                        # killed, then trained
    lost = [r.getMessage() for r in caplog.records if "worker was lost" in r.getMessage()]
    # ray's actor error; its joblib backend returns one list, so no chunk of the killed
    # attempt was kept: all four went again
    assert len(lost) == 1 and "ActorDiedError" in lost[0], lost
    assert f"4 of 4 chunk(s) unfinished, submitting them again (retry 1 of " \
           f"{WORKER_RETRIES})" in lost[0], lost


# -- the backend: a lost candidate is free, not cached, and trained again later -------------
# (no processes here: run_chunks is stubbed to lose chosen chunks, as tested above)
def fake_train(jobs, task, device, hurdle=None, settings=None):
    """Stands in for train_candidates (no training): a made-up score per (rule, seed)."""
    return [Evaluation(rule=r, fitness=_f(s), status=OK, trainings=1, steps=10, best_lr=0.1,
                       lr_scores={0.1: 0.5}).to_dict() for r, s in jobs]


def _f(seed: int) -> float:
    return 0.1 + (seed % 1000) / 2000          # fake_train's score of a seed


def losing(lose):
    """A run_chunks that runs every chunk in this process, except that a chunk with a job
    whose rule or seed is in ``lose`` comes back lost."""
    def run(function, chunks, args=(), n_jobs=None, retries=WORKER_RETRIES):
        return [LostChunk("TerminatedWorkerError: a test", retries + 1)
                if any(rule in lose or seed in lose for rule, seed in chunk)
                else function(chunk, *args) for chunk in chunks]
    return run


ADAM = "div(m, add(sqrt(v), eps))"


def test_lost_candidates_are_free_never_cached_and_scored_later(monkeypatch):
    monkeypatch.setattr(backend_module, "train_candidates", fake_train)
    backend = FitnessBackend("smoke", seed=0, n_jobs=2, device="cpu")
    batch = [Rule.parse(r) for r in ("g", ADAM, "mul(g, 1)", "div(m, add(eps, sqrt(v)))")]
    fingerprint = [backend.screen(rule).fingerprint for rule in batch]
    assert fingerprint[0] == fingerprint[2] and fingerprint[1] == fingerprint[3]
    adam = batch[1].canonical
    monkeypatch.setattr(workers_module, "run_chunks", losing({adam}))
    first = backend.evaluate(batch)
    # g trained, adam lost, g's twin a cache hit, adam's twin lost with it
    assert [e.status for e in first] == [OK, LOST, CACHED, LOST]
    lost = first[1]
    assert (lost.rule, lost.fitness, lost.trainings, lost.steps) == (adam, 0.0, 0, 0)
    assert f"all {WORKER_RETRIES + 1} attempt" in lost.reason
    assert "TerminatedWorkerError" in lost.reason and lost.fingerprint == fingerprint[1]
    assert first[3].rule == batch[3].canonical and first[3].trainings == 0
    assert lost.fingerprint not in backend.cache and fingerprint[0] in backend.cache
    assert (backend.stats["lost"], backend.stats["trainings"]) == (2, 1)
    assert len(backend.sweeps) == 1                 # the hurdle saw only g's sweep

    monkeypatch.setattr(workers_module, "run_chunks", losing(set()))
    again = backend.evaluate([Rule.parse(ADAM), Rule.parse("g")])
    assert [e.status for e in again] == [OK, CACHED] and again[0].trainings == 1
    assert lost.fingerprint in backend.cache


def test_lost_rescoring_seeds_are_not_kept(monkeypatch):
    monkeypatch.setattr(backend_module, "train_candidates", fake_train)
    backend = FitnessBackend("smoke", seed=0, n_jobs=2, device="cpu")
    g, neg, sign = backend.evaluate([Rule.parse(r) for r in ("g", "neg(g)", "sign(g)")])
    seed = {(e.fingerprint, k): candidate_seed(0, e.fingerprint, k)
            for e in (g, neg, sign) for k in range(3)}

    def rescore(evaluations, lose):
        monkeypatch.setattr(workers_module, "run_chunks", losing(lose))
        out = backend.rescore(evaluations, seeds=3)
        return ([e.trainings for e in out],
                [backend.cache[e.fingerprint].seeds for e in evaluations], out)

    # jobs g1 g2 neg1 | neg2 sign1 sign2 (one chunk per worker), the first chunk lost:
    # g gets no seed, nor does neg (its second seed is not kept without its first: a
    # rule's k-th seed is always replicate k), sign both
    assert rescore([g, neg, sign], {seed[g.fingerprint, 1]})[:2] == ([0, 0, 2], [1, 1, 3])
    assert backend.stats["lost"] == 3
    # jobs neg1 | neg2, the second lost: neg keeps its second seed, not its third
    trainings, seeds, (ev,) = rescore([neg], {seed[neg.fingerprint, 2]})
    assert (trainings, seeds, ev.seeds) == ([1], [2], 2) and "not kept" in ev.reason
    # undisturbed: exactly the missing seeds, in replicate order
    assert rescore([g, neg, sign], set())[:2] == ([2, 1, 0], [3, 3, 3])
    for e in (g, neg, sign):
        assert backend.cache[e.fingerprint].seed_fitness == [
            _f(seed[e.fingerprint, k]) for k in range(3)]


# -- end to end: a real search with a worker killed mid-search ----------------------------
SCRIPT = '''\
"""A smoke search whose first training kills its own worker process."""
import os
import signal
import sys

import evo_nos.fitness.backend as backend
from evo_nos.cli.run import main


def killing(train, marker):
    def train_or_die(jobs, *args):
        if not os.path.exists(marker):       # the first training of the search: die once
            open(marker, "w").close()
            os.kill(os.getpid(), signal.SIGKILL)
        return train(jobs, *args)            # the real one (captured, sent by value)
    return train_or_die


if __name__ == "__main__":
    marker, argv = sys.argv[1], sys.argv[2:]
    if marker != "none":
        backend.train_candidates = killing(backend.train_candidates, marker)
    sys.exit(main(argv))
'''


def _searches(tmp_path: Path, markers: dict) -> dict:
    """Run one smoke search per ``name: marker`` at once (a marker "none": no killer);
    ``name -> (exit status, stdout + stderr, stderr, run folder)``."""
    script = tmp_path / "search_with_killer.py"
    script.write_text(SCRIPT)
    running = {}
    for name, marker in markers.items():
        folder = tmp_path / name
        folder.mkdir()
        env = dict(os.environ, MLFLOW_TRACKING_URI=f"sqlite:///{folder / 'mlflow.db'}",
                   MPLBACKEND="Agg")
        running[name] = (folder, subprocess.Popen(
            [sys.executable, str(script), marker, "--preset", "smoke", "--budget", "8",
             "--n-jobs", "2", "--quiet", "--out", str(folder / "out")],
            cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    out = {}
    for name, (folder, process) in running.items():
        stdout, stderr = process.communicate(timeout=600)
        runs = list((folder / "out").iterdir()) if (folder / "out").is_dir() else []
        out[name] = (process.returncode, (stdout + stderr)[-4000:], stderr,
                     runs[0] if len(runs) == 1 else None)
    return out


def _outcome(run_dir: Path) -> dict:
    summary = json.loads((run_dir / "run.json").read_text())
    state = load_checkpoint(run_dir)
    hall = HallOfFame()
    hall.load_state_dict(state["hall_of_fame"])
    keys = ("rule", "status", "fitness", "steps", "trainings", "seeds", "kind", "best_lr")
    return {"best": {k: summary[k] for k in ("status", "best_rule", "best_fitness",
                                              "best_fitness_se", "best_seeds", "trainings",
                                              "compute", "counts")},
            "hall_of_fame": [{k: None if isinstance(v, float) and math.isnan(v) else v
                              for k, v in row.items()}       # NaN: no SE / lr (NaN != NaN)
                             for row in hall.to_frame().to_dict("records")],
            "history": [{k: record[k] for k in keys} for record in state["history"]]}


@pytest.mark.slow
def test_a_search_with_a_worker_killed_ends_as_an_undisturbed_one(tmp_path):
    marker = tmp_path / "killed.marker"
    runs = _searches(tmp_path, {"killed": str(marker), "calm": "none"})   # side by side
    (killed, killed_log, killed_err, killed_dir), (calm, calm_log, calm_err, calm_dir) = (
        runs["killed"], runs["calm"])
    assert killed == 0 and killed_dir is not None, killed_log
    assert calm == 0 and calm_dir is not None, calm_log
    assert marker.exists(), killed_log                        # a worker really died
    assert "worker was lost" in killed_err, killed_log
    assert "worker was lost" not in calm_err, calm_log

    got, expected = _outcome(killed_dir), _outcome(calm_dir)
    assert got["best"]["status"] == "finished" and got["best"]["best_rule"]
    assert got == expected
