"""Which trial of a sweep is best, in the one place that knows whether the sweep maximises or
minimises; and which configuration a confirm part retrains: the best trial, or a recommended
default (rounded medians of its top quarter, less tied to one lucky seed), or a grid's best cell
(its settings over all its seeds, failed runs counted)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import optuna

from sgmod_study.errors import ConfigError
from sgmod_study.study.spec import Part
from sgmod_study.sweeper.storage import diverged

SEED = "seed"  # the grid parameter a cell's runs differ in
COLLAPSED = "val/collapsed"  # a run's final-evaluation flag (the GAN's), a user attribute of its trial

TOP_SHARE = 0.25  # the top quarter of a sweep's finished trials says which values work


def finished_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))


def ranked(items: Sequence, maximize: bool = True, value: Callable = lambda t: t.values[0]) -> list:
    """``items`` (finished trials, or runs.jsonl rows with ``value=row_value``), best first by their
    first objective: the highest when the sweep maximises, the lowest when it minimises."""
    return sorted(items, key=value, reverse=maximize)


def row_value(row: Mapping) -> float:
    return row["values"][0]


def best_trial(trials: Sequence[optuna.trial.FrozenTrial], maximize: bool = True) -> optuna.trial.FrozenTrial:
    return ranked(trials, maximize)[0]


def best_row(rows: Sequence[Mapping], maximize: bool = True) -> Mapping | None:
    """The best finished row of a runs.jsonl, or None."""
    finished = [r for r in rows if r["state"] == "COMPLETE" and r.get("values")]
    return ranked(finished, maximize, row_value)[0] if finished else None


def maximizes(study: optuna.Study) -> bool:
    return study.direction == optuna.study.StudyDirection.MAXIMIZE


def best_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """A sweep's best finished trial, as a list: for several objectives, its Pareto front."""
    if len(study.directions) > 1:
        return study.best_trials
    trials = finished_trials(study)
    return [best_trial(trials, maximizes(study))] if trials else []


def top_trials(trials: Sequence[optuna.trial.FrozenTrial], share: float = TOP_SHARE, maximize: bool = True) -> list:
    """The best ``share`` of ``trials`` (finished ones), at least 3, best first."""
    return ranked(trials, maximize)[: max(3, round(share * len(trials)))]


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


def failed(trial: optuna.trial.FrozenTrial) -> bool:
    """A run that diverged, or whose final evaluation flagged a collapse: a result, and a failure."""
    return diverged(trial) or trial.user_attrs.get(COLLAPSED) == 1


def cells(trials: Sequence[optuna.trial.FrozenTrial]) -> dict[tuple, list[optuna.trial.FrozenTrial]]:
    """A grid's trials with a result (finished or diverged) by cell: their parameters but the seed."""
    grouped: dict[tuple, list] = {}
    for t in trials:
        if t.state == optuna.trial.TrialState.COMPLETE or diverged(t):
            key = tuple(sorted((k, v) for k, v in t.params.items() if k != SEED))
            grouped.setdefault(key, []).append(t)
    return grouped


def best_cell(trials: Sequence[optuna.trial.FrozenTrial], maximize: bool = True) -> tuple:
    """The grid cell whose runs rank best by ``cell_rank``."""

    def score(item: tuple) -> tuple:
        runs = item[1]
        return cell_rank([failed(t) for t in runs], [t.values[0] if t.values else None for t in runs], maximize)

    return min(cells(trials).items(), key=score)[0]


def cell_rank(failures: Sequence[bool], values: Sequence[float | None], maximize: bool) -> tuple[int, bool, float]:
    """How a grid cell's runs (each failed or not, with its objective or None) rank, lowest best: the
    fewest failed, then a cell with a run that did not fail, then the best mean objective over those
    runs; where every run failed, over all its runs with a value (a collapsed run's FID is still a
    measurement: without it a grid whose every run collapsed had its first cell picked). The report
    ranks its rows with it too (``outcomes.cell_score``)."""
    kept = [v for f, v in zip(failures, values, strict=True) if not f and v is not None]
    pool = kept or [v for v in values if v is not None]
    sign = -1 if maximize else 1
    return sum(failures), not kept, sign * sum(pool) / len(pool) if pool else math.inf


def chosen_overrides(
    study: optuna.Study, pick: str, where: Sequence[tuple[str, object]] = (), trial: int | None = None
) -> list[str]:
    """The ``pick`` ("best" or "recommended") configuration of a finished sweep, or its ``trial``
    ("trial"), or the "best_cell" of a finished grid (among its cells with the parameters
    ``where``), as overrides."""
    if pick == "trial":
        found = [t for t in study.get_trials(deepcopy=False) if t.number == trial]
        if not found:
            raise ConfigError(f"part={study.study_name} has no trial {trial}")
        return [f"{key}={value}" for key, value in sorted(found[0].params.items())]
    if pick == "best_cell":
        trials = [t for t in study.get_trials(deepcopy=False) if all(t.params.get(k) == v for k, v in where)]
        if not cells(trials):
            shown = f" with {', '.join(f'{k}={v}' for k, v in where)}" if where else ""
            raise ConfigError(f"part={study.study_name} has no finished trial{shown} yet; run it first")
        return [f"{key}={value}" for key, value in best_cell(trials, maximizes(study))]
    # a finished trial whose final evaluation flagged a collapse is a result, not a configuration to retrain
    trials = [t for t in finished_trials(study) if not failed(t)]
    if not trials:
        raise ConfigError(f"part={study.study_name} has no finished trial that did not fail yet; run it first")
    if pick == "best":
        return [f"{key}={value}" for key, value in sorted(best_trial(trials, maximizes(study)).params.items())]
    top = top_trials(trials, maximize=maximizes(study))
    return [f"{key}={rounded(typical(top, key), is_log(top[0], key)):g}" for key in sorted(top[0].params)]


def confirm_overrides(swept: optuna.Study, part: Part) -> list[str]:
    """What confirm ``part`` retrains of the finished ``swept`` part: its pick, less the settings
    the part's own overrides set (those win: a confirm may change one setting of its pick)."""
    own = {o.split("=", 1)[0] for o in part.overrides}
    chosen = chosen_overrides(swept, part.pick, part.where, part.trial)
    return [o for o in chosen if o.split("=", 1)[0] not in own]
