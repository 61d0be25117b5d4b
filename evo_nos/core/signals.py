"""Stop signals (Ctrl+C's SIGINT, SIGTERM, SIGHUP) handled by evo_nos itself, so that a
request to stop is never lost and never lands in the middle of a write.

The handler that :func:`install` sets records the signal first (:func:`pending`), then raises
:class:`Stopped` (a ``KeyboardInterrupt``, so every ``except KeyboardInterrupt`` path
handles it as it handles Ctrl+C) -- unless a :func:`held` section is open, where it only
records it.  A ``Stopped`` raised inside library code that swallows it (Python discards an
exception raised in a garbage-collection callback) leaves the record, so the next
:func:`check` (the safe points of a search: between batches, after a batch's trainings)
raises it again: the request is late, never lost.

Held sections are where an exception would leave something half-done: a checkpoint or
MLflow write, a roll-back, the final writes, and the imports of a command line (an
exception there is a traceback; the command checks once they are done).

Nothing here acts unless a command installs the handler: a script that uses
:class:`~evo_nos.search.Search` keeps Python's own KeyboardInterrupt.  Stdlib only, so
that a command can install it before its first heavy import.
"""
from __future__ import annotations

import contextlib
import signal
import threading

# the signals that ask a command to stop (SIGHUP where the platform has it)
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP")
                     if hasattr(signal, name))

_state = {"pending": None, "held": 0, "installed": False}


class Stopped(KeyboardInterrupt):
    """A stop signal, raised at a safe point; ``exit_status`` is 128 + the signal."""

    def __init__(self, signum: int):
        super().__init__(signal_name(signum))
        self.signum = signum

    @property
    def exit_status(self) -> int:
        return exit_status(self.signum)


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def exit_status(signum: int | None) -> int:
    """The shell's status of a process ended by ``signum`` (SIGINT when None): 128 + it."""
    return 128 + int(signum if signum is not None else signal.SIGINT)


def _handler(signum, frame) -> None:
    if _state["pending"] is None:
        _state["pending"] = signum          # the first request is the one reported
    if _state["held"] == 0:
        raise Stopped(_state["pending"])


def pending() -> int | None:
    """The stop signal received so far (None: none)."""
    return _state["pending"]


def installed() -> bool:
    return _state["installed"]


def install(*, hold: bool = False) -> bool:
    """Handle the stop signals here (main thread only: elsewhere, False and nothing
    changes).  ``hold``: open a held section at once (for a command's imports; closed by
    :func:`release_start_up`)."""
    if threading.current_thread() is not threading.main_thread():
        return False
    if hold and not _state["installed"]:
        _state["held"] += 1
        _state["start_up"] = True
    for signum in STOP_SIGNALS:
        signal.signal(signum, _handler)
    _state["installed"] = True
    return True


def release_start_up() -> None:
    """Close the held section :func:`install` opened for the imports."""
    if _state.pop("start_up", False):
        _state["held"] -= 1


@contextlib.contextmanager
def handling():
    """Stop signals handled for the ``with`` block (a command's ``main``); the handlers
    that were there before are put back after it, and the record cleared."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
    was = _state["installed"]
    install()
    release_start_up()
    try:
        yield
    finally:
        for signum, handler in before.items():
            if handler is not None:
                signal.signal(signum, handler)
        _state["installed"] = was
        _state["pending"] = None


def check() -> None:
    """Raise :class:`Stopped` if a stop signal came and no held section is open."""
    if _state["pending"] is not None and _state["held"] == 0:
        raise Stopped(_state["pending"])


@contextlib.contextmanager
def held():
    """A section a stop signal does not break into: it is recorded, and raised at the
    next :func:`check` after the section (sections nest)."""
    _state["held"] += 1
    try:
        yield
    finally:
        _state["held"] -= 1
