"""Image data for child training: load once, keep on the device, augment there.

Three sources, chosen by a ``--data`` spec string:

* ``cifar10`` -- torchvision's CIFAR-10, downloaded on first use into the data directory
  (``$EVO_NOS_CACHE``, else ``~/.cache/evo_nos``).  Offline, the error says to use
  ``imagefolder:DIR`` with a local copy instead.
* ``imagefolder:DIR`` -- ``DIR/train/<class>/*.jpg`` (torchvision's ImageFolder layout,
  e.g. the unpacked CIFAR-10 JPEG copy; the test split, when asked for, in
  ``DIR/test/<class>/*.jpg``).  Decoding tens of thousands of JPEGs takes
  seconds, so the decoded images are cached as one uint8 tensor file in the data
  directory, keyed by the folder, the number of images, their size and the subset seed:
  the second load is a single ``torch.load``.
* ``synthetic`` -- a seeded, learnable 10-class image set generated in memory (class
  templates of low-frequency colour patterns, randomly shifted, plus pixel noise), for
  tests and smoke runs.

:func:`load_images` draws a seeded subset of ``n_train + n_val`` images from a source's
*training* split and splits that into train and a held-out validation part.  The *test*
split is never used for fitness: only a task with ``n_test > 0`` (the transfer check)
also gets a seeded sample of ``n_test`` images of it (CIFAR-10's 10,000 test images,
``DIR/test/<class>/``, or for synthetic data a sample disjoint from train and validation).

:class:`DeviceData` holds the uint8 images on the training device.  Each batch is drawn
from an on-device permutation, randomly translated (pad-and-crop) and flipped on the
device, converted to float and normalised there, in ``channels_last`` layout: no
DataLoader, no per-image Python in the hot loop.  :class:`TensorData` is the same
interface over plain ``(x, y)`` tensor pairs (the held-out tasks' sequences and tables).
"""
from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from evo_nos.core.files import write_atomic

SYNTHETIC, CIFAR10, IMAGEFOLDER = "synthetic", "cifar10", "imagefolder"
TRAIN, VAL, TEST = "train", "val", "test"   # validation is carved out of a source's train
_IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".gif", ".webp"}


class DataError(RuntimeError):
    """A data source that cannot be used; the message says what to do instead."""


# ---------------------------------------------------------------------------------------
# spec strings
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DataSpec:
    kind: str               # synthetic | cifar10 | imagefolder
    path: str | None = None  # the folder of an imagefolder source

    def __str__(self) -> str:
        return f"{self.kind}:{self.path}" if self.path else self.kind


def parse_data_spec(spec: str) -> DataSpec:
    """``'cifar10'``, ``'synthetic'`` or ``'imagefolder:DIR'`` -> :class:`DataSpec`."""
    text = str(spec).strip()
    if text in (SYNTHETIC, CIFAR10):
        return DataSpec(text)
    if text.startswith(IMAGEFOLDER + ":"):
        folder = text[len(IMAGEFOLDER) + 1:]
        if not folder:
            raise DataError("imagefolder needs a folder: --data imagefolder:DIR")
        return DataSpec(IMAGEFOLDER, str(Path(folder).expanduser().resolve()))
    raise DataError(
        f"unknown data source {text!r}; use 'cifar10', 'synthetic' or 'imagefolder:DIR' "
        "(DIR holds train/<class>/*.jpg)"
    )


def data_dir() -> Path:
    """Where downloads and decoded-image caches live: ``$EVO_NOS_CACHE`` or ~/.cache/evo_nos."""
    return Path(os.environ.get("EVO_NOS_CACHE", Path.home() / ".cache" / "evo_nos")).expanduser()


# ---------------------------------------------------------------------------------------
# loading (host side, uint8)
# ---------------------------------------------------------------------------------------
@dataclass
class ImageSplits:
    """Train and validation (and optionally test) images as uint8 [N, 3, H, W] tensors
    with int64 labels."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    n_classes: int
    test_x: torch.Tensor | None = None   # a sample of the source's test split, or None
    test_y: torch.Tensor | None = None

    @property
    def image_size(self) -> int:
        return int(self.train_x.shape[-1])


def load_images(spec: str | DataSpec, *, n_train: int, n_val: int, image_size: int = 32,
                seed: int = 0, n_classes: int = 10, n_test: int = 0) -> ImageSplits:
    """A seeded subset of a source's *training* images, split into train and validation;
    with ``n_test > 0`` also a seeded sample of ``n_test`` images of its *test* split.

    ``seed`` fixes which images are used and how they are split; it belongs to the task,
    not to a candidate, so every candidate is scored on the same data.  ``n_classes``
    only applies to the synthetic source, whose "test split" is the last ``n_test``
    images of one generated set of ``n_val + n_train + n_test`` (so with ``n_test = 0``
    train and validation are exactly what they are without a test split).
    """
    if n_train < 1 or n_val < 1:
        raise ValueError(f"n_train and n_val must be >= 1, got {n_train}, {n_val}")
    if n_test < 0:
        raise ValueError(f"n_test must be >= 0, got {n_test}")
    spec = parse_data_spec(spec) if isinstance(spec, str) else spec
    total = n_train + n_val
    test_x = test_y = None
    if spec.kind == SYNTHETIC:
        x, y = synthetic_images(total + n_test, image_size=image_size, n_classes=n_classes,
                                seed=seed)
        classes = n_classes
        if n_test:
            x, test_x, y, test_y = x[:total], x[total:], y[:total], y[total:]
    else:
        x, y, classes = _subset_of_source(spec, total, image_size, seed)
        if n_test:
            test_x, test_y, _ = _subset_of_source(spec, n_test, image_size, seed, split=TEST)
    # the cached subset is already in seeded random order: the first n_val are validation
    return ImageSplits(train_x=x[n_val:].contiguous(), train_y=y[n_val:].contiguous(),
                       val_x=x[:n_val].contiguous(), val_y=y[:n_val].contiguous(),
                       n_classes=classes, test_x=test_x, test_y=test_y)


def synthetic_images(n: int, *, image_size: int = 16, n_classes: int = 10,
                     seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A learnable image classification set, generated from ``seed`` alone.

    Each class has a template: a random 4x4 colour pattern upsampled to the image size.
    An image is its class template, shifted by up to 2 pixels, scaled in contrast, plus
    Gaussian pixel noise strong enough that a linear read-out of raw pixels is not
    enough for a perfect score in one epoch, weak enough that a small ConvNet learns it.
    """
    gen = torch.Generator().manual_seed(10_007 + seed)
    coarse = torch.randn(n_classes, 3, 4, 4, generator=gen)
    templates = F.interpolate(coarse, size=(image_size, image_size), mode="bilinear",
                              align_corners=False)
    y = torch.randint(0, n_classes, (n,), generator=gen)
    x = templates[y]
    shifts = torch.randint(-2, 3, (n, 2), generator=gen)
    for dy in range(-2, 3):  # 25 shift groups: vectorised per group
        for dx in range(-2, 3):
            sel = (shifts[:, 0] == dy) & (shifts[:, 1] == dx)
            if sel.any():
                x[sel] = torch.roll(x[sel], shifts=(dy, dx), dims=(2, 3))
    contrast = 0.6 + 0.8 * torch.rand(n, 1, 1, 1, generator=gen)
    noise = torch.randn(x.shape, generator=gen)
    pixels = 128 + 45 * (contrast * x + 1.2 * noise)
    return pixels.round().clamp(0, 255).to(torch.uint8), y


def _subset_of_source(spec: DataSpec, total: int, image_size: int, seed: int,
                      split: str = TRAIN) -> tuple[torch.Tensor, torch.Tensor, int]:
    """A seeded sample of ``total`` images of the ``split`` (train | test) of a source."""
    if spec.kind == CIFAR10:
        return _cifar10_subset(total, image_size, seed, split)
    return _imagefolder_subset(Path(spec.path), total, image_size, seed, split)


def _choose(n_available: int, total: int, seed: int, source: str,
            split: str = TRAIN) -> torch.Tensor:
    if total > n_available:
        asked = "(n_train + n_val)" if split == TRAIN else "(n_test)"
        kind = "training" if split == TRAIN else split
        raise DataError(f"{source} has {n_available} {kind} images, the task asks for "
                        f"{total} {asked}: lower them")
    gen = torch.Generator().manual_seed(seed)
    return torch.randperm(n_available, generator=gen)[:total]


def resize(x: torch.Tensor, image_size: int) -> torch.Tensor:
    if x.shape[-1] == image_size and x.shape[-2] == image_size:
        return x
    out = F.interpolate(x.float(), size=(image_size, image_size), mode="bilinear",
                        antialias=True, align_corners=False)
    return out.round().clamp(0, 255).to(torch.uint8)


def _cifar10_subset(total: int, image_size: int, seed: int, split: str = TRAIN):
    # imported here, not at the top: torchvision.datasets costs ~1.3 s of start-up for
    # every command, and only --data cifar10 needs it
    from torchvision.datasets import CIFAR10

    root = data_dir() / "cifar10"
    try:
        dataset = CIFAR10(str(root), train=split == TRAIN, download=True)
    except Exception as err:  # offline, blocked, corrupt: all end the same way
        raise DataError(
            f"could not download CIFAR-10 ({split} split) into {root} "
            f"({type(err).__name__}: {err}). Offline? Use a local copy: --data "
            f"imagefolder:DIR, where DIR/{split} holds one folder of images per class "
            "(e.g. the unpacked cifar10-jpeg.tar)"
        ) from err
    index = _choose(len(dataset.data), total, seed, "CIFAR-10", split)
    x = torch.from_numpy(dataset.data[index.numpy()]).permute(0, 3, 1, 2).contiguous()
    y = torch.as_tensor(dataset.targets)[index]
    return resize(x, image_size), y, len(dataset.classes)


def _list_imagefolder(root: Path) -> tuple[list[Path], list[int], list[str]]:
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    if not classes:
        raise DataError(f"{root} has no class folders (expected {root}/<class>/*.jpg)")
    files, labels = [], []
    for label, name in enumerate(classes):
        found = sorted(p for p in (root / name).iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES)
        files += found
        labels += [label] * len(found)
    return files, labels, classes


def _cache_file(folder: Path, total: int, image_size: int, seed: int,
                split: str = TRAIN) -> Path:
    key = f"{folder}|{split}|{total}|{image_size}|{seed}"
    digest = hashlib.sha1(key.encode()).hexdigest()[:16]
    test = "" if split == TRAIN else f"-{split}"
    return data_dir() / "decoded" / f"{folder.name}{test}-{total}-{image_size}px-{digest}.pt"


def _imagefolder_subset(folder: Path, total: int, image_size: int, seed: int,
                        split: str = TRAIN):
    root = folder / split
    if not root.is_dir():
        need = ("imagefolder:DIR needs DIR/train/<class>/*.jpg" if split == TRAIN else
                "the transfer check scores the test split (DIR/test/<class>/*.jpg)")
        raise DataError(f"{folder} has no {split}/ folder: {need}")
    cache = _cache_file(folder, total, image_size, seed, split)
    if cache.exists():
        saved = torch.load(cache, weights_only=True)
        return saved["x"], saved["y"], int(saved["n_classes"])
    files, labels, classes = _list_imagefolder(root)
    index = _choose(len(files), total, seed, str(root), split).tolist()
    x = decode_images([files[i] for i in index], image_size)
    y = torch.tensor([labels[i] for i in index], dtype=torch.int64)
    buffer = io.BytesIO()
    torch.save({"x": x, "y": y, "n_classes": len(classes)}, buffer)
    write_atomic(cache, buffer.getvalue())      # workers may race: each writes whole files
    return x, y, len(classes)


def decode_images(files: list[Path], image_size: int) -> torch.Tensor:
    """Decode image files to one uint8 [N, 3, S, S] tensor.

    torchvision.io (~0.1 ms per CIFAR JPEG) where it still decodes (deprecated since
    torchvision 0.29), otherwise PIL (~0.2 ms).
    """
    out = torch.empty((len(files), 3, image_size, image_size), dtype=torch.uint8)
    decode = _decoder()
    for i, path in enumerate(files):
        out[i] = resize(decode(path)[None], image_size)[0]
    return out


def _decoder():
    try:
        import warnings

        from torchvision.io import ImageReadMode, decode_image, read_file
    except ImportError:
        decode_image = None
    if decode_image is not None:
        def decode(path):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                return decode_image(read_file(str(path)), mode=ImageReadMode.RGB)
        return decode

    import numpy as np
    from PIL import Image

    def decode_pil(path):
        with Image.open(path) as img:
            return torch.from_numpy(np.asarray(img.convert("RGB")).copy()).permute(2, 0, 1)
    return decode_pil


# ---------------------------------------------------------------------------------------
# on the device
# ---------------------------------------------------------------------------------------
class DeviceData:
    """The splits on the training device, with on-device batching and augmentation.

    Normalisation statistics (per-channel mean and std) come from the train part only.
    A test sample (``splits.test_x``), when there is one, is kept beside the validation
    images and read only through ``split="test"`` of :meth:`eval_batches`.

    Augmentation is one ``gather`` per batch: the train images are kept padded by
    ``translate`` pixels (edge replication) in HWC layout, and a table holds, for each
    of the ``(2·translate + 1)² × 2`` (shift, flip) combinations, the source pixel of
    every output pixel.  Gathering with the table rows of the batch's draws crops,
    translates and flips in one pass, and its HWC result *is* a ``channels_last``
    NCHW tensor, so no layout copy follows.
    """

    def __init__(self, splits: ImageSplits, device: str | torch.device = "cpu", *,
                 translate: int = 2, flip: bool = True, channels_last: bool = True):
        self.device = torch.device(device)
        self.translate, self.flip, self.channels_last = int(translate), bool(flip), channels_last
        self.n_classes = splits.n_classes
        self.image_size = size = splits.image_size
        self.train_x = splits.train_x.to(self.device)
        self.train_y = splits.train_y.to(self.device)
        self.val_x = splits.val_x.to(self.device)
        self.val_y = splits.val_y.to(self.device)
        empty = torch.empty((0,) + tuple(splits.val_x.shape[1:]), dtype=torch.uint8)
        self.test_x = (splits.test_x if splits.test_x is not None else empty).to(self.device)
        self.test_y = (splits.test_y if splits.test_y is not None else
                       torch.empty(0, dtype=torch.int64)).to(self.device)
        pixels = splits.train_x.float()
        self.mean = pixels.mean(dim=(0, 2, 3)).view(1, 3, 1, 1).to(self.device)
        self.std = pixels.std(dim=(0, 2, 3)).clamp_min(1.0).view(1, 3, 1, 1).to(self.device)
        self._scale, self._shift = 1.0 / self.std, -self.mean / self.std
        p = self.translate
        padded = F.pad(self.train_x.float(), (p, p, p, p), mode="replicate") if p else \
            self.train_x.float()
        side = size + 2 * p
        # [N, side*side, 3] uint8: HWC rows of the padded images
        self._padded = padded.to(torch.uint8).permute(0, 2, 3, 1).reshape(-1, side * side, 3)
        rows = torch.arange(size).view(-1, 1)
        cols = torch.arange(size).view(1, -1)
        table = []
        for dy in range(2 * p + 1):
            for dx in range(2 * p + 1):
                for flipped in (False, True):
                    c = (size - 1 - cols) if flipped else cols
                    table.append(((rows + dy) * side + (c + dx)).reshape(-1))
        self._table = torch.stack(table).to(self.device)   # [(2p+1)² · 2, size²]
        self._n_codes = (2 * p + 1) ** 2

    def fingerprint(self) -> str:
        """A content fingerprint of the train and validation images and labels (16 hex
        digits of their SHA-256): equal exactly when a task trains and validates on the
        same pixels, wherever they were loaded from."""
        digest = hashlib.sha256()
        for tensor in (self.train_x, self.train_y, self.val_x, self.val_y):
            digest.update(str(tuple(tensor.shape)).encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        return digest.hexdigest()[:16]

    @property
    def n_train(self) -> int:
        return int(self.train_x.shape[0])

    @property
    def n_val(self) -> int:
        return int(self.val_x.shape[0])

    @property
    def n_test(self) -> int:
        """Images of the test sample (0: the data has no test split)."""
        return int(self.test_x.shape[0])

    def steps_per_epoch(self, batch_size: int) -> int:
        """Full batches per epoch (the last partial batch is dropped: fixed batch size)."""
        steps = self.n_train // batch_size
        if steps < 1:
            raise ValueError(f"batch_size {batch_size} exceeds the {self.n_train} train images")
        return steps

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 NCHW (any layout) -> normalised float, channels_last when asked."""
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        # (x - mean) / std in one elementwise pass, which keeps the memory layout
        return torch.addcmul(self._shift, x.float(), self._scale)

    def epoch(self, batch_size: int, generator: torch.Generator, augment: bool = True):
        """Yield ``(x, y)`` batches of one epoch in a random order drawn from ``generator``.

        ``generator`` must live on the data's device; the permutation, the shifts and the
        flips all come from it, so a seed fixes the whole data stream.
        """
        n = self.n_train
        order = torch.randperm(n, generator=generator, device=self.device)
        steps = self.steps_per_epoch(batch_size)
        augment = augment and (self.translate > 0 or self.flip)
        if augment:
            shift = torch.randint(0, self._n_codes, (n,), generator=generator,
                                  device=self.device)
            flip = torch.randint(0, 2, (n,), generator=generator, device=self.device)
            codes = shift * 2 + (flip if self.flip else 0)
        for s in range(steps):
            idx = order[s * batch_size:(s + 1) * batch_size]
            x = self.augmented(idx, codes[idx]) if augment else self.train_x[idx]
            yield self.normalise(x), self.train_y[idx]

    def augmented(self, idx: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """Images ``idx`` translated/flipped by ``codes`` (rows of the table), uint8
        NCHW in channels_last layout."""
        size = self.image_size
        where = self._table[codes].unsqueeze(2).expand(-1, -1, 3)
        hwc = torch.gather(self._padded[idx], 1, where)       # [B, size², 3]
        return hwc.view(-1, size, size, 3).permute(0, 3, 1, 2)

    def validation(self, batch_size: int = 1000):
        """Yield normalised, unaugmented validation batches in a fixed order."""
        return self.eval_batches(batch_size, VAL)

    def eval_batches(self, batch_size: int = 1000, split: str = VAL):
        """Yield normalised, unaugmented batches of ``split`` (val | test) in a fixed order."""
        if split not in (VAL, TEST):
            raise ValueError(f"split must be {VAL!r} or {TEST!r}, got {split!r}")
        x, y = (self.val_x, self.val_y) if split == VAL else (self.test_x, self.test_y)
        for start in range(0, int(x.shape[0]), batch_size):
            yield self.normalise(x[start:start + batch_size]), y[start:start + batch_size]


class TensorData:
    """Train / validation / test ``(x, y)`` tensor pairs on ``device``, batched in a
    seeded random order (full batches only: the last partial batch of an epoch is
    dropped, as :class:`DeviceData` does)."""

    def __init__(self, train: tuple, val: tuple, test: tuple,
                 device: str | torch.device = "cpu"):
        self.device = torch.device(device)
        splits = {"train": train, VAL: val, TEST: test}
        for name, pair in splits.items():
            if len(pair) != 2 or len(pair[0]) != len(pair[1]):
                raise ValueError(f"the {name} split must be an (x, y) pair of equal length")
        if len(train[0]) < 1 or len(val[0]) < 1:
            raise ValueError("the train and validation splits need at least one example")
        (self.train_x, self.train_y), (self.val_x, self.val_y), (self.test_x, self.test_y) = (
            (x.to(self.device), y.to(self.device)) for x, y in splits.values())

    @property
    def n_train(self) -> int:
        return len(self.train_x)

    @property
    def n_val(self) -> int:
        return len(self.val_x)

    @property
    def n_test(self) -> int:
        return len(self.test_x)

    def steps_per_epoch(self, batch_size: int) -> int:
        steps = self.n_train // batch_size
        if steps < 1:
            raise ValueError(f"batch_size {batch_size} exceeds the {self.n_train} train "
                             "examples")
        return steps

    def epoch(self, batch_size: int, generator: torch.Generator):
        """``(x, y)`` batches of one epoch, in an order drawn from ``generator`` (which
        lives on the data's device)."""
        order = torch.randperm(self.n_train, generator=generator, device=self.device)
        for s in range(self.steps_per_epoch(batch_size)):
            idx = order[s * batch_size:(s + 1) * batch_size]
            yield self.train_x[idx], self.train_y[idx]

    def eval_batches(self, batch_size: int = 1000, split: str = VAL):
        """Batches of ``split`` (val | test) in their fixed order."""
        if split not in (VAL, TEST):
            raise ValueError(f"split must be {VAL!r} or {TEST!r}, got {split!r}")
        x, y = (self.val_x, self.val_y) if split == VAL else (self.test_x, self.test_y)
        for start in range(0, len(x), batch_size):
            yield x[start:start + batch_size], y[start:start + batch_size]
