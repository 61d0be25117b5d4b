"""Worker management for the fitness backend: devices, each worker's data, chunks of jobs
and the retry of chunks whose worker process died.

:func:`run_jobs` is the one parallel call: it splits ``(rule, seed)`` jobs into one
contiguous chunk per joblib worker (:func:`chunked`), runs a function on every chunk
through ``joblib.Parallel`` on whatever joblib backend is active (:func:`run_chunks`),
and returns their Evaluations in order.  When joblib reports a lost worker
(:func:`worker_lost`), the chunks that had come back are kept and the others submitted
again, up to :data:`WORKER_RETRIES` times, one warning per loss (logger
``evo_nos.fitness.backend``); a chunk lost on every attempt gives each of its jobs a
``lost`` Evaluation (:func:`lost_evaluation`).  Any other exception ends the call.
Workers receive plain data and load the task's data once per process
(:func:`worker_data`).  Which joblib backend to use, and what each does when a worker
dies: docs/usage.md, "Scaling out with Dask or Ray" and "What survives what".
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import joblib
import torch

from evo_nos.fitness.data import DeviceData
from evo_nos.fitness.evaluation import LOST, Evaluation
from evo_nos.fitness.tasks import DATA_KEYS, Task
from evo_nos.fitness.train import task_data

# a lost worker is announced here, one line per loss (under the name it has always had)
LOG = logging.getLogger("evo_nos.fitness.backend")

# How many times a chunk whose worker process died is submitted again before its
# candidates come back LOST (so a chunk is tried at most 1 + WORKER_RETRIES times).
WORKER_RETRIES = 2
# The exceptions that mean a worker process is gone (not that a training failed in it):
# class names, by the top-level package that defines them.  Matched by name along the
# exception's class hierarchy, so the optional cluster libraries (dask, ray) are never
# imported for it.  dask's CommClosedError is left out on purpose: it is the client's
# connection to the scheduler that closed, and no retry can help a search without one.
WORKER_LOSS_ERRORS = {
    "concurrent": ("BrokenProcessPool",),                        # concurrent.futures
    "joblib": ("TerminatedWorkerError", "BrokenProcessPool"),    # loky, vendored by joblib
    "loky": ("TerminatedWorkerError", "BrokenProcessPool"),      # loky installed on its own
    "distributed": ("KilledWorker",),                            # dask.distributed
    "ray": ("WorkerCrashedError", "NodeDiedError", "RayActorError"),
}


def resolve_device(device: str = "auto") -> str:
    """``"auto"`` -> ``"cuda"`` when a GPU is visible, else ``"cpu"``."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r} asked for, but torch sees no CUDA GPU; "
                           "use --device cpu (or auto)")
    if device != "cpu" and not device.startswith("cuda"):
        raise ValueError(f"device must be auto, cpu or cuda[:N], got {device!r}")
    return device


_WORKER_DATA: dict[tuple, DeviceData] = {}


def worker_data(task: Task, device: str) -> DeviceData:
    """The task's data on ``device``, loaded once per process (keyed by data settings)."""
    key = tuple(getattr(task, k) for k in DATA_KEYS) + (device,)
    data = _WORKER_DATA.get(key)
    if data is None:
        data = task_data(task, device)
        _WORKER_DATA.clear()  # one dataset per process is enough; free the old one
        _WORKER_DATA[key] = data
    return data


def clear_worker_data() -> None:
    """Forget the loaded data of this process (tests, memory)."""
    _WORKER_DATA.clear()


def chunked(items: list, n_jobs) -> list[list]:
    """``items`` split into as many contiguous, near-equal chunks as joblib has workers
    (each chunk is one worker's packed job)."""
    if not items:
        return []
    n = max(1, min(len(items), joblib.effective_n_jobs(n_jobs)))
    size, extra = divmod(len(items), n)
    out, first = [], 0
    for i in range(n):
        last = first + size + (i < extra)
        out.append(items[first:last])
        first = last
    return out


def worker_lost(error: BaseException) -> bool:
    """True when ``error`` (or an exception it was raised from) says a joblib worker
    process died: see :data:`WORKER_LOSS_ERRORS`."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        for cls in type(error).__mro__:
            package = cls.__module__.partition(".")[0]
            if cls.__name__ in WORKER_LOSS_ERRORS.get(package, ()):
                return True
        error = error.__cause__
    return False


@dataclass(frozen=True)
class LostChunk:
    """What :func:`run_chunks` returns for a chunk whose worker died on every attempt."""
    error: str          # the last error, as ``Type: message``
    attempts: int       # how many times the chunk was submitted


def _numbered(index: int, function, chunk, args: tuple):
    # runs in the worker: the chunk's result, with the chunk's index
    return index, function(chunk, *args)


def _describe(error: BaseException) -> str:
    text = " ".join(str(error).split())
    if len(text) > 500:
        text = text[:497] + "..."
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def run_chunks(function, chunks: list, args: tuple = (), n_jobs=None,
               retries: int = WORKER_RETRIES) -> list:
    """``function(chunk, *args)`` for every chunk, through ``joblib.Parallel(n_jobs)``,
    surviving workers that die; returns the results in the order of ``chunks``.

    Results are collected as they finish (``return_as="generator_unordered"``), so when
    a worker process dies (:func:`worker_lost`) the chunks that had finished are kept
    and only the others are submitted again, up to ``retries`` more times, each loss
    announced by one warning on :data:`LOG`.  A chunk still unfinished after that comes
    back as a :class:`LostChunk`.  Any other exception (a
    :class:`~evo_nos.fitness.data.DataError`, a bug) propagates at once.  A joblib
    backend that cannot return a generator (ray's, multiprocessing's) runs each attempt
    as one list: a loss there re-runs every chunk of the attempt."""
    if retries < 0:
        raise ValueError(f"retries must be >= 0, got {retries}")
    results: list = [None] * len(chunks)
    finished = [False] * len(chunks)
    todo = list(range(len(chunks)))
    for attempt in range(1, retries + 2):
        # one chunk per task (batch_size=1): a lost task is one lost chunk, and no worker
        # waits on another's chunk
        try:
            parallel = joblib.Parallel(n_jobs=n_jobs, batch_size=1,
                                       return_as="generator_unordered")
        except ValueError:                  # this joblib backend returns lists only
            parallel = joblib.Parallel(n_jobs=n_jobs, batch_size=1)
        calls = [joblib.delayed(_numbered)(i, function, chunks[i], args) for i in todo]
        try:
            for index, result in parallel(calls):
                results[index], finished[index] = result, True
            return results
        except Exception as err:            # noqa: BLE001 -- re-raised unless a lost worker
            if not worker_lost(err):
                raise
            error = err
        todo = [i for i in todo if not finished[i]]
        if not todo:                        # lost after the last chunk had come back
            return results
        if attempt <= retries:
            what = f"submitting them again (retry {attempt} of {retries})"
        else:
            what = f"giving up after {attempt} attempts: their candidates come back {LOST!r}"
        LOG.warning("evo_nos: a joblib worker was lost (%s); %d of %d chunk(s) "
                    "unfinished, %s", _describe(error), len(todo), len(chunks), what)
    for i in todo:
        results[i] = LostChunk(_describe(error), retries + 1)
    return results


def lost_evaluation(rule: str, lost: LostChunk) -> Evaluation:
    """The Evaluation of a candidate whose chunk was lost: fitness 0 and free (no
    trainings, no steps), with the error and the attempts as its reason."""
    return Evaluation(rule=rule, fitness=0.0, status=LOST, trainings=0, steps=0,
                      reason=f"not scored: its worker was lost on all {lost.attempts} "
                             f"attempt(s) (last error {lost.error})")


def run_jobs(function, jobs: list[tuple[str, int]], args: tuple = (),
             n_jobs=None) -> list[Evaluation]:
    """Evaluations of ``(rule, seed)`` jobs: ``function(chunk, *args)`` (which returns
    the chunk's Evaluation dicts, in order) on one chunk per joblib worker; the jobs of a
    chunk lost on every attempt come back :data:`LOST` (see :func:`run_chunks`)."""
    chunks = chunked(jobs, n_jobs)
    out: list[Evaluation] = []
    results = run_chunks(function, chunks, args, n_jobs, retries=WORKER_RETRIES)
    for chunk, result in zip(chunks, results):
        if isinstance(result, LostChunk):
            out += [lost_evaluation(rule, result) for rule, _ in chunk]
        else:
            out += [Evaluation.from_dict(r) for r in result]
    return out


__all__ = ["WORKER_RETRIES", "WORKER_LOSS_ERRORS", "resolve_device", "worker_data",
           "clear_worker_data", "chunked", "worker_lost", "LostChunk", "run_chunks",
           "lost_evaluation", "run_jobs"]
