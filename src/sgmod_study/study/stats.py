"""Every statistic the studies report, in one module: the mean's interval, paired tests (t, TOST,
the exact sign test), Holm's correction, a proportion's exact interval, the pooled standard
deviation of groups, the expected best of n trials and its bootstrap, a pooled two-sample machine
effect, fANOVA importances with their bootstrap, PED-ANOVA importances and derived coordinates for
them. numpy, scipy and optuna only: the report that uses them and the sweeper that writes
importances.json import no torch for them."""

from __future__ import annotations

import contextlib
import math
import multiprocessing
import os
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import optuna
from optuna.distributions import FloatDistribution
from optuna.trial import FrozenTrial, TrialState
from scipy import stats as scipy_stats

# Below this many forests one process is quicker than starting workers (each imports sklearn).
PARALLEL_FITS = 40


def mean_ci(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float, float, float]:
    """Mean, sample standard deviation and the t-distribution confidence interval."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, math.nan, math.nan, math.nan
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = scipy_stats.t.ppf((1 + confidence) / 2, n - 1) * std / math.sqrt(n)
    return mean, std, mean - half, mean + half


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (same order as given)."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    adjusted, running_max = [0.0] * len(p_values), 0.0
    for rank, i in enumerate(order):
        running_max = max(running_max, (len(p_values) - rank) * p_values[i])
        adjusted[i] = min(1.0, running_max)
    return adjusted


def sign_test_p(differences: Sequence[float]) -> float:
    """Two-sided exact sign test of a zero median (zero differences dropped)."""
    positive = sum(d > 0 for d in differences)
    nonzero = sum(d != 0 for d in differences)
    if nonzero == 0:
        return 1.0
    return float(scipy_stats.binomtest(positive, nonzero, 0.5).pvalue)


def tost_p(differences: Sequence[float], margin: float) -> float:
    """Two one-sided t-tests that the mean difference lies within +-``margin``: the larger p."""
    n = len(differences)
    mean, sd = float(np.mean(differences)), float(np.std(differences, ddof=1))
    if sd == 0:  # every pair differs by the same amount: the difference is known exactly
        return 0.0 if abs(mean) < margin else 1.0
    se = sd / math.sqrt(n)
    lower = scipy_stats.t.sf((mean + margin) / se, n - 1)
    upper = scipy_stats.t.cdf((mean - margin) / se, n - 1)
    return float(max(lower, upper))


def paired(values: Mapping[int, float], reference: Mapping[int, float], margins: Sequence[float]) -> dict:
    """Paired difference by seed: n, mean, 95% CI, the t-test's p (the exact sign test when every
    seed differs by the same amount) and the TOST p at each margin ({margin: p})."""
    seeds = sorted(set(values) & set(reference))
    diffs = [values[s] - reference[s] for s in seeds]
    result = {"n": len(seeds), "mean": math.nan, "low": math.nan, "high": math.nan, "p": math.nan}
    result["p_tost"] = {m: math.nan for m in margins}
    if len(seeds) < 2:
        return result
    result["mean"], sd, result["low"], result["high"] = mean_ci(diffs)
    if sd > 0:
        t = result["mean"] / (sd / math.sqrt(len(diffs)))
        result["p"] = float(2 * scipy_stats.t.sf(abs(t), len(diffs) - 1))
    else:
        result["p"] = sign_test_p(diffs)
    result["p_tost"] = {m: tost_p(diffs, m) for m in margins}
    return result


def clopper_pearson(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """The exact (Clopper-Pearson) interval of a proportion: ``k`` events in ``n`` trials; (nan, nan)
    for n = 0."""
    if n == 0:
        return math.nan, math.nan
    alpha = 1 - confidence
    low = 0.0 if k == 0 else float(scipy_stats.beta.ppf(alpha / 2, k, n - k + 1))
    high = 1.0 if k == n else float(scipy_stats.beta.ppf(1 - alpha / 2, k + 1, n - k))
    return low, high


def pooled_sd(groups: Sequence[Sequence[float]]) -> tuple[float, int]:
    """The pooled within-group standard deviation of ``groups`` (those with two values or more)
    and its degrees of freedom (values minus groups); (nan, 0) when no group has two values."""
    kept = [np.asarray(g, dtype=float) for g in groups if len(g) >= 2]
    freedom = sum(len(g) - 1 for g in kept)
    if freedom == 0:
        return math.nan, 0
    squares = sum(float(((g - g.mean()) ** 2).sum()) for g in kept)
    return math.sqrt(squares / freedom), freedom


def best_of_weights(total: int, n: int) -> np.ndarray:
    """The weight of each of ``total`` sorted values in the expected maximum of ``n`` draws with
    replacement (Dodge et al. 2019): (i/N)^n - ((i-1)/N)^n for the i-th smallest."""
    ranks = np.arange(1, total + 1) / total
    return ranks**n - (ranks - 1 / total) ** n


def expected_best(values: Sequence[float], budgets: Sequence[int], maximize: bool = True) -> list[float]:
    """Expected maximum (minimum without ``maximize``) of n draws (with replacement) from the
    observed values, for each n."""
    sign = 1.0 if maximize else -1.0  # the minimum of the values is minus the maximum of their negatives
    ordered = np.sort(sign * np.asarray(values, dtype=float))
    return [sign * float(ordered @ best_of_weights(len(ordered), n)) for n in budgets]


def expected_best_draws(
    values: Sequence[float], n: int, rounds: int = 2000, seed: int = 0, maximize: bool = True
) -> np.ndarray:
    """``expected_best(values, [n], maximize)`` on ``rounds`` bootstrap resamples of the values."""
    total = len(values)
    sign = 1.0 if maximize else -1.0
    rng = np.random.default_rng(seed)
    samples = np.sort(sign * rng.choice(np.asarray(values, dtype=float), size=(rounds, total)), axis=1)
    return sign * (samples @ best_of_weights(total, n))


def interval(draws) -> tuple[float, float]:
    """The central 95% of bootstrap draws."""
    low, high = np.percentile(draws, [2.5, 97.5])
    return float(low), float(high)


def pooled_difference(cells: Sequence[tuple[Sequence[float], Sequence[float]]]) -> dict | None:
    """A difference of two conditions measured in several cells (a, b), unpaired within each cell:
    each cell's difference of means weighted by 1 / (1/n_a + 1/n_b), with a 95% interval from the
    pooled within-cell variance (t with runs - 2 x cells degrees of freedom). Cells need at least
    two values on each side."""
    both = [(a, b) for a, b in cells if len(a) >= 2 and len(b) >= 2]
    residuals = [x - float(np.mean(side)) for cell in both for side in cell for x in side]
    freedom = len(residuals) - 2 * len(both)
    if not both or freedom < 1:
        return None
    weights = [1 / (1 / len(a) + 1 / len(b)) for a, b in both]
    estimate = sum(w * (np.mean(a) - np.mean(b)) for w, (a, b) in zip(weights, both, strict=True)) / sum(weights)
    half = scipy_stats.t.ppf(0.975, freedom) * math.sqrt(sum(r * r for r in residuals) / freedom / sum(weights))
    return {
        "mean": float(estimate),
        "low": float(estimate - half),
        "high": float(estimate + half),
        "cells": len(both),
        "runs": len(residuals),
    }


def finished(trials: Sequence[FrozenTrial]) -> list[FrozenTrial]:
    """The COMPLETE trials: the only ones with a value."""
    return [t for t in trials if t.state == TrialState.COMPLETE]


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """No line per temporary study, no ExperimentalWarning, no "importances will be equal"."""
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            warnings.filterwarnings("ignore", message=".*[Ii]mportances will be equal")
            yield
    finally:
        optuna.logging.set_verbosity(verbosity)


def _importances(trials: Sequence[FrozenTrial], evaluator, maximize: bool = True) -> dict[str, float]:
    """Normalized importances of a temporary study of ``trials`` (fANOVA does not depend on the
    direction; PED-ANOVA's top trials do)."""
    with _quiet():
        study = optuna.create_study(direction="maximize" if maximize else "minimize")
        study.add_trials(trials)
        found = optuna.importance.get_param_importances(study, evaluator=evaluator, normalize=True)
    return {name: float(value) for name, value in found.items()}


def _fanova_fit(job: tuple[Sequence[FrozenTrial], int]) -> dict[str, float] | None:
    """One forest's fANOVA importances; None when every value is alike (no variance to share)."""
    trials, forest_seed = job
    try:
        return _importances(trials, optuna.importance.FanovaImportanceEvaluator(seed=forest_seed))
    except RuntimeError:
        return None


def _cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _map(function: Callable, jobs: list) -> list:
    """``[function(job) for job in jobs]``, over every CPU when there are enough jobs. Spawned
    workers, since forking a process that runs threads can deadlock; they import the caller's
    script again, which therefore needs its ``if __name__ == "__main__":`` guard."""
    workers = min(_cpus(), len(jobs))
    if workers < 2 or len(jobs) < PARALLEL_FITS:
        return [function(job) for job in jobs]
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context) as pool:
        return list(pool.map(function, jobs, chunksize=max(1, len(jobs) // (4 * workers))))


def fanova(
    trials: Sequence[FrozenTrial], seeds: int = 10, rounds: int = 200, seed: int = 0, *, minimum: int = 8
) -> dict[str, tuple[float, float, float]]:
    """fANOVA importance of each parameter of the COMPLETE trials (normalized, maximizing):
    {parameter: (mean over ``seeds`` forests on all trials, bootstrap 2.5 and 97.5 percentiles)},
    most important first. Each of the ``rounds`` resamples of the trials (with replacement) gets
    its own forest seed, so the interval holds the forests' noise too; resamples whose values are
    all alike are left out. rounds=0: no bootstrap, low = high = nan. Empty below ``minimum``
    finished trials or when every value is alike."""
    done = finished(trials)
    if len(done) < max(minimum, 2):
        return {}
    rng = np.random.default_rng(seed)
    samples = [[done[i] for i in rng.integers(0, len(done), len(done))] for _ in range(rounds)]
    jobs = [(done, seed + k) for k in range(seeds)] + [(s, seed + seeds + r) for r, s in enumerate(samples)]
    fits = _map(_fanova_fit, jobs)
    whole, draws = fits[:seeds], [d for d in fits[seeds:] if d is not None]
    if not whole or any(d is None for d in whole):
        return {}
    result = {}
    for name in {name for d in whole for name in d}:
        low, high = interval([d.get(name, 0.0) for d in draws]) if draws else (math.nan, math.nan)
        result[name] = (float(np.mean([d.get(name, 0.0) for d in whole])), low, high)
    return dict(sorted(result.items(), key=lambda item: -item[1][0]))


def ped_anova(
    trials: Sequence[FrozenTrial], target_quantile: float = 0.1, region_quantile: float = 1.0, maximize: bool = True
) -> dict[str, float]:
    """PED-ANOVA importance (Watanabe et al. 2023) of each parameter, normalized: how much the
    top ``target_quantile`` of the COMPLETE trials (the highest; the lowest without ``maximize``)
    concentrate in it compared with the top ``region_quantile`` (1.0: every trial, the region the
    sweep searched). Deterministic.
    Empty below 8 finished trials; equal shares when every value is alike (optuna's convention)."""
    done = finished(trials)
    if len(done) < 8:
        return {}
    evaluator = optuna.importance.PedAnovaImportanceEvaluator(
        target_quantile=target_quantile, region_quantile=region_quantile
    )
    return _importances(done, evaluator, maximize)


def with_coordinate(
    trials: Sequence[FrozenTrial],
    name: str,
    value: Callable[[dict], float],
    low: float,
    high: float,
    log: bool = False,
    replacing: str | None = None,
) -> list[FrozenTrial]:
    """The COMPLETE trials with one more parameter ``name`` = ``value(params)`` (a derived
    coordinate such as log(|beta| / gamma)) on FloatDistribution(low, high, log), in place of
    parameter ``replacing`` if given; trials where it is not finite are dropped, a finite value
    outside [low, high] is a ValueError."""
    distribution = FloatDistribution(low, high, log=log)
    out = []
    for t in finished(trials):
        x = float(value(t.params))
        if not math.isfinite(x):
            continue
        if not low <= x <= high:
            raise ValueError(f"trial {t.number}: {name}={x} is outside [{low}, {high}]")
        params = {k: v for k, v in t.params.items() if k != replacing} | {name: x}
        dists = {k: d for k, d in t.distributions.items() if k != replacing} | {name: distribution}
        out.append(optuna.trial.create_trial(params=params, distributions=dists, value=t.value))
    return out
