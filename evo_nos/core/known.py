"""Named rules: the hand-designed optimizers and the ones the NOS paper discovered.

Any place that accepts a rule accepts one of these names (see :func:`resolve`).
"""
from __future__ import annotations

from evo_nos.core.known_names import KNOWN_STRINGS, REFERENCE_NAMES
from evo_nos.core.rules import Rule, RuleSyntaxError

KNOWN: dict[str, Rule] = {name: Rule.parse(text) for name, text in KNOWN_STRINGS.items()}

__all__ = ["KNOWN", "REFERENCE_NAMES", "name_of", "resolve"]


def resolve(rule: "str | Rule") -> Rule:
    """A Rule from a Rule, a known name (``powersign``) or a rule string."""
    if isinstance(rule, Rule):
        return rule
    if not isinstance(rule, str):
        raise TypeError(f"expected a rule string, a known name or a Rule, got {type(rule).__name__}")
    text = rule.strip()
    if text in KNOWN:
        return KNOWN[text]
    try:
        return Rule.parse(text)
    except RuleSyntaxError as err:
        if "(" not in text:
            raise RuleSyntaxError(
                f"{text!r} is neither a known rule name ({', '.join(KNOWN)}) nor a primitive",
                text, 0,
            ) from err
        raise


def name_of(rule: Rule) -> str | None:
    """The known name of a rule, if it has one."""
    for name, known in KNOWN.items():
        if known == rule:
            return name
    return None
