"""The report's paired contrasts (sgmod_study.study.report: paired, controls, confirm): differences,
Holm, TOST and verdicts, tuned against tuned on fresh seeds, and the machine effect. Synthetic records
with known values; no training."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from helpers.records import FIXED, LEARNED, write_parts  # the learnable Sgmod better on every seed
from helpers.records import row as _row
from helpers.report_records import (
    EPYC,
    MARGINS,
    classifier_study,
    controls_record,
    on_machine,
    report_page,
    sweep_row,
)
from sgmod_study.study import stats
from sgmod_study.study.report import confirm, controls, document, paired


def test_paired_difference_matches_scipy_and_tost_says_equivalent_only_within_the_margin():
    result = paired.compare(dict(enumerate(LEARNED)), dict(enumerate(FIXED)), MARGINS)
    differences = np.array(LEARNED) - np.array(FIXED)
    assert result["mean"] == pytest.approx(differences.mean())
    assert result["p"] == pytest.approx(scipy_stats.ttest_rel(LEARNED, FIXED).pvalue)
    low, high = scipy_stats.t.interval(0.95, 7, loc=differences.mean(), scale=scipy_stats.sem(differences))
    assert (result["low"], result["high"]) == (pytest.approx(low), pytest.approx(high))
    # +0.49 points: at the 0.5-point margin, so the equivalence test cannot confirm it
    assert result["p_tost"][0.005] > 0.05
    near = [f + d for f, d in zip(FIXED, [0.001, 0.0, 0.002, -0.001, 0.001, 0.0, 0.002, 0.001], strict=True)]
    assert paired.compare(dict(enumerate(near)), dict(enumerate(FIXED)), MARGINS)["p_tost"][0.005] < 0.001


def test_holm_counts_the_declared_tests_not_run_yet_as_p_1_so_an_interim_p_is_never_below_its_final_one():
    rows = [{"p": 0.01}, {"p": 0.04}, {"p": math.nan, "n": 1}]  # a third test has too few pairs for a p
    paired.correct_holm(rows, family=4)
    assert [r["p_holm"] for r in rows[:2]] == pytest.approx([0.04, 0.12])  # 4 x 0.01, 3 x 0.04
    assert "p_holm" not in rows[2]
    assert paired.family_note(rows, 4) == [
        "",
        "Holm's correction counts the 4 primary tests declared; the 2 without a p yet count as p = 1 until they "
        "have one, so no corrected p here is below the value it will have then.",
    ]
    # once the other two have run, whatever their p, the first two corrected values are no larger
    for others in ([0.03, 0.5], [0.001, 0.002], [0.9, 1.0]):
        final = [{"p": p} for p in (0.01, 0.04, *others)]
        paired.correct_holm(final, family=4)
        assert all(f["p_holm"] <= r["p_holm"] + 1e-12 for f, r in zip(final, rows[:2], strict=False))
        assert paired.family_note(final, 4) == []
    unfamilied = [{"p": 0.01}, {"p": 0.04}]
    paired.correct_holm(unfamilied)  # no family declared: the rows themselves
    assert [r["p_holm"] for r in unfamilied] == pytest.approx([0.02, 0.04])


def test_contrasts_are_holm_corrected_and_the_verdict_follows_the_data(tmp_path):
    table = {"sgmod": LEARNED, "sgmod_fixed": FIXED, "tanh": FIXED}
    data = controls.compute(classifier_study(), controls_record(tmp_path, table))
    rows = {r["question"]: r for r in data.primary}
    first = rows["learnable vs fixed gamma/beta at (1, 0)"]
    best = rows["the best Sgmod variant vs tanh"]
    assert best["variant"] == "sgmod"  # the best Sgmod variant by mean
    # two of the four primary contrasts declared have both sides here; Holm counts the other two as p = 1
    assert [first["p_holm"], best["p_holm"]] == pytest.approx(stats.holm([first["p"], best["p"], 1.0, 1.0])[:2])
    assert paired.verdict(first) == "different (variant better)"
    few = paired.compare({0: 0.91, 1: 0.92}, {0: 0.90, 1: 0.915}, MARGINS)
    assert paired.verdict({**few, "p_holm": 0.01}).startswith("preliminary (n < 8): different")
    # the margin in the same unit as the differences beside it (percentage points)
    equivalent = {**first, "p_holm": 0.5, "p_tost": {0.005: 0.01, 0.002: 0.3}}
    assert paired.verdict(equivalent) == "equivalent within +-0.5 points"


def test_where_every_seed_has_run_too_few_pairs_are_blamed_on_failures_not_called_preliminary():
    seven = paired.compare(dict(enumerate(LEARNED[:7])), dict(enumerate(FIXED[:7])), MARGINS)
    assert paired.verdict({**seven, "excluded": 0}).startswith("preliminary (n < 8): ")  # a seed still to run
    assert paired.verdict({**seven, "excluded": 1}).startswith("only 7 pairs, the other seeds failed: ")
    none = {**paired.compare({}, {}, MARGINS), "excluded": 8}
    assert paired.verdict(none) == "no pair: on every seed one side or both failed"
    rows = [{"p": 0.01, "n": 8}, none, {"p": math.nan, "n": 1, "excluded": 0}]
    paired.correct_holm(rows, family=4)
    assert rows[0]["p_holm"] == pytest.approx(0.04)  # the test with no pair counts as p = 1, for good
    assert paired.family_note(rows, 4) == [
        "",
        "Holm's correction counts the 4 primary tests declared; the 3 without a p count as p = 1: 1 for good "
        "(too few seeds where neither side failed); 2 until they have one (runs still to come), so no corrected "
        "p here is below its final value.",
    ]


def test_a_verdict_can_be_different_and_within_the_margin_at_once():
    # 0.22 points below on every seed, give or take 0.02: detectable, and well inside +-0.5 points
    reference = [0.925, 0.927, 0.924, 0.926, 0.928, 0.925, 0.926, 0.927, 0.924, 0.926]
    noise = [0.0002, -0.0001, 0.0001, -0.0002, 0.0, 0.0001, -0.0001, 0.0002, 0.0, -0.0002]
    variant = [r - 0.0022 + e for r, e in zip(reference, noise, strict=True)]
    row = paired.compare(dict(enumerate(variant)), dict(enumerate(reference)), MARGINS)
    paired.correct_holm([row])
    assert row["p_holm"] < 0.05 and row["p_tost"][0.005] < 0.05 and row["p_tost"][0.002] > 0.05
    assert paired.verdict(row) == "different (reference better), and within +-0.5 points"
    # equivalence is named at the tightest margin that holds
    tight = {"n": 10, "mean": 0.0001, "p": 0.9, "p_holm": 0.9, "p_tost": {0.005: 0.001, 0.002: 0.01}}
    assert paired.verdict(tight) == "equivalent within +-0.2 points"
    assert paired.verdict({**tight, "p_tost": {0.005: 0.2, 0.002: 0.6}}) == "inconclusive"


def test_every_paired_table_has_a_tost_column_per_margin(tmp_path):
    table = {"sgmod": LEARNED, "sgmod_fixed": FIXED, "tanh": FIXED}
    lines = controls.render(
        controls.compute(classifier_study(), controls_record(tmp_path, table)), report_page(tmp_path)
    )
    text = "\n".join(lines)
    assert "| p (Holm) | TOST p (+-0.5) | TOST p (+-0.2) | verdict |" in text
    diffs = np.array(LEARNED) - np.array(FIXED)
    tosts = f"| {stats.tost_p(diffs, 0.005):.3g} | {stats.tost_p(diffs, 0.002):.3g} |"
    assert tosts in text
    assert "within +-0.5 points (the study's equivalence margin) and, in the next column, within +-0.2" in text
    # the secondary contrast gives both too
    assert "TOST p " + f"{stats.tost_p(diffs, 0.005):.3g} (+-0.5 points), " in text


def test_tuned_sgmod_is_compared_with_each_tuned_baseline_on_the_fresh_seeds(tmp_path):
    record = write_parts(
        tmp_path,
        {
            "confirm_sgmod": [_row("sgmod", s, a, gamma=[1.0 + s / 10, 1.2]) for s, a in enumerate(LEARNED)],
            "confirm_sgmod_default": [{**_row("sgmod", s, a - 0.001), "machine": EPYC} for s, a in enumerate(LEARNED)],
            "confirm_relu": [_row("relu", s, a) for s, a in enumerate(FIXED)],
            "confirm_tanh": [],
        },
    )
    text = "\n".join(confirm.render(confirm.compute(classifier_study(), record), report_page(tmp_path, {"travel": 2})))
    assert "| sgmod_default | 8 | 0.9168 |" in text
    # each configuration says where it ran: these two on different machines
    assert "activation.gamma_init=1, activation.beta_init=0 | AMD EPYC (2 cores, AVX512) |" in text
    assert "| relu | 8 | 0.9129 | [0.9112, 0.9146] |" in text and "beta_init=0 | Test GPU |" in text
    # the default is one point below tuned Sgmod on every seed: an exact paired difference of -0.10 (an
    # exact sign test: p = 2 * 0.5**8 = 0.0078). It is the one primary contrast with both sides run of the 8
    # declared; Holm counts the 7 others as p = 1: 8 x 0.0078 = 0.0625, not different. TOST: within both
    default_row = (
        "| sgmod_default - sgmod | CPU - GPU | 8 | -0.10 [-0.10, -0.10] | 0.0625 | 0 | 0 | "
        "equivalent within +-0.2 points |"
    )
    assert default_row in text
    # against a GPU run: secondary since the confirm contrasts compare one kind of machine (raw p)
    assert "| sgmod_default - relu (secondary) | CPU - GPU | 8 | +0.39 " in text
    expected = stats.paired(dict(enumerate(LEARNED)), dict(enumerate(FIXED)), MARGINS)
    low, high = 100 * expected["low"], 100 * expected["high"]
    assert f"| sgmod - relu (secondary) | GPU - GPU | 8 | +0.49 [{low:+.2f}, {high:+.2f}] | " in text
    assert "did not all run on one kind of machine" in text  # the GPU and the CPU rows
    assert "- tanh |" not in text  # not run yet
    # where tuned Sgmod's gamma/beta ended: gamma 1 + s/10 and 1.2 on seed s, a mean of 1.275 over seeds
    # and channels; beta -0.5 everywhere, so beta + gamma/2 = 0.1375; next-layer norm 2: gamma x w 2.55.
    # The farthest channel moved 0.5 (beta from 0) on seeds 0-5, gamma 0.6 and 0.7 on seeds 6-7: 0.5375.
    assert "| sgmod | head.act | 8 | 1.00 | 0.54 | 1.275 | -0.500 | 0.138 | 2.55 |" in text
    assert "(the columns as in section 2;" in text
    assert "| sgmod_default | head.act |" not in text  # its rows carry no gamma/beta record
    assert (tmp_path / "study_figures" / "gamma_beta_tuned.png").stat().st_size > 5000
    empty = confirm.render(
        confirm.compute(classifier_study(), write_parts(tmp_path / "none", {})), report_page(tmp_path)
    )
    assert empty[-1].startswith("Not run yet (no finished run in part confirm_sgmod, confirm_sgmod_default")


def test_the_winners_curse_puts_each_sweeps_best_beside_its_fresh_seed_mean(tmp_path):
    fresh = [sweep_row(100 + s, a, {"seed": 100 + s}) for s, a in enumerate(FIXED)]  # val/acc_best 0.9129 on average
    record = write_parts(
        tmp_path,
        {
            "sweep_relu": [sweep_row(0, 0.925, {"optimizer.lr": 1e-3}), sweep_row(1, 0.930, {"optimizer.lr": 5e-3})],
            "confirm_relu": fresh,
            "confirm_tanh": fresh,  # its sweep has no trial yet: no line
        },
    )
    data = confirm.compute(classifier_study(), record)
    assert [(c.sweep, c.label, c.n) for c in data.curse] == [("sweep_relu", "relu", 8)]
    mean, _, low, high = stats.mean_ci(FIXED)
    text = "\n".join(confirm.render(data, report_page(tmp_path)))
    assert (
        "Each sweep's best val/acc_best beside the mean of the same configuration retrained on the fresh seeds" in text
    )
    assert (
        f"| sweep_relu | 0.9300 | relu | 8 | {mean:.4f} [{low:.4f}, {high:.4f}] | {100 * (mean - 0.93):+.2f} |" in text
    )


def test_the_best_learnable_sgmod_is_compared_with_the_best_fixed_member_of_the_family(tmp_path):
    worse = [a - 0.004 for a in FIXED]
    table = {
        "sgmod": LEARNED,
        "sgmod_tanh_init": worse,
        "sgmod_fixed": worse,
        "sigmoid": FIXED,  # the best fixed member
        "relu": [a + 0.05 for a in LEARNED],  # not of the family: ignored
    }
    data = controls.compute(classifier_study(), controls_record(tmp_path, table))
    (row,) = data.secondary
    assert (row["variant"], row["reference"]) == ("sgmod", "sigmoid")
    assert row["mean"] == pytest.approx(np.mean(np.array(LEARNED) - np.array(FIXED)))
    text = "\n".join(controls.render(data, report_page(tmp_path)))
    assert "Secondary (both picked after the runs, the best mean of each group, so the p-value is optimistic)" in text
    assert controls.resolve(("sgmod", "sgmod_tanh_init"), {"relu": 0.9}) is None


def test_the_machine_effect_from_the_controls_is_a_pooled_two_sample_estimate(tmp_path):
    cpu = [0.910, 0.914, 0.912]
    gpu = [0.915, 0.913, 0.917, 0.919]
    rows = on_machine(EPYC, [_row("relu", s, a) for s, a in enumerate(cpu)])
    rows += [_row("relu", 10 + s, a) for s, a in enumerate(gpu)]  # _row runs on "Test GPU"
    # one variant: exactly the pooled (equal-variance) two-sample t interval
    effect = confirm.controls_effect(classifier_study(), write_parts(tmp_path / "a", {"controls": rows}))
    reference = scipy_stats.ttest_ind(gpu, cpu, equal_var=True).confidence_interval(0.95)
    assert effect["mean"] == pytest.approx(np.mean(gpu) - np.mean(cpu))
    assert (effect["low"], effect["high"]) == (pytest.approx(reference.low), pytest.approx(reference.high))
    assert (effect["cells"], effect["runs"]) == (1, 7)
    # a second variant whose GPU runs are 0.004 above its CPU runs, with the same two sizes: the same
    # weight, so the estimate is the plain mean of the two differences (0.004 and 0.00475)
    rows += on_machine(EPYC, [_row("tanh", s, a - 0.004) for s, a in enumerate(gpu[:3])])
    rows += [_row("tanh", 10 + s, a) for s, a in enumerate(gpu[:3] + [np.mean(gpu[:3])])]
    both = confirm.controls_effect(classifier_study(), write_parts(tmp_path / "b", {"controls": rows}))
    assert both["mean"] == pytest.approx((0.004 + np.mean(gpu) - np.mean(cpu)) / 2)
    # a variant with one run on a side says nothing about its variance: left out
    one_side = [_row("sigmoid", 0, 0.9), _row("sigmoid", 1, 0.91), *on_machine(EPYC, [_row("sigmoid", 2, 0.92)])]
    assert confirm.controls_effect(classifier_study(), write_parts(tmp_path / "c", {"controls": one_side})) is None


def test_a_configuration_retrained_on_a_gpu_and_a_cpu_gives_the_machine_effect_paired_by_seed(tmp_path):
    def runs(variant, lr, accs):
        return [
            {**_row(variant, s, a), "config": {"activation": {"name": variant}, "lr": lr}} for s, a in enumerate(accs)
        ]

    gpu_tanh = [a + 0.002 for a in FIXED]
    parts = {
        "confirm_sgmod": on_machine(EPYC, runs("sgmod", 1e-3, LEARNED)),
        "confirm_tanh": runs("tanh", 1e-3, gpu_tanh),
        "confirm_tanh_cpu": on_machine(EPYC, runs("tanh", 1e-3, FIXED)),
        "confirm_relu": runs("relu", 1e-3, FIXED),  # on a GPU, but no CPU twin
        "confirm_sigmoid": on_machine(
            EPYC, runs("tanh", 2e-3, FIXED)
        ),  # another configuration: no twin of confirm_tanh
    }
    data = confirm.compute(classifier_study(), write_parts(tmp_path / "a", parts))
    text = "\n".join(confirm.render(data, report_page(tmp_path)))
    assert "- tanh on a GPU minus tanh_cpu, the same configuration and seeds on a CPU (paired, 8 seeds): +0.20" in text
    assert text.count("on a GPU minus") == 1 and "`tanh_cpu` is `tanh` again (its settings and seeds) on a CPU." in text
    assert "| sgmod - tanh (secondary) | CPU - GPU | 8 |" in text and "| sgmod - tanh_cpu | CPU - CPU | 8 |" in text
    assert "from the controls" not in text  # none given
    # the header reads the measured effect: +0.2 points on every seed, an interval away from 0, so the
    # header names a machine effect
    sentence = document.machine_effect_sentence(data, classifier_study())
    assert sentence.startswith("Accuracies from different machines differ by the machine's own effect")
    assert "+0.20 points [+0.20, +0.20] for tanh against tanh_cpu (paired by seed)" in sentence
    # all on one kind of machine: no machine paragraph at all
    same = {name: on_machine(EPYC, rows) for name, rows in parts.items()}
    alike = confirm.render(
        confirm.compute(classifier_study(), write_parts(tmp_path / "b", same)), report_page(tmp_path)
    )
    assert "one kind of machine" not in "\n".join(alike)


def test_a_machine_effect_whose_interval_holds_zero_is_consistent_with_non_determinism(tmp_path):
    noise = [0.001, -0.002, 0.0015, -0.001, 0.0005, -0.0005, 0.002, -0.0015]
    gpu = [a + e for a, e in zip(FIXED, noise, strict=True)]
    parts = {
        "confirm_tanh": [{**_row("tanh", s, a), "config": {"lr": 1}} for s, a in enumerate(gpu)],
        "confirm_tanh_cpu": on_machine(
            EPYC, [{**_row("tanh", s, a), "config": {"lr": 1}} for s, a in enumerate(FIXED)]
        ),
    }
    data = confirm.compute(classifier_study(), write_parts(tmp_path, parts))
    sentence = document.machine_effect_sentence(data, classifier_study())
    assert sentence.startswith(
        "Accuracies from different machines are consistent with floating-point "
        "non-determinism alone (GPU convolutions use TF32): the machine's own effect, GPU "
        "minus CPU, measured in section 5, is +0.00 points ["
    )
    assert "differ only by" not in sentence
