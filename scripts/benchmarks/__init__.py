"""Benchmarks: python scripts/benchmark.py {op,step,sweep} [--size ci|full].

Each benchmark module has ``run(size=..., ...) -> dict`` (JSON-able: what was measured, on
which machine, and the ratios the speed targets are stated in) and ``format_table(result)``.
"""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

import torch


def machine() -> dict:
    """What the figures were measured on."""
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cuda_device": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
    }


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def synchronize(device: str | torch.device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def run_checked(command: list[str], cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``command`` (output captured); on a non-zero exit, one line naming it and its last output line."""
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        last = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["(no output)"]
        raise RuntimeError(f"{' '.join(command[1:])} exited with {done.returncode}: {last[0]}")
    return done
