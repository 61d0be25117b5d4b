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
- :func:`guarded` turns Ctrl+C into ``interrupted`` and :data:`EXIT_INTERRUPTED`;
- :func:`one_line` / :func:`describe` put a message or an exception on one line.
"""
from __future__ import annotations

import argparse
import functools
import logging
import re
import sys
import typing

from evo_nos.core.rules import RuleSyntaxError
from evo_nos.fitness.data import DataError
from evo_nos.search import CheckpointError, SearchInUse
from evo_nos.tracking import TrackingError

EXIT_OK = 0
EXIT_ERROR = 2            # bad input: the message says what and how to fix it
EXIT_INTERRUPTED = 130    # Ctrl+C: the checkpoint is saved, the command says how to resume

SEARCH_ERRORS = (DataError, TrackingError, CheckpointError, SearchInUse, ValueError,
                 FileNotFoundError)


# -- one line per error ----------------------------------------------------------------------
def one_line(text: str) -> str:
    """``text`` on one line: its non-blank lines joined (a pointer line ``^`` dropped)."""
    lines = [line.strip() for line in str(text).splitlines()]
    return "; ".join(line for line in lines if line.strip("^ "))


def describe(err: BaseException) -> str:
    """An exception as one line: a rule's syntax error as its brief form."""
    if isinstance(err, RuleSyntaxError):
        return err.brief
    return one_line(str(err))


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
    """``main(argv)`` with Ctrl+C turned into one line, ``interrupted``, and exit status
    :data:`EXIT_INTERRUPTED` (no traceback)."""

    @functools.wraps(main)
    def run(argv: "list[str] | None" = None) -> int:
        try:
            return main(argv)
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return EXIT_INTERRUPTED

    return run


def error(message: str) -> int:
    """Print ``error: message`` (one line) to stderr; the exit status of bad input."""
    print(f"error: {one_line(message)}", file=sys.stderr)
    return EXIT_ERROR


def quiet_mlflow_store() -> None:
    """Keep MLflow's SQL store from logging tracebacks of errors that evo_nos reports in
    one line itself (and its notes on creating tables)."""
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
