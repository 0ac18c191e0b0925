"""The study's statistics against scipy, optuna and values worked out by hand."""

import inspect
import math
import warnings

import numpy as np
import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial
from scipy import stats as scipy_stats

from sgmod_study.study import stats

UNIT = FloatDistribution(0.0, 1.0)


def synthetic(n: int = 30, seed: int = 0, value=lambda x, z: x**2) -> list:
    """Trials on x, z in [0, 1] whose value depends on x only (by default)."""
    rng = np.random.default_rng(seed)
    return [
        create_trial(params={"x": x, "z": z}, distributions={"x": UNIT, "z": UNIT}, value=value(x, z))
        for x, z in rng.random((n, 2))
    ]


def maximizing(trials) -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize")
    study.add_trials(trials)
    return study


def test_mean_ci_is_scipy_t_interval():
    values = [0.91, 0.93, 0.92, 0.95, 0.90]
    mean, sd, low, high = stats.mean_ci(values)
    assert mean == pytest.approx(np.mean(values)) and sd == pytest.approx(np.std(values, ddof=1))
    assert (low, high) == pytest.approx(scipy_stats.t.interval(0.95, 4, loc=mean, scale=scipy_stats.sem(values)))
    low99, high99 = stats.mean_ci(values, confidence=0.99)[2:]
    assert (low99, high99) == pytest.approx(scipy_stats.t.interval(0.99, 4, loc=mean, scale=scipy_stats.sem(values)))
    assert stats.mean_ci([0.5])[0] == 0.5 and all(math.isnan(v) for v in stats.mean_ci([0.5])[1:])


def test_holm_by_hand():
    # sorted: 0.005 x 4 = 0.02, 0.01 x 3 = 0.03, 0.03 x 2 = 0.06, 0.04 x 1 = 0.04 -> 0.06 (monotone)
    assert stats.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert stats.holm([0.5, 0.6]) == [1.0, 1.0]  # capped at 1
    assert stats.holm([]) == []


def test_sign_test_nine_of_ten_positive():
    differences = [1.0] * 9 + [-1.0]
    assert stats.sign_test_p(differences) == pytest.approx(0.021484375)  # 2 x (1 + 10) / 2^10
    assert stats.sign_test_p(differences + [0.0, 0.0]) == pytest.approx(0.021484375)  # zeros dropped
    assert stats.sign_test_p([0.0, 0.0]) == 1.0


def test_tost_is_the_larger_of_two_one_sided_t_tests():
    differences = np.array([0.1, -0.2, 0.05, 0.15, -0.05, 0.0, 0.12])
    margin = 0.3
    above = scipy_stats.ttest_1samp(differences + margin, 0.0, alternative="greater").pvalue
    below = scipy_stats.ttest_1samp(differences - margin, 0.0, alternative="less").pvalue
    assert stats.tost_p(differences, margin) == pytest.approx(max(above, below))
    assert stats.tost_p(differences, 0.01) > 0.5  # a margin this narrow cannot be shown
    assert stats.tost_p([0.25, 0.25, 0.25], 0.5) == 0.0 and stats.tost_p([0.75, 0.75], 0.5) == 1.0


def test_paired_is_scipy_ttest_rel_on_the_shared_seeds():
    values = {0: 0.91, 1: 0.93, 2: 0.92, 3: 0.95, 4: 0.90, 9: 0.5}
    reference = {0: 0.90, 1: 0.90, 2: 0.93, 3: 0.92, 4: 0.89, 7: 0.1}
    result = stats.paired(values, reference, margins=[0.01, 0.05])
    ours, theirs = [values[s] for s in range(5)], [reference[s] for s in range(5)]
    differences = np.subtract(ours, theirs)
    assert result["n"] == 5 and result["mean"] == pytest.approx(differences.mean())
    assert result["p"] == pytest.approx(scipy_stats.ttest_rel(ours, theirs).pvalue)
    expected = scipy_stats.t.interval(0.95, 4, loc=differences.mean(), scale=scipy_stats.sem(differences))
    assert (result["low"], result["high"]) == pytest.approx(expected)
    assert result["p_tost"] == pytest.approx({m: stats.tost_p(differences, m) for m in (0.01, 0.05)})
    same = stats.paired({s: 1.0 for s in range(10)}, {s: 0.5 for s in range(10)}, margins=[])
    assert same["p"] == pytest.approx(2 / 2**10)  # every seed alike: the exact sign test
    lone = stats.paired({0: 1.0}, {0: 0.5}, margins=[0.1])
    assert lone["n"] == 1 and math.isnan(lone["p"]) and math.isnan(lone["p_tost"][0.1])


def test_expected_best_by_hand_and_at_the_limits():
    values = [3.0, 1.0, 2.0]
    # max of 2 draws of {1, 2, 3}: 1 once, 2 three times, 3 five times in the 9 pairs
    assert stats.expected_best(values, [1, 2]) == pytest.approx([2.0, 22 / 9])
    assert stats.expected_best(values, [10_000])[0] == pytest.approx(3.0)
    assert stats.best_of_weights(7, 4).sum() == pytest.approx(1.0)


def test_expected_best_minimises_as_minus_the_maximum_of_the_negatives():
    assert stats.expected_best([1, 2, 3], [1, 2], maximize=False) == pytest.approx([2.0, 14 / 9])  # 5/9 + 6/9 + 3/9
    assert stats.expected_best([1, 2, 3], [2]) == pytest.approx([22 / 9])
    lowest = stats.expected_best_draws([1, 2, 3], 2, rounds=50, seed=3, maximize=False)
    assert lowest.shape == (50,) and np.array_equal(lowest, -stats.expected_best_draws([-1, -2, -3], 2, 50, seed=3))


def test_expected_best_draws_are_seeded_bootstraps():
    values = np.random.default_rng(1).normal(size=20)
    draws = stats.expected_best_draws(values, 5, rounds=500, seed=3)
    assert draws.shape == (500,) and np.array_equal(draws, stats.expected_best_draws(values, 5, rounds=500, seed=3))
    assert not np.array_equal(draws, stats.expected_best_draws(values, 5, rounds=500, seed=4))
    low, high = stats.interval(draws)
    assert low < stats.expected_best(values, [5])[0] < high
    assert np.allclose(stats.expected_best_draws([2.0] * 5, 3, rounds=10), 2.0)


def test_interval_is_the_central_95_percent():
    assert stats.interval(np.arange(101)) == pytest.approx((2.5, 97.5))


def test_clopper_pearson_and_the_pooled_sd_against_known_values():
    assert stats.clopper_pearson(0, 10) == (0.0, pytest.approx(1 - 0.025**0.1))
    assert stats.clopper_pearson(10, 10) == (pytest.approx(0.025**0.1), 1.0)
    low, high = stats.clopper_pearson(1, 10)  # the textbook interval of 1 in 10
    assert (round(low, 4), round(high, 4)) == (0.0025, 0.445)
    assert all(math.isnan(x) for x in stats.clopper_pearson(0, 0))
    sd, freedom = stats.pooled_sd([[1.0, 3.0], [2.0, 4.0, 6.0], [9.0]])  # (1 x 2 + 2 x 4) / 3
    assert (sd, freedom) == (pytest.approx(math.sqrt(10 / 3)), 3)


def test_pooled_difference_of_two_cells_by_hand():
    cells = [([1.0, 3.0], [0.0, 2.0]), ([4.0, 6.0, 8.0], [1.0, 3.0, 5.0]), ([9.0], [1.0, 2.0])]
    result = stats.pooled_difference(cells)  # the third cell has one value on a side: left out
    # differences 1 (weight 1/(1/2 + 1/2) = 1) and 3 (weight 1/(1/3 + 1/3) = 1.5): 5.5 / 2.5
    # residual sum of squares 2 + 2 + 8 + 8 = 20 over 10 - 2 x 2 = 6 degrees of freedom
    half = scipy_stats.t.ppf(0.975, 6) * math.sqrt(20 / 6 / 2.5)
    assert result == pytest.approx({"mean": 2.2, "low": 2.2 - half, "high": 2.2 + half, "cells": 2, "runs": 10})
    assert stats.pooled_difference([([1.0], [2.0, 3.0])]) is None


def test_fanova_finds_the_parameter_that_matters_reproducibly():
    trials = synthetic()
    found = stats.fanova(trials, seeds=2, rounds=6)
    assert list(found) == ["x", "z"]  # most important first
    mean, low, high = found["x"]
    assert mean > 0.8 and low <= mean <= high and found["z"][0] < 0.2
    assert stats.fanova(trials, seeds=2, rounds=6) == found
    assert stats.fanova(trials, seeds=1, rounds=0, seed=1)["x"][0] != mean


def test_fanova_mean_is_optunas_fanova_over_forest_seeds():
    trials = synthetic(20)
    expected = [
        optuna.importance.get_param_importances(
            maximizing(trials), evaluator=optuna.importance.FanovaImportanceEvaluator(seed=s), normalize=True
        )
        for s in (5, 6)
    ]
    found = stats.fanova(trials, seeds=2, rounds=0, seed=5)
    assert {k: v[0] for k, v in found.items()} == pytest.approx(
        {k: (expected[0][k] + expected[1][k]) / 2 for k in "xz"}
    )
    assert all(math.isnan(low) and math.isnan(high) for _, low, high in found.values())  # no bootstrap


def test_fanova_needs_eight_finished_trials_with_different_values():
    running = create_trial(state=TrialState.RUNNING, params={"x": 0.5, "z": 0.5}, distributions={"x": UNIT, "z": UNIT})
    assert stats.fanova(synthetic(7) + [running], seeds=1, rounds=0) == {}
    assert stats.fanova(synthetic(7), seeds=1, rounds=0, minimum=2) != {}
    assert stats.fanova(synthetic(10, value=lambda x, z: 1.0), seeds=1, rounds=0) == {}


def test_fanova_over_worker_processes_gives_the_same_result(monkeypatch):
    trials = synthetic(12)
    serial = stats.fanova(trials, seeds=2, rounds=4)
    monkeypatch.setattr(stats, "PARALLEL_FITS", 2)
    assert stats.fanova(trials, seeds=2, rounds=4) == serial


def test_importances_are_quiet_and_leave_optunas_verbosity_alone(capfd):
    optuna.logging.set_verbosity(optuna.logging.INFO)
    alike = synthetic(10, value=lambda x, z: 1.0)  # optuna warns: "importances will be equal"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert stats.ped_anova(alike) == {"x": 0.5, "z": 0.5}
        assert set(stats.fanova(synthetic(10), seeds=1, rounds=1)) == {"x", "z"}
    assert "A new study created" not in capfd.readouterr().err
    assert optuna.logging.get_verbosity() == optuna.logging.INFO
    optuna.logging.set_verbosity(optuna.logging.WARNING)


def test_importance_defaults_are_ten_seeds_and_two_hundred_rounds():
    defaults = {k: p.default for k, p in inspect.signature(stats.fanova).parameters.items()}
    assert defaults["seeds"] >= 10 and defaults["rounds"] >= 200 and defaults["minimum"] == 8


def test_ped_anova_is_optunas_on_a_maximizing_study():
    trials = synthetic(60)
    found = stats.ped_anova(trials)
    evaluator = optuna.importance.PedAnovaImportanceEvaluator(target_quantile=0.1, region_quantile=1.0)
    expected = optuna.importance.get_param_importances(maximizing(trials), evaluator=evaluator, normalize=True)
    assert found == pytest.approx(expected) and found["x"] > 0.8 and stats.ped_anova(trials) == found
    assert stats.ped_anova(trials, target_quantile=0.2, region_quantile=0.5) != found
    assert stats.ped_anova(synthetic(7)) == {}


def test_a_coordinate_in_place_of_a_searched_one_makes_the_working_coordinate_visible():
    # the value depends on x - z only: neither searched coordinate tells it apart, their difference does
    trials = synthetic(40, value=lambda x, z: -((x - z - 0.3) ** 2))
    turned = stats.with_coordinate(trials, "x-z", lambda p: p["x"] - p["z"], -1.0, 1.0, replacing="x")
    assert [t.params["x-z"] for t in turned] == pytest.approx([t.params["x"] - t.params["z"] for t in trials])
    assert all("x" not in t.params and t.distributions["x-z"] == FloatDistribution(-1.0, 1.0) for t in turned)
    assert [t.value for t in turned] == [t.value for t in trials]
    assert stats.fanova(turned, seeds=1, rounds=0)["x-z"][0] > 0.8


def test_with_coordinate_adds_one_and_drops_non_finite_values():
    trials = synthetic(10) + [
        create_trial(state=TrialState.FAIL, params={"x": 0.5, "z": 0.5}, distributions={"x": UNIT, "z": UNIT})
    ]
    trials[0] = create_trial(params={"x": 0.0, "z": 0.5}, distributions={"x": UNIT, "z": UNIT}, value=0.0)
    derived = stats.with_coordinate(trials, "log x", lambda p: math.log(p["x"]) if p["x"] else -math.inf, -50, 0.0)
    assert len(derived) == 9  # x = 0 (log -inf) and the failed trial dropped
    assert all(
        t.params["log x"] == pytest.approx(math.log(t.params["x"])) and set(t.params) == {"x", "z", "log x"}
        for t in derived
    )
    ratio = stats.with_coordinate(trials[1:10], "x/z", lambda p: p["x"] / p["z"], 1e-3, 1e3, log=True)
    assert ratio[0].distributions["x/z"] == FloatDistribution(1e-3, 1e3, log=True)
    with pytest.raises(ValueError, match="outside"):
        stats.with_coordinate(trials[1:], "big", lambda p: 10.0, 0.0, 1.0)
