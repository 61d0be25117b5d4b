"""The option types: the argparse ``type=`` functions, each of which checks one value
where it is parsed.

Each takes the option's text and returns its value (or the text itself, checked), or
raises ``argparse.ArgumentTypeError`` with what was expected, e.g. ``expects a positive
integer, got '0'``, which :class:`~evo_nos.cli.errors.Parser` turns into one line naming
the option.  Nothing here creates anything (an output folder is only checked).  The
``--set`` and strategy-setting types are in :mod:`evo_nos.cli.settings`; checks that
need several options at once are :func:`evo_nos.cli.options.validate_search_args`.
"""
from __future__ import annotations

import argparse
import re
import typing
from pathlib import Path

from evo_nos.cli.errors import describe
from evo_nos.core.known import resolve
from evo_nos.core.rules import MAX_RULE_DEPTH
from evo_nos.fitness.baselines import BASELINES
from evo_nos.fitness.data import IMAGEFOLDER, DataError, parse_data_spec
from evo_nos.fitness.tasks import load_task
from evo_nos.operators.space import SearchSpace
from evo_nos.strategies import STRATEGIES, strategy_names

# The most binary functions a search space may allow: its deepest rule (a unary over a
# binary over a unary ..., 2k + 2 levels for k binaries) must still parse.
MAX_SPACE_BINARY = (MAX_RULE_DEPTH - 2) // 2


def _refuse(what: str, text) -> typing.NoReturn:
    raise argparse.ArgumentTypeError(f"expects {what}, got {str(text)!r}")


def _integer(text: str, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        _refuse(what, text)


def positive_int(text: str) -> int:
    """An integer >= 1 (a budget, a batch size, a count)."""
    value = _integer(text, "a positive integer")
    if value < 1:
        _refuse("a positive integer", text)
    return value


def nonnegative_int(text: str) -> int:
    """An integer >= 0 (a seed, a count that may be zero)."""
    value = _integer(text, "an integer >= 0")
    if value < 0:
        _refuse("an integer >= 0", text)
    return value


def job_count(text: str) -> int:
    """Parallel trainings: a positive integer, or -1 for joblib's "every core / worker"."""
    what = "a positive integer, or -1 for every core"
    value = _integer(text, what)
    if value < 1 and value != -1:
        _refuse(what, text)
    return value


def positive_float(text: str) -> float:
    """A finite number > 0 (seconds, epochs)."""
    try:
        value = float(text)
    except ValueError:
        _refuse("a positive number", text)
    if not 0 < value < float("inf"):
        _refuse("a positive number", text)
    return value


def quantile(text: str) -> float:
    """A number strictly between 0 and 1."""
    what = "a quantile in (0, 1), e.g. 0.5 for the median"
    try:
        value = float(text)
    except ValueError:
        _refuse(what, text)
    if not 0 < value < 1:
        _refuse(what, text)
    return value


def max_binary(text: str) -> int:
    """The bound on binary functions per rule: 1 .. :data:`MAX_SPACE_BINARY`."""
    what = (f"an integer from 1 to {MAX_SPACE_BINARY} (a rule may nest at most "
            f"{MAX_RULE_DEPTH} deep)")
    value = _integer(text, what)
    if not 1 <= value <= MAX_SPACE_BINARY:
        _refuse(what, text)
    return value


def preset_option(group: str = ""):
    """The type of a ``--preset``: a preset name of ``group`` or a ``.toml`` file that loads
    as a task (the value stays the text)."""

    def preset(text: str) -> str:
        try:
            load_task(text, group=group)
        except (ValueError, OSError) as err:        # unknown name, missing or bad file
            raise argparse.ArgumentTypeError(describe(err)) from None
        return text

    preset.__name__ = "preset"
    return preset


def data_spec(text: str) -> str:
    """A ``--data`` source: cifar10 | synthetic | imagefolder:DIR, DIR holding train/."""
    try:
        spec = parse_data_spec(text)
    except DataError as err:
        raise argparse.ArgumentTypeError(describe(err)) from None
    if spec.kind == IMAGEFOLDER:
        layout = "imagefolder:DIR expects DIR/train/<class>/*.jpg (one folder per class)"
        folder = Path(spec.path)
        if not folder.is_dir():
            raise argparse.ArgumentTypeError(f"no folder {str(folder)!r}: {layout}")
        if not (folder / "train").is_dir():
            raise argparse.ArgumentTypeError(f"{str(folder)!r} has no train/ folder: {layout}")
    return text


def fitness_spec(text: str) -> str:
    """A ``--fitness``: ``standin:TARGET``, TARGET a rule string or a known name."""
    kind, _, target = text.partition(":")
    if kind != "standin" or not target.strip():
        _refuse("standin:TARGET (TARGET a rule or a known name, e.g. standin:powersign)", text)
    try:
        resolve(target)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"standin target: {describe(err)}") from None
    return text


def rule_value(text: str):
    """A ``--rule``: a rule string or a known name, as its Rule."""
    try:
        return resolve(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(describe(err)) from None


def device_name(text: str) -> str:
    """A training device: auto, cpu, cuda or cuda:N."""
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", text.strip()):
        _refuse("auto, cpu, cuda or cuda:N", text)
    return text.strip()


def rule_names(text: str) -> str:
    """Comma-separated known rule names (or ``none``); each must resolve (the text stays)."""
    for name in reference_names(text):
        try:
            resolve(name)
        except ValueError as err:
            raise argparse.ArgumentTypeError(describe(err)) from None
    return text


def strategy_list(text: str) -> str:
    """Comma-separated strategy names."""
    unknown = [n for n in (s.strip() for s in text.split(",")) if n and n not in STRATEGIES]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown strategy {unknown[0]!r}; strategies: "
                                          f"{', '.join(strategy_names())}")
    return text


def space_names(kind: str):
    """The type of ``--operands`` / ``--unaries`` / ``--binaries``: comma-separated names
    the primitive table has (checked by :class:`SearchSpace`; the value stays the text)."""

    def names(text: str) -> str:
        try:
            SearchSpace(**{kind: [v.strip() for v in text.split(",") if v.strip()]})
        except ValueError as err:
            raise argparse.ArgumentTypeError(describe(err)) from None
        return text

    names.__name__ = kind
    return names


def _no_file_above(path: Path) -> None:
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise argparse.ArgumentTypeError(f"{str(parent)!r} is a file, not a folder")
            return


def folder_path(text: str) -> str:
    """An output folder: it may not exist yet, but it (and every folder above it that
    exists) must not be a file.  Nothing is created here."""
    path = Path(text).expanduser()
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is a file, not a folder")
    _no_file_above(path)
    return text


def py_file_path(text: str) -> str:
    """An output ``.py`` file: not a folder, and no file where a folder above it must be."""
    path = Path(text).expanduser()
    if path.suffix != ".py":
        _refuse("a .py file", text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is a folder, not a .py file")
    _no_file_above(path)
    return text


def existing_file(text: str) -> str:
    """A file that must exist (an input)."""
    if not Path(text).expanduser().is_file():
        raise argparse.ArgumentTypeError(f"no file {text!r}")
    return text


# -- comma-separated lists -----------------------------------------------------------------
def split_list(text: str) -> list[str]:
    """``"adam, mul(sign_g, g),powersign"`` -> the comma-separated items, commas inside
    parentheses kept (rule strings have them)."""
    items, depth, current = [], 0, ""
    for ch in text:
        depth += (ch == "(") - (ch == ")")
        if ch == "," and depth == 0:
            items.append(current)
            current = ""
        else:
            current += ch
    items.append(current)
    return [i.strip() for i in items if i.strip()]


def reference_names(text: str | None) -> tuple:
    """``"sgd,adam"`` -> ("sgd", "adam"); ``none`` or empty -> (); rule strings keep
    their commas (:func:`split_list`)."""
    text = (text or "").strip()
    if text.lower() in ("", "none"):
        return ()
    return tuple(split_list(text))


def baseline_names(text: str) -> str:
    """The type of ``--baselines``: comma-separated baseline names
    (:data:`~evo_nos.fitness.baselines.BASELINES`), or ``none``."""
    unknown = [n for n in reference_names(text) if n not in BASELINES]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown baseline(s) {', '.join(unknown)}; "
                                         f"baselines: {', '.join(BASELINES)}")
    return text
