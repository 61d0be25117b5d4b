"""RuleOptimizer: any Rule as a ``torch.optim.Optimizer``."""
from __future__ import annotations

from evo_nos.optim.standalone import RuleOptimizerBase
from evo_nos.optim.kernels import compile_direction
from evo_nos.core.known import resolve
from evo_nos.core.primitives import AVERAGE_POWERS, AVERAGES, RuleSettings
from evo_nos.core.rules import Rule


def average_fields(rule: Rule) -> dict:
    """The base class's running-average fields for ``rule`` (``_averages``,
    ``_average_slots``, ``_average_powers``), from the primitive table: the averages the
    rule reads, in the table's order."""
    names = tuple(name for name in AVERAGES if name in rule.needs)
    return {"_averages": names, "_average_slots": tuple(AVERAGES.index(n) for n in names),
            "_average_powers": tuple(AVERAGE_POWERS[n] for n in names)}


class RuleOptimizer(RuleOptimizerBase):
    """Runs ``rule`` as an optimizer: ``w <- w - lr * rule(g, m̂, v̂, ...)``.

    Args:
        params: parameters or param groups, as for any torch optimizer.
        rule: a :class:`Rule`, a rule string (``"mul(exp(mul(sign_g, sign_m)), g)"``)
            or a known name (``"powersign"``).
        lr: learning rate.
        total_steps: steps the training will take; required by rules with a decay
            operand (ld, cd, rd).
        weight_decay: L2 penalty added to the gradient (as torch's SGD and Adam).
        settings: :class:`RuleSettings` (betas, bias correction, noise std, ...).
        maximize: ascend instead of descend.
        foreach: True: the multi-tensor path; False: the per-tensor path; None (the
            default): the multi-tensor path for plain tensors on the CPU, CUDA or XPU,
            where it is the faster (:func:`evo_nos.optim.standalone.default_foreach`).
            Same numbers either way up to the last bits; rules with random operands
            draw other numbers of the same distributions (see
            :class:`~evo_nos.optim.standalone.RuleOptimizerBase`).
        capturable: keep ``step`` as a tensor on the parameter's device and never read
            it on the host (for ``torch.compile`` and CUDA graphs), as torch's Adam.

    Each param group also holds ``betas`` (beta1, beta2, beta3; default: the settings'),
    which ``OneCycleLR(cycle_momentum=True)`` cycles as it does torch Adam's.

    The rule is compiled to a direction function once, here; ``step`` never
    re-interprets it.
    """

    def __init__(self, params, rule: "Rule | str", lr: float = 1e-3, *, total_steps=None,
                 weight_decay: float = 0.0, settings: RuleSettings | None = None,
                 maximize: bool = False, foreach=None, capturable: bool = False):
        self._configure(resolve(rule), settings or RuleSettings())
        super().__init__(params, lr, total_steps=total_steps, weight_decay=weight_decay,
                         maximize=maximize, foreach=foreach, capturable=capturable)

    def _configure(self, rule: Rule, settings: RuleSettings) -> None:
        self.rule = rule
        self.settings = settings
        self._direction = compile_direction(rule, settings)
        self.__dict__.update(average_fields(rule))
        self._betas = (settings.beta1, settings.beta2, settings.beta3)
        self._bias_correction = settings.bias_correction
        self._needs_total_steps = rule.uses_decay
        self._reads_weights = "w" in rule.needs

    # torch.optim.Optimizer pickles only defaults, state and param_groups; keep the rule
    # (as its string: the compiled function cannot be pickled) so copies and pickles work.
    def __getstate__(self):
        state = super().__getstate__()
        state["rule"] = self.rule.canonical
        state["settings"] = self.settings.as_dict()
        return state

    def __setstate__(self, state):
        state = dict(state)
        rule, settings = state.pop("rule", None), state.pop("settings", None)
        if rule is not None:      # first: the base fills missing group betas from the rule's
            self._configure(Rule.parse(rule), RuleSettings.from_dict(settings or {}))
        super().__setstate__(state)

    def __repr__(self) -> str:
        return f"RuleOptimizer({self.rule.canonical!r}, {self.rule.math})\n" + super().__repr__()

    def wrap_direction(self, wrapper) -> None:
        """Replace the compiled rule ``direction(g, w, m, v, r, t, T)`` that ``step`` calls
        (the update before lr and weight decay) with ``wrapper(direction)``, e.g. to record
        every direction (:func:`evo_nos.fitness.probe.probe_updates`).  Copies and pickles
        recompile the plain rule."""
        self._direction = wrapper(self._direction)
