"""Turn a Rule into Python source for its update direction, once.

``direction_source(rule, settings)`` writes a plain function over torch tensors::

    def direction(g, w, m, v, r, t, T):
        return (torch.exp((torch.sign(g) * torch.sign(m))) * g)

built from the primitive table's code templates.  :func:`compile_direction` executes
that source (cached by rule and settings) for :class:`evo_nos.optim.RuleOptimizer` and
the fitness screen; :mod:`evo_nos.export` writes the very same source into standalone
files.  Helpers the templates call (``drop``, ``decay_values``) live in
:mod:`evo_nos.optim.standalone`, which is also copied verbatim into exports.
"""
from __future__ import annotations

import functools
import math

import torch

from evo_nos.optim import standalone
from evo_nos.core.primitives import RuleSettings
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
    ops = {n.op for n in rule.nodes()}
    if "1" in ops:
        lines.append("    one = g.new_ones(())")
    if "2" in ops:
        lines.append("    two = g.new_full((), 2.0)")
    decays = [d for d in ("ld", "cd", "rd") if d in ops]
    if decays:
        lines.append(
            f"    ld, cd, rd = decay_values(t, T, {settings.cd_periods!r}, "
            f"{settings.rd_periods!r})"
        )
        for d in decays:   # a float, or a 0-dim tensor when t is one (capturable step)
            lines.append(f"    {d} = torch.as_tensor({d}, dtype=g.dtype, device=g.device)")
    lines.append(f"    return {body}")
    return "\n".join(lines) + "\n"


@functools.lru_cache(maxsize=4096)
def _compile(canonical: str, settings: RuleSettings):
    source = direction_source(Rule.parse(canonical), settings)
    namespace = dict(_NAMESPACE)
    exec(compile(source, f"<rule {canonical}>", "exec"), namespace)  # noqa: S102 (our own codegen)
    return namespace["direction"]


def compile_direction(rule: Rule, settings: RuleSettings | None = None):
    """The rule's direction function (compiled once per rule and settings)."""
    return _compile(rule.canonical, settings or RuleSettings())
