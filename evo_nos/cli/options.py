"""What the command lines share: exit codes, the one-line error, option types and groups,
the one typed ``--set`` parser.

Every ``python -m evo_nos.X`` builds its parser with :class:`Parser` from these groups,
so an option means the same thing (and has the same default) in every command.  Option
values are checked where they are parsed (the ``type=`` functions below); what needs
several options at once is checked by :func:`validate_search_args` right after
``parse_args``, before anything is created.  A bad value ends the command with one line,
``error: <what is wrong and how to fix it> (see --help)``, and exit status 2.
"""
from __future__ import annotations

import argparse
import ast
import functools
import inspect
import re
import sys
import typing
from pathlib import Path

from evo_nos.core.known import REFERENCE_NAMES, resolve
from evo_nos.core.primitives import RuleSettings
from evo_nos.core.rules import MAX_RULE_DEPTH, RuleSyntaxError
from evo_nos.fitness.data import IMAGEFOLDER, DataError, parse_data_spec
from evo_nos.fitness.factory import JOBLIB_BACKENDS
from evo_nos.fitness.tasks import load_task
from evo_nos.operators.space import ROOTS, SearchSpace
from evo_nos.search.defaults import (DEFAULT_BUDGETS, DEFAULT_HALL_OF_FAME, DEFAULT_OUT,
                                     DEFAULT_SEED, DEFAULT_STRATEGY, FALLBACK_BUDGET, FUNNEL,
                                     funnel_settings)
from evo_nos.strategies import (STRATEGIES, make_strategy, strategy_class, strategy_defaults,
                                strategy_names, strategy_settings)
from evo_nos.tracking.store import DEFAULT_EXPERIMENT

EXIT_OK = 0
EXIT_ERROR = 2            # bad input: the message says what and how to fix it
EXIT_INTERRUPTED = 130    # Ctrl+C: the checkpoint is saved, the command says how to resume

_TRUE, _FALSE = ("true", "1", "on", "yes"), ("false", "0", "off", "no")

# The most binary functions a search space may allow: its deepest rule (a unary over a
# binary over a unary ..., 2k + 2 levels for k binaries) must still parse.
MAX_SPACE_BINARY = (MAX_RULE_DEPTH - 2) // 2


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


# -- option types: each checks one value where it is parsed -----------------------------------
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


# -- the one --set parser -------------------------------------------------------------------
def split_setting(text: str) -> tuple[str, str]:
    """``"key=value"`` -> ("key", "value"); refuses anything else."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"--set expects KEY=VALUE, got {text!r}")
    return key.strip(), value.strip()


def _kinds(annotation) -> tuple:
    """The plain types a declared annotation allows: ``int | None`` -> (int, NoneType)."""
    if annotation is None or annotation is inspect.Parameter.empty:
        return ()
    options = typing.get_args(annotation) or (annotation,)
    return tuple(t for t in options if isinstance(t, type))


def _typed(text: str, default=None, kind=None):
    """``text`` as the type of ``default`` (or, for a default of None, of the declared
    ``kind``); raises ValueError("expects ..., got ...") naming the type."""
    kinds = _kinds(kind) if default is None else ()
    if kinds:
        if type(None) in kinds and text.lower() == "none":
            return None
        alternative = " or none" if type(None) in kinds else ""
        for sample in (False, 0, 0.0, ""):            # bool before int: True is an int
            if type(sample) in kinds:
                try:
                    return _typed(text, sample)
                except ValueError as err:
                    raise ValueError(str(err).replace(", got ", f"{alternative}, got ", 1)) \
                        from None
        for container in (dict, list, tuple):
            if container in kinds:
                try:
                    value = ast.literal_eval(text)
                except (ValueError, SyntaxError, RecursionError):
                    value = None
                if not isinstance(value, container):
                    raise ValueError(f"expects a Python {container.__name__}{alternative}, "
                                     f"got {text!r}")
                return value
    if isinstance(default, bool):
        if text.lower() not in _TRUE + _FALSE:
            raise ValueError(f"expects true or false, got {text!r}")
        return text.lower() in _TRUE
    if isinstance(default, int):
        try:
            return int(text)
        except ValueError:
            raise ValueError(f"expects an integer, got {text!r}") from None
    if isinstance(default, float):
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"expects a number, got {text!r}") from None
    if isinstance(default, str):
        return text
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, RecursionError):      # not a literal: the text itself
        return text


def typed_value(key: str, text: str, default=None, kind=None):
    """``text`` as the type of ``default``: true/false for a bool, int, float or str; for
    a default of None the declared ``kind`` (e.g. ``int | None``: an integer or ``none``);
    a Python literal (a number, a list, a dict) otherwise, else the text itself.  A value
    of the wrong type is refused naming ``key``."""
    try:
        return _typed(text, default, kind)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"{key} {err}") from None


def parse_settings(items, defaults: dict, *, strict: bool = False,
                   kinds: dict | None = None) -> dict:
    """``["key=value", ...]`` -> {key: typed value}, typed by ``defaults[key]`` (or, where
    that is None, by ``kinds[key]``).  With ``strict`` a key missing from ``defaults`` is
    refused, naming the known keys."""
    out = {}
    for item in items or []:
        key, text = split_setting(item)
        if strict and key not in defaults:
            raise argparse.ArgumentTypeError(f"unknown setting {key!r}; known: "
                                             f"{sorted(defaults)}")
        out[key] = typed_value(key, text, defaults.get(key), (kinds or {}).get(key))
    return out


def all_strategy_defaults(names=None) -> dict:
    """Every setting of the given strategies (all by default) with its default; a name
    two strategies share takes the first one's default."""
    out: dict = {}
    for name in names or strategy_names():
        for key, value in strategy_defaults(name).items():
            out.setdefault(key, value)
    return out


def all_strategy_kinds(names=None) -> dict:
    """Every setting of the given strategies (all by default) with its declared type
    (``inspect.Parameter.empty`` where there is none); the first strategy's wins."""
    out: dict = {}
    for name in names or strategy_names():
        params = inspect.signature(strategy_class(name).__init__, eval_str=True).parameters
        for key in strategy_defaults(name):
            out.setdefault(key, params[key].annotation if key in params
                           else inspect.Parameter.empty)
    return out


def _named_strategy_options() -> dict:
    """dest -> help of the strategy settings that have an option of their own."""
    out: dict = {}
    for cls in STRATEGIES.values():
        for key, text in getattr(cls, "OPTIONS", {}).items():
            out.setdefault(key, f"{text} ({cls.name})")
    return out


def strategy_setting(key: str):
    """The type of the option ``--KEY`` of a strategy setting: its value, typed."""
    default, kind = all_strategy_defaults().get(key), all_strategy_kinds().get(key)

    def value(text: str):
        try:
            return _typed(text, default, kind)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    value.__name__ = key
    return value


def setting_item(text: str) -> str:
    """The type of ``--set``: ``KEY=VALUE`` with a known KEY (a strategy setting or one of
    the primitive set's) and a VALUE of its type (the item stays the text)."""
    key, value = split_setting(text)
    if key in RULE_SETTINGS:
        typed = typed_value(key, value, RULE_SETTINGS[key])
        try:
            RuleSettings.from_dict({key: typed})
        except ValueError as err:
            raise argparse.ArgumentTypeError(describe(err)) from None
        return text
    defaults = all_strategy_defaults()
    if key not in defaults:
        raise argparse.ArgumentTypeError(
            f"unknown setting {key!r}; strategy settings: {', '.join(sorted(defaults))}; "
            f"primitive-set settings: {', '.join(RULE_SETTINGS)}")
    typed_value(key, value, defaults[key], all_strategy_kinds().get(key))
    return text


def strategy_settings_from(args, strategies=None) -> dict:
    """The strategy settings a command line gives: named options, then ``--set``."""
    defaults = all_strategy_defaults(strategies)
    kinds = all_strategy_kinds(strategies)
    settings = {}
    for key in _named_strategy_options():
        value = getattr(args, key, None)
        if value is not None:
            settings[key] = typed_value(key, value, defaults.get(key), kinds.get(key)) \
                if isinstance(value, str) else value
    items = [i for i in getattr(args, "settings", None) or []
             if split_setting(i)[0] not in RULE_SETTINGS]
    settings.update(parse_settings(items, defaults, kinds=kinds))
    return settings


RULE_SETTINGS = RuleSettings().as_dict()     # the primitive set's settings and defaults


def rule_settings_from(args) -> dict:
    """The primitive-set settings (:class:`RuleSettings`: bias correction, the betas, ε's
    noise, drop rescaling, ...) a command line's ``--set`` gives, checked; {} for none."""
    items = [i for i in getattr(args, "settings", None) or []
             if split_setting(i)[0] in RULE_SETTINGS]
    out = parse_settings(items, RULE_SETTINGS)
    RuleSettings.from_dict(out)                 # a bad value is refused here, by name
    return out


def space_args_from(args) -> dict:
    """The SearchSpace keyword arguments a command line gives."""
    out = {}
    if getattr(args, "max_binary", None) is not None:
        out["max_binary"] = args.max_binary
    if getattr(args, "root", None) is not None:
        out["root"] = args.root
    for name in ("operands", "unaries", "binaries"):
        value = getattr(args, name, None)
        if value:
            out[name] = [v.strip() for v in value.split(",") if v.strip()]
    return out


def funnel_args_from(args) -> dict:
    """The re-evaluation funnel's settings a command line gives, defaults filled in."""
    return funnel_settings({k: getattr(args, k, None) for k in FUNNEL})


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


# -- option groups ----------------------------------------------------------------------------
def add_device_option(group, default: str | None = "auto") -> None:
    """``--device auto|cpu|cuda[:N]``, the same in every command."""
    group.add_argument("--device", type=device_name, default=default,
                       metavar="auto|cpu|cuda[:N]",
                       help="training device: auto (the GPU when there is one, else the "
                            "CPU), cpu, cuda or cuda:N (default auto)")


def add_fitness_options(p: argparse.ArgumentParser, *, n_jobs: bool = True) -> None:
    f = p.add_argument_group("fitness")
    f.add_argument("--preset", metavar="NAME|FILE.toml", type=preset_option(),
                   help="fitness preset (smoke, cpu, nos; default nos on a GPU, cpu otherwise)")
    f.add_argument("--fitness", metavar="standin:TARGET", type=fitness_spec,
                   help="score by resemblance to TARGET's updates instead of training "
                        "(a seconds-long demo; TARGET is a rule or a known name)")
    f.add_argument("--data", metavar="SPEC", type=data_spec,
                   help="dataset: cifar10 | imagefolder:DIR | synthetic (overrides the preset)")
    add_device_option(f, default=None)      # None: keep a resumed search's device
    if n_jobs:
        f.add_argument("--n-jobs", type=job_count,
                       help="parallel trainings (joblib n_jobs; -1: every core; default 1)")
        f.add_argument("--backend", choices=JOBLIB_BACKENDS,
                       help="joblib backend for the trainings (default loky)")
        f.add_argument("--scheduler", metavar="ADDRESS",
                       help="dask scheduler address for --backend dask (default: a local "
                            "cluster)")


def add_tracking_options(p: argparse.ArgumentParser) -> None:
    o = p.add_argument_group("MLflow")
    o.add_argument("--experiment", help=f"MLflow experiment (default {DEFAULT_EXPERIMENT})")
    o.add_argument("--tracking-uri", help="MLflow tracking URI (default $MLFLOW_TRACKING_URI, "
                                          "else sqlite mlflow.db here)")


def add_search_options(p: argparse.ArgumentParser) -> None:
    """Everything that defines and runs a search (``run`` and ``campaign``)."""
    s = p.add_argument_group("search")
    s.add_argument("--strategy", choices=strategy_names(),
                   help=f"search strategy (default {DEFAULT_STRATEGY})")
    s.add_argument("--budget", type=positive_int,
                   help=f"child trainings to spend (default per preset: {DEFAULT_BUDGETS}, "
                        f"else {FALLBACK_BUDGET})")
    s.add_argument("--seed", type=nonnegative_int,
                   help=f"seed of everything (default {DEFAULT_SEED})")
    s.add_argument("--seeds", type=nonnegative_int, nargs="+", metavar="S",
                   help="several seeds and/or several --strategy names run a head-to-head "
                        "campaign, then the references and the report (evo_nos.campaign)")
    s.add_argument("--time-limit", type=positive_float, metavar="SECONDS",
                   help="stop between batches after this long (summed over resumes)")
    s.add_argument("--batch-size", type=positive_int,
                   help="rules per ask/evaluate round (default: --n-jobs, at least 1)")
    s.add_argument("--hall-of-fame", type=positive_int, metavar="K",
                   help=f"hall-of-fame size (default {DEFAULT_HALL_OF_FAME})")
    add_fitness_options(p)
    r = p.add_argument_group("noise: re-scoring and hurdles")
    r.add_argument("--funnel-top", type=nonnegative_int, metavar="K",
                   help=f"re-score every rule that enters the top K of the hall of fame "
                        f"(default {FUNNEL['funnel_top']})")
    r.add_argument("--funnel-seeds", type=nonnegative_int, metavar="N",
                   help=f"... until it has N backend seeds in all, charged to the budget "
                        f"(default {FUNNEL['funnel_seeds']}; 1: off)")
    r.add_argument("--final-top", type=nonnegative_int, metavar="K",
                   help=f"after the budget, re-score the top K ... (default "
                        f"{FUNNEL['final_top']})")
    r.add_argument("--final-seeds", type=nonnegative_int, metavar="N",
                   help=f"... on N seeds, outside the budget (default "
                        f"{FUNNEL['final_seeds']}: no final stage)")
    r.add_argument("--hurdle", type=quantile, metavar="Q",
                   help="skip the final run of a candidate whose lr sweep falls below the "
                        "Q-quantile of the sweeps seen so far (e.g. 0.5; default: none)")
    g = p.add_argument_group("space")
    g.add_argument("--max-binary", type=max_binary,
                   help=f"bound on binary functions per rule ({SearchSpace().max_binary}; "
                        f"at most {MAX_SPACE_BINARY})")
    g.add_argument("--root", choices=ROOTS,
                   help="what a rule's root may be: binary (default, the paper's grammar) or "
                        "slot (also an operand or a unary function; docs/rules.md)")
    g.add_argument("--operands", type=space_names("operands"),
                   help="comma-separated operands allowed (default all)")
    g.add_argument("--unaries", type=space_names("unaries"),
                   help="comma-separated unary functions allowed (default all)")
    g.add_argument("--binaries", type=space_names("binaries"),
                   help="comma-separated binary functions allowed (default all)")
    st = p.add_argument_group("strategy settings")
    for key, text in _named_strategy_options().items():
        st.add_argument("--" + key.replace("_", "-"), dest=key, metavar="VALUE", help=text,
                        type=strategy_setting(key))
    st.add_argument("--set", dest="settings", action="append", metavar="KEY=VALUE",
                    type=setting_item,
                    help="any strategy setting (repeatable), e.g. --set population=50, or a "
                         "setting of the primitive set, e.g. --set bias_correction=false "
                         f"(one of {', '.join(RULE_SETTINGS)}): it applies to every "
                         "training of the search and to its exported optimizer")
    add_tracking_options(p)
    o = p.add_argument_group("output")
    o.add_argument("--run-name", help="MLflow run name")
    o.add_argument("--out", type=folder_path, help=f"checkpoint folder (default ./{DEFAULT_OUT})")
    o.add_argument("--resume", metavar="RUN_ID|last",
                   help="continue an interrupted search (its settings come from the checkpoint)")
    o.add_argument("--quiet", action="store_true", help="no progress bar")


def add_reference_option(p: argparse.ArgumentParser, default=REFERENCE_NAMES) -> None:
    p.add_argument("--references", default=",".join(default), metavar="NAMES|none",
                   type=rule_names,
                   help="known rules to score as references (comma-separated; none: skip)")



# -- checks that need several options: right after parse_args, before any work --------------
def validate_search_args(args: argparse.Namespace, *, campaign: bool = False) -> None:
    """Check what one option's type cannot: the search space the space options build
    together, the strategy settings (named options and ``--set``) against the strategies
    they go to (each is built once, which runs its own checks), the primitive set's
    settings, the funnel, a campaign's seeds and references.  Creates nothing; on bad
    input prints one line and exits with :data:`EXIT_ERROR` (:func:`bad_input`).

    ``python -m evo_nos.run`` calls it with the parsed arguments (the strategy is
    ``--strategy``, else the default); a campaign with ``campaign=True`` (the strategies
    are ``--strategy``'s, else all, and each gets the settings it takes).  On
    ``--resume`` the search's settings come from its checkpoint: nothing to check."""
    if getattr(args, "resume", None):
        return
    try:
        space = SearchSpace(**space_args_from(args))
    except ValueError as err:
        bad_input(f"search space: {describe(err)}")
    given = getattr(args, "strategy", None)
    if isinstance(given, str):
        names = [given]
    elif given:
        names = list(given)
    else:
        names = strategy_names() if campaign else [DEFAULT_STRATEGY]
    try:
        settings = strategy_settings_from(args, names)
        rule_settings_from(args)
        funnel_args_from(args)
    except (argparse.ArgumentTypeError, ValueError) as err:
        bad_input(describe(err))
    if campaign:
        taken = set().union(*(strategy_settings(n) for n in names))
        unused = sorted(set(settings) - taken)
        if unused:
            bad_input(f"no strategy of this campaign ({', '.join(names)}) takes the "
                      f"setting(s) {unused}")
    seed = getattr(args, "seed", None)
    for name in names:
        own = {k: v for k, v in settings.items() if k in strategy_settings(name)} \
            if campaign else settings
        try:
            make_strategy(name, space, DEFAULT_SEED if seed is None else seed, **own)
        except (ValueError, TypeError) as err:
            message = describe(err)
            bad_input(message if message.startswith("strategy ")
                      else f"strategy {name}: {message}")
    for value in getattr(args, "seeds", None) or []:
        if value < 0:
            bad_input(f"--seeds expects integers >= 0, got {value}")
    references = getattr(args, "references", None)
    if campaign and references is not None:
        try:
            rule_names(references)
        except argparse.ArgumentTypeError as err:
            bad_input(f"--references: {err}")
