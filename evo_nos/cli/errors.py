"""How a command fails: its exit statuses, the one-line error, and the exceptions that
are expected (not bugs).

A command reports bad input, and what it can meet that is not a bug in evo_nos (missing
data, an MLflow store that is down or read-only, a damaged checkpoint, a search another
process holds, bad settings: :data:`SEARCH_ERRORS`), in one line whose message says what
to do, and exits non-zero; anything else is a bug and keeps its traceback.

- :class:`Parser` (every command's argparse parser) and :func:`bad_input` print
  ``error: <what is wrong and how to fix it> (see --help)`` and exit with
  :data:`EXIT_ERROR` (raising :class:`BadInput`, a ``SystemExit``);
- :func:`error` prints ``error: <message>`` and returns :data:`EXIT_ERROR` for ``main``
  to return;
- :func:`guarded` handles the stop signals (:mod:`evo_nos.core.signals`: Ctrl+C,
  SIGTERM, SIGHUP) and turns one into ``interrupted`` and exit status 128 + the signal
  (:data:`EXIT_INTERRUPTED` for Ctrl+C);
- :func:`one_line` / :func:`describe` put a message or an exception on one line;
  :func:`describe_os_error` an OSError of the file system (read-only, no permission, no
  space, a missing folder) as the path and what to do.
"""
from __future__ import annotations

import argparse
import errno
import functools
import logging
import re
import sys
import typing

from evo_nos.core import signals
from evo_nos.core.rules import RuleSyntaxError
from evo_nos.fitness.data import DataError
from evo_nos.search import CheckpointError, SearchInUse
from evo_nos.tracking import TrackingError

EXIT_OK = 0
EXIT_ERROR = 2            # bad input: the message says what and how to fix it
EXIT_INTERRUPTED = 130    # Ctrl+C: the checkpoint is saved, the command says how to resume
EXIT_FAILED = 1           # what the command met (a full disk, a store down): one line

SEARCH_ERRORS = (DataError, TrackingError, CheckpointError, SearchInUse, ValueError,
                 OSError)


# -- one line per error ----------------------------------------------------------------------
def one_line(text: str) -> str:
    """``text`` on one line: its non-blank lines joined (a pointer line ``^`` dropped)."""
    lines = [line.strip() for line in str(text).splitlines()]
    return "; ".join(line for line in lines if line.strip("^ "))


def describe(err: BaseException) -> str:
    """An exception as one line: a rule's syntax error as its brief form, an OSError of
    the file system as :func:`describe_os_error`."""
    if isinstance(err, RuleSyntaxError):
        return err.brief
    if isinstance(err, OSError) and err.errno in _OS_ADVICE:
        return describe_os_error(err)
    return one_line(str(err))


# what to do about an OSError of the file system, by errno
_OS_ADVICE = {
    errno.EROFS: ("is on a read-only file system",
                  "give a folder on a writable disk (--out DIR, or run elsewhere)"),
    errno.EACCES: ("cannot be written (permission denied)",
                   "give a folder you can write (--out DIR), or fix its permissions"),
    errno.EPERM: ("cannot be written (operation not permitted)",
                  "give a folder you can write (--out DIR), or fix its permissions"),
    errno.ENOSPC: ("cannot be written: no space left on the device",
                   "free some space"),
    errno.EDQUOT: ("cannot be written: disk quota exceeded", "free some space"),
    errno.ENOENT: ("does not exist", "create its folder, or give an existing one"),
    errno.ENOTDIR: ("has a file where a folder should be", "give a folder (--out DIR)"),
}


def describe_os_error(err: OSError, then: str = "") -> str:
    """``<path> <what is wrong>: <what to do>[, then <then>]`` on one line."""
    what, advice = _OS_ADVICE.get(err.errno, (f"cannot be used ({err.strerror or err})",
                                              "check the path"))
    path = err.filename or "a file"
    return one_line(f"{path} {what}: {advice}{', then ' + then if then else ''}")


class BadInput(SystemExit):
    """Exit status :data:`EXIT_ERROR` for bad command-line input; ``str()`` is the message
    (the line itself went to stderr when it was raised)."""

    def __init__(self, message: str):
        super().__init__(EXIT_ERROR)
        self.message = message

    def __str__(self) -> str:
        return self.message


def bad_input(message: str) -> typing.NoReturn:
    """Print ``error: message (see --help)`` (one line) to stderr and exit with status 2."""
    message = one_line(message)
    print(f"error: {message} (see --help)", file=sys.stderr)
    raise BadInput(message)


_ARGUMENT = re.compile(r"argument (\S+?): (.*)", re.DOTALL)


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``error: --budget expects a positive integer, got '0'
    (see --help)`` to stderr and exit status :data:`EXIT_ERROR`, no usage block."""

    def error(self, message: str) -> typing.NoReturn:
        match = _ARGUMENT.fullmatch(message)
        if match:
            option, rest = match.group(1).split("/")[0], match.group(2)
            if rest.startswith(option + " "):               # the message names it already
                message = rest
            else:
                joint = " " if re.match(r"(\w+ )?expects ", rest) else ": "
                message = f"{option}{joint}{rest}"
        bad_input(message)


def guarded(main):
    """``main(argv)`` with the stop signals handled (see :mod:`evo_nos.core.signals`):
    Ctrl+C, SIGTERM or SIGHUP becomes one line, ``interrupted``, and exit status 128 + the
    signal (no traceback); an OSError of the file system one line naming the path."""

    @functools.wraps(main)
    def run(argv: "list[str] | None" = None) -> int:
        with signals.handling():
            try:
                signals.check()            # one that came during the imports
                return main(argv)
            except KeyboardInterrupt:
                print("interrupted", file=sys.stderr)
                return signals.exit_status(signals.pending())
            except OSError as err:
                if err.errno not in _OS_ADVICE:
                    raise
                print(f"error: {describe_os_error(err)}", file=sys.stderr)
                return EXIT_FAILED

    return run


def error(message: str) -> int:
    """Print ``error: message`` (one line) to stderr; the exit status of bad input."""
    print(f"error: {one_line(message)}", file=sys.stderr)
    return EXIT_ERROR


def quiet_mlflow_store() -> None:
    """Keep MLflow's SQL store from logging tracebacks of errors that evo_nos reports in
    one line itself (and its notes on creating tables)."""
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
