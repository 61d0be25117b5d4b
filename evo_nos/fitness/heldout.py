"""Held-out tasks: model families no search trains on, and the protocol that scores any
optimizer (a rule, or one of torch's) on one of them.

The transfer check (:mod:`evo_nos.experiments.transfer`) runs a *suite* of these tasks.
Three are built in (:data:`BUILTIN`), each from another model family than the child
ConvNet, each generated offline from a seed:

* ``images``   -- convolutional: the transfer preset's ResNet
  (:class:`~evo_nos.fitness.models.SmallResNet`) on its image source (``synthetic``,
  ``cifar10`` or ``imagefolder:DIR``; the test split scored at the end), with the
  preset's augmentation, lr grid and epochs: :func:`image_task` of a transfer
  :class:`~evo_nos.fitness.tasks.Task`;
* ``sequence`` -- recurrent: an LSTM (:class:`~evo_nos.fitness.models.SequenceLSTM`)
  classifies token sequences by their majority vote token (:func:`majority_sequences`):
  it has to count through time, the answer is read from its last hidden state;
* ``tabular``  -- an MLP (:class:`~evo_nos.fitness.models.TabularMLP`) on tabular data
  (:func:`teacher_table`): a fixed random teacher network labels Gaussian features, a few
  columns are pure noise, columns come on scales from 0.1 to 10 (raw, unstandardised
  features, as tables are), and 5% of the labels are flipped.

Their sizes come in three presets (:data:`SIZES`: ``quick``, seconds on a CPU; ``cpu``;
``gpu``); the image task's are the transfer presets'
(``evo_nos/fitness/presets/transfer/*.toml``).

**Your own task** is a :class:`HeldOutTask`: a name and family, the protocol's numbers
(lr grid, epochs, batch size, seeds) and ``build(seed, device) -> TaskSetup``, called once
per task with the task's ``data_seed``.  A :class:`TaskSetup` holds

* ``data`` -- the train / validation / test splits on ``device``: a :class:`TensorData`
  made from ``(x, y)`` tensor pairs (the common case), or anything with the same few
  members (``device``, ``n_train``, ``n_val``, ``n_test``, ``steps_per_epoch(batch)``,
  ``epoch(batch, generator)`` yielding training batches in an order drawn from the
  generator, ``eval_batches(batch, split)``; :class:`~evo_nos.fitness.data.DeviceData`
  is one, with on-device augmentation);
* ``model(seed) -> nn.Module`` -- a fresh network on the device whose initial weights
  depend on ``seed`` alone (:func:`~evo_nos.fitness.models.seeded` does that);
* ``loss(outputs, y)`` -- the mean training loss (default cross-entropy);
* ``metric(outputs, y)`` -- the batch's *sum* of a score, higher is better (default: the
  number of correct argmax predictions, so the score is accuracy).

A module of yours exposes the task as ``mypkg.tasks:NAME`` (or ``path/tasks.py:NAME``):
NAME is a HeldOutTask, or a function returning one (called with the preset's size name,
``quick`` | ``cpu`` | ``gpu``, when it takes an argument); :func:`load_heldout_task`
reads such a spec (``python -m evo_nos.transfer --task mypkg.tasks:make_task``)::

    def make_task(size="cpu"):
        def build(seed, device):
            g = torch.Generator().manual_seed(seed)
            x = torch.randn(3000, 20, generator=g)
            y = (x[:, 0] * x[:, 1] > 0).long()
            data = TensorData((x[:2000], y[:2000]), (x[2000:2500], y[2000:2500]),
                              (x[2500:], y[2500:]), device)
            return TaskSetup(data, model=lambda s: seeded(s, lambda: TabularMLP(20, 2),
                                                          device))
        return HeldOutTask("xor", "mlp", build, lrs=(1e-3, 1e-2, 1e-1), sweep_epochs=5)

**The protocol** (:func:`score_optimizer`), for one optimizer on one task: every learning
rate of the grid is trained once per seed of ``seeds`` (the seed fixes the initial
weights, the data order and any randomness inside the optimizer: common random numbers
across optimizers and learning rates) for ``sweep_epochs`` and scored on the validation
split.  The best learning rate is the one with the highest *mean* validation score over
the seeds (a run that diverged scores 0; ties go to the smaller lr).  At that lr each
seed's final run -- ``final_epochs`` from scratch, or, when ``final_epochs`` is None, the
sweep's run itself -- is scored on the validation and the **test** split (the test split
is also scored on the other sweep runs in that case, but only the chosen lr's scores are
kept: the choice never reads them).  The learning rate is constant, as in the search.

Every optimizer goes through the same loop (:func:`train`): a rule runs on
:class:`evo_nos.optim.RuleOptimizer`; the baselines (:data:`TORCH_BASELINES`) are torch's
own ``torch.optim.Adam`` and ``torch.optim.SGD(momentum=0.9)``.  The loop is
:func:`evo_nos.fitness.train.fit`'s (same batches, same seeding, same divergence checks;
for a rule it takes the very same steps) with the optimizer passed in, which ``fit``
does not allow.
"""
from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import inspect
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from evo_nos.core.known import resolve
from evo_nos.core.rules import Rule
from evo_nos.core.threads import torch_threads
from evo_nos.fitness.baselines import BASELINES, is_baseline
from evo_nos.fitness.data import TensorData
from evo_nos.fitness.models import SequenceLSTM, TabularMLP, seeded
from evo_nos.fitness.protocol import MAX, Candidate, Score, TaskSetup, lone_trainer, score
from evo_nos.fitness.tasks import Task, load_task, preset_sections
from evo_nos.fitness.train import child_setup, task_data
from evo_nos.fitness.train import optimizer_factory as factory_of
from evo_nos.optim.schedules import SCHEDULES

SIZES = ("quick", "cpu", "gpu")            # the presets of the built-in tasks
BUILTIN = ("images", "sequence", "tabular")


# -- the interface of a held-out task ---------------------------------------------------------
@dataclass(frozen=True)
class HeldOutTask:
    """A held-out task: its data and network (``build``) and its protocol's numbers."""

    name: str
    family: str                      # the model family: conv | recurrent | mlp | ...
    build: Callable                  # (data_seed, device) -> TaskSetup
    lrs: tuple = (1e-3, 1e-2, 1e-1)  # the learning-rate grid of the sweep
    sweep_epochs: float = 1.0        # epochs of each (lr, seed) run of the sweep
    final_epochs: float | None = None   # None: the sweep's run at the best lr is final
    batch_size: int = 64
    eval_batch_size: int = 1000
    seeds: tuple = (0, 1)            # initial weights, data order, optimizer noise
    data_seed: int = 0               # passed to build: which data
    check_every: int = 1             # steps between non-finite loss checks
    schedule: str = "constant"       # the lr schedule of every run (constant | cosine | linear)
    warmup: int = 0                  # steps of linear lr warmup first
    threads: int = 0                 # torch CPU threads (0: torch's default)
    description: str = ""           # the network and data in words, for reports
    settings: dict = field(default_factory=dict, compare=False)   # its numbers, logged

    def __post_init__(self) -> None:
        object.__setattr__(self, "lrs", tuple(float(lr) for lr in self.lrs))
        object.__setattr__(self, "seeds", tuple(int(s) for s in self.seeds))
        if not self.name or not isinstance(self.name, str):
            raise ValueError(f"a held-out task needs a name, got {self.name!r}")
        if not callable(self.build):
            raise ValueError(f"task {self.name!r}: build must be a function "
                             "(data_seed, device) -> TaskSetup")
        if not self.lrs or any(not lr > 0 for lr in self.lrs):
            raise ValueError(f"task {self.name!r}: lrs must be positive, got {self.lrs}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"task {self.name!r}: seeds must be distinct, got {self.seeds}")
        if not self.sweep_epochs > 0 or not (self.final_epochs is None
                                             or self.final_epochs > 0):
            raise ValueError(f"task {self.name!r}: epochs must be > 0")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"task {self.name!r}: schedule must be one of {list(SCHEDULES)}, "
                             f"got {self.schedule!r}")
        if int(self.warmup) < 0:
            raise ValueError(f"task {self.name!r}: warmup must be >= 0 steps")
        for key in ("batch_size", "eval_batch_size", "check_every"):
            if int(getattr(self, key)) < 1:
                raise ValueError(f"task {self.name!r}: {key} must be >= 1")

    def replace(self, **changes) -> "HeldOutTask":
        return dataclasses.replace(self, **changes)

    def described(self) -> dict:
        """The protocol's numbers and :attr:`settings`, as plain values (for logging)."""
        out = {"family": self.family, "lrs": list(self.lrs), "sweep_epochs": self.sweep_epochs,
               "final_epochs": self.final_epochs, "batch_size": self.batch_size,
               "seeds": list(self.seeds), "data_seed": self.data_seed,
               "schedule": self.schedule, "warmup": self.warmup}
        out.update(self.settings)
        return out


# -- the optimizers ---------------------------------------------------------------------------
def optimizer_key(optimizer: str | Rule) -> str:
    """A baseline's name, or the rule's canonical string (what identifies an optimizer)."""
    return optimizer if is_baseline(optimizer) else resolve(optimizer).canonical


def describe_optimizer(optimizer: str | Rule) -> str:
    """The update in words: the rule's math, or which torch optimizer."""
    return BASELINES[optimizer][0] if is_baseline(optimizer) else resolve(optimizer).math


def optimizer_factory(optimizer: str | Rule) -> Callable:
    """``(params, lr, total_steps) -> torch.optim.Optimizer`` for a baseline name
    (:data:`~evo_nos.fitness.baselines.BASELINES`) or a rule (a known name, rule string or
    Rule; run by :class:`~evo_nos.optim.RuleOptimizer`)."""
    return factory_of(optimizer if is_baseline(optimizer) else resolve(optimizer))


# -- the protocol -----------------------------------------------------------------------------
def score_optimizer(task: HeldOutTask, setup: TaskSetup, optimizer: str | Rule) -> Score:
    """The protocol (:func:`evo_nos.fitness.protocol.score`) for one optimizer on one
    held-out task, over the task's seeds, the test split scored on the final runs."""
    make = optimizer_factory(optimizer)
    train = lone_trainer(task, setup, lambda child: make)
    with torch_threads(task.threads):
        [result] = score([Candidate(None, optimizer_key(optimizer), task.seeds)], task,
                         train, test=True, direction=getattr(setup, "direction", MAX))
    return result


# -- generated data -----------------------------------------------------------------------------
def majority_sequences(n: int, *, length: int = 16, vocab: int = 10, n_classes: int = 4,
                       favour: float = 2.0, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` token sequences [n, length] (int64) and their labels [n], from ``seed`` alone.

    Tokens ``0 .. n_classes-1`` are votes, the others distractors.  Each position is a
    vote with probability 1/2, and a vote is for a drawn favourite class ``favour`` times
    as likely as for any other (closer to 1: closer counts, a harder task); the label is
    the vote token that occurs most often in the sequence (sequences with a tied count
    are not drawn), so the label is a function of the sequence -- one a model gets by
    counting.
    """
    if n_classes < 2 or vocab <= n_classes:
        raise ValueError(f"need n_classes >= 2 and vocab > n_classes, got {n_classes}, {vocab}")
    gen = torch.Generator().manual_seed(20_011 + seed)
    xs, ys, have = [], [], 0
    while have < n:
        m = 2 * (n - have) + 64
        favourite = torch.randint(0, n_classes, (m, 1), generator=gen)
        weights = torch.ones(m, n_classes).scatter_(1, favourite, float(favour))
        votes = torch.multinomial(weights, length, replacement=True, generator=gen)
        distract = torch.randint(n_classes, vocab, (m, length), generator=gen)
        is_vote = torch.rand(m, length, generator=gen) < 0.5
        x = torch.where(is_vote, votes, distract)
        counts = F.one_hot(x, vocab)[:, :, :n_classes].sum(dim=1)       # [m, n_classes]
        top2 = counts.topk(2, dim=1).values
        keep = top2[:, 0] > top2[:, 1]
        xs.append(x[keep])
        ys.append(counts[keep].argmax(dim=1))
        have += int(keep.sum())
    return torch.cat(xs)[:n].contiguous(), torch.cat(ys)[:n].contiguous()


def teacher_table(n: int, *, n_features: int = 16, n_informative: int = 8, n_classes: int = 3,
                  hidden: int = 32, label_noise: float = 0.05, seed: int = 0
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` rows of tabular features [n, n_features] (float32) and labels [n], from
    ``seed`` alone.

    The first ``n_informative`` columns of standard Gaussian features feed a fixed random
    teacher (one tanh layer of ``hidden`` units, then ``n_classes`` logits centred so the
    classes are about balanced); the label is the teacher's argmax, replaced by a uniform
    random class with probability ``label_noise``.  The other columns are noise.  Each
    column is then put on its own scale (log-uniform in [0.1, 10]) and offset, as raw
    tabular features come, and the columns are shuffled.
    """
    if not 1 <= n_informative <= n_features:
        raise ValueError(f"need 1 <= n_informative <= n_features, got {n_informative}, "
                         f"{n_features}")
    gen = torch.Generator().manual_seed(30_011 + seed)
    w1 = torch.randn(n_informative, hidden, generator=gen) * (2.0 / math.sqrt(n_informative))
    b1 = torch.randn(hidden, generator=gen) * 0.5
    w2 = torch.randn(hidden, n_classes, generator=gen) / math.sqrt(hidden)
    z = torch.randn(n, n_features, generator=gen)
    logits = torch.tanh(z[:, :n_informative] @ w1 + b1) @ w2
    y = (logits - logits.mean(dim=0)).argmax(dim=1)
    flip = torch.rand(n, generator=gen) < label_noise
    y = torch.where(flip, torch.randint(0, n_classes, (n,), generator=gen), y)
    scale = 10.0 ** (2 * torch.rand(n_features, generator=gen) - 1)
    offset = torch.randn(n_features, generator=gen) * scale
    columns = torch.randperm(n_features, generator=gen)
    return (z * scale + offset)[:, columns].contiguous(), y.contiguous()


def split3(x: torch.Tensor, y: torch.Tensor, n_train: int, n_val: int) -> tuple:
    """(train, val, test) pairs: the first ``n_train`` rows, the next ``n_val``, the rest."""
    a, b = n_train, n_train + n_val
    return (x[:a], y[:a]), (x[a:b], y[a:b]), (x[b:], y[b:])


# -- the built-in tasks -------------------------------------------------------------------------
# the image task's Task keys that describe data and network (the protocol's are the task's)
IMAGE_KEYS = ("data", "n_train", "n_val", "n_test", "image_size", "n_classes", "translate",
              "flip", "model", "width", "head", "blocks", "channels_last")
DATA_SEED = 7        # the generated sets' seed (any fixed number: no search sees them)


def suite_settings(size: str, section: str):
    """The settings of ``section`` (``suite``, ``sequence``, ``tabular``) in the transfer
    preset of ``size`` (``presets/transfer/<size>.toml``); lists as tuples."""
    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}; sizes: {list(SIZES)}")
    table = preset_sections(size, group="transfer")[section]
    return {k: tuple(v) if isinstance(v, list) else v for k, v in table.items()}


def image_task(task: Task, *, seeds: tuple | None = None, size: str = "cpu") -> HeldOutTask:
    """The transfer preset's ResNet task (a :class:`Task` with ``n_test > 0``) as a
    held-out task: its data, augmentation, network, lr grid and epochs."""
    if task.n_test < 1:
        raise ValueError(f"task {task.name!r} has n_test = {task.n_test}: the transfer "
                         "check scores the test split, set n_test > 0")

    def build(seed: int, device) -> TaskSetup:
        settings = task.replace(data_seed=seed)
        return child_setup(settings, task_data(settings, device))

    net = (f"ResNet width {task.width} blocks {list(task.blocks)}" if task.model == "resnet"
           else f"child ConvNet width {task.width}")
    return HeldOutTask(
        "images", "conv", build, lrs=task.lrs, sweep_epochs=task.sweep_epochs,
        final_epochs=task.final_epochs, batch_size=task.batch_size,
        eval_batch_size=task.eval_batch_size, seeds=seeds or suite_settings(size, "suite")["seeds"],
        data_seed=task.data_seed, check_every=task.check_every, threads=task.threads,
        schedule=task.schedule, warmup=task.warmup,
        description=(f"{net} on {task.n_train} `{task.data}` images ({task.image_size}px; "
                     f"{task.n_val} validation, {task.n_test} of the test split)"),
        settings={"preset": task.name, **{k: v for k, v in task.as_dict().items()
                                           if k in IMAGE_KEYS}})


def _generated_task(name: str, family: str, build, c: dict, size: str,
                    description: str) -> HeldOutTask:
    """A built-in task on generated data: its protocol from the size's settings ``c``
    (the rest of ``c`` describes the data and the network)."""
    return HeldOutTask(
        name, family, build, lrs=c["lrs"], sweep_epochs=c["epochs"],
        batch_size=c["batch_size"], seeds=suite_settings(size, "suite")["seeds"], data_seed=DATA_SEED,
        threads=c["threads"], description=description,
        settings={k: v for k, v in c.items()
                  if k not in ("lrs", "epochs", "batch_size", "threads")})


def sequence_task(size: str = "cpu") -> HeldOutTask:
    """The recurrent task: an LSTM counts votes (:func:`majority_sequences`)."""
    c = suite_settings(size, "sequence")

    def build(seed: int, device) -> TaskSetup:
        x, y = majority_sequences(c["n_train"] + c["n_val"] + c["n_test"], length=c["length"],
                                  vocab=c["vocab"], n_classes=c["n_classes"],
                                  favour=c.get("favour", 2.0), seed=seed)
        data = TensorData(*split3(x, y, c["n_train"], c["n_val"]), device)
        return TaskSetup(data, model=lambda s: seeded(s, lambda: SequenceLSTM(
            c["vocab"], c["n_classes"], c["embed"], c["hidden"]), device))

    return _generated_task(
        "sequence", "recurrent", build, c, size,
        (f"LSTM (hidden {c['hidden']}) reads {c['length']} tokens and names the "
                     f"majority of {c['n_classes']} vote tokens (vocab {c['vocab']}); "
                     f"{c['n_train']} train, {c['n_val']} validation, {c['n_test']} test"))


def tabular_task(size: str = "cpu") -> HeldOutTask:
    """The MLP task: a random teacher's labels of raw tabular features
    (:func:`teacher_table`)."""
    c = suite_settings(size, "tabular")

    def build(seed: int, device) -> TaskSetup:
        x, y = teacher_table(c["n_train"] + c["n_val"] + c["n_test"],
                             n_features=c["n_features"], n_informative=c["n_informative"],
                             n_classes=c["n_classes"], seed=seed)
        data = TensorData(*split3(x, y, c["n_train"], c["n_val"]), device)
        return TaskSetup(data, model=lambda s: seeded(s, lambda: TabularMLP(
            c["n_features"], c["n_classes"], c["hidden"], c["depth"]), device))

    return _generated_task(
        "tabular", "mlp", build, c, size,
        (f"MLP ({c['depth']}x{c['hidden']}) on {c['n_features']} raw features "
                     f"({c['n_informative']} read by a random teacher, {c['n_classes']} "
                     f"classes, 5% label noise); {c['n_train']} train, {c['n_val']} "
                     f"validation, {c['n_test']} test"))


def builtin_task(name: str, size: str = "cpu", *, images: Task | None = None) -> HeldOutTask:
    """A built-in task (:data:`BUILTIN`) at ``size``; ``images``: the image task's
    transfer Task (default: the transfer preset named ``size``)."""
    if name == "images":
        return image_task(images or load_task(size, group="transfer"), size=size)
    if name == "sequence":
        return sequence_task(size)
    if name == "tabular":
        return tabular_task(size)
    raise ValueError(f"unknown built-in task {name!r}; built-in tasks: {list(BUILTIN)}")


# -- tasks of your own ----------------------------------------------------------------------
def _import(where: str, spec: str):
    if where.endswith(".py") or "/" in where or "\\" in where:
        path = Path(where).expanduser()
        if not path.is_file():
            raise ValueError(f"task {spec!r}: no file {path}")
        name = f"evo_nos_user_task_{abs(hash(str(path.resolve())))}"
        loader = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(loader)
        sys.modules[name] = module
        loader.loader.exec_module(module)
        return module
    try:
        return importlib.import_module(where)
    except ImportError as err:
        raise ValueError(f"task {spec!r}: cannot import module {where!r} ({err}); give "
                         "MODULE:NAME of an importable module (e.g. mypkg.tasks:make_task, "
                         "with mypkg on PYTHONPATH) or FILE.py:NAME") from err


def load_heldout_task(spec: str | HeldOutTask | Callable, size: str = "cpu", *,
                      images: Task | None = None) -> HeldOutTask:
    """A task from a spec: a built-in name (:data:`BUILTIN`), ``MODULE:NAME`` or
    ``FILE.py:NAME`` (NAME a :class:`HeldOutTask` or a function returning one, called
    with ``size`` when it takes an argument), or such an object itself."""
    if isinstance(spec, HeldOutTask):
        return spec
    if isinstance(spec, str) and ":" not in spec:
        if spec in BUILTIN:
            return builtin_task(spec, size, images=images)
        raise ValueError(f"unknown task {spec!r}: the built-in tasks are {list(BUILTIN)}; "
                         "a task of your own is MODULE:NAME or FILE.py:NAME")
    target = spec
    if isinstance(spec, str):
        where, _, attr = spec.rpartition(":")
        if not where or not attr:
            raise ValueError(f"task {spec!r}: expected MODULE:NAME or FILE.py:NAME")
        module = _import(where, spec)
        if not hasattr(module, attr):
            raise ValueError(f"task {spec!r}: module {where!r} has no {attr!r}")
        target = getattr(module, attr)
    if callable(target) and not isinstance(target, HeldOutTask):
        takes = [p for p in inspect.signature(target).parameters.values()
                 if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        target = target(size) if takes else target()
    if not isinstance(target, HeldOutTask):
        raise ValueError(f"task {spec!r} is {type(target).__name__}, not a HeldOutTask "
                         "(or a function returning one): see evo_nos.fitness.heldout")
    return target
