"""Shared helpers: compose the real Hydra config, run src/train.py as a user would."""

from __future__ import annotations

import gzip
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from sgmod_study.data import FASHION_MNIST_FILES

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"

# A run that takes seconds on 2 CPU cores: scikit-learn's digits, small model, few steps.
TINY = [
    "data=digits",
    "trainer=cpu",
    "trainer.max_epochs=2",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "trainer.log_every_n_steps=5",
    "diagnostics.every_n_steps=5",
]


def pytest_collection_modifyitems(config, items):
    """Tests marked ``gpu`` are skipped where CUDA is not available (CI, CPU machines)."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def compose_config(overrides: list[str], output_dir: Path):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("train", overrides=[*overrides, f"output_dir={output_dir}"])


def run_train(args: list[str], run_dir: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    """python src/train.py <args> in a subprocess, output in run_dir."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, str(ROOT / "src" / "train.py"), *args, f"hydra.run.dir={run_dir}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def tiny_overrides() -> list[str]:
    return list(TINY)


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


FASHION_SAMPLE = ROOT / "tests" / "data" / "fashion_mnist_test_sample.npz"


def load_fashion_sample() -> tuple[np.ndarray, np.ndarray]:
    """256 real Fashion-MNIST test images (uint8, 28x28) and labels, shipped with the tests."""
    with np.load(FASHION_SAMPLE) as sample:
        return sample["images"], sample["labels"]


@pytest.fixture(scope="session")
def fashion_sample_dir(tmp_path_factory) -> Path:
    """The shipped real sample as a Fashion-MNIST folder (the same images as train and test set)."""
    folder = tmp_path_factory.mktemp("fashion_sample")
    images, labels = load_fashion_sample()
    for name, array in zip(FASHION_MNIST_FILES, (images, labels, images, labels), strict=True):
        write_idx(folder / f"{name}.gz", array, gz=True)
    return folder


def gan_overrides(data_dir: Path) -> list[str]:
    """A GAN run of a few seconds on the shipped sample."""
    return [
        "task=gan",
        f"data.data_dir={data_dir}",
        "data.system_dir=/nonexistent",
        "data.download=false",
        "data.batch_size=32",
        "data.val_size=64",
        "model.width=8",
        "model.latent_dim=16",
        "task.eval_samples=64",
        "task.kid_subset_size=32",
        "task.grid_size=16",
        "trainer=cpu",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=3",
        "trainer.enable_progress_bar=false",
        "trainer.enable_model_summary=false",
        "trainer.log_every_n_steps=1",
        "diagnostics.every_n_steps=1",
        "activation.impl=reference",  # no compile of the fused op in every process (test_sgmod_op.py tests it)
    ]


@pytest.fixture(scope="module")
def postgres_url():
    """A throw-away PostgreSQL server on loopback (.ci/run installs Debian's postgresql)."""
    bindirs = sorted(Path("/usr/lib/postgresql").glob("*/bin"))
    if not bindirs:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL server binaries missing: .ci/run should have installed postgresql")
        pytest.skip("PostgreSQL server binaries missing (apt-get install postgresql)")
    bindir = bindirs[-1]
    data = Path(tempfile.mkdtemp(prefix="sgmod-pg-"))
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if as_postgres:
        shutil.chown(data, "postgres")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    subprocess.run(
        [*as_postgres, str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"],
        check=True,
        capture_output=True,
    )
    options = f"-p {port} -k {data} -c listen_addresses=127.0.0.1"
    # -l: the server must not inherit our pipes, or run() waits for it to exit
    subprocess.run(
        [*as_postgres, str(bindir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(data / "log"), "-w", "start"],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/postgres"
    subprocess.run(
        [*as_postgres, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"], capture_output=True
    )
    shutil.rmtree(data, ignore_errors=True)
