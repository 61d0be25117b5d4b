"""Tasks: every number of the scoring protocol, as one frozen dataclass.

A :class:`Task` is what a candidate rule is scored on: the data, the network, the
learning-rate grid and epochs, the screen.  Presets ship inside the package, in
``evo_nos/fitness/presets/<name>.toml`` (flat ``key = value`` files, keys are the Task's
fields), so every install finds them:

* ``smoke`` -- synthetic data, a second or two per candidate: CI and quick checks.
* ``cpu``   -- a CIFAR-10 subset sized for a CPU (seconds per candidate: docs/benchmarks.md).
* ``fast``  -- ``cpu``'s images at 16x16 pixels with a 4-point lr grid (1e-4 .. 1e-1):
  about 6x cheaper per candidate, and ranks rules like ``cpu`` does; for long CPU searches.
* ``nos``   -- the paper's protocol on full CIFAR-10 (45k/5k), for a GPU.

The transfer check (:mod:`evo_nos.experiments.transfer`) is scored by the same protocol
on other tasks, its presets in the ``transfer`` group (``presets/transfer/*.toml``:
``quick``, ``cpu``, ``gpu``): a ResNet (``model = "resnet"``) instead of the child, and a
sample of the source's *test* split (``n_test``) scored after the final run.

What a field is, beyond its number, is declared on the field (``metadata``) and read
from there: :data:`NEUTRAL_KEYS` change how a score is computed, not what it is (a
fitness cache or checkpoint from a task differing only in them still holds);
:data:`DATA_KEYS` decide which images a worker loads; fields ``added`` after the first
protocol, in groups (:data:`TRANSFER_KEYS`, ``pack``), are left out of
:meth:`Task.described` while a whole group is at its defaults.

``load_task("cpu", data="imagefolder:/data/cifar10")`` loads a preset by name (or a
``.toml`` path; ``group="transfer"`` looks the name up among the transfer presets) and
applies overrides; unknown keys are refused with the list of valid ones.  ``Task``
crosses process boundaries as-is (it is a plain picklable dataclass).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import torch

from evo_nos.fitness.models import MODELS
from evo_nos.optim.schedules import SCHEDULES

try:  # Python >= 3.11
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib

PAPER_LRS = (1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0)
# What a field is, beyond its default (its ``metadata``; see the module docstring):
NEUTRAL = {"neutral": True}             # changes how a score is computed, not what it is
DATA = {"data": True}                   # decides the data a worker loads
TRANSFER = {"added": "transfer"}        # added by the transfer check


@dataclass(frozen=True)
class Task:
    name: str = field(default="custom", metadata=NEUTRAL)
    # -- data -------------------------------------------------------------------------
    # cifar10 | imagefolder:DIR | synthetic
    data: str = field(default="synthetic", metadata=DATA)
    # training images (from the source's train split)
    n_train: int = field(default=45_000, metadata=DATA)
    # held-out validation images (same split, disjoint)
    n_val: int = field(default=5_000, metadata=DATA)
    # images of the source's *test* split scored after the final run (0: none; fitness
    # never reads it)
    n_test: int = field(default=0, metadata={**DATA, **TRANSFER})
    # images are resized to image_size x image_size
    image_size: int = field(default=32, metadata=DATA)
    # synthetic data only; real sources bring their own
    n_classes: int = field(default=10, metadata=DATA)
    # which images, and the train/validation split
    data_seed: int = field(default=0, metadata=DATA)
    # random translation by up to this many pixels
    translate: int = field(default=2, metadata=DATA)
    # random horizontal flips
    flip: bool = field(default=True, metadata=DATA)
    # -- network ------------------------------------------------------------------------
    # child | resnet (see evo_nos.fitness.models.MODELS)
    model: str = field(default="child", metadata=TRANSFER)
    width: int = 32                  # filters per convolution (resnet: of the first stage)
    head: str = "flatten"            # flatten | gap: the child's head
    # resnet: residual blocks per stage
    blocks: tuple = field(default=(1, 1, 1), metadata=TRANSFER)
    channels_last: bool = field(default=True, metadata=DATA)
    # -- protocol -----------------------------------------------------------------------
    lrs: tuple = PAPER_LRS           # the learning-rate grid of the sweep
    sweep_epochs: float = 1.0        # epochs per learning rate in the sweep
    final_epochs: float = 5.0        # epochs of the final run at the best learning rate
    batch_size: int = 100
    eval_batch_size: int = field(default=1000, metadata=NEUTRAL)
    check_every: int = 1             # steps between non-finite loss checks (1: every step)
    # the lr schedule of every run: constant | cosine | linear, after warmup steps
    schedule: str = field(default="constant", metadata={"added": "schedule"})
    warmup: int = field(default=0, metadata={"added": "schedule"})
    # tasks of other families scored too, the fitness their normalized mean
    # (evo_nos.fitness.proxies)
    proxies: tuple = field(default=(), metadata={"added": "proxies"})
    # -- screen ---------------------------------------------------------------------------
    probe_steps: int = 32
    probe_dim: int = 64
    fingerprint_digits: int = 6      # significant digits kept when hashing probe outputs
    # -- execution --------------------------------------------------------------------------
    # torch CPU threads per training (see docs/usage.md, "Scaling out with Dask or Ray")
    threads: int = field(default=1, metadata=NEUTRAL)
    # child trainings per packed pass (evo_nos.fitness.packed): "auto" (from the device),
    # or a count (1: one at a time)
    pack: int | str = field(default="auto", metadata={**NEUTRAL, "added": "pack"})

    def __post_init__(self) -> None:
        object.__setattr__(self, "lrs", tuple(float(lr) for lr in self.lrs))
        object.__setattr__(self, "blocks", tuple(int(b) for b in self.blocks))
        object.__setattr__(self, "proxies", tuple(str(p) for p in self.proxies))
        if self.model not in MODELS:
            raise ValueError(f"model must be one of {MODELS}, got {self.model!r}")
        if len(self.blocks) != 3 or min(self.blocks) < 1:
            raise ValueError(f"blocks must be three counts >= 1, got {list(self.blocks)}")
        if self.n_test < 0:
            raise ValueError(f"n_test must be >= 0 (0: no test split), got {self.n_test}")
        if not self.lrs or any(not lr > 0 for lr in self.lrs):
            raise ValueError(f"lrs must be a non-empty list of positive numbers, got {self.lrs}")
        for name in ("n_train", "n_val", "batch_size", "eval_batch_size", "check_every",
                     "probe_steps", "probe_dim", "width", "fingerprint_digits"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        if self.sweep_epochs <= 0 or self.final_epochs <= 0:
            raise ValueError("sweep_epochs and final_epochs must be > 0")
        if self.batch_size > self.n_train:
            raise ValueError(f"batch_size {self.batch_size} > n_train {self.n_train}")
        if self.pack != "auto" and (isinstance(self.pack, bool) or not isinstance(self.pack, int)
                                    or self.pack < 1):
            raise ValueError(f'pack must be "auto" or a count >= 1, got {self.pack!r}')
        if self.proxies and self.model != "child":
            raise ValueError(f"proxies go with the child ConvNet's task, not model "
                             f"{self.model!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {list(SCHEDULES)}, got {self.schedule!r}")
        if isinstance(self.warmup, bool) or not isinstance(self.warmup, int) or self.warmup < 0:
            raise ValueError(f"warmup must be a number of steps >= 0, got {self.warmup!r}")
        if self.threads < 0:
            raise ValueError(f"threads must be >= 0 (0: leave torch's default), got {self.threads}")

    def as_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out["lrs"], out["blocks"] = list(self.lrs), list(self.blocks)
        out["proxies"] = list(self.proxies)
        return out

    def described(self) -> dict:
        """What a task is logged and checkpointed as: :meth:`as_dict`, less each group of
        fields ``added`` later (the :data:`TRANSFER_KEYS`; ``pack``) while all of the
        group is at its defaults, so a child task describes itself exactly as it did
        before those fields existed (same fitness keys, resumable checkpoints)."""
        out = self.as_dict()
        groups: dict[str, list] = {}
        for f in dataclasses.fields(self):
            if "added" in f.metadata:
                groups.setdefault(f.metadata["added"], []).append(f)
        for added in groups.values():
            if all(getattr(self, f.name) == f.default for f in added):
                for f in added:
                    del out[f.name]
        return out

    def replace(self, **changes) -> "Task":
        return dataclasses.replace(self, **_check_keys(changes))


def keys_where(what: str, value=True) -> tuple[str, ...]:
    """The names of the Task fields whose metadata says ``what`` is ``value``."""
    return tuple(f.name for f in dataclasses.fields(Task) if f.metadata.get(what) == value)


TASK_KEYS = tuple(f.name for f in dataclasses.fields(Task))
# The fields that change how a score is computed, not what it is: a fitness cache from a
# task differing only in these is still valid.
NEUTRAL_KEYS = keys_where("neutral")
# The fields that decide which data a worker loads (the key of its data cache).
DATA_KEYS = keys_where("data")
# The fields the transfer check added; at their defaults a task is the child protocol.
TRANSFER_KEYS = keys_where("added", "transfer")
# The schedule's fields (a constant lr and no warmup: a task describes itself as before).
SCHEDULE_KEYS = keys_where("added", "schedule")
# Every field added after the first presets.
LATER_KEYS = SCHEDULE_KEYS + keys_where("added", "proxies")


PRESETS_DIR = Path(__file__).resolve().parent / "presets"


def presets_dir() -> Path:
    """The presets shipped with evo_nos (``evo_nos/fitness/presets``, in any install)."""
    return PRESETS_DIR


def presets(group: str = "") -> list[str]:
    """The preset names shipped in :func:`presets_dir` (``group``: in its sub-folder of
    that name, e.g. ``"transfer"``)."""
    return sorted(p.stem for p in (presets_dir() / group).glob("*.toml"))


def default_preset() -> str:
    """``nos`` (the paper's protocol) when a GPU is visible, else ``cpu``."""
    return "nos" if torch.cuda.is_available() else "cpu"


def preset_key(preset: str) -> str:
    """The name a preset is logged under: ``cpu`` for ``cpu`` and for ``path/cpu.toml``."""
    return Path(preset).stem if str(preset).endswith(".toml") else str(preset)


def _check_keys(values: dict, source: str = "task settings") -> dict:
    unknown = sorted(set(values) - set(TASK_KEYS))
    if unknown:
        raise ValueError(f"unknown key(s) {unknown} in {source}; valid keys: {list(TASK_KEYS)}")
    return values


def _preset_file(name_or_path: str | Path, group: str) -> tuple[Path, str]:
    """(path, name) of a preset by name (one of ``presets(group)``) or a TOML path."""
    text = str(name_or_path)
    path = Path(text).expanduser()
    if text.endswith(".toml") or path.is_file():
        if not path.is_file():
            raise FileNotFoundError(f"task file {path} does not exist")
        return path, path.stem
    folder = presets_dir() / group
    path = folder / f"{text}.toml"
    if not path.is_file():
        raise ValueError(f"unknown preset {text!r}; presets: {presets(group)} "
                         f"(in {folder}), or give a path to a .toml file")
    return path, text


def _read_preset(path: Path) -> tuple[dict, dict]:
    """A preset file's Task keys and its ``[section]`` tables (other tasks' settings)."""
    with open(path, "rb") as fh:
        values = tomllib.load(fh)
    sections = {k: v for k, v in values.items() if isinstance(v, dict)}
    return {k: v for k, v in values.items() if k not in sections}, sections


def preset_sections(name_or_path: str | Path, *, group: str = "") -> dict:
    """The ``[section]`` tables of a preset: settings of tasks beside its Task (the
    transfer presets' ``[suite]``, ``[sequence]`` and ``[tabular]``)."""
    return _read_preset(_preset_file(name_or_path, group)[0])[1]


def load_task(name_or_path: str | Path = "smoke", *, group: str = "", **overrides) -> Task:
    """A preset by name (one of ``presets(group)``) or a TOML file path, with overrides.

    Overrides whose value is None are ignored (so CLI options left unset change nothing).
    """
    path, name = _preset_file(name_or_path, group)
    values, _ = _read_preset(path)
    _check_keys(values, str(path))
    values.setdefault("name", name)
    values.update(_check_keys({k: v for k, v in overrides.items() if v is not None},
                              "overrides"))
    return Task(**values)
