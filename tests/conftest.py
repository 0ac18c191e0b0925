"""Shared helpers: compose the real Hydra config, run src/train.py as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

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
