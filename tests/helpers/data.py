"""Data set files for the tests: IDX files, a fake Fashion-MNIST folder, the shipped real sample."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

from helpers.runs import ROOT
from sgmod_study.data import FASHION_MNIST_FILES

FASHION_SAMPLE = ROOT / "tests" / "data" / "fashion_mnist_test_sample.npz"


def write_idx(path: Path, array: np.ndarray, gz: bool) -> None:
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    opener = gzip.open if gz else open
    with opener(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def make_fake_fashion_mnist(folder: Path, n_train: int = 40, n_test: int = 10, fill: int = 0, gz: bool = True) -> Path:
    """The four IDX files with images all equal to ``fill`` (which copy was read is visible)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    arrays = [
        np.full((n_train, 28, 28), fill),
        rng.integers(0, 10, n_train),
        np.full((n_test, 28, 28), fill),
        rng.integers(0, 10, n_test),
    ]
    for name, array in zip(FASHION_MNIST_FILES, arrays, strict=True):
        write_idx(folder / (f"{name}.gz" if gz else name), array, gz)
    return folder


def load_fashion_sample() -> tuple[np.ndarray, np.ndarray]:
    """256 real Fashion-MNIST test images (uint8, 28x28) and labels, shipped with the tests."""
    with np.load(FASHION_SAMPLE) as sample:
        return sample["images"], sample["labels"]


def write_fashion_sample(folder: Path) -> Path:
    """The shipped real sample as a Fashion-MNIST folder (the same images as train and test set)."""
    folder.mkdir(parents=True, exist_ok=True)
    images, labels = load_fashion_sample()
    for name, array in zip(FASHION_MNIST_FILES, (images, labels, images, labels), strict=True):
        write_idx(folder / f"{name}.gz", array, gz=True)
    return folder
