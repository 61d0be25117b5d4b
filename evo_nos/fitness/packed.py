"""The packed trainer: K (rule, learning-rate) children of the child ConvNet in one pass.

Each child keeps what it has when it trains alone (:func:`evo_nos.fitness.train.train_run`):
its initial weights (``make_child(seed)``), its data order and augmentation (a generator
seeded with its seed; children of one seed share the batches), the noise inside its rule
(torch's RNG seeded with its seed, drawn in parameter order), its rule and learning rate.
What changes is that the K children are trained in lockstep as one pack:

* the network, in one of two layouts (:data:`LAYOUTS`).  ``"loop"`` (:class:`LoopPack`,
  the CPU default): each child's forward and backward are a lone ChildNet's, one child
  after the other, with parameters and gradients living in packed tensors.  ``"grouped"``
  (:class:`PackedChild`, the CUDA default): one grouped convolution per layer, batch norm
  over the K·C channels, one batched matmul for the heads; one forward and one backward
  for all K.  On this project's 2-core CPU the grouped kernels were about 2x slower than
  K lone ones (compute-bound convolutions, K times the working set), hence the loop there;
  on a GPU the grouped form is what fills the chip.
* the update (:class:`PackedRules`): each child's rule on its slice of the packed
  weights; a block of children sharing a rule updates in one set of kernels.
* no host sync inside an epoch: per-child non-finite flags stay on the device and are
  read at epoch ends; accuracies are counted on the device and read once.

Exactness.  On the CPU (``layout="loop"``, ``exact=True``) a packed child's trajectory is
bit for bit the one it has alone: the same kernels on the same shapes and memory layouts;
block updates run only on parameters whose size is a multiple of :data:`VECTOR_ALIGN`
(the rest child by child), and the step ``w -= lr·d`` is one ``add_(d, alpha=-lr)`` per
child, as :class:`evo_nos.optim.RuleOptimizer` does it.  ``tests/test_packed.py`` asserts
equal weights and equal Evaluations.  With ``exact=False`` (the CUDA default) a block's
step is one kernel with the learning rates as a tensor, and with the grouped layout sums
run in another order: a packed score then equals the lone one within floating-point
reordering only (measured on the CPU: weights within 1e-4 after a few steps).

Divergence.  A child whose loss turns non-finite is isolated by construction (no tensor
is shared between children), scores 0 and is charged the steps the lone trainer would
have run before stopping (its first check at or after the bad step, ``check_every``).
Its numbers keep flowing through the pack until the run ends (or until every child of
the pack has diverged); they touch no other child.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from evo_nos.core.known import resolve
from evo_nos.core.primitives import RuleSettings
from evo_nos.core.threads import torch_threads
from evo_nos.fitness.data import DeviceData
from evo_nos.fitness.evaluation import Evaluation
from evo_nos.fitness.models import ChildNet, make_child
from evo_nos.fitness.protocol import Candidate, Child, Run, epoch_steps, score
from evo_nos.fitness.tasks import Task
from evo_nos.optim.kernels import compile_direction
from evo_nos.optim.optimizer import average_fields
from evo_nos.optim.schedules import schedule_factor
from evo_nos.optim.standalone import bias_divisors, rule_direction

# On the CPU, elementwise kernels run vectorised on whole groups of this many floats and
# scalar code on the rest; a parameter whose size is a multiple of it meets the same code
# on every element whether it is updated alone or in a block of children (64 covers AVX2
# and AVX-512).  Smaller odd-sized ones (the head's bias) are updated child by child.
VECTOR_ALIGN = 64

# How a pack runs its layers: "loop" (each child's own forward and backward in turn: exact,
# and the faster on a CPU) or "grouped" (one grouped convolution per layer: the GPU form).
LAYOUTS = ("loop", "grouped")

# Children per pack when a task says ``pack = "auto"``: on the CPU one rule's sweep at a
# time gains nothing over bigger packs (the convolutions are compute bound); on a GPU as
# many as fit in a quarter of the free memory, at most this many.
MAX_AUTO_PACK = 128


def auto_pack(task: Task, data: DeviceData) -> int:
    """Children per pack for ``task.pack = "auto"`` on the data's device."""
    if task.pack != "auto":
        return int(task.pack)
    if data.device.type != "cuda":
        return max(1, len(task.lrs))
    free, _ = torch.cuda.mem_get_info(data.device)
    # activations kept for the backward: about 6 float maps of width x size² per image
    per_child = 4 * 6 * task.batch_size * task.width * data.image_size ** 2
    return int(max(1, min(MAX_AUTO_PACK, free // 4 // per_child)))


# ---------------------------------------------------------------------------------------
# the packed network
# ---------------------------------------------------------------------------------------
def _packed(parts: list[torch.Tensor]) -> torch.Tensor:
    """Per-child tensors as one, child after child: 1-D and 4-D ones concatenated (a
    convolution weight becomes ``[K·C, ...]`` in the children's memory layout), the head's
    matrix stacked to ``[K, classes, features]``.  ``view(K, *shape)[k]`` is child k's."""
    if parts[0].dim() == 2:
        return torch.stack(parts)
    packed = torch.cat(parts)
    if parts[0].dim() == 4 and not parts[0].is_contiguous():
        packed = packed.contiguous(memory_format=torch.channels_last)
    return packed


class LoopPack:
    """K lone :class:`~evo_nos.fitness.models.ChildNet` s stepped together (the CPU form).

    Each child's forward and backward are its own ChildNet's, one child after the other
    (on a CPU the convolutions are compute bound and a child's activations stay in cache),
    but its parameters and gradients are views into packed tensors (:attr:`params`,
    :attr:`grads`), which :class:`PackedRules` updates.  Gradients accumulate in place
    into tensors filled with -0.0 (``-0.0 + g`` is ``g`` for every float, so each
    gradient is bit for bit the one a lone backward leaves)."""

    layout = "loop"

    def __init__(self, nets: list[ChildNet]):
        if not nets:
            raise ValueError("a pack needs at least one network")
        self.nets, self.k = nets, len(nets)
        per_net = [list(net.parameters()) for net in nets]
        self.child_shapes = [tuple(p.shape) for p in per_net[0]]
        self.params, self.grads = [], []
        for i, shape in enumerate(self.child_shapes):
            packed = _packed([params[i].detach() for params in per_net])
            grad = torch.full_like(packed, -0.0)
            for k, params in enumerate(per_net):
                params[i].data = packed.view(self.k, *shape)[k]
                params[i].grad = grad.view(self.k, *shape)[k]
            self.params.append(packed)
            self.grads.append(grad)

    def losses(self, x: list, y: torch.Tensor) -> torch.Tensor:
        """Forward and backward of every child on its batch; [K] mean losses."""
        for grad in self.grads:
            grad.fill_(-0.0)
        out = []
        for net, xi, yi in zip(self.nets, x, y):
            loss = F.cross_entropy(net(xi), yi)
            loss.backward()
            out.append(loss.detach())
        return torch.stack(out)

    def logits(self, x: list) -> torch.Tensor:
        return torch.stack([net(xi) for net, xi in zip(self.nets, x)])

    def train(self, mode: bool = True) -> None:
        for net in self.nets:
            net.train(mode)

    def child_views(self, k: int) -> list[torch.Tensor]:
        return list(self.nets[k].parameters())

    def unpack(self, k: int, net: ChildNet) -> ChildNet:
        net.load_state_dict(self.nets[k].state_dict())
        return net

    def finite(self) -> torch.Tensor:
        """[K] bool: child k's weights and batch-norm statistics are all finite."""
        return torch.stack([_finite(list(net.parameters()) + list(net.buffers()))
                            for net in self.nets])


def _finite(tensors) -> torch.Tensor:
    return torch.stack([torch.isfinite(t.detach()).all() for t in tensors
                        if t.is_floating_point()]).all()


class _BatchedLinear(torch.autograd.Function):
    """``x[k] @ w[k].T + b[k]`` for every child k, with the gradients computed as
    ``F.linear``'s are."""

    @staticmethod
    def forward(ctx, x, w, b):          # x [K, B, F], w [K, O, F], b [K, O]
        ctx.save_for_backward(x, w)
        return torch.baddbmm(b.unsqueeze(1), x, w.transpose(1, 2))

    @staticmethod
    def backward(ctx, grad):            # grad [K, B, O]
        x, w = ctx.saved_tensors
        grad_x = torch.bmm(grad, w) if ctx.needs_input_grad[0] else None
        grad_w = torch.bmm(grad.transpose(1, 2).contiguous(), x)
        return grad_x, grad_w, grad.sum(1)


class PackedChild(nn.Module):
    """K :class:`~evo_nos.fitness.models.ChildNet` s as one module (the GPU form): one
    grouped convolution per layer (``groups=K``), batch norm over the K·C channels, one
    batched matmul for the K heads; one forward and one backward for all K.

    Parameters are packed child after child (:func:`_packed`), in the order of
    ``ChildNet.parameters()``.  The per-child losses are summed before the backward; no
    parameter is shared, so each child's gradient is its own loss's.  On the CPU this
    form is slower than :class:`LoopPack` and not bit-exact (the grouped convolution's
    weight gradient sums in another order); see ``benchmarks/fitness_throughput.py``.
    """

    layout = "grouped"
    NAMES = ("conv1", "bn1_weight", "bn1_bias", "conv2", "bn2_weight", "bn2_bias",
             "classifier_weight", "classifier_bias")

    def __init__(self, nets: list[ChildNet]):
        super().__init__()
        if not nets:
            raise ValueError("a pack needs at least one network")
        first = nets[0]
        self.k, self.head = len(nets), first.head
        self.width = first.features[0].weight.shape[0]
        per_net = [list(net.parameters()) for net in nets]
        self.child_shapes = [tuple(p.shape) for p in per_net[0]]
        for i, name in enumerate(self.NAMES):
            self.register_parameter(name, nn.Parameter(
                _packed([params[i].detach() for params in per_net]).clone()))
        for i, bn in enumerate((1, 5)):
            for stat in ("running_mean", "running_var"):
                self.register_buffer(f"bn{i + 1}_{stat}", torch.cat(
                    [getattr(net.features[bn], stat).detach() for net in nets]).clone())
        self.momentum = first.features[1].momentum
        self.bn_eps = first.features[1].eps

    @property
    def params(self) -> list[torch.Tensor]:
        return list(self.parameters())

    @property
    def grads(self) -> list[torch.Tensor]:
        return [p.grad for p in self.parameters()]

    def losses(self, x: list, y: torch.Tensor) -> torch.Tensor:
        for p in self.parameters():
            p.grad = None
        k = self.k
        losses = F.cross_entropy(self(x).reshape(k * y.shape[1], -1), y.reshape(-1),
                                 reduction="none").view(k, -1).mean(1)
        losses.sum().backward()
        return losses.detach()

    def logits(self, x: list) -> torch.Tensor:
        return self(x)

    def child_views(self, k: int) -> list[torch.Tensor]:
        """Child k's slice of every parameter, shaped and laid out as in a ChildNet."""
        return [p.view(self.k, *shape)[k] for p, shape in zip(self.parameters(),
                                                              self.child_shapes)]

    def unpack(self, k: int, net: ChildNet) -> ChildNet:
        """Copy child k's weights and batch-norm statistics into ``net`` (a ChildNet of
        the same shape); returns it."""
        with torch.no_grad():
            for mine, theirs in zip(self.child_views(k), net.parameters()):
                theirs.copy_(mine)
            c = self.width
            for i, bn in enumerate((1, 5)):
                for stat in ("running_mean", "running_var"):
                    getattr(net.features[bn], stat).copy_(
                        getattr(self, f"bn{i + 1}_{stat}")[k * c:(k + 1) * c])
        return net

    def finite(self) -> torch.Tensor:
        k = self.k
        tensors = list(self.parameters()) + list(self.buffers())
        return torch.stack([torch.isfinite(t.detach().reshape(k, -1)).all(1)
                            for t in tensors]).all(0)

    def _bn(self, x, i):
        return F.batch_norm(x, getattr(self, f"bn{i}_running_mean"),
                            getattr(self, f"bn{i}_running_var"),
                            getattr(self, f"bn{i}_weight"), getattr(self, f"bn{i}_bias"),
                            self.training, self.momentum, self.bn_eps)

    def forward(self, x) -> torch.Tensor:
        """``x``: K batches ``[B, 3, H, W]`` (a list, or one ``[K, B, 3, H, W]``
        tensor); logits ``[K, B, classes]``."""
        k, c = self.k, self.width
        if isinstance(x, torch.Tensor):
            x = list(x.unbind(0))
        stacked = torch.stack(x, 1).flatten(1, 2)
        if self.conv1.is_contiguous(memory_format=torch.channels_last):
            stacked = stacked.contiguous(memory_format=torch.channels_last)
        h = F.conv2d(stacked, self.conv1, padding=1, groups=k)
        h = F.max_pool2d(F.relu(self._bn(h, 1), inplace=True), 2)
        h = F.conv2d(h, self.conv2, padding=1, groups=k)
        h = F.max_pool2d(F.relu(self._bn(h, 2), inplace=True), 2)
        b, _, s, _ = h.shape
        h = h.reshape(b, k, c, s, s).transpose(0, 1)
        features = h.reshape(k, b, c * s * s) if self.head == "flatten" else h.mean(dim=(3, 4))
        return _BatchedLinear.apply(features, self.classifier_weight,
                                    self.classifier_bias.view(k, -1))


def make_pack(nets: list[ChildNet], layout: str):
    """A :class:`LoopPack` (``"loop"``) or :class:`PackedChild` (``"grouped"``)."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    return LoopPack(nets) if layout == "loop" else PackedChild(nets)


# ---------------------------------------------------------------------------------------
# the packed update
# ---------------------------------------------------------------------------------------
class PackedRules:
    """Each child's rule applied to its slice of the packed weights by the one update
    step (:func:`evo_nos.optim.standalone.rule_direction`, as
    :class:`evo_nos.optim.RuleOptimizer`'s per-tensor path runs it: averages, bias
    correction, direction, ``w -= lr * d``), with the noise of random rules drawn from
    each child's own RNG stream (torch's RNG seeded with the child's seed).  The learning
    rate of step t is the child's times the task's schedule factor
    (:func:`evo_nos.optim.schedules.schedule_factor`), the value torch's ``LambdaLR``
    gives a lone training.

    A block of consecutive children that share a rule drawing no noise is updated in one
    set of kernels; the step ``w -= lr·d`` is then one ``add_`` per child (``exact``, as
    RuleOptimizer does it) or one kernel with the learning rates as a tensor.
    """

    def __init__(self, model: PackedChild, children: list[Child], *, total_steps: int,
                 settings: RuleSettings | None = None, exact: bool = True,
                 schedule: str = "constant", warmup: int = 0):
        self.model, self.children, self.total = model, children, total_steps
        self.settings = settings or RuleSettings()
        self.exact = exact
        self.schedule, self.warmup = schedule, warmup
        self.betas = (self.settings.beta1, self.settings.beta2, self.settings.beta3)
        self.step_count = 0
        self.params = model.params
        self.shapes = model.child_shapes
        device = self.params[0].device
        self.blocks = []                 # (start, stop, rule, direction, average fields)
        for i, child in enumerate(children):
            rule = child.optimizer
            if self.blocks and self.blocks[-1][2].canonical == rule.canonical:
                self.blocks[-1][1] = i + 1
            else:
                self.blocks.append([i, i + 1, rule, compile_direction(rule, self.settings),
                                    average_fields(rule)])
        needed = sorted({n for b in self.blocks for n in b[4]["_averages"]})
        self.state = {n: [torch.zeros_like(p) for p in self.params] for n in needed}
        self.base_lrs = [c.lr for c in children]
        self.lrs = torch.tensor(self.base_lrs, device=device)
        cuda = device.type == "cuda"
        self.rng = {}                    # seed -> the state of that child's noise stream
        for child in children:
            if "rng" in child.optimizer.needs and child.seed not in self.rng:
                with torch.random.fork_rng(devices=[device] if cuda else []):
                    torch.manual_seed(child.seed)
                    self.rng[child.seed] = (torch.cuda.get_rng_state(device) if cuda
                                            else torch.get_rng_state())
        self.cuda = cuda

    def _view(self, tensor, shape, start, stop=None):
        v = tensor.view(self.model.k, *shape)
        return v[start] if stop is None else v[start:stop]

    @torch.no_grad()
    def step(self) -> None:
        if self.schedule == "constant" and not self.warmup:
            self.step_lrs, self.step_lr_tensor = self.base_lrs, self.lrs
        else:          # as LambdaLR: base lr times the factor, in Python floats
            factor = schedule_factor(self.schedule, self.step_count, self.total, self.warmup)
            self.step_lrs = [lr * factor for lr in self.base_lrs]
            self.step_lr_tensor = self.lrs * factor
        self.step_count += 1
        step = self.step_count
        grads = self.model.grads
        for start, stop, rule, direction, fields in self.blocks:
            if "rng" in rule.needs:
                self._random_block(grads, start, stop, direction, fields, step)
                continue
            for i, shape in enumerate(self.shapes):
                if self.exact and math.prod(shape) % VECTOR_ALIGN:
                    for k in range(start, stop):
                        self._update(grads, i, k, None, direction, fields, step)
                else:
                    self._update(grads, i, start, stop, direction, fields, step)

    def _update(self, grads, i, start, stop, direction, fields, step):
        """Update parameter i of children ``start`` (alone: ``stop=None``) or
        ``start:stop`` (a block sharing one rule)."""
        p, shape = self.params[i], self.shapes[i]
        w, g = self._view(p, shape, start, stop), self._view(grads[i], shape, start, stop)
        names, slots = fields["_averages"], fields["_average_slots"]
        betas = [self.betas[slot] for slot in slots]
        d = rule_direction(
            direction, g, w, [self._view(self.state[n][i], shape, start, stop) for n in names],
            slots=slots, powers=fields["_average_powers"], betas=betas,
            divisors=bias_divisors(betas, step, self.settings.bias_correction, p.dtype),
            t=step - 1, total=self.total)
        lrs = self.step_lrs
        if stop is None:
            w.add_(d, alpha=-lrs[start])
        elif self.exact:                  # as RuleOptimizer does: one add with alpha each
            d = d.expand_as(w)
            for k in range(start, stop):
                w[k - start].add_(d[k - start], alpha=-lrs[k])
        else:
            lr = self.step_lr_tensor[start:stop].view(-1, *([1] * len(shape)))
            w.sub_(d.expand_as(w) * lr)

    def _random_block(self, grads, start, stop, direction, fields, step):
        """A rule that draws noise: each child alone, its draws from its own stream (the
        children of one seed replay the same draws, as they do alone)."""
        states = {}
        with torch.random.fork_rng(devices=[self.params[0].device] if self.cuda else []):
            for k in range(start, stop):
                seed = self.children[k].seed
                self._set_rng(self.rng[seed])
                for i in range(len(self.params)):
                    self._update(grads, i, k, None, direction, fields, step)
                states[seed] = self._get_rng()
        self.rng.update(states)

    def _set_rng(self, state):
        if self.cuda:
            torch.cuda.set_rng_state(state, self.params[0].device)
        else:
            torch.set_rng_state(state)

    def _get_rng(self):
        return torch.cuda.get_rng_state(self.params[0].device) if self.cuda \
            else torch.get_rng_state()


# ---------------------------------------------------------------------------------------
# training a pack
# ---------------------------------------------------------------------------------------
@dataclass
class PackResult:
    """Per child of a pack: validation accuracy (0 when diverged), steps charged, reason."""
    accuracy: list
    steps: list
    reasons: list
    seconds: float


def _batches(data: DeviceData, batch_size: int, seed: int, total_steps: int):
    """The ``total_steps`` batches a lone training of seed ``seed`` sees, in order."""
    order = torch.Generator(device=data.device).manual_seed(seed)
    steps = 0
    while steps < total_steps:
        for batch in data.epoch(batch_size, order):
            yield batch
            steps += 1
            if steps >= total_steps:
                return


def train_pack(children: list[Child], data: DeviceData, task: Task, *, epochs: float,
               settings=None, layout: str | None = None,
               exact: bool | None = None) -> tuple[PackResult, "LoopPack | PackedChild"]:
    """Train every child of ``children`` (their optimizers Rules) for ``epochs`` in one
    packed pass.

    Returns each child's result (as :func:`evo_nos.fitness.train.train_run` would give
    it alone) and the trained pack.  ``layout`` ("loop": :class:`LoopPack`, or
    "grouped": :class:`PackedChild`) and ``exact`` default to the exact forms on the CPU
    and the batched forms on CUDA (module docstring).
    Runs with ``task.threads`` CPU threads (exact against a lone training with the same
    count: kernels split their work between threads by the size of the whole tensor).
    """
    with torch_threads(task.threads):
        return _train_pack(children, data, task, epochs, settings, layout, exact)


def _train_pack(children, data, task, epochs, settings, layout, exact):
    start = time.perf_counter()
    cuda = data.device.type == "cuda"
    layout = layout or ("grouped" if cuda else "loop")
    exact = (not cuda) if exact is None else exact
    total = epoch_steps(epochs, data.steps_per_epoch(task.batch_size))
    nets = [make_child(c.seed, image_size=data.image_size, n_classes=data.n_classes,
                       width=task.width, head=task.head, device=data.device,
                       channels_last=task.channels_last) for c in children]
    model = make_pack(nets, layout)
    opt = PackedRules(model, children, total_steps=total, settings=settings, exact=exact,
                      schedule=task.schedule, warmup=task.warmup)
    seeds = list(dict.fromkeys(c.seed for c in children))
    streams = {s: _batches(data, task.batch_size, s, total) for s in seeds}
    k = len(children)
    bad_step = torch.zeros(k, dtype=torch.int64, device=data.device)   # 0: never
    per_epoch = data.steps_per_epoch(task.batch_size)
    for step in range(1, total + 1):
        batch = {s: next(streams[s]) for s in seeds}
        x = [batch[c.seed][0] for c in children]
        y = torch.stack([batch[c.seed][1] for c in children])
        losses = model.losses(x, y)
        opt.step()
        bad_step = torch.where((bad_step == 0) & ~torch.isfinite(losses), step, bad_step)
        if step % per_epoch == 0 and step < total and bool((bad_step > 0).all()):
            break                       # every child has diverged: nothing left to learn
    finite = model.finite()
    accuracy = _accuracies(model, data, task.eval_batch_size)
    bad, finite, accuracy = bad_step.tolist(), finite.tolist(), accuracy.tolist()
    every = task.check_every
    steps, reasons, scores = [], [], []
    for child, b, ok, acc in zip(children, bad, finite, accuracy):
        if b:
            charged = min(total, math.ceil(b / every) * every)
            reason = f"loss became non-finite at step {charged} (lr {child.lr:g})"
        else:
            charged = total
            reason = "" if ok else f"weights became non-finite within {total} steps " \
                                   f"(lr {child.lr:g})"
        steps.append(charged)
        reasons.append(reason)
        scores.append(0.0 if reason else acc)
    return PackResult(scores, steps, reasons, time.perf_counter() - start), model


@torch.no_grad()
def _accuracies(model, data: DeviceData, batch_size: int) -> torch.Tensor:
    """[K] validation accuracy of each child (one host sync, by the caller)."""
    model.train(False)
    correct = torch.zeros(model.k, dtype=torch.int64, device=data.device)
    for x, y in data.validation(batch_size):
        logits = model.logits([x] * model.k)
        correct += (logits.argmax(dim=2) == y).sum(1)
    model.train()
    return correct.double() / data.n_val


# ---------------------------------------------------------------------------------------
# the protocol, packed
# ---------------------------------------------------------------------------------------
TRAINING_ERRORS = (RuntimeError, ValueError, ArithmeticError)


def train_children(children: list[Child], data: DeviceData, task: Task, *, epochs: float,
                   size: int, settings=None) -> list[Run]:
    """Train ``children`` in packs of at most ``size``, in order; one Run each
    (``seconds``: its share of its pack's time).  A pack that raises is retrained one
    child at a time, so only the child that raises fails (``training failed: ...``)."""
    out: list[Run] = []
    for first in range(0, len(children), size):
        pack = children[first:first + size]
        try:
            result, _ = train_pack(pack, data, task, epochs=epochs, settings=settings)
        except TRAINING_ERRORS as err:
            if len(pack) > 1:
                out += train_children(pack, data, task, epochs=epochs, size=1,
                                      settings=settings)
                continue
            out.append(Run(pack[0].lr, pack[0].seed, 0.0, True, 0, 0.0,
                           f"training failed: {type(err).__name__}: {err}"))
            continue
        share = result.seconds / len(pack)
        out += [Run(c.lr, c.seed, acc, bool(reason), steps, share, reason)
                for c, acc, steps, reason in zip(pack, result.accuracy, result.steps,
                                                 result.reasons)]
    return out


def packed_trainer(data: DeviceData, task: Task, settings=None):
    """The protocol's trainer (:func:`evo_nos.fitness.protocol.score`) that trains its
    children in packs of :func:`auto_pack` children."""
    size = auto_pack(task, data)

    def train(children: list[Child], epochs: float, test: bool) -> list[Run]:
        if test:
            raise ValueError("the packed trainer scores the validation split only")
        return train_children(children, data, task, epochs=epochs, size=size,
                              settings=settings)

    return train


def score_rules(jobs: list[tuple], data: DeviceData, task: Task, *, settings=None,
                hurdle: float | None = None) -> list[Evaluation]:
    """The protocol (:func:`evo_nos.fitness.train.score_rule`'s) for every ``(rule,
    seed)`` of ``jobs`` at once, packed: all their sweep trainings in packs, then all
    their final runs; the same Evaluations as scoring each alone (on the CPU bit for
    bit)."""
    rules = [resolve(rule) for rule, _ in jobs]
    candidates = [Candidate(rule, rule.canonical, (int(seed),))
                  for rule, (_, seed) in zip(rules, jobs)]
    with torch_threads(task.threads):
        scores = score(candidates, task, packed_trainer(data, task, settings), hurdle=hurdle)
    return [s.evaluation() for s in scores]
