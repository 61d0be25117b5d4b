"""The optimizer machinery every rule runs on, free of evo_nos imports.

This module imports only torch and the standard library because
:mod:`evo_nos.export` copies it verbatim into every exported optimizer file:
:class:`evo_nos.optim.RuleOptimizer` and an exported optimizer run the very same
``step``.  A concrete optimizer only supplies the rule's compiled ``_direction``
function (see :mod:`evo_nos.optim.kernels`) and the settings below.
"""
import math

import torch

__all__ = ["drop", "decay_values"]   # what generated direction code may call


def drop(x, p, rescale):
    """Zero each entry of x with probability p (rescaled by 1/(1-p) when asked)."""
    kept = x * (torch.rand_like(x) >= p)
    return kept / (1.0 - p) if rescale else kept


# Tensors up to this size share one flat direction computation in the foreach path;
# larger ones get their own (concatenating them costs more than it saves).
_CONCAT_MAX_NUMEL = 1 << 16


def _flat(tensors):
    """One tensor as is, or several as one new 1-D tensor of their entries in order."""
    if len(tensors) == 1:
        return tensors[0]
    return torch.cat([t.reshape(-1) for t in tensors])


def decay_values(t, T, cd_periods, rd_periods):
    """Linear, cosine and restart decays at step t of T (t clamped to [0, T])."""
    tc = min(max(t, 0), T)
    linear = max(0.0, (T - tc) / T)
    cosine = 0.5 * (1.0 + math.cos(math.pi * 2.0 * cd_periods * tc / T))
    restart = 0.5 * (1.0 + math.cos(math.pi * ((rd_periods * tc) % T) / T))
    return linear, cosine, restart


class RuleOptimizerBase(torch.optim.Optimizer):
    """``w <- w - lr * direction(g, w, m, v, r, t, T)``, torch.optim style.

    Subclasses set ``_direction`` (the compiled rule), ``_averages`` (which running
    averages the rule reads, a subset of ("m", "v", "r")), ``_betas`` (beta1, beta2,
    beta3), ``_bias_correction``, ``_needs_total_steps`` and ``_reads_weights``.

    Per step, for each parameter: g = grad (negated when ``maximize``, plus
    ``weight_decay * w`` when set, as torch's SGD/Adam do); the averages are updated
    first (m = beta1 m + (1 - beta1) g, likewise v with g² and r with g³) and bias
    corrected when asked; the direction sees t = steps completed before this one.
    State is allocated lazily and holds only what the rule reads, plus ``step``.
    """

    _direction = None
    _averages = ()
    _betas = (0.9, 0.999, 0.999)
    _bias_correction = True
    _needs_total_steps = False
    _reads_weights = True      # whether the direction reads w (False saves a copy per step)

    def __init__(self, params, lr=1e-3, *, total_steps=None, weight_decay=0.0,
                 maximize=False, foreach=None):
        if not (isinstance(lr, (int, float)) or torch.is_tensor(lr)) or not lr >= 0.0:
            raise ValueError(f"Invalid learning rate: {lr!r} (must be a number >= 0)")
        if not weight_decay >= 0.0:
            raise ValueError(f"Invalid weight_decay value: {weight_decay!r} (must be >= 0)")
        if total_steps is not None and (int(total_steps) != total_steps or total_steps < 1):
            raise ValueError(f"Invalid total_steps: {total_steps!r} (must be an int >= 1)")
        if self._needs_total_steps and total_steps is None:
            raise ValueError(
                "this rule uses a decay operand (ld, cd or rd), which needs the length of "
                "training: pass total_steps=<number of optimizer steps you will take>"
            )
        defaults = dict(lr=lr, total_steps=total_steps, weight_decay=weight_decay,
                        maximize=maximize, foreach=foreach)
        super().__init__(params, defaults)

    def __setstate__(self, state):
        super().__setstate__(state)
        for group in self.param_groups:
            group.setdefault("total_steps", None)
            group.setdefault("weight_decay", 0.0)
            group.setdefault("maximize", False)
            group.setdefault("foreach", None)

    @torch.no_grad()
    def step(self, closure=None):
        """Take one step; ``closure`` re-evaluates the model and returns the loss."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            if group["total_steps"] is None and self._needs_total_steps:
                raise ValueError("total_steps is missing from a param group; this rule needs it")
            grads = []
            for p in params:
                if p.grad.is_sparse:
                    raise RuntimeError("rule optimizers do not support sparse gradients")
                grads.append(p.grad)
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    for name in self._averages:
                        state[name] = torch.zeros_like(p, memory_format=torch.preserve_format)
            foreach = group["foreach"]
            if foreach is None:
                foreach = all(p.device.type == "cuda" for p in params)
            update = self._update_foreach if foreach else self._update_each
            update(group, params, grads)
        return loss

    def _effective_grads(self, group, params, grads):
        if group["maximize"]:
            grads = [-g for g in grads]
        if group["weight_decay"] != 0:
            grads = [g.add(p, alpha=group["weight_decay"]) for g, p in zip(grads, params)]
        return grads

    def _corrected(self, name, avg, step):
        if not self._bias_correction:
            return avg
        beta = self._betas["mvr".index(name)]
        return avg / (1.0 - beta ** step)

    def _update_each(self, group, params, grads):
        lr, total = float(group["lr"]), group["total_steps"]
        for p, g in zip(params, self._effective_grads(group, params, grads)):
            state = self.state[p]
            state["step"] += 1
            step = state["step"]
            avgs = {}
            for name in self._averages:
                beta = self._betas["mvr".index(name)]
                power = g if name == "m" else g * g if name == "v" else g * g * g
                state[name].lerp_(power, 1.0 - beta)
                avgs[name] = self._corrected(name, state[name], step)
            d = self._direction(g, p, avgs.get("m"), avgs.get("v"), avgs.get("r"), step - 1, total)
            p.add_(d, alpha=-lr)

    def _update_foreach(self, group, params, grads):
        """Multi-tensor path: the averages with ``torch._foreach_*``; the direction once
        per batch of small parameters sharing device, dtype and step, on their flattened
        concatenation (one kernel per primitive instead of one per tensor; large tensors
        get their own call); the update with one ``_foreach_add_``.  Same arithmetic as
        ``_update_each`` element by element; only random primitives draw their numbers
        in a different order."""
        lr, total = float(group["lr"]), group["total_steps"]
        if group["maximize"]:
            grads = torch._foreach_neg(grads)
        if group["weight_decay"] != 0:
            grads = torch._foreach_add(grads, params, alpha=group["weight_decay"])
        steps = []
        for p in params:
            self.state[p]["step"] += 1
            steps.append(self.state[p]["step"])
        for name in self._averages:
            beta = self._betas["mvr".index(name)]
            buffers = [self.state[p][name] for p in params]
            if name == "m":
                powers = grads
            elif name == "v":
                powers = torch._foreach_mul(grads, grads)
            else:
                powers = torch._foreach_mul(torch._foreach_mul(grads, grads), grads)
            torch._foreach_lerp_(buffers, powers, 1.0 - beta)
        batches = {}
        for i, p in enumerate(params):
            alone = i if p.numel() > _CONCAT_MAX_NUMEL else -1
            batches.setdefault((p.device, p.dtype, steps[i], alone), []).append(i)
        for (_, _, step, _), index in batches.items():
            batch = [params[i] for i in index]
            g = _flat([grads[i] for i in index])
            avgs = {}
            for name in self._averages:
                avg = _flat([self.state[p][name] for p in batch])
                if self._bias_correction:
                    correction = 1.0 - self._betas["mvr".index(name)] ** step
                    avg = avg.div_(correction) if len(batch) > 1 else avg / correction
                avgs[name] = avg
            w = _flat(batch) if self._reads_weights else None
            d = self._direction(g, w, avgs.get("m"), avgs.get("v"), avgs.get("r"),
                                step - 1, total)
            if d.dim() == 0 or len(batch) == 1:
                directions = [d.expand_as(p) for p in batch]
            else:
                directions = [c.view_as(p) for c, p in
                              zip(d.split([p.numel() for p in batch]), batch)]
            torch._foreach_add_(batch, directions, alpha=-lr)
