"""Which configuration of a sweep a confirm part retrains: its best trial, or a recommended
default (rounded medians of its top quarter, less tied to one lucky seed)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import optuna

from sgmod_study.errors import ConfigError

TOP_SHARE = 0.25  # the top quarter of a sweep's finished trials says which values work


def finished_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))


def best_trial(trials: Sequence[optuna.trial.FrozenTrial]) -> optuna.trial.FrozenTrial:
    """The finished trial with the highest first objective (the studies here maximize)."""
    return max(trials, key=lambda t: t.values[0])


def top_trials(trials: Sequence[optuna.trial.FrozenTrial], share: float = TOP_SHARE) -> list:
    """The best ``share`` of ``trials`` (finished ones), at least 3, best first."""
    ranked = sorted(trials, key=lambda t: t.values[0], reverse=True)
    return ranked[: max(3, round(share * len(ranked)))]


def is_log(trial: optuna.trial.FrozenTrial, key: str) -> bool:
    return bool(getattr(trial.distributions[key], "log", False))


def typical(trials: Sequence[optuna.trial.FrozenTrial], key: str) -> float:
    """The median of parameter ``key`` over ``trials``: geometric for a log-scale parameter."""
    import statistics

    values = [float(t.params[key]) for t in trials]
    if is_log(trials[0], key):
        return math.exp(statistics.median(math.log(v) for v in values))
    return float(statistics.median(values))


def rounded(value: float, log: bool) -> float:
    """A value a person would type: one significant digit on a log scale, else the nearest 0.5."""
    return float(f"{value:.1g}") if log else round(value * 2) / 2


def chosen_overrides(study: optuna.Study, pick: str) -> list[str]:
    """The ``pick`` ("best" or "recommended") configuration of a finished sweep, as overrides."""
    trials = finished_trials(study)
    if not trials:
        raise ConfigError(f"part={study.study_name} has no finished trial yet; run it first")
    if pick == "best":
        return [f"{key}={value}" for key, value in sorted(best_trial(trials).params.items())]
    top = top_trials(trials)
    return [f"{key}={rounded(typical(top, key), is_log(top[0], key)):g}" for key in sorted(top[0].params)]
