"""Which devices each trial slot gets: pure functions of the GPUs the sweep may use, the GPUs a
trial needs and ``trials_per_gpu``, so that every rule is tested without a GPU.

Rules: a one-GPU trial goes to the least used GPU (slot s on GPU s mod #GPUs), at most
``trials_per_gpu`` trials on one GPU; a trial of k > 1 GPUs gets k GPUs of its own, never
shared; ``trainer.devices=-1`` (or auto) takes every GPU the sweep has, so one trial at a time.
A trial sees exactly its devices: CUDA_VISIBLE_DEVICES lists them (empty for CPU trials).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

from sgmod_study.errors import ConfigError
from sgmod_study.sweeper.settings import ALL_GPUS

GPU_ACCELERATORS = ("gpu", "cuda", "auto")


def sweep_gpus(environ: Mapping[str, str] = os.environ, count: int | None = None) -> list[str]:
    """The GPUs the sweep may use: its own CUDA_VISIBLE_DEVICES as given (indices, UUIDs or MIG
    ids), or every GPU the driver shows (``count``: how many, if known)."""
    visible = environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [d.strip() for d in visible.split(",") if d.strip()]
    return [str(i) for i in range(_gpu_count() if count is None else count)]


def _gpu_count() -> int:
    try:
        import torch

        return torch.cuda.device_count()
    except Exception:  # no torch build with CUDA, no driver: no GPU
        return 0


def trial_gpus(trainer: Mapping) -> int:
    """The GPUs one trial needs, from its ``trainer`` config: 0 for a CPU trial, ALL_GPUS for
    ``devices=-1`` or ``auto``, else the count. A list of device indices is refused: in a sweep
    the sweeper picks each trial's GPUs, and the trial numbers them from 0."""
    accelerator = str(trainer.get("accelerator", "auto")).lower()
    if accelerator not in GPU_ACCELERATORS:
        return 0
    devices = trainer.get("devices", 1)
    if devices in (-1, "-1", "auto"):
        return ALL_GPUS
    if isinstance(devices, str) and devices.strip().isdigit():
        devices = int(devices)
    if isinstance(devices, bool) or not isinstance(devices, int) or devices < 1:
        raise ConfigError(
            f"trainer.devices={devices!r} is not allowed in a sweep: give the number of GPUs a trial needs "
            "(e.g. trainer.devices=2) or -1 for all of them; the sweeper picks each trial's GPUs"
        )
    return devices


def assign_gpus(gpus: Sequence[str], n_jobs: int, per_trial: int, trials_per_gpu: int) -> list[list[str] | None]:
    """Each slot's devices (CUDA_VISIBLE_DEVICES as a list): None when the sweep has no GPU (the
    slots share the CPU, the environment stays as it is), [] for CPU trials on a GPU machine.
    A combination that cannot fit is refused with one line."""
    if not gpus:
        return [None] * n_jobs
    if per_trial == 0:
        return [[] for _ in range(n_jobs)]
    have = f"the sweep has {len(gpus)} ({','.join(gpus)}: its CUDA_VISIBLE_DEVICES, or every GPU)"
    k = len(gpus) if per_trial == ALL_GPUS else per_trial
    shown = "-1" if per_trial == ALL_GPUS else str(k)
    if k > len(gpus):
        raise ConfigError(f"trainer.devices={shown} is not possible in this sweep: a trial needs {k} GPUs and {have}")
    if k > 1 and trials_per_gpu > 1:
        raise ConfigError(
            f"hydra.sweeper.trials_per_gpu={trials_per_gpu} is not allowed with trainer.devices={shown}: "
            "trials of several GPUs never share them; use trials_per_gpu=1"
        )
    if k == 1 and n_jobs > len(gpus) * trials_per_gpu:
        raise ConfigError(
            f"hydra.sweeper.n_jobs={n_jobs} is not possible: {n_jobs} one-GPU trials at once at trials_per_gpu="
            f"{trials_per_gpu} need {-(-n_jobs // trials_per_gpu)} GPUs and {have}; allowed: n_jobs <= "
            f"{len(gpus) * trials_per_gpu}, or a higher trials_per_gpu"
        )
    if k > 1 and n_jobs * k > len(gpus):
        raise ConfigError(
            f"hydra.sweeper.n_jobs={n_jobs} is not possible: {n_jobs} trials at once of {k} GPUs each "
            f"(trainer.devices={shown}) need {n_jobs * k} GPUs and {have}; allowed: n_jobs <= {len(gpus) // k}"
        )
    if k == 1:
        return [[gpus[slot % len(gpus)]] for slot in range(n_jobs)]
    return [list(gpus[slot * k : (slot + 1) * k]) for slot in range(n_jobs)]


def trial_threads(n_jobs: int) -> int:
    """CPU threads per trial process: the cores shared out among the trials that run at once.
    With a thread per core each, 2 trials on 2 cores ran at 0.48x the throughput of one at a
    time (docs/benchmarks.md). An OMP_NUM_THREADS set by the user wins."""
    return max(1, len(os.sched_getaffinity(0)) // max(1, n_jobs))
