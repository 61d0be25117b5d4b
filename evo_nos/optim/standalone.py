"""The optimizer machinery every rule runs on, free of evo_nos imports.

This module imports only torch and the standard library because
:mod:`evo_nos.optim.export` copies it verbatim into every exported optimizer file:
:class:`evo_nos.optim.RuleOptimizer` and an exported optimizer run the very same
``step``.  A concrete optimizer only supplies the rule's compiled ``_direction``
function (see :mod:`evo_nos.optim.kernels`) and the settings below.
"""
import math

import torch

__all__ = ["drop", "decay_values"]   # what generated direction code may call

AVERAGE_SLOTS = 3    # running averages a direction takes (beta1, beta2, beta3: m, v, r)


def drop(x, p, rescale):
    """Zero each entry of x with probability p (rescaled by 1/(1-p) when asked)."""
    kept = x * (torch.rand_like(x) >= p)
    return kept / (1.0 - p) if rescale else kept


def decay_values(t, T, cd_periods, rd_periods):
    """Linear, cosine and restart decays at step t of T (t clamped to [0, T]).

    ``t`` is an int, or a 0-dim tensor (the step of a capturable optimizer): then the
    decays are 0-dim tensors, computed on t's device without reading t on the host."""
    if torch.is_tensor(t):
        tc, cos = t.clamp(0, T), torch.cos
        linear = ((T - tc) / T).clamp(min=0.0)
    else:
        tc, cos = min(max(t, 0), T), math.cos
        linear = max(0.0, (T - tc) / T)
    cosine = 0.5 * (1.0 + cos(math.pi * 2.0 * cd_periods * tc / T))
    restart = 0.5 * (1.0 + cos(math.pi * ((rd_periods * tc) % T) / T))
    return linear, cosine, restart


def running_averages(g, powers, buffers, betas, divisors):
    """Update running averages in place, ``buffer = beta·buffer + (1 - beta)·g^power`` as
    ``lerp_`` (g^power as repeated products: g, g·g, g·g·g), one per entry of ``powers``,
    ``buffers``, ``betas``; return them, each divided by its divisor (1 - beta^t, the bias
    correction; None: as is).  The one definition of the averages: every update path of
    :class:`RuleOptimizerBase` and evo_nos's packed trainer run it."""
    out = []
    for power, buffer, beta, divisor in zip(powers, buffers, betas, divisors):
        value = g
        for _ in range(power - 1):
            value = value * g
        buffer.lerp_(value, 1.0 - beta)
        out.append(buffer if divisor is None else buffer / divisor)
    return out


def bias_divisors(betas, step, bias_correction, dtype):
    """What each running average (of decay ``betas``) is divided by at ``step``:
    1 - beta^step (None without bias correction).  A tensor step (capturable) gives
    0-dim tensors, 1 - beta^step computed as -expm1(step log beta), accurate in float32
    too."""
    if not bias_correction:
        return [None] * len(betas)
    if not torch.is_tensor(step):
        return [1.0 - beta ** step for beta in betas]
    step = step.to(torch.float64 if dtype == torch.float64 else torch.float32)
    return [torch.expm1(step * math.log(beta)).neg() if beta > 0.0
            else torch.ones_like(step) for beta in betas]


def rule_direction(direction, g, w, buffers, *, slots, powers, betas, divisors, t, total,
                   maximize=False, weight_decay=0.0):
    """The one update step's direction for one piece of parameters: ``g`` (negated when
    ``maximize``, plus ``weight_decay·w`` when set), the running averages in ``buffers``
    updated in place (:func:`running_averages`; ``slots``: each average's argument
    position among the direction's averages, ``powers``, ``betas``, ``divisors`` one per
    buffer), then ``direction(g, w, *averages, t, T)`` with None for averages the rule
    does not read.  The caller applies ``w -= lr · direction``."""
    if maximize:
        g = -g
    if weight_decay != 0:
        g = g.add(w, alpha=weight_decay)
    averages = [None] * AVERAGE_SLOTS
    for slot, value in zip(slots, running_averages(g, powers, buffers, betas, divisors)):
        averages[slot] = value
    return direction(g, w, *averages, t, total)


FOREACH_DEVICES = ("cpu", "cuda", "xpu")   # where foreach=None takes the multi-tensor path


def default_foreach(params):
    """Whether ``foreach=None`` takes the multi-tensor path for ``params``: when every
    one is a plain tensor (``torch.Tensor`` or ``torch.nn.Parameter``, not a subclass
    such as a DTensor) on a device of ``FOREACH_DEVICES``.  The test torch's optimizers
    make, except that the CPU counts too: torch's CPU default is its for-loop, while
    this multi-tensor path is the faster one on the CPU as well (on small tensors it
    runs a rule's few kernels once per batch instead of once per tensor; on large ones
    it works in cache-sized slices).  Elsewhere the per-tensor path is the default."""
    return all(type(p) in (torch.Tensor, torch.nn.Parameter)
               and p.device.type in FOREACH_DEVICES for p in params)


def _cutting(device):
    """How the multi-tensor path divides a device's parameters into pieces:
    ``(concat_max, batch_max, slice_numel)``.  Tensors of at most ``concat_max`` entries
    are concatenated, up to ``batch_max`` entries a batch; larger ones are updated
    alone, in slices of ``slice_numel`` entries (None: whole).

    On the CPU, slices that fit in the cache make the few kernels of a rule's direction
    run on cached data instead of streaming each temporary through memory; on an
    accelerator, kernel launches cost more than memory traffic, so tensors stay whole
    and more of them are concatenated."""
    if device.type == "cpu":
        return 1 << 12, 1 << 17, 1 << 17
    return 1 << 16, 1 << 22, None


def _batches(members, batch_max):
    """``members`` (parameter, gradient) cut into consecutive runs of at most
    ``batch_max`` entries (a tensor larger than that is a run of its own)."""
    run, size = [], 0
    for member in members:
        n = member[0].numel()
        if run and size + n > batch_max:
            yield run
            run, size = [], 0
        run.append(member)
        size += n
    if run:
        yield run


class RuleOptimizerBase(torch.optim.Optimizer):
    """``w <- w - lr * direction(g, w, m, v, r, t, T)``, torch.optim style.

    Subclasses set ``_direction`` (the compiled rule), ``_averages`` (the state names of
    the running averages the rule reads), ``_average_slots`` (each one's position among
    the direction's averages and in ``betas``), ``_average_powers`` (the power of g each
    one averages), ``_betas`` (the default beta1, beta2, beta3), ``_bias_correction``,
    ``_needs_total_steps`` and ``_reads_weights``.

    Per step, for each parameter: g = grad (negated when ``maximize``, plus
    ``weight_decay * w`` when set, as torch's SGD/Adam do); the averages are updated
    first (m = beta1 m + (1 - beta1) g, likewise v with g² and r with g³) and bias
    corrected when asked; the direction sees t = steps completed before this one.
    State is allocated lazily and holds only what the rule reads, plus ``step``.

    Every param group has ``lr``, ``betas`` (beta1, beta2, beta3: what
    ``OneCycleLR(cycle_momentum=True)`` cycles, as for torch's Adam), ``total_steps``,
    ``weight_decay``, ``maximize``, ``foreach`` and ``capturable``.  The constructor's
    ``betas`` names only the rule's own: one beta per average in ``_averages`` (see
    ``_group_betas``); the others keep the class's.

    ``capturable=True`` keeps ``state["step"]`` as a 0-dim float32 tensor on the
    parameter's device (as torch's Adam does) and computes the bias corrections and
    decays from it with tensor ops, so a step never reads a value back to the host
    (``torch.compile`` and CUDA graphs can capture it); otherwise ``step`` is an int.

    ``foreach``: True takes the multi-tensor path (:meth:`_update_foreach`), False the
    per-tensor one (:meth:`_update_each`), None (the default) decides per param group
    and step by :func:`default_foreach`: the multi-tensor path for plain tensors on the
    CPU, CUDA or XPU, the faster path there.  The two do the same arithmetic entry by
    entry and agree up to the last bits (a kernel may round a function such as ``exp``
    differently on a concatenation, a slice or a whole tensor), except
    for rules with random operands, which draw the same distributions but not the same
    numbers: ``drop`` consumes the same uniform draws but may hand them to other
    entries (the batches of small tensors are updated after the large tensors), and
    ``eps``/``eps_t`` get other Gaussian draws (torch fills a tensor of normals in
    blocks, so a concatenation's normals are not its pieces' normals).  Pass
    ``foreach=False`` for the per-tensor path's numbers.
    """

    _direction = None
    _averages = ()
    _average_slots = ()
    _average_powers = ()
    _betas = (0.9, 0.999, 0.999)
    _bias_correction = True
    _needs_total_steps = False
    _reads_weights = True      # whether the direction reads w (False saves a copy per step)

    def __init__(self, params, lr=1e-3, *, betas=None, total_steps=None, weight_decay=0.0,
                 maximize=False, foreach=None, capturable=False):
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
        defaults = dict(lr=lr, betas=self._group_betas(betas), total_steps=total_steps,
                        weight_decay=weight_decay, maximize=maximize, foreach=foreach,
                        capturable=bool(capturable))
        super().__init__(params, defaults)
        self._flat_cache = {}      # see _flat_averages; never pickled (torch pickles only
        self._flat_used = set()    # defaults, state and param_groups)

    def _group_betas(self, betas):
        """A param group's (beta1, beta2, beta3) from the constructor's ``betas``: None
        (the class's), or one beta per running average the rule reads, in the order of
        ``_averages`` (an Adam-like rule reading m and v takes (beta1, beta2))."""
        full = list(self._betas)
        if betas is None:
            return tuple(full)
        names = [f"beta{slot + 1}" for slot in self._average_slots]
        try:
            values = tuple(float(beta) for beta in betas)
        except (TypeError, ValueError):
            values = None
        if values is None or len(values) != len(names) or not all(
                0.0 <= beta < 1.0 for beta in values):
            form = "(" + ", ".join(names) + ("," if len(names) == 1 else "") + ")"
            raise ValueError(f"Invalid betas: {betas!r} (must be {form}, each in [0, 1): the "
                             f"decays of this rule's running averages "
                             f"{', '.join(self._averages)})")
        for slot, beta in zip(self._average_slots, values):
            full[slot] = beta
        return tuple(full)

    def __setstate__(self, state):
        super().__setstate__(state)
        self._flat_cache, self._flat_used = {}, set()
        for group in self.param_groups:
            group.setdefault("betas", tuple(self._betas))
            group.setdefault("total_steps", None)
            group.setdefault("weight_decay", 0.0)
            group.setdefault("maximize", False)
            group.setdefault("foreach", None)
            group.setdefault("capturable", False)

    def add_param_group(self, param_group):
        super().add_param_group(param_group)
        betas = self.param_groups[-1]["betas"]
        if len(betas) != 3 or not all(0.0 <= beta < 1.0 for beta in betas):
            raise ValueError(f"Invalid betas: {betas!r} (must be (beta1, beta2, beta3), the "
                             "decays of the averages of g, g² and g³, each in [0, 1))")

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
                self._init_state(p, group["capturable"])
            foreach = group["foreach"]
            if foreach is None:
                foreach = default_foreach(params)
            update = self._update_foreach if foreach else self._update_each
            update(group, params, grads)
        self._flat_cache = {key: self._flat_cache[key] for key in self._flat_used}
        self._flat_used = set()
        return loss

    def _init_state(self, p, capturable):
        """Allocate p's state on its first step; convert a loaded ``step`` to this group's
        kind (int, or a 0-dim tensor when capturable)."""
        state = self.state[p]
        if not state:
            state["step"] = (torch.zeros((), dtype=torch.float32, device=p.device)
                             if capturable else 0)
            for name in self._averages:
                state[name] = torch.zeros_like(p, memory_format=torch.preserve_format)
        elif capturable and not torch.is_tensor(state["step"]):
            state["step"] = torch.tensor(float(state["step"]), device=p.device)
        elif not capturable and torch.is_tensor(state["step"]):
            state["step"] = int(state["step"].item())

    def _divisors(self, group, step, dtype):
        """What each running average is divided by at ``step`` (:func:`bias_divisors`)."""
        return bias_divisors([group["betas"][slot] for slot in self._average_slots], step,
                             self._bias_correction, dtype)

    def _direction_at(self, group, g, w, buffers, divisors, t):
        """The direction of one piece of the parameters (a whole tensor, a slice of one,
        or several concatenated): ``g``, ``w`` its gradient and weights; ``buffers`` its
        running averages (in ``_averages`` order), updated here in place; ``divisors``
        from :meth:`_divisors`; ``t`` the steps completed before this one."""
        return rule_direction(
            self._direction, g, w, buffers, slots=self._average_slots,
            powers=self._average_powers,
            betas=[group["betas"][slot] for slot in self._average_slots], divisors=divisors,
            t=t, total=group["total_steps"], maximize=group["maximize"],
            weight_decay=group["weight_decay"])

    def _update_each(self, group, params, grads):
        """Per-tensor path: each parameter in turn, whole."""
        lr = float(group["lr"])
        for p, g in zip(params, grads):
            self.state[p]["step"] += 1
            self._update_alone(group, p, g, lr, None)

    def _update_alone(self, group, p, g, lr, slice_numel):
        """One parameter: whole, or (when it and its state are contiguous) in slices of
        ``slice_numel`` entries, each slice's averages, direction and update in turn."""
        state = self.state[p]
        step = state["step"]
        buffers = [state[name] for name in self._averages]
        divisors = self._divisors(group, step, p.dtype)
        tensors = [p, g, *buffers]
        if slice_numel is None or p.numel() <= slice_numel or not all(
                x.is_contiguous() for x in tensors):
            pieces = [tensors]
        else:
            pieces = zip(*(x.view(-1).split(slice_numel) for x in tensors))
        for w, piece_g, *piece_buffers in pieces:
            w.add_(self._direction_at(group, piece_g, w, piece_buffers, divisors, step - 1),
                   alpha=-lr)

    def _update_foreach(self, group, params, grads):
        """Multi-tensor path.  Small parameters sharing device, dtype and step are
        updated in batches: averages and direction once on their concatenation (a few
        kernels for the batch instead of a few per tensor; the averages live in
        persistent flat buffers, see :meth:`_flat_averages`), then one
        ``_foreach_add_``.  Large ones are updated alone, on the CPU in cache-sized
        slices (see :func:`_cutting`); with a capturable step every parameter is updated
        alone.  Same arithmetic as ``_update_each`` element by element; only random
        primitives draw other numbers (see the class docstring)."""
        lr = float(group["lr"])
        capturable = group["capturable"]
        cuts, batches = {}, {}
        for p, g in zip(params, grads):
            state = self.state[p]
            state["step"] += 1
            device = p.device
            cut = cuts.get(device) or cuts.setdefault(device, _cutting(device))
            if p.numel() <= cut[0] and not capturable:
                batches.setdefault((device, p.dtype, state["step"]), []).append((p, g))
            else:
                self._update_alone(group, p, g, lr, cut[2])
        for (device, _, step), members in batches.items():
            for batch in _batches(members, cuts[device][1]):
                if len(batch) == 1:
                    self._update_alone(group, *batch[0], lr, None)
                else:
                    self._update_batch(group, batch, step, lr)

    def _update_batch(self, group, batch, step, lr):
        """Several (parameter, gradient) pairs at one int step, on their concatenation."""
        params = [p for p, _ in batch]
        sizes = [p.numel() for p in params]
        flats = self._flat_averages(params, sizes)
        g = torch.cat([grad.reshape(-1) for _, grad in batch])
        w = None
        if self._reads_weights or group["weight_decay"] != 0:
            w = torch.cat([p.reshape(-1) for p in params])
        d = self._direction_at(group, g, w, flats, self._divisors(group, step, g.dtype),
                               step - 1)
        if d.dim() == 0:
            directions = [d.expand_as(p) for p in params]
        else:
            directions = [c.view_as(p) for c, p in zip(d.split(sizes), params)]
        torch._foreach_add_(params, directions, alpha=-lr)

    def _flat_averages(self, params, sizes):
        """The running averages of a batch as persistent 1-D tensors (one per average),
        each parameter's state entry being a view of its slice: the batch's averages
        update in one kernel each, with no copy in or out.  Built from the state's
        current values when the batch is new, or when an entry is no longer its view (a
        loaded state dict, a replaced tensor); batches unused in a step are dropped."""
        if not self._averages:
            return []
        key = tuple(map(id, params))
        states = [self.state[p] for p in params]
        cached = self._flat_cache.get(key)
        if cached is None or not all(state[name] is view
                                     for name, views in zip(self._averages, cached[1])
                                     for state, view in zip(states, views)):
            flats, views = [], []
            for name in self._averages:
                flat = torch.cat([state[name].reshape(-1) for state in states])
                pieces = [c.view(p.shape) for c, p in zip(flat.split(sizes), params)]
                for state, piece in zip(states, pieces):
                    state[name] = piece
                flats.append(flat)
                views.append(pieces)
            cached = (flats, views)
        self._flat_cache[key] = cached
        self._flat_used.add(key)
        return cached[0]
