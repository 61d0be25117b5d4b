"""Tasks: every number of the scoring protocol, as one frozen dataclass.

A :class:`Task` is what a candidate rule is scored on: the data, the network, the
learning-rate grid and epochs, the screen.  Presets ship inside the package, in
``evo_nos/fitness/presets/<name>.toml`` (flat ``key = value`` files, keys are the Task's
fields), so every install finds them:

* ``smoke`` -- synthetic data, a second or two per candidate: CI and quick checks.
* ``cpu``   -- a CIFAR-10 subset sized so one candidate takes 10-30 s on two CPU cores.
* ``nos``   -- the paper's protocol on full CIFAR-10 (45k/5k), for a GPU.

The transfer check (:mod:`evo_nos.experiments.transfer`) is scored by the same protocol
on other tasks, its presets in the ``transfer`` group (``presets/transfer/*.toml``:
``quick``, ``cpu``, ``gpu``): a ResNet (``model = "resnet"``) instead of the child, and a
sample of the source's *test* split (``n_test``) scored after the final run.

``load_task("cpu", data="imagefolder:/data/cifar10")`` loads a preset by name (or a
``.toml`` path; ``group="transfer"`` looks the name up among the transfer presets) and
applies overrides; unknown keys are refused with the list of valid ones.  ``Task``
crosses process boundaries as-is (it is a plain picklable dataclass).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch

from evo_nos.fitness.models import MODELS
from evo_nos.optim.schedules import SCHEDULES

try:  # Python >= 3.11
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib

PAPER_LRS = (1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0)


@dataclass(frozen=True)
class Task:
    name: str = "custom"
    # -- data -------------------------------------------------------------------------
    data: str = "synthetic"          # cifar10 | imagefolder:DIR | synthetic
    n_train: int = 45_000            # training images (from the source's train split)
    n_val: int = 5_000               # held-out validation images (same split, disjoint)
    n_test: int = 0                  # images of the source's *test* split scored after
                                     # the final run (0: none; fitness never reads it)
    image_size: int = 32             # images are resized to image_size x image_size
    n_classes: int = 10              # synthetic data only; real sources bring their own
    data_seed: int = 0               # which images, and the train/validation split
    translate: int = 2               # random translation by up to this many pixels
    flip: bool = True                # random horizontal flips
    # -- network ------------------------------------------------------------------------
    model: str = "child"             # child | resnet (see evo_nos.fitness.models.MODELS)
    width: int = 32                  # filters per convolution (resnet: of the first stage)
    head: str = "flatten"            # flatten | gap: the child's head
    blocks: tuple = (1, 1, 1)        # resnet: residual blocks per stage
    channels_last: bool = True
    # -- protocol -----------------------------------------------------------------------
    lrs: tuple = PAPER_LRS           # the learning-rate grid of the sweep
    sweep_epochs: float = 1.0        # epochs per learning rate in the sweep
    final_epochs: float = 5.0        # epochs of the final run at the best learning rate
    batch_size: int = 100
    eval_batch_size: int = 1000
    check_every: int = 1             # steps between non-finite loss checks (1: every step)
    schedule: str = "constant"       # the lr schedule of every run: constant | cosine | linear
    warmup: int = 0                  # steps of linear lr warmup at the start of every run
    proxies: tuple = ()              # tasks of other families scored too, the fitness their
                                     # normalized mean (evo_nos.fitness.proxies)
    # -- screen ---------------------------------------------------------------------------
    probe_steps: int = 32
    probe_dim: int = 64
    fingerprint_digits: int = 6      # significant digits kept when hashing probe outputs
    # -- execution --------------------------------------------------------------------------
    threads: int = 1                 # torch CPU threads per training (see backend docs)
    pack: int | str = "auto"         # child trainings per packed pass (evo_nos.fitness.packed):
                                     # "auto" (from the device), or a count (1: one at a time)

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
        """What a task is logged and checkpointed as: :meth:`as_dict`, less the
        :data:`TRANSFER_KEYS` when all of them are at their defaults (the child protocol),
        and less ``pack`` at its default, so a child task describes itself exactly as it
        did before those fields existed (same fitness keys, resumable checkpoints)."""
        out = self.as_dict()
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        if self.pack == defaults["pack"]:
            del out["pack"]
        for key in LATER_KEYS:           # at their defaults: as before they existed
            if getattr(self, key) == defaults[key]:
                del out[key]
        if all(getattr(self, k) == defaults[k] for k in TRANSFER_KEYS):
            for k in TRANSFER_KEYS:
                del out[k]
        return out

    def replace(self, **changes) -> "Task":
        return dataclasses.replace(self, **_check_keys(changes))


TASK_KEYS = tuple(f.name for f in dataclasses.fields(Task))
# The fields the transfer check added; at their defaults a task is the child protocol.
TRANSFER_KEYS = ("model", "blocks", "n_test")
# The schedule's fields; at their defaults (constant lr, no warmup) a task describes itself
# as before they existed.
SCHEDULE_KEYS = ("schedule", "warmup")
# Fields added after the first presets; at their defaults a task describes itself as before.
LATER_KEYS = SCHEDULE_KEYS + ("proxies",)


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
