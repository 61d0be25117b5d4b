"""Run ``python -m evo_nos.run`` with one fault injected at a chosen, exact point.

    python tests/faults.py FAULT N -- RUN_ARGS...

FAULT is one of :data:`FAULTS`; N counts the calls at which it strikes (1: the first).
The faults are real: signals this process sends itself, a store reopened read-only.
A test runs this as a subprocess and then checks what the fault left behind.
"""
from __future__ import annotations

import errno
import os
import signal
import sys
from pathlib import Path

from mlflow.tracking import MlflowClient

from evo_nos.cli import run as cli
from evo_nos.core import files
from evo_nos.fitness.backend import FitnessBackend
from evo_nos.fitness.standin import StandInBackend
from evo_nos.tracking import Tracker
from evo_nos.tracking.store import sqlite_path


def on_call(owner, name, n, action):
    """Make the ``n``-th call of ``owner.name`` run ``action`` first."""
    original = getattr(owner, name)
    calls = [0]

    def wrapper(*args, **kwargs):
        calls[0] += 1
        if calls[0] == n:
            action(args)
        return original(*args, **kwargs)
    setattr(owner, name, wrapper)


def after_call(owner, name, n, action):
    """Make the ``n``-th call of ``owner.name`` run ``action`` after it returns."""
    original = getattr(owner, name)
    calls = [0]

    def wrapper(*args, **kwargs):
        out = original(*args, **kwargs)
        calls[0] += 1
        if calls[0] == n:
            action(args)
        return out
    setattr(owner, name, wrapper)


def signal_self(signum):
    return lambda args: os.kill(os.getpid(), signum)


def read_only(args):
    """Reopen the tracker's SQLite store read-only: its next write fails for real."""
    tracker = args[0]
    db = sqlite_path(tracker.tracking_uri).resolve()
    tracker.client = MlflowClient(tracking_uri=f"sqlite:///file:{db}?mode=ro&uri=true")


def batches(action):
    return lambda n: [on_call(cls, "evaluate", n, action)
                      for cls in (FitnessBackend, StandInBackend)]


def swallowed(signum):
    """The signal delivered where library code swallows what it raises (as Python does
    with an exception raised in a garbage-collection callback)."""
    def action(args):
        try:
            os.kill(os.getpid(), signum)
        except BaseException:
            pass
    return action


def no_space(file_name):
    """From now on every write of the file ``file_name`` (by write_atomic, as the
    checkpoint and run.json are written) fails as on a full disk (ENOSPC)."""
    def action(args):
        make_temp, open_fd, full = files.tempfile.mkstemp, files.os.fdopen, set()

        def mkstemp(*a, **k):
            fd, tmp = make_temp(*a, **k)
            if Path(tmp).name.startswith(f".{file_name}."):
                full.add(fd)
            return fd, tmp

        def fdopen(fd, *a, **k):
            fh = open_fd(fd, *a, **k)
            if fd in full:
                full.discard(fd)
                fh.write = no_room
            return fh

        def no_room(data):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        files.tempfile.mkstemp, files.os.fdopen = mkstemp, fdopen
    return action


FAULTS = {
    "sigint-in-batch": batches(signal_self(signal.SIGINT)),
    "sigterm-in-batch": batches(signal_self(signal.SIGTERM)),
    "sighup-in-batch": batches(signal_self(signal.SIGHUP)),
    "swallowed-sigint-in-batch": batches(swallowed(signal.SIGINT)),
    "sigint-in-final-writes": lambda n: on_call(Tracker, "finish", n,
                                                signal_self(signal.SIGINT)),
    "no-space-for-summary": batches(no_space("run.json")),
    "no-space-for-checkpoint": batches(no_space("checkpoint.pkl")),
    "kill-in-batch": batches(signal_self(signal.SIGKILL)),
    "kill-after-run-created": lambda n: after_call(Tracker, "start", n,
                                                   signal_self(signal.SIGKILL)),
    "sigint-at-startup": lambda n: on_call(cli, "make_backend", n,
                                           signal_self(signal.SIGINT)),
    "read-only-store": lambda n: on_call(Tracker, "log_metrics", n, read_only),
}

if __name__ == "__main__":
    fault, n, sep, *run_args = sys.argv[1:]
    assert sep == "--", __doc__
    signal.signal(signal.SIGINT, signal.default_int_handler)   # whatever was inherited
    FAULTS[fault](int(n))
    sys.exit(cli.main(run_args))
