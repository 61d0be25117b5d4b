"""Turn a Rule into Python source for its update direction, once.

``direction_source(rule, settings)`` writes a plain function over torch tensors::

    def direction(g, w, m, v, r, t, T):
        return (torch.exp((torch.sign(g) * torch.sign(m))) * g)

built from the primitive table's code templates.  :func:`compile_direction` executes
that source (cached by rule and settings) for :class:`evo_nos.optim.RuleOptimizer` and
the fitness screen; :mod:`evo_nos.optim.export` writes the very same source into standalone
files.  What an operand needs bound before the return line (a constant, the decays) is
its ``prelude`` (and ``decay``) in the primitive table.  Helpers the templates call
(``drop``, ``decay_values``) live in :mod:`evo_nos.optim.standalone`, which is also
copied verbatim into exports.
"""
from __future__ import annotations

import functools
import math

import torch

from evo_nos.optim import standalone
from evo_nos.core.primitives import BY_NAME, RuleSettings, on_change
from evo_nos.core.rules import Rule

# Names the generated code may use, beside its arguments.
_NAMESPACE = {"torch": torch, "math": math, **{
    name: getattr(standalone, name) for name in standalone.__all__
}}


def _code(rule: Rule, fields: dict) -> str:
    template = rule.primitive.code
    return template.format(*(_code(a, fields) for a in rule.args), **fields)


def direction_source(rule: Rule, settings: RuleSettings | None = None,
                     name: str = "direction") -> str:
    """Source of ``def <name>(g, w, m, v, r, t, T)`` returning the update direction.

    ``m``, ``v``, ``r`` are the (bias-corrected) averages or None when the rule does not
    use them; ``t`` counts completed steps (an int, or a 0-dim tensor under a capturable
    optimizer: the code then never reads it on the host); ``T`` is total steps (None
    without decays).
    """
    settings = settings or RuleSettings()
    fields = settings.as_dict()
    body = _code(rule, fields)
    lines = [f"def {name}(g, w, m, v, r, t, T):", f"    \"\"\"{rule.math}\"\"\""]
    lines += [f"    {line}" for line in _prelude(rule, fields)]
    lines.append(f"    return {body}")
    return "\n".join(lines) + "\n"


def _prelude(rule: Rule, fields: dict) -> list:
    """The lines binding what the rule's operands read (their ``prelude`` in the
    primitive table), in table order; before the first decay, the ``decay_values`` call
    binding all decays (its arguments: each decay's ``settings``, in decay order)."""
    ops = {n.op for n in rule.nodes()}
    decays = sorted((p for p in BY_NAME.values() if p.decay is not None), key=lambda p: p.decay)
    lines, called = [], False
    for prim in BY_NAME.values():
        if prim.name not in ops:
            continue
        if prim.decay is not None and not called:
            periods = ", ".join(f"{fields[s]!r}" for d in decays for s in d.settings)
            lines.append(f"{', '.join(d.name for d in decays)} = "
                         f"decay_values(t, T, {periods})")
            called = True
        if prim.prelude:
            lines.append(prim.prelude.format(**fields))
    return lines


@functools.lru_cache(maxsize=4096)
def _compile(canonical: str, settings: RuleSettings):
    source = direction_source(Rule.parse(canonical), settings)
    namespace = dict(_NAMESPACE)
    exec(compile(source, f"<rule {canonical}>", "exec"), namespace)  # noqa: S102 (our own codegen)
    return namespace["direction"]


def compile_direction(rule: Rule, settings: RuleSettings | None = None):
    """The rule's direction function (compiled once per rule and settings)."""
    return _compile(rule.canonical, settings or RuleSettings())


# a change of the primitive table may give a canonical string other code
on_change(_compile.cache_clear)
