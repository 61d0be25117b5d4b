import os
from pathlib import Path

import pytest

CIFAR_DIR = os.environ.get("EVO_NOS_CIFAR_DIR")


@pytest.fixture(scope="session")
def cifar_dir() -> Path:
    """The unpacked CIFAR-10 copy (train/ and test/ ImageFolders), or skip."""
    if not CIFAR_DIR:
        pytest.skip("EVO_NOS_CIFAR_DIR is not set: unpack ../shared/data/cifar10-jpeg.tar "
                    "and point EVO_NOS_CIFAR_DIR at it (.ci/run does this)")
    path = Path(CIFAR_DIR)
    if not (path / "train").is_dir():
        pytest.skip(f"EVO_NOS_CIFAR_DIR={path} has no train/ folder")
    return path
