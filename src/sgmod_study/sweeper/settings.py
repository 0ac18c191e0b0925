"""The sweeper's settings, each checked before anything runs (a bad one: one line, exit 2)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import optuna

from sgmod_study.errors import ConfigError
from sgmod_study.sweeper.storage import check_study_name

ALL_GPUS = -1  # gpus_per_trial of trainer.devices=-1 or auto on a GPU: every GPU the sweep may use


@dataclass
class SweepSettings:
    study_name: str
    direction: str | list[str] = "minimize"
    n_trials: int = 20
    n_jobs: int = 1
    storage: str | None = None
    sampler: optuna.samplers.BaseSampler | None = None
    pruner: Mapping | None = None  # a Hydra `_target_` config, rebuilt in every trial process
    max_failure_rate: float = 0.0
    enqueue_trials: list[Mapping] = field(default_factory=list)
    trial_timeout: float | None = None
    time_limit: float | None = None  # seconds for the whole worker: see scheduler.starts_in_time
    trials_per_gpu: int = 1
    custom_search_space: Callable | None = None  # fn(cfg, trial) -> dict of extra overrides, or None (suggested)
    fixed_setup: Mapping | None = None  # the trials' fixed configuration (see fixed_setup()); None: unchecked
    metric_names: list[str] | None = None  # the optimized metrics, named in the study (optuna-dashboard)
    gpus_per_trial: int = 1  # from trainer.accelerator and trainer.devices; 0: CPU trials, ALL_GPUS: every GPU
    heartbeat_interval: int = 10  # seconds between a worker's heartbeats (liveness.py)
    heartbeat_grace: int = 60  # seconds without a heartbeat after which a worker counts as gone

    def __post_init__(self) -> None:
        check_settings(self)


DIRECTIONS = ("minimize", "maximize")


def check_settings(s: SweepSettings) -> None:
    """Every sweeper setting before anything runs, each bad one as one line (exit 2)."""
    _check_whole("n_trials", s.n_trials, "the finished trials the study should have")
    _check_whole("n_jobs", s.n_jobs, "trials running at once")
    _check_whole("trials_per_gpu", s.trials_per_gpu, "trials sharing one GPU")
    _check_whole("heartbeat_interval", s.heartbeat_interval, "seconds between a worker's heartbeats")
    _check_whole("heartbeat_grace", s.heartbeat_grace, "seconds without a heartbeat before a worker counts as gone")
    if s.heartbeat_grace <= s.heartbeat_interval:
        raise ConfigError(
            f"hydra.sweeper.heartbeat_grace={s.heartbeat_grace} is not allowed with heartbeat_interval="
            f"{s.heartbeat_interval}: it must be larger (a worker counts as gone after that long without a heartbeat)"
        )
    rate = s.max_failure_rate
    if not _is_number(rate) or not 0 <= rate <= 1:
        raise ConfigError(
            f"hydra.sweeper.max_failure_rate={rate!r} is not allowed: it must be a number from 0 to 1 "
            "(the share of a run's trials that may fail before the sweep stops)"
        )
    _check_seconds("trial_timeout", s.trial_timeout)
    _check_seconds("time_limit", s.time_limit)
    directions = s.direction if isinstance(s.direction, list) else [s.direction]
    if not directions or any(d not in DIRECTIONS for d in directions):
        raise ConfigError(
            f"hydra.sweeper.direction={s.direction!r} is not allowed: it must be minimize or maximize, "
            "or a list of them (one per optimized_metric)"
        )
    check_study_name(s.study_name)


def check_directions(direction, optimized_metric) -> None:
    """One direction per optimized metric (a single direction for a single metric)."""
    metrics = list(optimized_metric) if isinstance(optimized_metric, (list, tuple)) else [optimized_metric]
    directions = direction if isinstance(direction, list) else [direction]
    if len(directions) != len(metrics):
        raise ConfigError(
            f"hydra.sweeper.direction={direction!r} is not allowed with optimized_metric={optimized_metric!r}: "
            f"it needs one direction (minimize or maximize) per metric, {len(metrics)} here"
        )


def check_workers(workers) -> None:
    _check_whole("workers", workers, "sweep workers started through the Hydra launcher")


def _check_whole(name: str, value, meaning: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"hydra.sweeper.{name}={value!r} is not allowed: it must be a whole number >= 1 ({meaning})")


def _check_seconds(name: str, value) -> None:
    if value is not None and (not _is_number(value) or not value > 0):
        raise ConfigError(f"hydra.sweeper.{name}={value!r} is not allowed: it must be null (no limit) or seconds > 0")


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
