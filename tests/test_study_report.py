"""The study's report from synthetic records with known values (no training)."""

import json

import numpy as np
import pytest
from scipy import stats

from sgmod_study.study_report import (
    contrasts,
    expected_best,
    learnable_groups,
    paired,
    travel,
    verdict,
    write_study_report,
)


def _row(variant, seed, acc, gamma=None, could=1.0):
    row = {
        "number": seed,
        "state": "COMPLETE",
        "values": [acc],
        "params": {"activation": variant, "seed": seed},
        "metrics": {"test/acc": acc},
        "config": {"activation": {"gamma_init": 1.0, "beta_init": 0.0}},
        "machine": {"gpu": "Test GPU"},
    }
    if gamma is not None:
        layer = {"gamma": gamma, "beta": [-0.5] * len(gamma), "next_weight_norm": [2.0] * len(gamma)}
        row["sgmod"] = {"activation_lr_sum": could, "layers": {"head.act": layer}}
    return row


EPYC = {"cpu": "AMD EPYC", "cpu_count": 2, "cpu_capability": "AVX512"}
FIXED = [0.910, 0.912, 0.915, 0.911, 0.913, 0.914, 0.916, 0.912]
LEARNED = [0.915, 0.916, 0.921, 0.914, 0.919, 0.918, 0.922, 0.917]  # better on every seed


def test_paired_difference_matches_scipy_and_tost_says_equivalent_only_within_the_margin():
    result = paired(dict(enumerate(LEARNED)), dict(enumerate(FIXED)))
    differences = np.array(LEARNED) - np.array(FIXED)
    assert result["mean"] == pytest.approx(differences.mean())
    assert result["p"] == pytest.approx(stats.ttest_rel(LEARNED, FIXED).pvalue)
    low, high = stats.t.interval(0.95, 7, loc=differences.mean(), scale=stats.sem(differences))
    assert (result["low"], result["high"]) == (pytest.approx(low), pytest.approx(high))
    # +0.49 points: at the 0.5-point margin, so the equivalence test cannot confirm it
    assert result["p_tost"] > 0.05
    near = [f + d for f, d in zip(FIXED, [0.001, 0.0, 0.002, -0.001, 0.001, 0.0, 0.002, 0.001], strict=True)]
    assert paired(dict(enumerate(near)), dict(enumerate(FIXED)))["p_tost"] < 0.001  # +0.075 points, tight


def test_contrasts_are_holm_corrected_and_the_verdict_follows_the_data():
    table = {
        "sgmod": dict(enumerate(LEARNED)),
        "sgmod_fixed": dict(enumerate(FIXED)),
        "tanh": dict(enumerate(FIXED)),
    }
    rows = {r["question"]: r for r in contrasts(table)}
    first = rows["learnable vs fixed gamma/beta at (1, 0)"]
    best = rows["the best Sgmod variant vs tanh"]
    assert best["variant"] == "sgmod"  # the best Sgmod variant by mean
    assert first["p_holm"] == pytest.approx(min(1, 2 * first["p"]))  # two contrasts tested
    assert verdict(first) == "different (variant better)"
    few = paired({0: 0.91, 1: 0.92}, {0: 0.90, 1: 0.915})
    assert verdict({**few, "p_holm": 0.01}).startswith("preliminary (n < 8): different")
    # the margin in the same unit as the differences beside it (percentage points)
    assert verdict({**first, "p_holm": 0.5, "p_tost": 0.01}) == "equivalent within +-0.5 points"


def test_expected_best_of_n_trials():
    values = [0.1, 0.2, 0.3]
    assert expected_best(values, [1])[0] == pytest.approx(0.2)  # one draw: the mean
    assert expected_best(values, [2])[0] == pytest.approx((0.1 * 1 + 0.2 * 3 + 0.3 * 5) / 9)
    assert expected_best(values, [200])[0] == pytest.approx(0.3, abs=1e-6)  # many draws: the best


def test_travel_compares_what_gamma_could_and_did_move_per_layer():
    rows = [_row("sgmod", 0, 0.9, gamma=[1.2, 1.4], could=1.5), _row("sgmod", 1, 0.9, gamma=[1.0, 1.6], could=1.5)]
    rows.append(_row("sgmod_fixed", 0, 0.9, gamma=[1.0, 1.0]))  # fixed: not in the table
    moves = travel(learnable_groups(rows))
    assert set(moves) == {("sgmod", "head.act")}
    m = moves["sgmod", "head.act"]
    assert m["n"] == 2 and m["bound"] == pytest.approx(1.5)
    assert m["moved"] == pytest.approx((0.5 + 0.6) / 2)  # the farthest channel (beta moved 0.5, gamma 0.4 / 0.6)
    assert m["centred"] == pytest.approx(-0.5 + 1.3 / 2) and m["gamma_w"] == pytest.approx(2 * 1.3)


def test_the_report_is_written_from_the_records_alone(tmp_path):
    record = tmp_path / "study" / "controls"
    record.mkdir(parents=True)
    rows = [_row("sgmod", s, a, gamma=[1.1]) for s, a in enumerate(LEARNED)]
    rows += [_row("sgmod_fixed", s, a) for s, a in enumerate(FIXED)]
    (record / "runs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "docs" / "study.md"
    text = write_study_report(tmp_path, out)
    assert "| sgmod | 8 | 0.917" in text and "16 of 72 runs finished" in text  # mean 0.91775
    assert text.startswith("# The Sgmod study: status and results so far\n")  # most parts not run
    assert "| learnable vs fixed gamma/beta at (1, 0) | sgmod - sgmod_fixed | 8 | +0.49 [" in text
    assert "Machines: Test GPU" in text
    assert "TOST p: two one-sided tests that the difference lies within +-0.5 points" in text
    for figure in ("controls_test_acc", "gamma_beta_channels"):
        assert (tmp_path / "docs" / "study_figures" / f"{figure}.png").stat().st_size > 5000, figure
    assert "![channels](study_figures/gamma_beta_channels.png)" in text


def test_importances_find_the_parameter_that_matters_with_an_interval():
    import optuna

    from sgmod_study.study_report import centred, importances

    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    space = {
        "activation.gamma_init": optuna.distributions.FloatDistribution(0.1, 10.0, log=True),
        "activation.beta_init": optuna.distributions.FloatDistribution(-5.0, 5.0),
    }
    # the accuracy depends on the centred offset beta + gamma/2 only
    study.optimize(
        lambda t: (
            -abs(
                t.suggest_float("activation.beta_init", -5, 5)
                + t.suggest_float("activation.gamma_init", 0.1, 10, log=True) / 2
            )
        ),
        n_trials=24,
    )
    assert set(study.trials[0].distributions) == set(space)
    searched = importances(study.trials, rounds=5)
    assert set(searched) == set(space) and sum(v[0] for v in searched.values()) == pytest.approx(1.0)
    for _, low, high in searched.values():
        assert 0 <= low <= high <= 1
    turned = importances(centred(study.trials), rounds=5)
    assert turned["activation.beta_init+gamma_init/2"][0] > 0.8  # in the centred coordinate one axis explains it
    assert importances(study.trials[:7]) == {}  # too few trials


def test_tuned_sgmod_is_compared_with_each_tuned_baseline_on_the_fresh_seeds(tmp_path):
    from sgmod_study.study_report import confirm_section

    records = {
        "confirm_sgmod": [_row("sgmod", s, a, gamma=[1.0 + s / 10, 1.2]) for s, a in enumerate(LEARNED)],
        "confirm_sgmod_default": [{**_row("sgmod", s, a - 0.001), "machine": EPYC} for s, a in enumerate(LEARNED)],
        "confirm_relu": [_row("relu", s, a) for s, a in enumerate(FIXED)],
        "confirm_tanh": [],
    }
    text = confirm_section(records, tmp_path)
    assert "| sgmod_default | 8 | 0.9168 |" in text
    # each configuration says where it ran: these two on different machines
    assert "activation.gamma_init=1, activation.beta_init=0 | AMD EPYC (2 cores, AVX512) |" in text
    assert "| relu | 8 | 0.9129 | [0.9112, 0.9146] |" in text and "beta_init=0 | Test GPU |" in text
    # the default is one point below tuned Sgmod on every seed: an exact paired difference of -0.10
    # (an exact sign test: p = 2 * 0.5**8, the largest of the three p-values, so Holm keeps it; TOST: within 0.5)
    default_row = (
        "| sgmod_default - sgmod | CPU - GPU | 8 | -0.10 [-0.10, -0.10] | 0.00781 | 0 | different (reference better) |"
    )
    assert default_row in text
    assert "| sgmod_default - relu | CPU - GPU | 8 | +0.39 " in text
    expected = paired(dict(enumerate(LEARNED)), dict(enumerate(FIXED)))
    low, high = 100 * expected["low"], 100 * expected["high"]
    assert f"| sgmod - relu | GPU - GPU | 8 | +0.49 [{low:+.2f}, {high:+.2f}] |" in text
    assert "did not all run on one kind of machine" in text  # the GPU and the CPU rows
    assert "- tanh |" not in text  # not run yet
    # where tuned Sgmod's gamma/beta ended: gamma 1 + s/10 and 1.2 on seed s, a mean of 1.275 over seeds
    # and channels; beta -0.5 everywhere, so beta + gamma/2 = 0.1375; next-layer norm 2: gamma x w 2.55.
    # The farthest channel moved 0.5 (beta from 0) on seeds 0-5, gamma 0.6 and 0.7 on seeds 6-7: 0.5375.
    assert "| sgmod | head.act | 8 | 1.00 | 0.54 | 1.275 | -0.500 | 0.138 | 2.55 |" in text
    assert "| sgmod_default | head.act |" not in text  # its rows carry no gamma/beta record
    assert (tmp_path / "gamma_beta_tuned.png").stat().st_size > 5000
    empty = confirm_section({"confirm_sgmod": []}, tmp_path)
    assert empty.endswith("Not run yet (`scripts/study.py run confirm_<activation>`).")


def _on(machine, rows):
    return [{**row, "machine": machine} for row in rows]


def test_the_machine_effect_from_the_controls_is_a_pooled_two_sample_estimate():
    from sgmod_study.study_report import machine_effect

    cpu = [0.910, 0.914, 0.912]
    gpu = [0.915, 0.913, 0.917, 0.919]
    rows = _on(EPYC, [_row("relu", s, a) for s, a in enumerate(cpu)])
    rows += [_row("relu", 10 + s, a) for s, a in enumerate(gpu)]  # _row runs on "Test GPU"
    # one variant: exactly the pooled (equal-variance) two-sample t interval
    effect = machine_effect(rows)
    reference = stats.ttest_ind(gpu, cpu, equal_var=True).confidence_interval(0.95)
    assert effect["mean"] == pytest.approx(np.mean(gpu) - np.mean(cpu))
    assert (effect["low"], effect["high"]) == (pytest.approx(reference.low), pytest.approx(reference.high))
    assert (effect["variants"], effect["runs"]) == (1, 7)
    # a second variant whose GPU runs are 0.004 above its CPU runs, with the same two sizes: the same
    # weight, so the estimate is the plain mean of the two differences (0.004 and 0.00475)
    rows += _on(EPYC, [_row("tanh", s, a - 0.004) for s, a in enumerate(gpu[:3])])
    rows += [_row("tanh", 10 + s, a) for s, a in enumerate(gpu[:3] + [np.mean(gpu[:3])])]
    assert machine_effect(rows)["mean"] == pytest.approx((0.004 + np.mean(gpu) - np.mean(cpu)) / 2)
    # a variant with one run on a side says nothing about its variance: left out
    one_side = [_row("sigmoid", 0, 0.9), _row("sigmoid", 1, 0.91), *_on(EPYC, [_row("sigmoid", 2, 0.92)])]
    assert machine_effect(one_side) is None


def test_a_configuration_retrained_on_a_gpu_and_a_cpu_gives_the_machine_effect_paired_by_seed(tmp_path):
    from sgmod_study.study_report import confirm_section

    def runs(variant, lr, accs):
        return [
            {**_row(variant, s, a), "config": {"activation": {"name": variant}, "lr": lr}} for s, a in enumerate(accs)
        ]

    gpu_tanh = [a + 0.002 for a in FIXED]
    records = {
        "confirm_sgmod": _on(EPYC, runs("sgmod", 1e-3, LEARNED)),
        "confirm_tanh": runs("tanh", 1e-3, gpu_tanh),
        "confirm_tanh_cpu": _on(EPYC, runs("tanh", 1e-3, FIXED)),
        "confirm_relu": runs("relu", 1e-3, FIXED),  # on a GPU, but no CPU twin
        "confirm_sigmoid": _on(EPYC, runs("tanh", 2e-3, FIXED)),  # another configuration: no twin of confirm_tanh
    }
    text = confirm_section(records, tmp_path)
    assert "- tanh on a GPU minus tanh_cpu, the same configuration and seeds on a CPU (paired, 8 seeds): +0.20" in text
    assert text.count("on a GPU minus") == 1 and "`tanh_cpu` is `tanh` again (its settings and seeds) on a CPU." in text
    assert "| sgmod - tanh | CPU - GPU | 8 |" in text and "| sgmod - tanh_cpu | CPU - CPU | 8 |" in text
    assert "from the controls" not in text  # none given
    # all on one kind of machine: no machine paragraph at all
    same = {name: _on(EPYC, rows) for name, rows in records.items()}
    assert "one kind of machine" not in confirm_section(same, tmp_path)


def test_sweep_travel_states_how_far_gamma_beta_could_and_did_move_over_the_trials(tmp_path):
    from sgmod_study.study_report import sweep_travel, sweeps_section

    rows = [_row("sgmod", 0, 0.90, gamma=[1.5, 0.8], could=0.6), _row("sgmod", 1, 0.91, gamma=[1.1], could=2.3)]
    rows.append({**_row("sgmod", 2, 0.5), "state": "FAIL"})  # not finished: not counted
    moves = sweep_travel(rows)
    # moved: the larger of |gamma - 1| and |beta - 0| = 0.5 in both (beta is -0.5 in _row)
    assert moves == {"n": 2, "could": [0.6, 2.3], "moved": [0.5, 0.5], "enough": 1}
    text = sweeps_section({"sweep_sgmod": rows}, tmp_path)
    assert "they could travel 1.45 (median; 0.60 to 2.30) and moved 0.50" in text
    assert "1 of 2 trials allowed the distance 1 from (1, 0)" in text


def test_sweeps_are_compared_at_the_fewest_trials_any_sweep_has_finished(tmp_path):
    from sgmod_study.study_report import sweeps_section

    sgmod = [_row("sgmod", i, acc) for i, acc in enumerate((0.90, 0.92, 0.94))]
    relu = [_row("relu", i, acc) for i, acc in enumerate((0.91, 0.93))]
    text = sweeps_section({"sweep_sgmod": sgmod, "sweep_relu": relu}, tmp_path)
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
    assert "The Sgmod sweep runs 64 trials over its six parameters, each baseline 32 over its two" in text
    assert "Best Sgmod configuration so far: " in text  # 3 of its 64 trials
    complete_sweep = [_row("sgmod", i, 0.9 + i / 1000) for i in range(64)]
    assert "Best Sgmod configuration: " in sweeps_section({"sweep_sgmod": complete_sweep}, tmp_path)


def test_the_best_learnable_sgmod_is_compared_with_the_best_fixed_member_of_the_family():
    from sgmod_study.study_report import best_learnable_vs_best_fixed

    worse = [a - 0.004 for a in FIXED]
    table = {
        "sgmod": dict(enumerate(LEARNED)),
        "sgmod_tanh_init": dict(enumerate(worse)),
        "sgmod_fixed": dict(enumerate(worse)),
        "sigmoid": dict(enumerate(FIXED)),  # the best fixed member
        "relu": dict(enumerate(a + 0.05 for a in LEARNED)),  # not of the family: ignored
    }
    row = best_learnable_vs_best_fixed(table)
    assert (row["variant"], row["reference"]) == ("sgmod", "sigmoid")
    assert row["mean"] == pytest.approx(np.mean(np.array(LEARNED) - np.array(FIXED)))
    assert best_learnable_vs_best_fixed({"relu": {0: 0.9}}) is None


def test_the_budget_is_read_from_the_rows_and_a_shorter_sweep_is_called_a_cheaper_fidelity():
    from sgmod_study.study_report import epochs, fidelity_sentence

    def run(epochs_, state="COMPLETE"):
        row = _row("sgmod", 0, 0.9)
        return {**row, "state": state, "config": {**row["config"], "trainer.max_epochs": epochs_}}

    assert epochs([run(10), run(3), run(10), run(1, state="FAIL")]) == "3, 10"  # failed runs do not count
    assert epochs([]) == "?"
    same = fidelity_sentence({"sweep_sgmod": [run(10)], "controls": [run(10)], "confirm_relu": [run(10)]})
    assert same.startswith("Every sweep trial trains for the full budget (10 epochs")
    shorter = fidelity_sentence({"sweep_sgmod": [run(3)], "sweep_relu": [run(3)], "confirm_sgmod": [run(10)]})
    assert shorter.startswith("The sweep trials train for 3 epochs, the controls and confirmation runs for 10")
    assert fidelity_sentence({"controls": [run(10)]}) == ""  # no sweep trial finished: nothing to say


def test_which_values_work_reads_the_top_quarter_against_the_searched_range():
    import optuna
    from optuna.distributions import FloatDistribution

    from sgmod_study.study_report import good_values

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
    lines = good_values(trials)
    assert lines[0].startswith("Which values work: the top quarter of the trials (3 of 12, val/acc_best 0.9100 to 0.93")
    rows = {line.split(" | ")[0].lstrip("| "): line.split(" | ")[1:] for line in lines[4:]}
    assert rows["activation.gamma_init"] == ["0.1 to 10 (log)", "4", "4 [1, 9]", "4 |"]
    assert rows["activation.beta_init"] == ["-5 to 5", "-1", "-1 [-2, 0.5]", "-1 |"]


def test_a_best_value_at_the_edge_of_its_searched_range_is_named():
    import optuna

    from sgmod_study.study_report import at_edge

    distributions = {
        "optimizer.lr": optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True),
        "activation.beta_init": optuna.distributions.FloatDistribution(-5.0, 5.0),
        "norm": optuna.distributions.CategoricalDistribution(["batch", "layer"]),
    }

    def trial(lr, beta):
        params = {"optimizer.lr": lr, "activation.beta_init": beta, "norm": "batch"}
        return optuna.trial.create_trial(params=params, distributions=distributions, value=0.9)

    # 0.00944 is 1.2% of the log range below 1e-2; -4.6 is 4% of the linear range above -5
    assert at_edge(trial(0.00944, -4.6)) == [
        "activation.beta_init=-4.6 (searched -5 to 5)",
        "optimizer.lr=0.00944 (searched 0.0001 to 0.01)",
    ]
    # 0.007 is 92% of the way on the log scale and -4.4 6% (both inside), but 0.00012 only 4%: the low edge
    assert at_edge(trial(0.007, -4.4)) == []
    assert at_edge(trial(0.00012, 0.0)) == ["optimizer.lr=0.00012 (searched 0.0001 to 0.01)"]


def test_the_report_is_titled_results_once_every_part_is_complete():
    from sgmod_study.study import PARTS
    from sgmod_study.study_report import study_complete

    records = {name: [_row("relu", s, 0.9) for s in range(p.trials)] for name, p in PARTS.items()}
    assert study_complete(records)
    records["confirm_relu"][3] = {**records["confirm_relu"][3], "state": "FAIL"}  # 9 of 10 finished
    assert not study_complete(records)
