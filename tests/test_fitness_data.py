"""Data sources, the decoded-image cache, and on-device batching/augmentation."""
import urllib.error

import numpy as np
import pytest
import torch
from PIL import Image

from evo_nos.fitness import data as data_mod
from evo_nos.fitness.data import (DataError, DataSpec, DeviceData, ImageSplits, load_images,
                                  parse_data_spec, synthetic_images)


@pytest.fixture
def data_home(tmp_path, monkeypatch):
    home = tmp_path / "data-home"
    monkeypatch.setenv("EVO_NOS_CACHE", str(home))
    return home


def _write_imagefolder(root, n_per_class=(3, 2), size=8):
    """PNG files (lossless) whose pixels encode (class, index): exact round trips."""
    expected = {}
    for label, n in enumerate(n_per_class):
        folder = root / "train" / f"class{label}"
        folder.mkdir(parents=True)
        for i in range(n):
            value = 40 * label + 10 * i + 5
            pixels = np.full((size, size, 3), value, dtype=np.uint8)
            pixels[0, 0] = (label, i, 7)
            Image.fromarray(pixels).save(folder / f"{i:04d}.png")
            expected[(label, i)] = value
    (root / "test").mkdir()
    return expected


# -- spec strings -------------------------------------------------------------------------
def test_parse_data_spec_accepts_the_three_sources(tmp_path):
    assert parse_data_spec("cifar10") == DataSpec("cifar10")
    assert parse_data_spec("synthetic") == DataSpec("synthetic")
    spec = parse_data_spec(f"imagefolder:{tmp_path}")
    assert spec.kind == "imagefolder" and spec.path == str(tmp_path.resolve())


def test_parse_data_spec_rejects_unknown_source_naming_the_valid_ones():
    with pytest.raises(DataError, match="imagefolder:DIR"):
        parse_data_spec("mnist")


# -- synthetic ----------------------------------------------------------------------------
def test_synthetic_is_a_function_of_its_seed():
    x1, y1 = synthetic_images(50, image_size=8, seed=3)
    x2, y2 = synthetic_images(50, image_size=8, seed=3)
    x3, _ = synthetic_images(50, image_size=8, seed=4)
    assert x1.dtype == torch.uint8 and x1.shape == (50, 3, 8, 8)
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert not torch.equal(x1, x3)


def test_load_images_splits_train_and_validation_sizes():
    splits = load_images("synthetic", n_train=70, n_val=30, image_size=8)
    assert splits.train_x.shape == (70, 3, 8, 8) and splits.val_x.shape == (30, 3, 8, 8)
    assert splits.train_y.shape == (70,) and splits.val_y.shape == (30,)
    assert splits.n_classes == 10


# -- imagefolder ---------------------------------------------------------------------------
def test_imagefolder_decodes_exact_pixels_and_labels(tmp_path, data_home):
    expected = _write_imagefolder(tmp_path / "set")
    splits = load_images(f"imagefolder:{tmp_path / 'set'}", n_train=3, n_val=2, image_size=8)
    seen = set()
    for x, y in zip(torch.cat([splits.train_x, splits.val_x]),
                    torch.cat([splits.train_y, splits.val_y])):
        label, index = int(x[0, 0, 0]), int(x[1, 0, 0])
        assert int(y) == label
        assert int(x[0, 3, 3]) == expected[(label, index)]
        seen.add((label, index))
    assert seen == set(expected)  # all 5 images, train and validation disjoint


def test_imagefolder_second_load_reads_the_cache_without_decoding(tmp_path, data_home,
                                                                  monkeypatch):
    _write_imagefolder(tmp_path / "set")
    first = load_images(f"imagefolder:{tmp_path / 'set'}", n_train=3, n_val=1, image_size=8)
    assert len(list((data_home / "decoded").glob("*.pt"))) == 1

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again although the cache exists")

    monkeypatch.setattr(data_mod, "decode_images", no_decoding)
    second = load_images(f"imagefolder:{tmp_path / 'set'}", n_train=3, n_val=1, image_size=8)
    assert torch.equal(first.train_x, second.train_x)
    assert torch.equal(first.val_y, second.val_y)


def test_imagefolder_resizes_to_the_task_image_size(tmp_path, data_home):
    _write_imagefolder(tmp_path / "set", size=8)
    splits = load_images(f"imagefolder:{tmp_path / 'set'}", n_train=3, n_val=2, image_size=4)
    assert splits.train_x.shape == (3, 3, 4, 4)


def test_imagefolder_without_train_folder_says_what_layout_is_expected(tmp_path, data_home):
    with pytest.raises(DataError, match="train/"):
        load_images(f"imagefolder:{tmp_path}", n_train=1, n_val=1)


def test_asking_for_more_images_than_exist_is_refused(tmp_path, data_home):
    _write_imagefolder(tmp_path / "set")
    with pytest.raises(DataError, match="has 5 training images"):
        load_images(f"imagefolder:{tmp_path / 'set'}", n_train=5, n_val=1, image_size=8)


def test_cifar10_offline_error_names_imagefolder(data_home, monkeypatch):
    import torchvision.datasets

    class Offline:
        def __init__(self, *args, **kwargs):
            raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", Offline)
    with pytest.raises(DataError, match="--data imagefolder:DIR"):
        load_images("cifar10", n_train=10, n_val=10)


def test_real_cifar10_copy_loads_as_uint8_32px(cifar_dir, data_home):
    splits = load_images(f"imagefolder:{cifar_dir}", n_train=40, n_val=10)
    assert splits.train_x.dtype == torch.uint8 and splits.train_x.shape == (40, 3, 32, 32)
    assert splits.n_classes == 10
    assert set(splits.train_y.tolist()) <= set(range(10))


# -- on the device ---------------------------------------------------------------------------
def _ramp_data(translate=2, flip=True, n=6, size=4):
    """Images whose pixel (c, i, j) is 16*i + j + c (distinct per position)."""
    i = torch.arange(size).view(size, 1)
    j = torch.arange(size).view(1, size)
    img = torch.stack([16 * i + j + c for c in range(3)]).to(torch.uint8)
    x = img.expand(n, 3, size, size).clone()
    x += torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1) * 100 % 128
    y = torch.arange(n) % 2
    splits = ImageSplits(x, y, x[:2].clone(), y[:2].clone(), n_classes=2)
    return DeviceData(splits, "cpu", translate=translate, flip=flip)


def test_centre_code_is_the_identity_and_odd_codes_flip():
    data = _ramp_data()
    idx = torch.arange(6)
    centre = (2 * 5 + 2) * 2  # dy = dx = 2 (no shift), not flipped
    assert torch.equal(data.augmented(idx, torch.full((6,), centre)), data.train_x)
    assert torch.equal(data.augmented(idx, torch.full((6,), centre + 1)), data.train_x.flip(3))


def test_translation_shifts_content_and_replicates_the_edge():
    data = _ramp_data()
    out = data.augmented(torch.tensor([0]), torch.tensor([0]))[0]  # dy = dx = 0: shift by +2
    src = data.train_x[0]
    assert torch.equal(out[:, 2:, 2:], src[:, :-2, :-2])      # content moved down-right by 2
    assert torch.equal(out[:, 0, 2:], src[:, 0, :-2])          # top rows replicate row 0
    assert int(out[0, 0, 0]) == int(src[0, 0, 0])


def test_epoch_visits_every_image_once_in_full_batches_without_augmentation():
    data = _ramp_data(n=6)
    gen = torch.Generator().manual_seed(0)
    batches = list(data.epoch(2, gen, augment=False))
    assert len(batches) == 3 and all(x.shape[0] == 2 for x, _ in batches)
    seen = torch.cat([x for x, _ in batches])
    expected = data.normalise(data.train_x)
    # every training image appears exactly once (match rows by their values)
    matches = [(seen == expected[k]).flatten(1).all(1).sum().item() for k in range(6)]
    assert matches == [1] * 6


def test_epoch_drops_the_partial_last_batch():
    data = _ramp_data(n=5)
    batches = list(data.epoch(2, torch.Generator().manual_seed(0)))
    assert [x.shape[0] for x, _ in batches] == [2, 2]


def test_same_generator_seed_gives_the_same_augmented_stream():
    data = _ramp_data()
    a = [x for x, _ in data.epoch(2, torch.Generator().manual_seed(5))]
    b = [x for x, _ in data.epoch(2, torch.Generator().manual_seed(5))]
    c = [x for x, _ in data.epoch(2, torch.Generator().manual_seed(6))]
    assert all(torch.equal(p, q) for p, q in zip(a, b))
    assert not all(torch.equal(p, q) for p, q in zip(a, c))


def test_batches_are_normalised_float_in_channels_last():
    splits = load_images("synthetic", n_train=200, n_val=20, image_size=8)
    data = DeviceData(splits, "cpu")
    x, y = next(data.epoch(200, torch.Generator().manual_seed(0), augment=False))
    assert x.dtype == torch.float32 and y.dtype == torch.int64
    assert x.is_contiguous(memory_format=torch.channels_last)
    per_channel_mean = x.mean(dim=(0, 2, 3))
    per_channel_std = x.std(dim=(0, 2, 3))
    assert torch.allclose(per_channel_mean, torch.zeros(3), atol=1e-4)
    assert torch.allclose(per_channel_std, torch.ones(3), atol=1e-3)
