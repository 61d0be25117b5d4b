"""The one typed ``--set KEY=VALUE`` parser, and the strategy settings' named options.

A setting's text is typed by its default (true/false for a bool, an integer, a number,
the text for a str) or, where the default is None, by its declared annotation (e.g.
``int | None``: an integer or ``none``); a value of the wrong type is refused naming the
key (``argparse.ArgumentTypeError``).  A key is a strategy setting (any strategy's
constructor keyword, :func:`all_strategy_defaults`), one of the primitive set's
(:data:`RULE_SETTINGS`, :class:`~evo_nos.core.primitives.RuleSettings`) or one of the
protocol's (:data:`PROTOCOL_SETTINGS`: the lr schedule of every training).
:func:`strategy_settings_from`, :func:`rule_settings_from` and
:func:`protocol_settings_from` collect from parsed arguments what goes to the strategy,
the primitive set and the task.
"""
from __future__ import annotations

import argparse
import ast
import inspect
import typing

from evo_nos.cli.errors import describe
from evo_nos.core.primitives import RuleSettings
from evo_nos.fitness.tasks import SCHEDULE_KEYS, Task
from evo_nos.strategies import STRATEGIES, strategy_class, strategy_defaults, strategy_names

_TRUE, _FALSE = ("true", "1", "on", "yes"), ("false", "0", "off", "no")

RULE_SETTINGS = RuleSettings().as_dict()     # the primitive set's settings and defaults
# the task's settings --set may change: the lr schedule of every training, and defaults
PROTOCOL_SETTINGS = {key: getattr(Task(), key) for key in SCHEDULE_KEYS}


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


def named_strategy_options() -> dict:
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
    if key in PROTOCOL_SETTINGS:
        try:
            Task(**{key: typed_value(key, value, PROTOCOL_SETTINGS[key])})
        except ValueError as err:
            raise argparse.ArgumentTypeError(describe(err)) from None
        return text
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
            f"primitive-set settings: {', '.join(RULE_SETTINGS)}; protocol settings: "
            f"{', '.join(PROTOCOL_SETTINGS)}")
    typed_value(key, value, defaults[key], all_strategy_kinds().get(key))
    return text


def strategy_settings_from(args, strategies=None) -> dict:
    """The strategy settings a command line gives: named options, then ``--set``."""
    defaults = all_strategy_defaults(strategies)
    kinds = all_strategy_kinds(strategies)
    settings = {}
    for key in named_strategy_options():
        value = getattr(args, key, None)
        if value is not None:
            settings[key] = typed_value(key, value, defaults.get(key), kinds.get(key)) \
                if isinstance(value, str) else value
    items = [i for i in getattr(args, "settings", None) or []
             if split_setting(i)[0] not in RULE_SETTINGS
             and split_setting(i)[0] not in PROTOCOL_SETTINGS]
    settings.update(parse_settings(items, defaults, kinds=kinds))
    return settings


def rule_settings_from(args) -> dict:
    """The primitive-set settings (:class:`RuleSettings`: bias correction, the betas, ε's
    noise, drop rescaling, ...) a command line's ``--set`` gives, checked; {} for none."""
    items = [i for i in getattr(args, "settings", None) or []
             if split_setting(i)[0] in RULE_SETTINGS]
    out = parse_settings(items, RULE_SETTINGS)
    RuleSettings.from_dict(out)                 # a bad value is refused here, by name
    return out


def protocol_settings_from(args) -> dict:
    """The task settings (:data:`PROTOCOL_SETTINGS`: ``schedule``, ``warmup``) a command
    line's ``--set`` gives, typed; {} for none."""
    items = [i for i in getattr(args, "settings", None) or []
             if split_setting(i)[0] in PROTOCOL_SETTINGS]
    return parse_settings(items, PROTOCOL_SETTINGS)
