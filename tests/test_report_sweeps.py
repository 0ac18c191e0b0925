"""The report's sweep sections (sgmod_study.study.report: importance, sweeps, travel): importances
with intervals, failed trials, the recommended default, which values work, how far gamma/beta moved,
sweeps compared at equal budgets. Synthetic sweeps with known values; no training."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from optuna.distributions import FloatDistribution

from helpers.records import (
    LEARNED,  # the learnable Sgmod better on every seed
    write_parts,
)
from helpers.records import row as _row
from helpers.report_records import (
    BASELINE_PARAMS,
    SGMOD_PARAMS,
    classifier_study,
    report_page,
    sweep_importance,
    sweep_row,
    sweep_trials,
)
from sgmod_study.study import stats
from sgmod_study.study.report import confirm, importance, sweeps, travel


def test_expected_best_of_n_trials():
    values = [0.1, 0.2, 0.3]
    assert stats.expected_best(values, [1])[0] == pytest.approx(0.2)  # one draw: the mean
    assert stats.expected_best(values, [2])[0] == pytest.approx((0.1 * 1 + 0.2 * 3 + 0.3 * 5) / 9)
    assert stats.expected_best(values, [200])[0] == pytest.approx(0.3, abs=1e-6)  # many draws: the best


def test_travel_compares_what_gamma_could_and_did_move_per_layer():
    rows = [_row("sgmod", 0, 0.9, gamma=[1.2, 1.4], could=1.5), _row("sgmod", 1, 0.9, gamma=[1.0, 1.6], could=1.5)]
    rows.append(_row("sgmod_fixed", 0, 0.9, gamma=[1.0, 1.0]))  # fixed: not in the table
    moves = travel.travel(travel.learnable_groups(rows))
    assert set(moves) == {("sgmod", "head.act")}
    m = moves["sgmod", "head.act"]
    assert m["n"] == 2 and m["bound"] == pytest.approx(1.5)
    assert m["moved"] == pytest.approx((0.5 + 0.6) / 2)  # the farthest channel (beta moved 0.5, gamma 0.4 / 0.6)
    assert m["centred"] == pytest.approx(-0.5 + 1.3 / 2) and m["gamma_w"] == pytest.approx(2 * 1.3)


def test_importances_find_the_parameter_that_matters_with_an_interval():
    trials = sweep_trials(40)
    data = sweep_importance()
    space = {"activation.gamma_init", "activation.beta_init", "optimizer.lr", "optimizer.weight_decay"}
    assert set(data.searched) == space
    assert sum(v[0] for v in data.searched.values()) == pytest.approx(1.0)
    for _, low, high in data.searched.values():
        assert 0 <= low <= high <= 1
    # the score depends on |beta|/gamma alone: with that coordinate added it explains most
    assert set(data.with_ratio) == space | {importance.RATIO}
    assert max(data.with_ratio, key=lambda n: data.with_ratio[n][0]) == importance.RATIO
    # PED-ANOVA: the top trials gather in the ratio (and in lr, which _sweep_trials sets there), not in wd
    assert data.ped[importance.RATIO] > 0.2 > data.ped["optimizer.weight_decay"]
    assert data.ratio_left_out == 1  # trial 0 at beta_init = 0
    assert importance.of_trials("sweep_sgmod", trials[:7], seeds=2, rounds=4).searched == {}  # too few trials
    assert importance.render(importance.of_trials("s", trials[:7], 2, 4), report_page(Path("."))) == [
        "## What matters in the s sweep",
        "",
        "Fewer than 8 finished trials: no importances yet.",
    ]


def test_no_effect_is_said_with_its_bound_for_an_interval_that_reaches_zero():
    found = {"optimizer.lr": (0.4, 0.05, 0.8), "activation.lr": (0.02, 0.0, 0.2), "a.wd": (0.01, 0.004, 0.31)}
    assert importance.no_effect(found) == [("activation.lr", 0.2), ("a.wd", 0.31)]
    data = importance.Importance("sweep_sgmod", 64, 10, 200, searched=found)
    data.no_effect = importance.no_effect(found)
    text = "\n".join(importance.render(data, report_page(Path("."))))
    assert (
        "No effect detected for activation.lr (importance at most 0.20) and a.wd (importance at most 0.31): the "
        "lower end of their 95% interval is below 0.005"
    ) in text
    assert "optimizer.lr (importance at most" not in text
    assert "hardly matter" not in text


def test_failed_trials_are_counted_with_their_beta_gamma_ratio(tmp_path):
    data = sweep_importance()
    f = data.failures
    done = stats.finished(sweep_trials(40))
    failing = [t for t in done if t.values[0] < 0.90]
    wide = [t for t in failing if abs(t.params["activation.beta_init"]) / t.params["activation.gamma_init"] > 5]
    assert (f.total, f.failing, f.at_ratio) == (40, len(failing), len(wide)) and f.failing > 0
    text = "\n".join(importance.render(data, report_page(tmp_path)))
    assert (
        f"{len(failing)} of the 40 trials validate below 0.90, {len(wide)} of them with |beta_init|/gamma_init > 5"
        in text
    )
    assert "| log(\\|beta_init\\|/gamma_init) |" in text  # a | inside a table cell is escaped
    assert (tmp_path / "study_figures" / "sgmod_marginals.png").stat().st_size > 5000


def test_the_recommended_default_names_the_network_parameters_it_moved(tmp_path):
    data = sweep_importance()
    assert ("optimizer.lr", 1e-3, 3e-3) in data.moved
    assert all(not name.startswith("activation.") for name, _, _ in data.moved)
    text = "\n".join(importance.render(data, report_page(tmp_path)))
    assert "moves the network's own parameters from where the sweep started (trial 0, enqueued at the defaults)" in text
    assert "optimizer.lr 0.001 -> 0.003" in text
    assert "Nothing in the record yet separates the effect of the gamma/beta init from that of these." in text


def test_the_recommended_confirm_part_says_which_network_parameters_moved(tmp_path):
    start = {"activation.gamma_init": 1.0, "optimizer.lr": 1e-3, "optimizer.weight_decay": 1e-4}
    default = {
        "activation": {"gamma_init": 3.0, "beta_init": -0.5, "learn_gamma": True, "learn_beta": True},
        "optimizer": {"lr": 3e-3, "weight_decay": 1e-4},
    }
    runs = [{**_row("sgmod", 100 + s, a), "config": default} for s, a in enumerate(LEARNED)]
    record = write_parts(tmp_path, {"sweep_sgmod": [sweep_row(0, 0.92, start)], "confirm_sgmod_default": runs})
    text = "\n".join(confirm.render(confirm.compute(classifier_study(), record), report_page(tmp_path)))
    assert (
        "`sgmod_default` also moves the network's own parameters from where sweep_sgmod started (its trial 0, "
        "the defaults): optimizer.lr 0.001 -> 0.003."
    ) in text
    assert "weight_decay 0.0001 ->" not in text  # not moved


def test_sweep_travel_states_how_far_gamma_beta_could_and_did_move_over_the_trials(tmp_path):
    rows = [_row("sgmod", 0, 0.90, gamma=[1.5, 0.8], could=0.6), _row("sgmod", 1, 0.91, gamma=[1.1], could=2.3)]
    rows.append({**_row("sgmod", 2, 0.5), "state": "FAIL"})  # not finished: not counted
    moves = travel.sweep_travel(rows)
    # moved: the larger of |gamma - 1| and |beta - 0| = 0.5 in both (beta is -0.5 in _row)
    assert moves == {"n": 2, "could": [0.6, 2.3], "moved": [0.5, 0.5], "enough": 1}
    text = "\n".join(
        sweeps.render(
            sweeps.compute(classifier_study(), write_parts(tmp_path, {"sweep_sgmod": rows})), report_page(tmp_path)
        )
    )
    assert "they could travel 1.45 (median; 0.60 to 2.30) and moved 0.50" in text
    assert "1 of 2 trials allowed the distance 1 from (1, 0)" in text


def test_sweeps_are_compared_at_the_fewest_trials_any_sweep_has_finished(tmp_path):
    sgmod = [sweep_row(i, acc, SGMOD_PARAMS) for i, acc in enumerate((0.90, 0.92, 0.94))]
    relu = [sweep_row(i, acc, BASELINE_PARAMS) for i, acc in enumerate((0.91, 0.93))]
    record = write_parts(tmp_path, {"sweep_sgmod": sgmod, "sweep_relu": relu})
    text = "\n".join(sweeps.render(sweeps.compute(classifier_study(), record), report_page(tmp_path)))
    assert "| expected best of 2 [95% CI] |" in text
    # expected best of 2 draws: (0.90 * 1 + 0.92 * 3 + 0.94 * 5) / 9 for sgmod, (0.91 + 3 * 0.93) / 4 for relu
    assert "| sweep_sgmod | 3 | 0.9400 |" in text and "| 0.9289 [" in text
    assert "| sweep_relu | 2 | 0.9300 |" in text and "| 0.9250 [" in text
    # the intervals come from resampling the trials: inside the observed values, around the estimate
    low, high = map(float, text.split("| 0.9289 [")[1].split("]")[0].split(", "))
    assert 0.90 <= low < 0.9289 < high <= 0.94
    # Sgmod minus relu at 2 trials: 0.9289 - 0.9250 = +0.39 points
    difference = text.split("interval over each sweep's trials]: relu ")[1].split(".\n")[0]
    estimate, bounds = difference.split(" [")
    low, high = map(float, bounds.rstrip("]").split(", "))
    assert estimate == "+0.39" and -4 <= low < 0.39 < high <= 3
    assert "| sweep_tanh | 0 | - | - | - | - |" in text
    assert "The Sgmod sweep runs 64 trials over its six parameters, each baseline 32 over its two." in text
    assert "denser cover" not in text
    assert "Best Sgmod configuration so far: " in text  # 3 of its 64 trials
    complete = [sweep_row(i, 0.9 + i / 1000, SGMOD_PARAMS) for i in range(64)]
    full = sweeps.render(
        sweeps.compute(classifier_study(), write_parts(tmp_path / "full", {"sweep_sgmod": complete})),
        report_page(tmp_path),
    )
    assert any(line.startswith("Best Sgmod configuration: ") for line in full)
    assert (tmp_path / "study_figures" / "expected_best.png").stat().st_size > 5000


def test_the_share_of_small_gamma_inits_is_put_beside_the_rest(tmp_path):
    small = [
        sweep_row(i, acc, {**SGMOD_PARAMS, "activation.gamma_init": 0.2}) for i, acc in enumerate((0.5, 0.88, 0.91))
    ]
    rest = [
        sweep_row(3 + i, acc, {**SGMOD_PARAMS, "activation.gamma_init": 2.0})
        for i, acc in enumerate((0.92, 0.93, 0.91, 0.925, 0.915))
    ]
    data = sweeps.compute(classifier_study(), write_parts(tmp_path, {"sweep_sgmod": small + rest}))
    (g,) = data.small_gamma
    assert (g.total, g.n, g.failing, g.median, g.rest_median) == (8, 3, 2, 0.88, 0.92)
    text = "\n".join(sweeps.render(data, report_page(tmp_path)))
    assert (
        "The searched ranges cost sweep_sgmod part of its budget: 3 of its 8 trials (38%) start at "
        "activation.gamma_init < 0.5, and they validate at a median 0.8800 (2 of them below 0.90), the other "
        "5 at 0.9200."
    ) in text
    without = stats.expected_best([r["values"][0] for r in rest], [8])[0]
    assert f"to {without:.4f}" in text


def test_the_budget_is_read_from_the_rows_and_a_shorter_sweep_is_called_a_cheaper_fidelity(tmp_path):
    from sgmod_study.study.report.rows import epochs

    def run(epochs_, state="COMPLETE"):
        row = _row("sgmod", 0, 0.9)
        return {**row, "state": state, "config": {**row["config"], "trainer.max_epochs": epochs_}}

    assert epochs([run(10), run(3), run(10), run(1, state="FAIL")]) == "3, 10"  # failed runs do not count
    assert epochs([]) == "?"
    same = sweeps.fidelity(
        classifier_study(),
        write_parts(tmp_path / "a", {"sweep_sgmod": [run(10)], "controls": [run(10)], "confirm_relu": [run(10)]}),
    )
    assert same.startswith(
        "Every sweep trial trains for the full budget (10 epochs, as the controls and the confirmation runs)"
    )
    shorter = sweeps.fidelity(
        classifier_study(),
        write_parts(tmp_path / "b", {"sweep_sgmod": [run(3)], "sweep_relu": [run(3)], "confirm_sgmod": [run(10)]}),
    )
    assert shorter.startswith("The sweep trials train for 3 epochs, the controls and the confirmation runs for 10")
    assert (
        sweeps.fidelity(classifier_study(), write_parts(tmp_path / "c", {"controls": [run(10)]})) == ""
    )  # no sweep finished


def test_which_values_work_reads_the_top_quarter_against_the_searched_range():
    space = {
        "activation.gamma_init": FloatDistribution(0.1, 10.0, log=True),
        "activation.beta_init": FloatDistribution(-5.0, 5.0),
    }
    # 12 trials: the top quarter is the 3 best, gamma 1, 4, 9 (geometric median 4), beta -2, -1, 0.5
    top = [(4.0, -1.0, 0.93), (1.0, 0.5, 0.92), (9.0, -2.0, 0.91)]
    rest = [(0.2, 3.0, 0.5 + i / 100) for i in range(9)]
    trials = [
        optuna.trial.create_trial(
            params={"activation.gamma_init": g, "activation.beta_init": b}, distributions=space, value=v
        )
        for g, b, v in top + rest
    ]
    (size, low, high), table = importance.good_values(trials)
    assert (size, low, high) == (3, 0.91, 0.93)
    rows = {v["parameter"]: v for v in table}
    gamma, beta = rows["activation.gamma_init"], rows["activation.beta_init"]
    assert gamma["log"] and (gamma["best"], gamma["min"], gamma["max"], gamma["recommended"]) == (4.0, 1.0, 9.0, 4.0)
    assert gamma["median"] == pytest.approx(4.0)
    assert (beta["best"], beta["median"], beta["min"], beta["max"], beta["recommended"]) == (
        -1.0,
        -1.0,
        -2.0,
        0.5,
        -1.0,
    )
    data = importance.Importance(
        "sweep_sgmod",
        12,
        10,
        200,
        searched={"x": (1.0, 0.5, 1.0)},
        values=table,
        top=(size, low, high),
        confirms=["confirm_sgmod_default"],
    )
    text = "\n".join(importance.render(data, report_page(Path("."))))
    assert "the top quarter of the trials (3 of 12, val/acc_best 0.9100 to 0.9300)" in text
    assert "| activation.gamma_init | 0.1 to 10 (log) | 4 | 4 [1, 9] | 4 |" in text
    assert "what `confirm_sgmod_default` retrains on fresh seeds" in text


def test_a_best_value_at_the_edge_of_its_searched_range_is_named():
    distributions = {
        "optimizer.lr": FloatDistribution(1e-4, 1e-2, log=True),
        "activation.beta_init": FloatDistribution(-5.0, 5.0),
        "norm": optuna.distributions.CategoricalDistribution(["batch", "layer"]),
    }

    def trial(lr, beta):
        params = {"optimizer.lr": lr, "activation.beta_init": beta, "norm": "batch"}
        return optuna.trial.create_trial(params=params, distributions=distributions, value=0.9)

    # 0.00944 is 1.2% of the log range below 1e-2; -4.6 is 4% of the linear range above -5
    assert sweeps.at_edge(trial(0.00944, -4.6)) == [
        "activation.beta_init=-4.6 (searched -5 to 5)",
        "optimizer.lr=0.00944 (searched 0.0001 to 0.01)",
    ]
    # 0.007 is 92% of the way on the log scale and -4.4 6% (both inside), but 0.00012 only 4%: the low edge
    assert sweeps.at_edge(trial(0.007, -4.4)) == []
    assert sweeps.at_edge(trial(0.00012, 0.0)) == ["optimizer.lr=0.00012 (searched 0.0001 to 0.01)"]
